"""Guided troubleshooting: rules over timelines and host facts -> findings in words.

A PXE client that stops shows the operator a firmware code on another
machine's screen. These rules read what the servers saw (a
:class:`~pxewizard.insight.timeline.Snapshot`) and what is true of the host
(:class:`HostFacts`: bridge, ports, the Plan's settings) and say where the boot
stopped, why, with the events that prove it, and what to do.

Rules are pure functions of (snapshot, facts, thresholds); time-based rules
compare against ``snapshot.now``, so a finding appears as soon as the
threshold passes, and replaying a saved log gives the same answer.

What must stay quiet: pxelinux's config-file search (01-MAC, UUID, hex IP,
then ``default``), EDK2's ``tsize`` probe ended with ERROR 8, iPXE's optional
``autoexec.ipxe``, and a proxyDHCP server ignoring a non-PXE DHCP client.
"""

from __future__ import annotations

import difflib
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from urllib.parse import urlsplit

from ..events import (BlksizeGranted, BpduSeen, DhcpExchange, DhcpServerSeen, Event, FailCause,
                      LogLine, RpcVersionRefused, SessionOpened, TransferFailed,
                      TransferStarted)
from ..boot.loaders import LOADER_FILES
from ..safetext import escape_controls
from ..units import size_text
from .eventfmt import one_line
from .timeline import (IPXE_BINARIES, Role, Snapshot, Stage, Status, Step, Timeline,
                       loader_family, loader_firmware)


