"""Events in words, one line each: `serve`'s and `lab`'s stdout, the Live view's Log pane,
and the evidence under each finding."""

from __future__ import annotations

import time

from ..events import (BlksizeGranted, BpduSeen, ConsoleLine, DhcpExchange, DhcpServerSeen,
                      Event, EventsSuppressed, ForeignRouterSeen, LeaseChanged, LogLine,
                      NfsActivity, PacketDropped, PlanLoaded, RouterAdvertSent,
                      RpcVersionRefused, ServiceStarted, ServiceStopped, SessionClosed,
                      SessionOpened, TransferDone, TransferFailed, TransferProgress,
                      TransferStarted)
from ..safetext import escape_controls
from .timeline import is_normal_miss
from ..units import size_text


def exchange_words(ev: DhcpExchange, sep: str = " -> ") -> str:
    """``DISCOVER -> OFFER``, or ``DISCOVER, not answered`` when we stayed silent."""
    if ev.msg_out in ("", "-"):
        return f"{ev.msg_in}, not answered"
    return f"{ev.msg_in}{sep}{ev.msg_out}"


def describe(ev: Event) -> str:
    """What happened, without the time stamp; control characters escaped (network text)."""
    return escape_controls(_describe(ev))


def _describe(ev: Event) -> str:
    who = ev.client or getattr(ev, "peer", "") or "-"
    match ev:
        case ServiceStarted():
            port = f":{ev.port}" if ev.port else ""  # ICMPv6 (RA) has no port
            return f"{ev.service}: listening on {ev.address}{port}/{ev.proto}"
        case ServiceStopped():
            return f"{ev.service}: stopped" + (f" ({ev.reason})" if ev.reason else "")
        case LogLine():
            return f"{ev.service}: {ev.level}: {ev.message}"
        case PacketDropped():
            return f"{ev.service}: dropped {ev.size} bytes from {ev.peer}: {ev.reason}"
        case EventsSuppressed():
            return (f"{ev.service}: {ev.count} more {ev.of_kind} events not logged in "
                    f"{ev.seconds:.1f} s (rate limit, log.refusals_per_second); "
                    f"latest: {ev.latest}")
        case DhcpExchange():
            arch = f" {ev.arch_name}" if ev.arch_name else ""
            out = exchange_words(ev)
            extra = " ".join(x for x in (
                ev.yiaddr and f"ip={ev.yiaddr}", ev.boot_file and f"file={ev.boot_file}",
                ev.relay and f"via={ev.relay}") if x)
            why = f" ({ev.reason})" if ev.reason else ""
            return f"{ev.service} {ev.mac}{arch}: {' '.join(x for x in (out, extra) if x)}{why}"
        case LeaseChanged():
            return f"lease {ev.ip} {ev.state} for {ev.mac}" + (
                f" ({ev.hostname})" if ev.hostname else "")
        case DhcpServerSeen():
            kind = "proxyDHCP" if ev.proxy else "DHCP"
            return (f"{kind} server {ev.server_id} ({ev.server_mac}) offered "
                    f"{ev.offered_ip or 'no address'} file={ev.boot_file or '-'}")
        case RouterAdvertSent():
            what = "Router Solicitation" if ev.solicit else "Router Advertisement"
            return f"ra: {what} to {ev.dest}" + (f" for {ev.client}" if ev.client else "") + (
                f" ({ev.reason})" if ev.reason else "")
        case ForeignRouterSeen():
            flags = "".join(f for f, on in (("M", ev.managed), ("O", ev.other)) if on) or "-"
            return (f"ra: router {ev.router} ({ev.router_mac or '?'}) advertises lifetime "
                    f"{ev.lifetime} s, flags {flags}, prefixes "
                    f"{', '.join(ev.prefixes) or 'none'}"
                    + ("; we send no Router Advertisements" if ev.silenced else ""))
        case TransferStarted():
            opts = " ".join(f"{k}={v}" for k, v in ev.options.items())
            return f"{ev.service} {who}: start {ev.path} ({size_text(ev.size)}) {opts}".rstrip()
        case TransferProgress():
            return f"{ev.service} {who}: {ev.path} {size_text(ev.sent)}/{size_text(ev.size)}"
        case TransferDone():
            rate = ev.sent / ev.seconds / 1e6 if ev.seconds > 0 else 0.0
            st = f" {ev.status}" if ev.status else ""
            return (f"{ev.service} {who}:{st} done {ev.path} {size_text(ev.sent)} in "
                    f"{ev.seconds:.2f} s ({rate:.1f} MB/s)")
        case TransferFailed():
            tag = "probe" if ev.probe else "miss" if is_normal_miss(ev) else "FAILED"
            return f"{ev.service} {who}: {tag} {ev.path}: {ev.reason}"
        case SessionOpened():
            return f"{ev.service} {ev.peer}: open {ev.target} {ev.detail}".rstrip()
        case SessionClosed():
            return f"{ev.service} {ev.peer}: closed {ev.target} after {size_text(ev.read)}" + (
                f" ({ev.reason})" if ev.reason else "")
        case ConsoleLine():
            return f"[{ev.vm}] {ev.line}"
        case NfsActivity():
            return (f"{ev.service} {who}: read {size_text(ev.read)}, written "
                    f"{size_text(ev.written)} so far")
        case PlanLoaded():
            return (f"plan: dhcp {ev.dhcp_mode}, stage 3 over {ev.transport or '?'} on "
                    f"{ev.interface} {ev.server_ip}")
        case BpduSeen():
            return (f"stp: {ev.protocol.upper()} BPDU on {ev.interface} from bridge "
                    f"{ev.bridge_id} (root {ev.root_id}), forward delay {ev.forward_delay:g} s")
        case RpcVersionRefused():
            return (f"{ev.service} {who}: program {ev.program} version {ev.version} refused "
                    f"(PROG_MISMATCH, we serve {ev.low}..{ev.high})")
        case BlksizeGranted():
            mtu = f"path MTU {ev.path_mtu}" if ev.path_mtu else f"path MTU below {ev.packet}"
            return (f"tftp {who}: blocks of {ev.asked} bytes of {ev.path} lost ({mtu}); "
                    f"its next requests get blksize {ev.granted}")
    fields = {k: v for k, v in ev.to_dict().items() if k not in ("kind", "ts", "client")}
    return f"{ev.kind} {who} {fields}"


def one_line(ev: Event) -> str:
    """``HH:MM:SS.mmm  description``."""
    t = time.localtime(ev.ts)
    return f"{time.strftime('%H:%M:%S', t)}.{int(ev.ts % 1 * 1000):03d}  {describe(ev)}"
