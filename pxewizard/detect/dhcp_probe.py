"""Which DHCP servers already answer on an interface (``pxewizard probe IFACE``).

Two DISCOVERs go out from the interface: a plain one (what any DHCP server
answers) and a PXE one (vendor class PXEClient, option 93 = 0), which a
proxyDHCP server also answers. Every OFFER heard within the timeout is listed.
No REQUEST is ever sent, so no lease is taken.

The probe behaves as a client does, because servers wait for clients, not for
probes: it listens :data:`PROBE_TIMEOUT` seconds and sends the DISCOVERs again
every :data:`RESEND_EVERY` seconds (same xid, ``secs`` counting up). A stock
dnsmasq pings the address it means to offer and answers only ~3 s later (PING_WAIT
in its dhcp.c), ISC dhcpd pings for 1 s (``ping-timeout``) and may ignore a
request until ``secs`` reaches ``min-secs``, Windows Server waits one second per
conflict-detection attempt, and a server that was busy drops the first DISCOVER
and answers the retransmission. ``serve``, the wizard's Start and its scan screen
all call this one probe (through :func:`look_before_serving` or :func:`probe`).

Packets go through an AF_PACKET socket, as a DHCP client's do: source address
0.0.0.0, port 68, no need to bind UDP 67/68 (our own server or a dhclient may
hold them), and the answer's Ethernet source gives the server's MAC.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import struct
import time
from collections.abc import Callable
from ipaddress import ip_address
from pathlib import Path

from ..errors import NeedsRoot, PxeError
from ..events import DhcpServerSeen, Event, LogLine
from ..proto.dhcp import FLAG_BROADCAST, MsgType, Packet, decode, ip_str, mac_bytes

ETH_P_IP = 0x0800

PROBE_TIMEOUT = 6.0
"""Seconds the probe listens: the slowest common server (dnsmasq, ~3 s ping before its
first OFFER) answers a DISCOVER sent at 0 or 1.5 s well within it."""
RESEND_EVERY = 1.5
"""Seconds between the DISCOVER pairs, as a client retransmits (RFC 2131 4.1)."""


def send_times(timeout: float) -> list[float]:
    """When (seconds after the start) a DISCOVER pair goes out: every RESEND_EVERY s while
    at least one second is left to hear the answer; always at 0."""
    times, t = [0.0], RESEND_EVERY
    while t <= timeout - 1.0:
        times.append(t)
        t += RESEND_EVERY
    return times


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp_ip_packet(payload: bytes, src: int = 0, dst: int = 0xFFFFFFFF, sport: int = 68,
                  dport: int = 67) -> bytes:
    """An IPv4+UDP packet around ``payload`` (UDP checksum 0 = none, RFC 768)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    hdr = struct.pack("!BBHHHBBHII", 0x45, 0x10, 20 + len(udp), 0, 0, 64, 17, 0, src, dst)
    hdr = hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:]
    return hdr + udp


def discover(mac: str, xid: int, *, pxe: bool, arch: int = 0, secs: int = 0) -> bytes:
    """A DISCOVER with the broadcast flag (we have no address to receive unicast on);
    ``secs``: seconds since the first one (a retransmission counts up, RFC 2131 4.4.1)."""
    opts: dict[int, bytes] = {53: bytes((MsgType.DISCOVER,)),
                              55: bytes((1, 3, 6, 15, 28, 43, 54, 60, 66, 67))}
    opts[61] = b"\x01" + mac_bytes(mac)
    if pxe:
        opts[93] = arch.to_bytes(2, "big")
        opts[94] = b"\x01\x02\x01"
        opts[60] = f"PXEClient:Arch:{arch:05d}:UNDI:002001".encode()
        opts[97] = b"\x00" + bytes(16)
    return Packet(xid=xid, secs=secs, flags=FLAG_BROADCAST, chaddr=mac_bytes(mac),
                  options=opts).encode()


def interface_mac(interface: str) -> str:
    try:
        return Path(f"/sys/class/net/{interface}/address").read_text().strip()
    except OSError:
        from .interfaces import no_such_interface

        raise no_such_interface(interface, "the interface to probe") from None