class Severity(IntEnum):
    """How bad a finding is; ``error`` makes ``pxewizard doctor`` exit 1."""

    ok = 0
    info = 1
    warning = 2
    error = 3

    @property
    def label(self) -> str:
        return ("ok", "info", "warning", "ERROR")[self]


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One diagnosis: what is wrong, why, the proof, and the fix."""

    severity: Severity
    """ok (doctor's passed checks), info, warning or error."""
    rule: str
    """Id of the rule that made it (``tftp-not-found``)."""
    client: str
    """Client key (MAC or IP); empty for the host."""
    title: str
    """One line, in words."""
    cause: str
    """Why it happens, in words."""
    fix: str = ""
    """What to do."""
    evidence: tuple[Event, ...] = ()
    """The events that show it."""
    details: tuple[str, ...] = ()
    """Facts that are not events (bridge settings, port holders, file modes)."""
    stage: Stage | None = None
    """Stage of the boot it concerns."""
    subject: str = ""
    """What it is about (a file, a server id, a stage); with rule and client, its identity."""

    @property
    def key(self) -> tuple[str, str, str]:
        """Stable identity across re-diagnoses (titles with counters change; keys do not)."""
        return (self.rule, self.client, self.subject or self.title)


@dataclass(frozen=True, kw_only=True)
class BridgeState:
    """The bridge facts the rules need (``detect.bridge.BridgeFacts`` satisfies this)."""

    interface: str
    """Interface asked about."""
    bridge: str | None = None
    """The bridge it is or belongs to (None: not bridged)."""
    stp: bool = False
    """Spanning tree on."""
    forward_delay: float = 0.0
    """Seconds."""
    ports_not_forwarding: tuple[str, ...] = ()
    """Ports still listening/learning/blocking, as ``name (state)``."""


@dataclass(frozen=True, kw_only=True)
class HostFacts:
    """What the rules know about the host and the Plan (all optional: unknown stays quiet)."""

    server_ip: str = ""
    """Our address (to tell our DHCP answers from others')."""
    interface: str = ""
    """Interface we serve on."""
    dhcp_mode: str = ""
    """``full``, ``proxy``, ``none`` or empty when unknown."""
    transport: str = ""
    """Stage-3 transport (http, tftp, nfs, nbd)."""
    menu_timeout: int | None = None
    """Menu timeout in seconds (0 waits forever), to tell a menu from a stall."""
    bridge: object | None = None
    """Bridge facts of the interface (``detect.bridge.BridgeFacts`` or :class:`BridgeState`)."""
    files: tuple[str, ...] = ()
    """Paths we serve (for 'did you mean' on a missing file)."""
    client_ram: int | None = None
    """RAM of the clients in bytes, when the operator stated it."""
    ram_needed: int | None = None
    """RAM a client needs for the Plan's stage 3, estimated, in bytes."""
    ports_held: tuple[tuple[str, int, str, str], ...] = ()
    """(proto, port, service, holder) of ports we need that another process holds."""
    plan_problems: tuple[object, ...] = ()
    """What the plan-time checks found (``boot.checks.PlanProblem``: severity, rule, title,
    cause, fix)."""
    firewall: Callable[[], Iterable[str]] | None = field(default=None, compare=False)
    """The host's firewall check: words for each rule that drops one of our ports. Run only
    when a finding needs it (a client that got a boot file and asked for nothing)."""
    tftp_max_blksize: int = 0
    """The Plan's tftp.max_blksize (0: unknown)."""


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """Seconds of silence before a time-based rule speaks: the time budget of each stage.

    Learned from the healthy boots recorded in tests/data/timeline (QEMU SeaBIOS + iPXE,
    OVMF native PXE, iPXE EFI under TCG; tests/unit/test_stalls.py checks it): each value
    is the longest gap seen there before the next request, plus a margin under 10 s, so a
    finding comes within 10 s of the moment the next request should have come.
    """

    offer_wait: float = 8.0
    """After our OFFER, a client requests within ~4 s (PXE ROMs wait for proxy offers)."""
    ack_wait: float = 25.0
    """After the ACK (or proxy offer), the first file request (iPXE first waits ~13 s for an
    IPv6 router: the captures show 13-14 s)."""
    loader_wait: float = 20.0
    """After the boot loader, its modules/config/own DHCP follow within seconds."""
    stall: float = 15.0
    """Silence in the middle of a transfer (progress comes every second while data flows)."""
    no_dhcp: float = 60.0
    """Services up but no DHCP request from anyone."""
    stage3_wait: float = 30.0
    """Kernel and initramfs loaded, no DHCP of the kernel and no stage-3 request yet (the
    kernel boots and asks DHCP within 9-21 s in the recordings, emulated CPUs included)."""
    stage3_after_dhcp: float = 8.0
    """After the kernel's own DHCP (another vendor class, same MAC), its first stage-3
    request: within 1-3 s in the healthy recordings."""
    late_secs: int = 10
    """A client's first DISCOVER we see with ``secs`` at or above this: earlier ones were
    lost (PXE ROMs count from their first DISCOVER; healthy QEMU boots show up to 4 s, the
    tap's link coming up after the ROM began; a port held by STP shows 2 x forward delay)."""


# --- helpers ---------------------------------------------------------------------------

def package_for(path: str) -> str | None:
    """The Debian package that provides a boot loader file (Arch names are in the catalogue)."""
    name = posixpath.basename(path).lower()
    f = LOADER_FILES.get(name)
    if f is not None and f.debian:
        return f.debian
    if name.endswith(".c32"):
        return "syslinux-common (BIOS modules) or syslinux-efi (efi64/ modules)"
    return None


SIDECAR_SUFFIXES = (".md5", ".sha1", ".sha256", ".sha512", ".sig", ".asc", ".sfs.sig",
                    ".torrent", ".b3sum")
"""Files that describe another file (checksums, signatures): never its 'did you mean'."""


def sidecars(path: str, files: Iterable[str]) -> list[str]:
    """Served checksum/signature files of ``path`` (``sysrcd.dat.md5`` for ``sysrcd.dat``)."""
    want = path.lstrip("/")
    return [f.lstrip("/") for f in files
            if f.lstrip("/").startswith(want) and f.lstrip("/")[len(want):] in SIDECAR_SUFFIXES]


def closest_name(path: str, files: Iterable[str]) -> str:
    """'did you mean' words for a missing file: case difference, other folder, close spelling.

    A file's own checksum or signature (``sysrcd.dat.md5``) is never offered for it."""
    want = path.lstrip("/")
    files = [f.lstrip("/") for f in files]
    if not want.lower().endswith(SIDECAR_SUFFIXES):
        files = [f for f in files if not f.lower().endswith(SIDECAR_SUFFIXES)]
    if not files:
        return ""
    for f in files:
        if f.lower() == want.lower():
            return (f"it exists as {f} (the case differs: rename it or set "
                    "tftp.case_insensitive = true)")
    base = posixpath.basename(want).lower()
    same_base = [f for f in files if posixpath.basename(f).lower() == base]
    if same_base:
        return f"a file of that name exists in another folder: {same_base[0]}"
    close = difflib.get_close_matches(want, files, n=1, cutoff=0.6)
    if close:
        return f"the closest served name is {close[0]}"
    return ""


def _fmt_mode(reason: str) -> str:
    m = re.search(r"mode (0?[0-7]{3,4})", reason)
    return m.group(1) if m else ""


def _ev(step: Step) -> tuple[Event, ...]:
    return step.events


def _failed(tl: Timeline) -> list[Step]:
    return [s for s in tl.steps if s.kind == "transfer" and s.status is Status.failed]


def _last_failure(step: Step) -> TransferFailed | None:
    return next((e for e in reversed(step.events) if isinstance(e, TransferFailed)), None)


def _reason(step: Step) -> str:
    f = _last_failure(step)
    return f.reason if f is not None else step.detail


def _code(step: Step) -> int:
    f = _last_failure(step)
    return f.code if f is not None else 0


def _cause(step: Step) -> str:
    """The :class:`FailCause` the server gave the step's last failure."""
    f = _last_failure(step)
    return f.cause if f is not None else FailCause.unknown


def _is_not_found(step: Step) -> bool:
    return _cause(step) == FailCause.not_found


def _is_permission(step: Step) -> bool:
    return _cause(step) == FailCause.permission


def _is_timeout(step: Step) -> bool:
    return _cause(step) == FailCause.timeout


def _recovered(tl: Timeline, step: Step) -> bool:
    """A later request for the same file went through."""
    return any(s.path == step.path and s.started > step.started and s.status is Status.ok
               for s in tl.steps if s.kind == "transfer")


def _our_ids(snap: Snapshot, facts: HostFacts) -> set[str]:
    ids = {s.address for s in snap.services if s.service in ("dhcp", "proxydhcp")}
    if facts.server_ip:
        ids.add(facts.server_ip)
    if snap.plan is not None and snap.plan.server_ip:
        ids.add(snap.plan.server_ip)
    ids.discard("0.0.0.0")
    return ids


def _dhcp_mode(snap: Snapshot, facts: HostFacts) -> str:
    if facts.dhcp_mode:
        return facts.dhcp_mode
    if snap.plan is not None and snap.plan.dhcp_mode:
        return snap.plan.dhcp_mode   # logged at start: survives the services' stop
    names = {s.service for s in snap.services}
    if "proxydhcp" in names:
        return "proxy"
    if "dhcp" in names:
        return "full"
    return ""


def _finding(sev: Severity, rule: str, tl: Timeline | None, title: str, cause: str, fix: str,
             evidence: Iterable[Event] = (), details: Iterable[str] = (),
             stage: Stage | None = None, subject: str = "") -> Finding:
    return Finding(severity=sev, rule=rule, client=tl.client if tl else "", title=title,
                   cause=cause, fix=fix, evidence=tuple(evidence), details=tuple(details),
                   stage=stage if stage is not None else (tl.stage if tl else None),
                   subject=subject)


def _who(tl: Timeline) -> str:
    return tl.mac or tl.client


# --- rules -------------------------------------------------------------------------------

Rule = Callable[[Snapshot, HostFacts, Thresholds], Iterable[Finding]]
RULES: list[Rule] = []


def rule(fn: Rule) -> Rule:
    RULES.append(fn)
    return fn


@rule
def dhcp_no_offer(snap: Snapshot, facts: HostFacts, th: Thresholds) -> Iterator[Finding]:
    """DISCOVERs we stayed silent to (pool full, not a PXE client, no boot file for the arch)."""
    mode = _dhcp_mode(snap, facts)
    for tl in snap.clients:
        dh = tl.dhcp_events()
        silent = [e for e in dh if e.msg_in.upper() == "DISCOVER" and e.msg_out == "-"]
        if not silent:
            continue
        last = silent[-1]
        if any(e.ts > last.ts and e.msg_out.upper() in ("OFFER", "ACK") for e in dh):
            continue
        if any(e.msg_out.upper() in ("OFFER", "ACK") for e in dh) and tl.stage >= Stage.loader:
            continue   # a later DHCP (the kernel's) in proxy mode: not ours to answer
        why = last.reason
        cause = last.cause  # set by proto/dhcp_decide.py; the words of `why` are for people
        ev = silent[-3:]
        if cause == "not_allowed":
            yield _finding(Severity.info, "dhcp-not-allowed", tl,
                           f"{_who(tl)} is not in dhcp.allowed_macs; we ignore it",
                           "dhcp.allowed_macs lists the only clients we answer (a shared LAN's "
                           "other PCs must not get our menu); this MAC is not in it",
                           "nothing to do if this machine is not meant to boot from us; "
                           f"otherwise add {tl.mac or tl.client} to dhcp.allowed_macs", ev)
        elif cause == "pool_full":
            yield _finding(Severity.error, "dhcp-pool-full", tl,
                           f"no address left for {_who(tl)}: the DHCP pool is full",
                           f"every address of the pool is leased or offered ({why})",
                           "enlarge dhcp.range_start..range_end, shorten dhcp.lease_time, "
                           "or delete stale leases", ev)
        elif cause == "not_pxe" or (mode == "proxy" and
                                    not tl.vendor_class.startswith(("PXEClient", "HTTPClient"))):
            if tl.stage <= Stage.dhcp:
                yield _finding(Severity.info, "dhcp-not-pxe", tl,
                               f"{_who(tl)} is not a PXE client; proxyDHCP ignores it",
                               "proxyDHCP answers only requests with vendor class PXEClient; "
                               f"this one sent {tl.vendor_class or 'none'!r} ({why})",
                               "nothing to do if this machine is not meant to PXE boot; "
                               "otherwise enable network boot in its firmware", ev)
        elif cause == "no_boot_file":
            yield _finding(Severity.error, "dhcp-no-boot-file", tl,
                           f"{_who(tl)} ({tl.arch_name or 'arch ' + str(tl.arch)}): "
                           "no boot file configured for its architecture",
                           f"the client's architecture has no boot file in the plan ({why})",
                           "set the matching dhcp.boot_files field (efi_ia32, efi_arm64, "
                           "uefi_http ...) or a per-MAC boot_file in dhcp.reservations", ev)
        else:
            yield _finding(Severity.warning, "dhcp-no-offer", tl,
                           f"DISCOVER from {_who(tl)} got no offer from us",
                           why or "the DHCP server stayed silent",
                           "read the reason above; check dhcp.mode and the pool", ev)


@rule
def offer_not_requested(snap: Snapshot, facts: HostFacts, th: Thresholds) -> Iterator[Finding]:
    """Full mode: we offered, the client never requested it (another server won, or it rejected ours)."""
    if _dhcp_mode(snap, facts) == "proxy":
        return
    ours = _our_ids(snap, facts)
    others = [s for s in snap.dhcp_servers if s.server_id not in ours and not s.proxy]
    for tl in snap.clients:
        dh = [e for e in tl.dhcp_events() if e.service == "dhcp"]
        offers = [e for e in dh if e.msg_out.upper() == "OFFER"]
        if not offers or tl.stage > Stage.dhcp:
            continue
        first = offers[0]
        if any(e.msg_out.upper() == "ACK" for e in dh if e.ts >= first.ts):
            continue
        chose_other = [e for e in dh if e.msg_in.upper() == "REQUEST" and e.msg_out == "-"
                       and e.ts >= first.ts]
        if not chose_other and snap.now - offers[-1].ts < th.offer_wait:
            continue
        if chose_other or others:
            ids = ", ".join(sorted({f"{s.server_id} ({s.server_mac})" for s in others}))
            noboot = [s for s in others if not s.boot_file]
            cause = ("another DHCP server answered and the client took its offer"
                     + (f": {ids}" if ids else "")
                     + (" (its offer carries no boot file, so the client cannot PXE boot)"
                        if noboot else "")
                     + "".join(f"; {e.reason}" for e in chose_other[-1:]))
            yield _finding(Severity.error, "dhcp-other-server-won", tl,
                           f"{_who(tl)} took another DHCP server's offer",
                           cause,
                           "use dhcp.mode = proxy beside that server, or stop it (full DHCP "
                           "belongs on a segment you own)",
                           [*offers[-2:], *chose_other[-2:], *others[-3:]])
        else:
            yield _finding(Severity.warning, "dhcp-offer-ignored", tl,
                           f"{_who(tl)} never requested our offer",
                           f"we offered {first.yiaddr} {snap.now - first.ts:.0f} s ago and no "
                           "REQUEST followed: the client rejected the offer (missing boot "
                           "options it needs) or our answer does not reach it (a broadcast "
                           "filtered on the way, a VLAN)",
                           "run `pxewizard probe` from another machine on the segment, or "
                           "tcpdump -ni IFACE port 67 or port 68 to see what the client gets",
                           offers[-3:], subject="offer")


@rule
def plan_checks(snap: Snapshot, facts: HostFacts, th: Thresholds) -> Iterator[Finding]:
    """What boot.checks found in the Plan: said before any client boots."""
    for p in facts.plan_problems:
        sev = Severity.error if getattr(p, "severity", "") == "error" else Severity.warning
        title = str(getattr(p, "title", ""))
        yield _finding(sev, str(getattr(p, "rule", "plan")), None, title,
                       str(getattr(p, "cause", "")), str(getattr(p, "fix", "")),
                       stage=Stage.waiting, subject=title)


def _bpdu_words(b: BpduSeen) -> str:
    return (f"{b.protocol.upper()} BPDUs on {b.interface or 'our interface'} from bridge "
            f"{b.bridge_id} (root {b.root_id or b.bridge_id}), forward delay "
            f"{b.forward_delay:g} s, hello {b.hello:g} s")


@rule
def stp_port_delay(snap: Snapshot, facts: HostFacts, th: Thresholds) -> Iterator[Finding]:
    """BPDUs reach our interface (a bridge or switch on the segment runs spanning tree), and
    a client's first DISCOVER comes late (its ``secs`` says it began earlier)."""
    bpdus = sorted(snap.bpdus, key=lambda b: -b.forward_delay)
    late_any = False
    for tl in snap.clients:
        dh = [e for e in tl.dhcp_events() if e.msg_in.upper() == "DISCOVER"
              and e.vendor_class.startswith("PXEClient")]
        if not dh or dh[0].secs < th.late_secs:
            continue
        first = dh[0]
        late_any = True
        if bpdus:
            b = bpdus[0]
            yield _finding(Severity.error, "stp-forward-delay", tl,
                           f"{_who(tl)}'s first DISCOVER reached us {first.secs} s late: a "
                           f"port in spanning-tree listening/learning (bridge {b.bridge_id}, "
                           f"forward delay {b.forward_delay:g} s)",
                           f"the client began DHCP {first.secs} s before its first DISCOVER "
                           "got through (secs field), and spanning-tree BPDUs reach this "
                           f"interface: a port on bridge {b.bridge_id} held its traffic for "
                           f"listening + learning (2 x {b.forward_delay:g} s); PXE ROMs give up "
                           "after about 60 s of DISCOVERs, iPXE sooner",
                           "make the client's switch port an edge port (`spanning-tree "
                           "portfast`), or on a Linux bridge set `ip link set dev BRIDGE type "
                           "bridge forward_delay 0` or turn STP off (`stp_state 0`)",
                           [b, first], details=[_bpdu_words(x) for x in bpdus[:3]],
                           stage=Stage.dhcp, subject="stp")
        else:
            yield _finding(Severity.warning, "late-discover", tl,
                           f"{_who(tl)}'s first DISCOVER reached us {first.secs} s late",
                           f"the client began DHCP {first.secs} s before (secs field): its "
                           "earlier DISCOVERs were lost on the way, most often a switch port "
                           "with spanning tree and no portfast, still listening/learning",
                           "enable portfast / edge port on the client's switch port, or "
                           "forward delay 0 on a Linux bridge", [first], stage=Stage.dhcp,
                           subject="stp")
    if bpdus and not late_any:
        b = bpdus[0]
        if b.forward_delay > 0 and b.protocol == "stp":
            yield _finding(Severity.warning, "stp-forward-delay", None,
                           f"spanning tree on this segment: bridge {b.bridge_id}, forward "
                           f"delay {b.forward_delay:g} s",
                           "802.1D BPDUs reach our interface: a client port that comes up "
                           f"forwards nothing for 2 x {b.forward_delay:g} s unless it is an edge "
                           "(portfast) port, and PXE ROMs send their DISCOVERs in that window",
                           "make client ports edge ports (portfast), set forward delay 0, or "
                           "turn STP off on that bridge", [b],
                           details=[_bpdu_words(x) for x in bpdus[:3]], stage=Stage.dhcp,
                           subject="stp")


@rule
def no_dhcp_at_all(snap: Snapshot, facts: HostFacts, th: Thresholds) -> Iterator[Finding]:
    """Services up for a while, no DHCP request from anyone."""
    mode = _dhcp_mode(snap, facts)
    if mode not in ("full", "proxy") or snap.started is None or snap.dhcp_requests:
        return
    waited = snap.now - snap.started
    if waited < th.no_dhcp:
        return
    causes = ["no client is booting yet", "the cable or switch port is down",
              "the client is on another VLAN (the port must be untagged in the server's VLAN)",
              "a switch port with spanning tree and no portfast, or a Linux bridge with STP "
              "and a forward delay, holds the client's link for 30 s or more",
              "a firewall on this host drops UDP 67"]
    details: list[str] = []
    for bp in sorted(snap.bpdus, key=lambda x: -x.forward_delay)[:1]:
        if bp.forward_delay > 0:
            causes.insert(0, f"spanning tree on this segment (bridge {bp.bridge_id}, forward "
                             f"delay {bp.forward_delay:g} s): the client's port forwards "
                             f"nothing for {2 * bp.forward_delay:g} s and PXE ROMs give up")
            details.append(_bpdu_words(bp))
    b = facts.bridge
    if b is not None and getattr(b, "stp", False) and getattr(b, "forward_delay", 0) > 0:
        causes.insert(0, f"the bridge {getattr(b, 'bridge', '')} has STP on with forward "
                         f"delay {b.forward_delay:.0f} s: new ports forward nothing for "  # type: ignore[attr-defined]
                         f"{2 * b.forward_delay:.0f} s")  # type: ignore[attr-defined]
        details.append(_bridge_words(b))
    yield _finding(Severity.warning, "no-dhcp", None,
                   f"no DHCP request seen in {waited:.0f} s on {facts.interface or 'the interface'}",
                   "nothing asked for an address since the servers started. Likely: "
                   + "; ".join(causes),
                   "check link lights and `ip link`, the switch port's VLAN and portfast, "
                   "and `nft list ruleset` / `iptables -S` for rules on UDP 67",
                   details=details, stage=Stage.dhcp, subject="no-dhcp")


def _bridge_words(b: object) -> str:
    name = getattr(b, "bridge", None) or getattr(b, "interface", "?")
    fd = getattr(b, "forward_delay", 0.0)
    stp = getattr(b, "stp", False)
    s = f"{name}: STP {'on' if stp else 'off'}, forward delay {fd:.1f} s"
    if stp and fd:
        s += f" (a new port forwards nothing for {2 * fd:.0f} s)"
    waiting = getattr(b, "ports_not_forwarding", ())
    if waiting:
        s += "; ports not forwarding yet: " + ", ".join(waiting)
    return s


@rule
def bridge_forward_delay(snap: Snapshot, facts: HostFacts, th: Thresholds) -> Iterator[Finding]:
    """STP on with a forward delay: a new port is blocked for 2 x delay, PXE ROMs give up first."""
    b = facts.bridge
    if b is None or not getattr(b, "bridge", None):
        return
    stp, fd = getattr(b, "stp", False), float(getattr(b, "forward_delay", 0.0))
    if not stp or fd <= 0:
        return
    name = getattr(b, "bridge")
    sev = Severity.error if 2 * fd > 2 else Severity.warning
    yield _finding(sev, "bridge-forward-delay", None,
                   f"bridge {name} holds new ports for {2 * fd:.0f} s (STP on, forward delay "
                   f"{fd:.0f} s)",
                   "with spanning tree on, a port that comes up (a client's NIC after power "
                   "on or a VM's tap) spends the forward delay listening and again learning "
                   "before it forwards; PXE ROMs send their DISCOVERs in that window and "
                   "time out",
                   f"`ip link set dev {name} type bridge forward_delay 0` (or stp_state 0; "
                   f"old tools: `brctl setfd {name} 0`); pxewizard can do it for you",
                   details=[_bridge_words(b)], stage=Stage.dhcp)


def _boot_file_transport(boot_file: str, next_server: str) -> tuple[str, int, str]:
    """(protocol, port, host in words) a client fetches its DHCP boot file with: an
    http(s):// URL (iPXE, UEFI HTTP boot) over TCP, anything else over TFTP (UDP 69)."""
    url = urlsplit(boot_file)
    scheme = url.scheme.lower()
    if scheme not in ("http", "https"):
        return "UDP", 69, next_server or "us"
    try:
        port = url.port
    except ValueError:
        port = None
    return "TCP", port or (443 if scheme == "https" else 80), url.netloc or "the server"


@rule
def ack_no_tftp(snap: Snapshot, facts: HostFacts, th: Thresholds) -> Iterator[Finding]:
    """DHCP done with a boot file, but no file was ever asked for."""
    ours = _our_ids(snap, facts)
    for tl in snap.clients:
        if tl.stage > Stage.dhcp or tl.transfers():
            continue
        given = [e for e in tl.dhcp_events() if e.boot_file and (
            e.msg_out.upper() == "ACK" or (e.msg_out.upper() == "OFFER"
                                           and (e.service == "proxydhcp" or not e.yiaddr)))]
        if not given:
            continue
        first, last = given[0], given[-1]
        if _dhcp_mode(snap, facts) == "proxy" and any(
                not o.mac and o.transfers() and o.first_seen >= first.ts - 1
                for o in snap.clients):
            continue   # an address we cannot join to a MAC yet may well be this client
        wait = th.ack_wait + (th.offer_wait if first.msg_out.upper() == "OFFER" else 0)
        # Timed from the first answer with a boot file: a client that gives up and asks
        # DHCP again has not recovered, so the finding stays until a transfer comes.
        retried = len({e.xid for e in given}) > 1
        if snap.now - first.ts < wait or (tl.idle < th.ack_wait / 2 and not retried):
            continue
        rules = list(facts.firewall()) if facts.firewall is not None else []
        proto, port, where = _boot_file_transport(last.boot_file, last.next_server)
        port_rules = [r for r in rules if re.search(rf"\b{port}\b", r)] or rules
        causes = []
        if last.next_server and ours and last.next_server not in ours and proto == "UDP":
            causes.append(f"next-server is {last.next_server}, not this machine")
        what = "TFTP" if proto == "UDP" else "HTTP"
        if port_rules:
            causes.insert(0, f"a firewall rule on this host drops {what}: " + "; ".join(
                port_rules[:3]))
            fix = ("delete that rule (`nft delete rule FAMILY TABLE CHAIN handle N`) or add "
                   f"an accept rule for {proto} {port} on the PXE interface before it")
        elif proto == "UDP":
            causes += [f"the client cannot reach TFTP on {where}: a "
                       "firewall on the way drops UDP 69 (or the replies from the high port)",
                       "the boot file name or next-server did not reach the firmware "
                       "(some firmware wants them in the 4011 answer)",
                       "the firmware gave up after DHCP (watch its screen for PXE-E32/E11)"]
            fix = ("check `nft list ruleset` / `iptables -S` for UDP 69, the plan's "
                   "server_ip, and the client's screen")
        else:
            causes += [f"the client cannot reach HTTP on {where}: a firewall on the way "
                       f"drops TCP {port}, or the client has no route to it",
                       "the client's iPXE could not resolve or parse the URL (watch its "
                       "screen for an error code and its https://ipxe.org/ link)",
                       "the client is still busy after DHCP (iPXE waits up to about 13 s "
                       "for IPv6 router advertisements before it fetches)"]
            fix = (f"check `nft list ruleset` / `iptables -S` for TCP {port}, that {where} "
                   "answers (`curl -I " + last.boot_file + "` from another machine), and "
                   "the client's screen")
        yield _finding(Severity.error, "ack-no-tftp", tl,
                       f"{_who(tl)} got boot file {last.boot_file} but asked for no file",
                       f"DHCP finished {snap.now - first.ts:.0f} s ago and no TFTP/HTTP "
                       "request came" + (f" (the client asked DHCP again {len(given) - 1} "
                                         "time(s))" if retried else "")
                       + ". " + ("Cause: " if port_rules else "Likely: ") + "; ".join(causes),
                       fix, [first, *given[1:][-2:]], details=port_rules[:5],
                       stage=Stage.dhcp, subject=last.boot_file)


_LOADER_STAGE_ROLES = (Role.loader, Role.module, Role.config, Role.kernel, Role.initramfs)


@rule
def tftp_not_found(snap: Snapshot, facts: HostFacts, th: Thresholds) -> Iterator[Finding]:
    """A file the boot needs is missing (not the normal config search, not a probe)."""
    for tl in snap.clients:
        seen: set[str] = set()
        for s in _failed(tl):
            if s.role not in _LOADER_STAGE_ROLES or not _is_not_found(s) or s.path in seen \
                    or _recovered(tl, s):
                continue
            seen.add(s.path)
            near = closest_name(s.path, facts.files)
            details = [near] if near else []
            pkg = package_for(s.path)
            if s.role in (Role.loader, Role.module):
                title = f"boot loader file {s.path} is missing"
                cause = (f"{_who(tl)} asked {s.service.upper()} for {s.path} and it is not "
                         "in the served tree" + (f" ({near})" if near else ""))
                fix = (f"install the package {pkg} (pxewizard maps its files in) or copy "
                       f"{posixpath.basename(s.path)} into the TFTP root" if pkg else
                       "copy the file into the TFTP root, or fix the name the client is given")
            elif s.role is Role.config:
                title = f"config file {s.path} is missing"
                cause = ("the boot loader found no config file: it tried its whole search "
                         f"list and then {s.path}" if s.path.endswith("default") else
                         f"{_who(tl)} asked for {s.path} and it is not served")
                fix = ("write pxelinux.cfg/default (pxewizard generates it from the boot "
                       "media; check boot.media and the Review screen)"
                       if s.path.endswith("default") else
                       "serve that file or point the client at an existing one")
            else:
                title = f"{s.role.value} {s.path} is missing"
                cause = (f"the boot menu names {s.path} and {_who(tl)} asked for it, but it "
                         "is not served" + (f" ({near})" if near else ""))
                fix = "fix the KERNEL/LINUX/INITRD line of the menu or add the file"
            yield _finding(Severity.error, "tftp-not-found", tl, title, cause, fix, _ev(s),
                           details, stage=s.stage)


@rule
def not_world_readable(snap: Snapshot, facts: HostFacts, th: Thresholds) -> Iterator[Finding]:
    """tftpd-hpa's 'File must have global read permissions' (mode 0600) and its cousins."""
    for tl in snap.clients:
        seen: set[str] = set()
        for s in _failed(tl):
            if not _is_permission(s) or s.path in seen or _recovered(tl, s):
                continue
            seen.add(s.path)
            mode = _fmt_mode(_reason(s))
            yield _finding(Severity.error, "not-world-readable", tl,
                           f"{s.path} is not readable by others" + (f" (mode {mode})" if mode
                                                                     else ""),
                           "TFTP servers (tftpd-hpa: 'File must have global read "
                           "permissions') serve only files every user may read, and "
                           f"{s.path} is not" + (f" (mode {mode})" if mode else ""),
                           f"chmod o+r the file (chmod 644 {posixpath.basename(s.path)}), or "
                           "chmod -R o+rX the boot tree", _ev(s), stage=s.stage)
    lines = [e for e in snap.host_events if isinstance(e, LogLine)
             and "global read permission" in e.message.lower()]
    if lines:
        yield _finding(Severity.error, "not-world-readable", None,
                       "files are not readable by others",
                       "the log says 'File must have global read permissions' (tftpd-hpa)",
                       "chmod -R o+rX the TFTP root", lines[-3:], stage=Stage.loader)


def _served_kernel_bin(snap: Snapshot, tl: Timeline, kernel: str) -> bool:
    """The config this client read has ``KERNEL <kernel>`` (the log's PlanLoaded lists those
    lines; generated menus use LINUX, which boots any name). A log without it: assume so."""
    if snap.plan is None:
        return True
    read = [s.path.lstrip("/") for s in tl.transfers(Role.config) if s.status is Status.ok]
    for line in snap.plan.bin_kernels:
        cfg, _, kpath = line.rpartition(":")
        k = kpath.lstrip("/")
        if not (kernel.lstrip("/") == k or kernel.endswith("/" + k)):
            continue
        if any(p == cfg or p.endswith("/" + cfg) or cfg.endswith("/" + p) for p in read):
            return True
    return False


@rule
def bin_kernel(snap: Snapshot, facts: HostFacts, th: Thresholds) -> Iterator[Finding]:
    """pxelinux decides by extension: KERNEL foo.bin boots a boot sector, not Linux."""
    for tl in snap.clients:
        syslinux = any(loader_family(s.path) == "syslinux" for s in tl.transfers(Role.loader)) \
            or any(s.path.lower().split("/")[-2:-1] == ["pxelinux.cfg"] for s in tl.transfers())
        if not syslinux:
            continue
        for s in tl.transfers(Role.kernel):
            if s.path.lower().endswith(".bin") and _served_kernel_bin(snap, tl, s.path):
                yield _finding(Severity.error, "bin-kernel", tl,
                               f"kernel {s.path} is named .bin: pxelinux boots it as a boot "
                               "sector",
                               "pxelinux picks the file type from the extension of the KERNEL "
                               "line: *.bin is loaded as a boot sector, so a Linux kernel "
                               "with that name hangs or reboots",
                               f"rename the kernel (e.g. vmlinuz) or write `LINUX {s.path}` "
                               "instead of `KERNEL` in the menu", _ev(s), stage=Stage.kernel)
                break


@rule
def wrong_arch_loader(snap: Snapshot, facts: HostFacts, th: Thresholds) -> Iterator[Finding]:
    """A UEFI client handed a BIOS loader, or the reverse."""
    for tl in snap.clients:
        fw = tl.firmware
        if not fw:
            continue
        for s in tl.transfers(Role.loader):
            lf = loader_firmware(s.path)
            if lf and lf != fw:
                dh = [e for e in tl.dhcp_events() if e.arch is not None][:1]
                field_ = "bios" if fw == "bios" else "efi_x64"
                yield _finding(Severity.error, "wrong-arch-loader", tl,
                               f"{(tl.arch_name or fw.upper())} client got the "
                               f"{lf.upper()} loader {s.path}",
                               f"the client's firmware is {fw.upper()} (option 93 = {tl.arch}) "
                               f"but {s.path} only runs on {lf.upper()} firmware; it cannot "
                               "start",
                               f"set dhcp.boot_files.{field_} to a {fw.upper()} loader "
                               f"({'pxelinux.0 or undionly.kpxe' if fw == 'bios' else 'syslinux.efi, ipxe.efi or snponly.efi'})",
                               [*dh, *_ev(s)], stage=Stage.loader)
                break


@rule
def loader_stuck(snap: Snapshot, facts: HostFacts, th: Thresholds) -> Iterator[Finding]:
    """Boot loader fetched, then nothing: ldlinux mismatch, wrong loader, iPXE without a driver."""
    for tl in snap.clients:
        if tl.stage != Stage.loader or tl.idle < th.loader_wait:
            continue
        loaders = [s for s in tl.transfers(Role.loader) if s.status is Status.ok]
        if not loaders:
            continue
        ld = loaders[-1]
        if any(s.started > ld.started for s in tl.steps if s.kind in ("transfer", "session")
               and s.status is not Status.failed) and tl.current and \
                tl.current.role is not Role.module:
            continue
        if tl.firmware and loader_firmware(ld.path) and loader_firmware(ld.path) != tl.firmware:
            continue  # wrong_arch_loader says it
        if any(s.status is Status.failed for s in tl.steps if s.started > ld.started):
            continue  # a missing module or file: tftp_not_found says it
        fam = loader_family(ld.path)
        modules = [s for s in tl.transfers(Role.module) if s.started > ld.started]
        ev = [*_ev(ld), *(e for m in modules[-2:] for e in _ev(m))]
        own_dhcp = [e for e in tl.dhcp_events() if e.ts > (ld.ended or ld.started)]
        if own_dhcp and not modules:
            # the loader runs: it did its own DHCP (syslinux.efi, iPXE); then asked nothing
            last = own_dhcp[-1]
            if snap.now - last.ts < th.ack_wait:
                continue
            what = last.boot_file or "nothing"
            yield _finding(Severity.error, "loader-no-next", tl,
                           f"{_who(tl)} ran {ld.path}, did its own DHCP, then asked for nothing",
                           f"the loader started and got {what} from DHCP, but requested no "
                           "file: the script/config it was pointed at is unreachable (our "
                           "HTTP server off, a firewall on TCP 80 / UDP 69, a wrong URL), or "
                           "it has no file to ask for",
                           "check dhcp.boot_files.ipxe_script and that HTTP is enabled and "
                           "reachable from the client", [*_ev(ld), *own_dhcp[-2:]],
                           stage=Stage.loader, subject=ld.path)
            continue
        if fam == "syslinux" and any(posixpath.basename(m.path).startswith("ldlinux.")
                                     for m in modules):
            yield _finding(Severity.error, "ldlinux-mismatch", tl,
                           f"{_who(tl)} loaded {ld.path} and ldlinux but asked for no config",
                           "ldlinux is from another syslinux version than the loader (they "
                           "must match exactly), so the loader stops before reading "
                           "pxelinux.cfg",
                           "serve pxelinux.0/syslinux.efi and ldlinux.* from the same "
                           "syslinux build (Debian: pxelinux + syslinux-common, or "
                           "syslinux-efi for efi64/)", ev, stage=Stage.loader)
        elif fam == "ipxe":
            yield _finding(Severity.error, "ipxe-no-start", tl,
                           f"{_who(tl)} loaded iPXE ({ld.path}) and went silent",
                           "iPXE started no DHCP of its own: it found no driver for the NIC "
                           "or the firmware refused the image (Secure Boot)",
                           "on UEFI use snponly.efi (uses the firmware's network driver); on "
                           "BIOS undionly.kpxe; with Secure Boot chain through shim",
                           ev, stage=Stage.loader)
        else:
            yield _finding(Severity.error, "loader-no-next", tl,
                           f"{_who(tl)} loaded {ld.path} and asked for nothing more",
                           "the loader did not start or could not continue: a loader for the "
                           "wrong firmware (BIOS pxelinux.0 on UEFI), a damaged file, or "
                           "Secure Boot refusing it",
                           "check the client's firmware mode against dhcp.boot_files; compare "
                           "the file with its package's copy", ev, stage=Stage.loader)


# EFI loaders known to carry no Secure Boot signature (shim and Debian's GRUB do).
UNSIGNED_EFI_LOADERS = frozenset({"syslinux.efi", "ipxe.efi", "snponly.efi"})
SB_REFUSAL_WINDOW = 30.0
"""Seconds after an unsigned loader within which the firmware's own DHCP again means it
refused the loader: the firmware goes on to its next boot option (OVMF: PXE over IPv6,
whose wait for an answer takes seconds, then HTTP boot, whose DHCP carries option 93)."""


@rule
def secure_boot_refused(snap: Snapshot, facts: HostFacts, th: Thresholds) -> Iterator[Finding]:
    """A UEFI client fetched an unsigned loader, then its firmware did DHCP again (option 93
    present and not iPXE: the loader never ran; syslinux.efi's own DHCP has no option 93)
    within seconds, or the client asked for nothing more."""
    for tl in snap.clients:
        if tl.firmware != "efi":
            continue
        for ld in tl.transfers(Role.loader):
            if ld.status is not Status.ok or \
                    posixpath.basename(ld.path).lower() not in UNSIGNED_EFI_LOADERS:
                continue
            end = ld.ended or ld.started
            later = [s for s in tl.steps if s.started > end and s.kind in ("transfer", "session")]
            again = [e for e in tl.dhcp_events() if e.ts > end and e.arch is not None
                     and not e.user_class.lower().startswith("ipxe")]
            if again and again[0].ts - end <= SB_REFUSAL_WINDOW and \
                    not [s for s in later if s.started < again[0].ts]:
                ev, how = [*_ev(ld), again[0]], (
                    f"{again[0].ts - end:.1f} s after {ld.path} the firmware started DHCP "
                    f"again ({again[0].vendor_class or 'option 93 = ' + str(again[0].arch)})")
            elif not later and not [e for e in tl.dhcp_events() if e.ts > end] and \
                    snap.now - end >= th.loader_wait:
                ev, how = list(_ev(ld)), (f"after {ld.path} the client asked for nothing "
                                          f"more for {snap.now - end:.0f} s")
            else:
                continue
            yield _finding(Severity.error, "secure-boot-refused", tl,
                           "the firmware probably refused an unsigned loader (Secure Boot)",
                           f"{how}, without running it: {ld.path} carries no Secure Boot "
                           "signature, and a UEFI machine with Secure Boot on refuses it, "
                           "usually with nothing on screen",
                           "serve the signed chain: boot.secure_boot = \"auto\" (or \"on\"; "
                           "in the wizard: Review > Advanced settings, Secure Boot) with "
                           "Debian's shim-signed and grub-efi-amd64-signed installed; or "
                           "turn Secure Boot off in that machine's firmware setup",
                           ev, stage=Stage.loader, subject=ld.path)
            break


@rule
def tftp_timeout(snap: Snapshot, facts: HostFacts, th: Thresholds) -> Iterator[Finding]:
    """A transfer gave up after its retries: client gone, or blocks larger than the path MTU."""
    for tl in snap.clients:
        mtu_lost = {e.path for e in tl.events if isinstance(e, BlksizeGranted)}
        for s in _failed(tl):
            if not _is_timeout(s) or _recovered(tl, s) or s.path in mtu_lost:
                continue
            m = re.search(r"blksize=(\d+)", s.detail) or re.search(
                r"blksize=(\d+)", " ".join(" ".join(f"{k}={v}" for k, v in e.options.items())
                                           for e in s.events if isinstance(e, TransferStarted)))
            blk = int(m.group(1)) if m else None
            mid = s.sent > 0
            where = (f"after {size_text(s.sent)} of {size_text(s.size)}" if mid
                     else "before the first block was acknowledged")
            cause = (f"the transfer of {s.path} timed out {where} ({_reason(s)}). "
                     + ("The client stopped answering in the middle: it rebooted or crashed, "
                        "or some blocks do not get through" if mid else
                        "The first data block never arrived: a firewall on the way drops the "
                        "server's replies, or the blocks are larger than the path MTU")
                     + (f"; the block size was {blk}" if blk else ""))
            fix = ("lower tftp.max_blksize in the plan (1468 fits a 1500-byte MTU, 1408 or "
                   "512 through tunnels and VLAN trunks) and check the client is still on")
            yield _finding(Severity.error if not mid or (blk or 0) > 1468 else Severity.warning,
                           "tftp-timeout", tl, f"transfer of {s.path} timed out {where}",
                           cause, fix, _ev(s), stage=s.stage)


@rule
def blksize_mtu(snap: Snapshot, facts: HostFacts, th: Thresholds) -> Iterator[Finding]:
    """Blocks of the negotiated size lost while small packets got through: the path MTU is
    below them. The TFTP server already granted that client a smaller block size."""
    for tl in snap.clients:
        for g in [e for e in tl.events if isinstance(e, BlksizeGranted)][-1:]:
            recovered = any(s.path == g.path and s.status is Status.ok and s.started > g.ts
                            for s in tl.transfers())
            mtu = (f"the path MTU is {g.path_mtu}" if g.path_mtu else
                   f"the path MTU is below {g.packet} bytes")
            yield _finding(Severity.info if recovered else Severity.warning, "blksize-mtu", tl,
                           f"{_who(tl)}: blocks of {g.asked} bytes do not get through ({mtu})",
                           f"the OACK and ACKs got through but block 1 of {g.path} "
                           f"({g.asked} bytes, a {g.packet}-byte packet) was sent again and "
                           f"again without an ACK: {mtu} (a link, a VLAN or a tunnel on the "
                           f"way). Its next requests get blksize {g.granted}"
                           + (", and the next transfer went through" if recovered else ""),
                           f"nothing to do for this client; for every client set "
                           f"tftp.max_blksize = {g.granted} or fix the MTU of that link",
                           [g], stage=tl.stage, subject=g.path)


@rule
def ipxe_loop(snap: Snapshot, facts: HostFacts, th: Thresholds) -> Iterator[Finding]:
    """iPXE handed the iPXE binary again: it chainloads itself forever."""
    for tl in snap.clients:
        given = [e for e in tl.dhcp_events() if e.user_class.lower().startswith("ipxe")
                 and posixpath.basename(e.boot_file).lower() in IPXE_BINARIES]
        fetched: dict[str, list[Step]] = {}
        for s in tl.transfers(Role.loader):
            if posixpath.basename(s.path).lower() in IPXE_BINARIES:
                fetched.setdefault(s.path, []).append(s)
        repeats = {p: ss for p, ss in fetched.items()
                   if len([x for x in ss if x.status is not Status.probe]) >= 3}
        if not given and not repeats:
            continue
        ev: list[Event] = list(given[-2:])
        for ss in repeats.values():
            ev.extend(e for x in ss[-3:] for e in x.events[:1])
        yield _finding(Severity.error, "ipxe-loop", tl,
                       f"iPXE loop: {_who(tl)} keeps loading the iPXE binary",
                       "an iPXE client (user class iPXE) was given the iPXE binary as its boot "
                       "file, so it loads iPXE again, which asks DHCP again, forever",
                       "give iPXE clients the iPXE script: set dhcp.boot_files.ipxe_script "
                       "(boot.ipxe); pxewizard then answers user class iPXE with its URL",
                       ev, stage=Stage.loader)


def _kernel_dhcp_after(tl: Timeline, t: float) -> list[DhcpExchange]:
    return [e for e in tl.dhcp_events() if e.ts > t and not e.vendor_class.startswith("PXEClient")]


def _kernel_dhcp_clock(later: list[DhcpExchange]) -> float | None:
    """When the kernel's network was up: its first ACK (ours), else its first REQUEST (to
    the other server, proxy mode), else its first DISCOVER; None: no kernel DHCP seen."""
    acks = [e for e in later if e.msg_out.upper() == "ACK"]
    if acks:
        return acks[0].ts
    reqs = [e for e in later if e.msg_in.upper() == "REQUEST"]
    if reqs:
        return reqs[0].ts
    return later[0].ts + 4.0 if later else None


@rule
def no_stage3(snap: Snapshot, facts: HostFacts, th: Thresholds) -> Iterator[Finding]:
    """Kernel and initramfs loaded, yet nothing asked for the root image."""
    for tl in snap.clients:
        if tl.stage != Stage.initramfs:
            continue
        kern = [s for s in tl.transfers(Role.kernel) if s.status is Status.ok]
        init = [s for s in tl.transfers(Role.initramfs) if s.status is Status.ok]
        if not kern or not init or any(s.status is Status.running for s in tl.transfers()):
            continue
        t = max(s.ended or s.started for s in (*kern, *init))
        later = _kernel_dhcp_after(tl, t)
        clock = _kernel_dhcp_clock(later)
        # The kernel's own DHCP is the clock: its stage-3 request follows within seconds.
        if clock is None or snap.now - clock < th.stage3_after_dhcp:
            if snap.now - t < th.stage3_wait:
                continue
        ev = [*_ev(kern[-1]), *_ev(init[-1]), *later[:2]]
        elsewhere = list(snap.plan.stage3_elsewhere) if snap.plan is not None else []
        if later and elsewhere:
            where = ", ".join(elsewhere[:3])
            yield _finding(Severity.error, "stage3-other-host", tl,
                           f"{_who(tl)}'s kernel asks {where} for stage 3: not this server",
                           f"the kernel's network came up (its DHCP at +{later[0].ts - t:.0f} s"
                           f") and {snap.now - (clock or t):.0f} s later it still asked us for "
                           f"nothing: the command line names {where}, which is not this "
                           "server; that host does not answer or does not serve the image",
                           "remove that URL from boot.extra_cmdline (pxewizard writes this "
                           "server's URL), or set boot.external_http to that server if it is "
                           "meant and make sure it serves the image", ev, stage=Stage.initramfs,
                           subject="no-stage3")
            continue
        if later:
            cause = ("the kernel's network came up (it asked DHCP at +"
                     f"{later[0].ts - t:.0f} s) but it never asked for the root image: the "
                     "kernel command line points elsewhere (archiso_http_srv / "
                     "archisobasedir / netboot= / nfsroot=) or the initramfs lacks the hook")
        else:
            cause = ("the kernel booted (or crashed) without any network request to us: the "
                     "initramfs lacks the driver of this NIC, `ip=dhcp` is missing from the "
                     "command line, or the kernel stopped (watch the console)")
            if _dhcp_mode(snap, facts) == "proxy":
                cause += "; in proxy mode its DHCP goes to the other server, so we may not see it"
        yield _finding(Severity.error, "no-stage3", tl,
                       f"{_who(tl)} loaded kernel and initramfs but never asked for stage 3",
                       cause,
                       "check the menu's APPEND line (literal server IP, trailing slash on "
                       "archiso_http_srv) and that the initramfs carries the NIC driver; the "
                       "client's console says which", ev, stage=Stage.initramfs,
                       subject="no-stage3")


@rule
def stage3_failed(snap: Snapshot, facts: HostFacts, th: Thresholds) -> Iterator[Finding]:
    """Stage-3 request refused: 404 (wrong base dir/URL), 416 (range), other errors."""
    for tl in snap.clients:
        seen: set[str] = set()
        for s in _failed(tl):
            if s.stage is not Stage.stage3 or s.path in seen or _recovered(tl, s) \
                    or _is_timeout(s) or _is_permission(s) or s.service == "mountd":
                continue
            seen.add(s.path)
            code = _code(s)
            near = closest_name(s.path, facts.files)
            side = sidecars(s.path, facts.files)
            folder = posixpath.dirname(s.path.lstrip("/"))
            beside = folder and any(f.lstrip("/").startswith(folder + "/") for f in facts.files)
            if _is_not_found(s) and (side or beside):
                title = f"stage 3: {s.path} is not served ({code or 'not found'})"
                cause = (f"the file named by the kernel command line, {s.path}, is not in any "
                         "served root (deleted?)"
                         + (f": its checksum file {side[0]} is still there" if side else
                            f": its folder {folder}/ is served"
                            + (f"; {near}" if near else "")))
                fix = (f"put {posixpath.basename(s.path)} back (copy it from the ISO), or "
                       "point boot.media at a complete copy of the medium")
            elif _is_not_found(s):
                title = f"stage 3: {s.path} is not served ({code or 'not found'})"
                cause = ("the kernel command line asks for a path we do not serve: "
                         "archisobasedir, archiso_http_srv or netboot= does not match the "
                         "media" + (f" ({near})" if near else ""))
                fix = "fix the URL/path on the menu's APPEND line, or serve the file there"
            elif code == 416:
                title = f"stage 3: range request for {s.path} refused (416)"
                cause = ("the client asked a byte range outside the file: the file changed "
                         "size or the client's idea of it is wrong; " + _reason(s))
                fix = "make sure the image is complete (compare with its .sha512/.md5)"
            else:
                title = f"stage 3: {s.service} {s.path} failed"
                cause = _reason(s)
                fix = "see the reason; check the image file and the server's log"
            yield _finding(Severity.error, "stage3-failed", tl, title, cause, fix, _ev(s),
                           [near] if near and not side else [], stage=Stage.stage3)


@rule
def nfs_mount_refused(snap: Snapshot, facts: HostFacts, th: Thresholds) -> Iterator[Finding]:
    """MOUNT refused the path the client asked (archiso_nfs_srv=IP:/wrong/path)."""
    for tl in snap.clients:
        seen: set[str] = set()
        for s in _failed(tl):
            if s.service != "mountd" or s.path in seen or _recovered(tl, s):
                continue
            seen.add(s.path)
            yield _finding(Severity.error, "nfs-mount-refused", tl,
                           f"NFS: {_who(tl)} asked to mount {s.path}, which is not exported",
                           _reason(s),
                           "put an exported path in the kernel command line "
                           "(archiso_nfs_srv=IP:/export, nfsroot=IP:/export or netboot=nfs://"
                           "IP:/export) or export that directory (nfs.exports)", _ev(s),
                           stage=Stage.stage3)


NFS_PROGRAM = 100003
"""ONC RPC program number of NFS (RFC 1813)."""

_NFS4 = re.compile(r"nfs\s*v?4|v(?:ers(?:ion)?)?\s*[=:]?\s*4\b|version 4|program version 4", re.I)


@rule
def nfs_v4(snap: Snapshot, facts: HostFacts, th: Thresholds) -> Iterator[Finding]:
    """The client's kernel asked NFSv4; we serve NFSv3 (and MOUNT) only."""

    def text(e: Event) -> str:
        return " ".join(str(getattr(e, a, "")) for a in ("detail", "reason", "message"))

    def nfs_event(e: Event) -> bool:
        return getattr(e, "service", "") in ("nfs", "mountd", "portmap")

    def asked_v4(e: Event) -> bool:
        if isinstance(e, RpcVersionRefused):
            return e.program == NFS_PROGRAM and e.version == 4
        return nfs_event(e) and bool(_NFS4.search(text(e)))

    for tl in snap.clients:
        v4 = [e for e in tl.events if asked_v4(e)]
        opened = [e for e in tl.events if isinstance(e, SessionOpened) and e.service == "nfs"]
        mounted = any(getattr(e, "service", "") in ("mountd", "portmap") for e in tl.events)
        if v4:
            yield _finding(Severity.error, "nfs-v4", tl,
                           f"{_who(tl)}'s kernel asked for NFSv4; pxewizard serves NFSv3",
                           "the client called NFS program version 4 on port 2049 and got "
                           "PROG_MISMATCH (we serve version 3 only, with MOUNT and the "
                           "portmapper); its kernel tried NFSv4 because the mount options do "
                           "not say vers=3",
                           "kernel asked NFSv4; add vers=3 to the NFS options on the kernel "
                           "command line (e.g. nfsroot=IP:/path,vers=3,tcp or the media's "
                           "NFS options)", v4[-3:], stage=Stage.stage3)
        elif opened and not mounted:
            yield _finding(Severity.warning, "nfs-v4", tl,
                           f"{_who(tl)} connected to NFS without asking MOUNT first",
                           "an NFSv3 client asks the portmapper and MOUNT before port 2049; "
                           "going straight to 2049 is what an NFSv4 client does",
                           "add vers=3 to the NFS options on the kernel command line",
                           opened[:2], stage=Stage.stage3)
    v4h = [e for e in snap.host_events if asked_v4(e)]
    if v4h:
        yield _finding(Severity.error, "nfs-v4", None,
                       "a client asked for NFSv4; pxewizard serves NFSv3",
                       "an NFS request with program version 4 reached port 2049",
                       "kernel asked NFSv4; add vers=3 to the NFS options on the kernel "
                       "command line", v4h[-3:], stage=Stage.stage3)


_OOM = re.compile(r"out of memory|oom-killer|oom_reaper|killed process|cannot allocate memory"
                  r"|initramfs unpacking failed|no space left on device|not enough (?:free )?"
                  r"(?:memory|ram|space)|unable to allocate|kernel panic.*memory", re.I)


@rule
def client_ram(snap: Snapshot, facts: HostFacts, th: Thresholds) -> Iterator[Finding]:
    """Console shows OOM, a large stage-3 copy stalls, or the Plan needs more RAM than stated."""
    if facts.ram_needed and facts.client_ram and facts.ram_needed > facts.client_ram:
        yield _finding(Severity.error, "client-ram", None,
                       f"clients need about {size_text(facts.ram_needed)} of RAM, they have "
                       f"{size_text(facts.client_ram)}",
                       f"stage 3 over {facts.transport or 'this transport'} copies the image "
                       "into the client's RAM (HTTP peaks at about twice its size)",
                       "use NBD or NFS with copytoram=n (read on demand), or clients with "
                       "more RAM", stage=Stage.stage3)
    for tl in snap.clients:
        oom = [c for c in tl.console if _OOM.search(c.line)]
        if oom:
            yield _finding(Severity.error, "client-ram", tl,
                           f"{_who(tl)} ran out of memory",
                           "its console says so: " + oom[0].line.strip()[:160],
                           "give the client more RAM, or boot with NBD/NFS and copytoram=n "
                           "so the image is read on demand", oom[:3], stage=tl.stage)
            continue
        if tl.stage != Stage.stage3 or tl.idle < th.stall:
            continue
        big = [s for s in tl.steps if s.kind == "transfer" and s.role is Role.rootfs
               and s.service in ("http", "tftp") and s.status in (Status.running, Status.failed)
               and s.size and s.sent < s.size and s.size > 64 * 1024 * 1024]
        if not big or _recovered(tl, big[-1]):
            continue
        s = big[-1]
        need = ""
        if facts.client_ram:
            need = (f"; the client has {size_text(facts.client_ram)} and the copy needs "
                    f"about {size_text(2 * s.size)}")
        sev = Severity.error if facts.client_ram and facts.client_ram < 2 * s.size \
            else Severity.warning
        yield _finding(sev, "client-ram", tl,
                       f"{_who(tl)} stopped reading {s.path} at {size_text(s.sent)} of "
                       f"{size_text(s.size)}",
                       "the image is copied into the client's RAM (HTTP peaks at about twice "
                       "its size); a client that stops mid-copy most often ran out of memory, "
                       "else it crashed or lost its link" + need,
                       "give the client more RAM, or use NBD/NFS with copytoram=n",
                       _ev(s), stage=Stage.stage3, subject=s.path)


@rule
def competing_dhcp(snap: Snapshot, facts: HostFacts, th: Thresholds) -> Iterator[Finding]:
    """Another DHCP server answers on a segment where we run full DHCP."""
    if _dhcp_mode(snap, facts) != "full":
        return
    ours = _our_ids(snap, facts)
    by_id: dict[str, list[DhcpServerSeen]] = {}
    for s in snap.dhcp_servers:
        if s.server_id not in ours and not s.proxy:
            by_id.setdefault(s.server_id, []).append(s)
    for sid, seen in by_id.items():
        yield _finding(Severity.error, "competing-dhcp", None,
                       f"another DHCP server answers here: {sid} ({seen[0].server_mac})",
                       f"we run full DHCP and {sid} also offers addresses"
                       + (f" ({seen[0].offered_ip})" if seen[0].offered_ip else "")
                       + "; each client takes whichever answers first, so some get no boot "
                         "file",
                       "stop that server, or switch to dhcp.mode = proxy so it hands out "
                       "addresses and pxewizard adds the boot information",
                       seen[-3:], stage=Stage.dhcp)


@rule
def ports_held(snap: Snapshot, facts: HostFacts, th: Thresholds) -> Iterator[Finding]:
    """A port a service needs is held by another process."""
    for proto, port, service, holder in facts.ports_held:
        yield _finding(Severity.error, "port-held", None,
                       f"{proto.upper()} port {port} ({service}) is held by {holder}",
                       f"{service} cannot listen while {holder} holds the port",
                       f"stop {holder} (systemctl stop ...), or give {service} another port in "
                       "the plan where clients allow it", stage=None)


@rule
def server_errors(snap: Snapshot, facts: HostFacts, th: Thresholds) -> Iterator[Finding]:
    """Error lines of our own services (a bind failure, a vanished file) are findings too."""
    seen: set[str] = set()
    for e in snap.host_events:
        if isinstance(e, LogLine) and e.level == "error" and e.message not in seen \
                and "global read permission" not in e.message.lower():
            seen.add(e.message)
            head, _, fix = e.message.partition("\n  fix: ")
            yield _finding(Severity.error, "server-error", None, f"{e.service}: {head}",
                           head, fix or "see the message", [e])


_STALL_CAUSES = {
    Stage.loader: "the boot loader is loading its modules or waiting for an answer; a "
                  "module may be missing or the loader hung",
    Stage.config: "the boot menu is waiting for a key, or the client hung after reading "
                  "its config",
    Stage.kernel: "the kernel transfer stopped: the client reset, or blocks are lost "
                  "(blksize larger than the path MTU)",
    Stage.initramfs: "the initramfs transfer stopped: the client reset, ran out of memory, "
                     "or blocks are lost (blksize/MTU)",
    Stage.stage3: "the root image copy stopped: out of client RAM, a crash, or a lost link",
}


@rule
def stall(snap: Snapshot, facts: HostFacts, th: Thresholds) -> Iterator[Finding]:
    """Silent too long in the middle of a stage (when no more precise rule explains it)."""
    for tl in snap.clients:
        st = tl.stage
        if st in (Stage.waiting, Stage.dhcp, Stage.done):
            continue
        cur = tl.current
        wait = th.stall
        if st is Stage.config:
            if facts.menu_timeout == 0:
                continue   # a menu that waits forever is not a stall
            wait += facts.menu_timeout if facts.menu_timeout is not None else 60
        if st is Stage.loader:
            wait = max(wait, th.loader_wait)
        if st is Stage.initramfs and (cur is None or cur.status is not Status.running):
            continue      # waiting for the kernel to boot: no_stage3 judges that
        if st is Stage.stage3 and (cur is None or cur.kind == "session"
                                   or cur.status is not Status.running):
            continue      # NBD/NFS read on demand; idle is normal once booted
        if tl.idle < wait:
            continue
        what = f" ({cur.service} {cur.path}, {size_text(cur.sent)} sent)" if cur else ""
        yield _finding(Severity.warning, "stall", tl,
                       f"{_who(tl)} silent for {tl.idle:.0f} s in the {st.label} stage",
                       f"no request for {tl.idle:.0f} s{what}. Likely: {_STALL_CAUSES[st]}",
                       "look at the client's screen; the timeline shows the last file",
                       [e for e in (cur.events if cur else ())][-2:], stage=st,
                       subject=st.name)


# --- entry points ----------------------------------------------------------------------------


def diagnose(snap: Snapshot, facts: HostFacts | None = None,
             thresholds: Thresholds | None = None) -> list[Finding]:
    """Every finding for a snapshot, worst first; the stall rule defers to precise ones."""
    facts = facts or HostFacts()
    th = thresholds or Thresholds()
    out: list[Finding] = []
    for r in RULES:
        try:
            found = list(r(snap, facts, th))
        except Exception as exc:  # one broken rule must not hide the others
            found = [Finding(severity=Severity.warning, rule="internal", client="",
                             title=f"diagnosis rule {r.__name__} failed: {exc!r}",
                             cause="a bug in pxewizard; the other rules still ran",
                             fix="report it with the event log")]
        if r is stall:
            flagged = {f.client for f in out if f.severity >= Severity.warning}
            found = [f for f in found if f.client not in flagged]
        out.extend(found)
    # a .bin kernel booted as a boot sector: the loader abandons its transfers, so a
    # timeout there is no reason to lower tftp.max_blksize
    bin_clients = {f.client for f in out if f.rule == "bin-kernel"}
    out = [f for f in out if not (f.rule == "tftp-timeout" and f.client in bin_clients)]
    uniq: dict[tuple[str, str, str], Finding] = {}
    for f in out:
        uniq.setdefault(f.key, f)
    return sorted(uniq.values(), key=lambda f: (-f.severity, f.client, f.rule))


def findings_for(findings: Iterable[Finding], client: str) -> list[Finding]:
    """The findings of one client (the Clients view), worst first."""
    return [f for f in findings if f.client == client]


def format_finding(f: Finding, *, with_evidence: bool = True) -> list[str]:
    """A finding as lines of text."""
    who = f" [{f.client}]" if f.client else ""
    lines = [f"{f.severity.label.upper():<7}{who} {f.title}"]
    if f.severity is not Severity.ok:
        lines.append(f"        cause: {f.cause}")
        for d in f.details:
            lines.append(f"        fact: {d}")
        if with_evidence:
            for e in f.evidence[:6]:
                seen = one_line(e)
                if f.fix:  # an event's own "fix: ..." would print the fix a second time
                    seen = re.sub(r";? fix: [^)]*", "", seen)
                lines.append(f"        seen: {seen}")
        if f.fix:
            lines.append(f"        fix: {f.fix}")
    return [escape_controls(ln) for ln in lines]  # titles and facts may quote network text


__all__ = ["BridgeState", "Finding", "HostFacts", "RULES", "Severity", "Thresholds",
           "closest_name", "diagnose", "findings_for", "format_finding",
           "package_for"]