def _seen(pkt: Packet, server_mac: str) -> DhcpServerSeen:
    sid = pkt.server_id
    file = pkt.options.get(67, b"").rstrip(b"\0").decode("utf-8", "replace") or \
        pkt.file.decode("utf-8", "replace")
    try:
        routers = pkt.ip_list(3)
        dns = pkt.ip_list(6)
    except ValueError:
        routers, dns = [], []
    return DhcpServerSeen(client=server_mac, server_id=ip_str(sid) if sid else "",
                          server_mac=server_mac,
                          offered_ip=ip_str(pkt.yiaddr) if pkt.yiaddr else "",
                          router=ip_str(routers[0]) if routers else "",
                          dns=",".join(ip_str(d) for d in dns),
                          next_server=ip_str(pkt.siaddr) if pkt.siaddr else "",
                          boot_file=file, proxy=not pkt.yiaddr)


def probe_sync(interface: str, timeout: float = PROBE_TIMEOUT, *,
               until: Callable[[list[DhcpServerSeen]], bool] | None = None
               ) -> list[DhcpServerSeen]:
    """Blocking probe (run it in a thread); see :func:`probe`. ``until``: stop listening
    as soon as it returns True for the answers heard so far."""
    mac = interface_mac(interface)
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    except PermissionError:
        raise NeedsRoot("probing for DHCP servers needs a raw socket",
                        "run pxewizard as root") from None
    try:
        sock.bind((interface, ETH_P_IP))
        base = int.from_bytes(os.urandom(4), "big") & 0xFFFFFFF0
        xids = {base: False, base + 1: True}
        seen: dict[tuple[str, str, str, str], DhcpServerSeen] = {}
        start = time.monotonic()
        deadline = start + timeout
        sends = send_times(timeout)
        while True:
            now = time.monotonic()
            while sends and start + sends[0] <= now:
                secs = int(sends.pop(0))
                for xid, pxe in xids.items():
                    pkt = udp_ip_packet(discover(mac, xid, pxe=pxe, secs=secs))
                    sock.sendto(pkt, (interface, ETH_P_IP, 0, 0, b"\xff" * 6))
            if now >= deadline:
                break
            wake = min(deadline, start + sends[0]) if sends else deadline
            r, _, _ = select.select([sock], [], [], max(0.0, wake - now))
            if not r:
                continue
            data, addr = sock.recvfrom(65535)
            if addr[2] == socket.PACKET_OUTGOING or len(data) < 28 or data[9] != 17:
                continue
            ihl = (data[0] & 0x0F) * 4
            sport, dport = struct.unpack_from("!HH", data, ihl)
            if dport != 68 or sport != 67:
                continue
            try:
                pkt = decode(data[ihl + 8:])
            except ValueError:
                continue
            if pkt.op != 2 or pkt.xid not in xids or pkt.msg_type != MsgType.OFFER:
                continue
            ev = _seen(pkt, addr[4][:6].hex(":"))
            seen.setdefault((ev.server_id, ev.server_mac, ev.offered_ip, ev.boot_file), ev)
            if until is not None and until(list(seen.values())):
                break
        return list(seen.values())
    except OSError as exc:
        raise PxeError(f"cannot probe {interface}: {exc.strerror or exc}",
                       "check that the interface is up (`ip link set IFACE up`)") from None
    finally:
        sock.close()


async def probe(interface: str, timeout: float = PROBE_TIMEOUT, *,
                until: Callable[[list[DhcpServerSeen]], bool] | None = None
                ) -> list[DhcpServerSeen]:
    """Every DHCP / proxyDHCP server that answered our DISCOVERs within ``timeout`` s."""
    return await asyncio.to_thread(probe_sync, interface, timeout, until=until)


def pool_in_use(seen: list[DhcpServerSeen], start: object, end: object) -> list[str]:
    """Addresses the probe saw in use that lie in the pool [start, end], each with who uses
    it: another server's own address, the router and DNS it hands out, the address it
    offered. Handing one of them out breaks that machine and the client alike."""
    lo, hi = int(ip_address(str(start))), int(ip_address(str(end)))
    out: dict[str, str] = {}
    for s in seen:
        uses = [(s.server_id, "its address"), (s.router, "the router it hands out"),
                (s.next_server, "its next-server"), (s.offered_ip, "the address it offered")]
        uses += [(d, "a DNS server it hands out") for d in s.dns.split(",") if d]
        for addr, what in uses:
            try:
                n = int(ip_address(addr))
            except ValueError:
                continue
            if lo <= n <= hi:
                out.setdefault(addr, f"{addr} ({what}: DHCP server {s.server_id}, "
                                     f"{s.server_mac})")
    return list(out.values())


def _dhcp_server_heard(seen: list[DhcpServerSeen]) -> bool:
    return any(not s.proxy for s in seen)


async def look_before_serving(interface: str, *, full: bool, override: bool,
                              publish: Callable[[Event], None],
                              timeout: float = PROBE_TIMEOUT,
                              pool: tuple[object, object] | None = None
                              ) -> list[DhcpServerSeen]:
    """Probe before starting DHCP; publish what answered. The first DHCP server heard
    ends the probe (that is all the decision needs).

    Full DHCP refuses (PxeError naming the server) where another DHCP server
    answers, unless ``override``; it must not start blind either, so a failed
    probe raises too. ProxyDHCP only warns, notably when no DHCP server answered
    (then clients get boot information but no address).
    """
    publish(LogLine(service="dhcp" if full else "proxydhcp", level="info",
                    message=f"looking for other DHCP servers on {interface} (up to "
                            f"{timeout:g} s) before serving"))
    try:
        seen = await probe(interface, timeout, until=_dhcp_server_heard)
    except PxeError as exc:
        if full:
            raise
        publish(LogLine(service="proxydhcp", level="warning",
                        message=f"could not probe {interface} for DHCP servers: {exc}"))
        return []
    for s in seen:
        publish(s)
    others = [s for s in seen if not s.proxy]
    if full:
        if others and not override:
            who = ", ".join(f"{s.server_id} ({s.server_mac}, offered {s.offered_ip})"
                            for s in others)
            raise PxeError(f"refusing to start full DHCP on {interface}: another DHCP server "
                           f"answers there: {who}",
                           "use proxy mode (dhcp.mode = \"proxy\") beside that server, or set "
                           "dhcp.override_existing_server = true if this segment is yours")
        for s in others:
            publish(LogLine(service="dhcp", level="warning",
                            message=f"another DHCP server answers on {interface}: "
                                    f"{s.server_id} ({s.server_mac}); starting anyway "
                                    "(dhcp.override_existing_server)"))
        if pool is not None:
            for what in pool_in_use(seen, *pool):
                publish(LogLine(service="dhcp", level="warning",
                                message=f"the pool {pool[0]}-{pool[1]} contains an address "
                                        f"in use on {interface}: {what}; a client given it "
                                        "would clash with that machine (move "
                                        "dhcp.range_start/range_end so they exclude it)"))
    elif not others:
        publish(LogLine(service="proxydhcp", level="warning",
                        message=f"no DHCP server answered on {interface}: proxyDHCP gives boot "
                                "information only, clients also need an address (start one, "
                                "or use dhcp.mode = \"full\")"))
    return seen


def format_table(interface: str, servers: list[DhcpServerSeen], timeout: float) -> str:
    if not servers:
        return f"no DHCP server answered on {interface} within {timeout:g} s"
    head = ("kind", "server id", "server MAC", "offered", "router", "dns", "next-server",
            "boot file")
    rows = [head] + [("proxyDHCP" if s.proxy else "DHCP", s.server_id, s.server_mac,
                      s.offered_ip or "-", s.router or "-", s.dns or "-", s.next_server or "-",
                      s.boot_file or "-") for s in servers]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return (f"{len(servers)} DHCP answer(s) on {interface}:\n" + "\n".join(lines))


def cli_probe(args: object) -> int:
    """``pxewizard probe IFACE [--timeout N] [--json]``."""
    interface: str = args.interface  # type: ignore[attr-defined]
    timeout: float = getattr(args, "timeout", None) or PROBE_TIMEOUT
    servers = asyncio.run(probe(interface, timeout))
    if getattr(args, "json", False):
        print(json.dumps([s.to_dict() for s in servers], indent=2))
    else:
        print(format_table(interface, servers, timeout))
    return 0
