"""Per-client boot timeline, built incrementally from events.

Every PXE boot walks the same road: DHCP (or proxyDHCP and port 4011), the boot
loader over TFTP, its modules and config file, a kernel, an initramfs, then the
stage-3 root image over HTTP, TFTP, NBD or NFS. :class:`TimelineBuilder` is fed
events one by one (``feed``) and answers where each client is on that road
(``snapshot(now)``): the stage, every step with bytes and rate, and how long the
client has been silent.

It is pure: no clock reads (``now`` is passed in), no sockets, no files. The
Live screen feeds it from the bus; ``pxewizard doctor --log`` feeds it a saved
JSONL log; the diagnosis rules read its snapshots.

Events carry the client's MAC where the server knows it and its IP otherwise
(a TFTP server only sees an address). The builder joins the two through our own
DHCP answers (``yiaddr``), lease events, port-4011 requests (``ciaddr``) and,
for clients whose address came from another DHCP server, the neighbour table
(:meth:`TimelineBuilder.learn`).
"""

from __future__ import annotations

import operator
import posixpath
import re
import socket
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from ..events import (BlksizeGranted, BpduSeen, ConsoleLine, DhcpExchange, DhcpServerSeen, Event,
                      FailCause, LeaseChanged, LogLine, PacketDropped, PlanLoaded,
                      RpcVersionRefused, ServiceStarted, ServiceStopped, SessionClosed,
                      SessionOpened, TransferDone, TransferFailed, TransferProgress,
                      TransferStarted)
from ..boot.loaders import loader_firmware, loader_names
from ..safetext import escape_controls
from ..units import size_text

# --- file roles ----------------------------------------------------------------------


class Role(StrEnum):
    """What a requested file is, judged by its name."""

    loader = "boot loader"
    module = "loader module"
    config = "config"
    kernel = "kernel"
    initramfs = "initramfs"
    rootfs = "root image"
    checksum = "checksum"
    other = "file"


class Stage(IntEnum):
    """How far a client got; ordered, so ``max`` gives the furthest stage reached."""

    waiting = 0
    dhcp = 1
    loader = 2
    config = 3
    kernel = 4
    initramfs = 5
    stage3 = 6
    done = 7

    @property
    def label(self) -> str:
        return _STAGE_LABELS[self]


_STAGE_LABELS = {
    Stage.waiting: "waiting",
    Stage.dhcp: "DHCP",
    Stage.loader: "boot loader",
    Stage.config: "config",
    Stage.kernel: "kernel",
    Stage.initramfs: "initramfs",
    Stage.stage3: "stage 3",
    Stage.done: "done",
}

_ROLE_STAGE = {
    Role.loader: Stage.loader,
    Role.module: Stage.loader,
    Role.config: Stage.config,
    Role.kernel: Stage.kernel,
    Role.initramfs: Stage.initramfs,
    Role.rootfs: Stage.stage3,
    Role.checksum: Stage.stage3,
}

IPXE_BINARIES = loader_names("ipxe")
SYSLINUX_LOADERS = loader_names("syslinux")
_EFI_OTHER_LOADERS = loader_names("grub")

# pxelinux.cfg search (syslinux doc/pxelinux.txt): 01-<MAC>, the UUID, the client IP
# in upper-case hex with one digit less each try, then "default".
_CFG_SEARCH = re.compile(r"^(01-[0-9a-f]{2}(-[0-9a-f]{2}){5}"
                         r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
                         r"|[0-9A-F]{1,8})$", re.I)
# Files a client looks for on its own and is fine without.
# shim 15.8+ looks beside itself for revocation and certificate add-ons; GRUB for module
# lists under $prefix/x86_64-efi/ (the signed image has its modules built in).
_OPTIONAL = frozenset({"autoexec.ipxe", "revocations_sku.efi", "revocations_sbat.efi",
                       "shim_certificate_0.efi", "command.lst", "fs.lst", "crypto.lst",
                       "terminal.lst", "video.lst", "moddep.lst", "partmap.lst",
                       "parttool.lst"})


def classify(path: str, service: str = "tftp") -> Role:
    """The role of a requested file, from its name.

    NBD and NFS sessions always carry stage 3; HTTP and TFTP names are matched
    against the files real boot media use (syslinux, iPXE, SystemRescue/archiso,
    old SystemRescueCd).
    """
    if service in ("nbd", "nfs", "mountd"):
        return Role.rootfs
    p = path.strip().lstrip("/").split("?", 1)[0]
    name = posixpath.basename(p).lower()
    parent = posixpath.basename(posixpath.dirname(p)).lower()
    if parent == "pxelinux.cfg" or name.endswith((".ipxe", ".cfg", ".conf")) \
            or name in ("boot.ipxe", "menu.ipxe", "grub.cfg"):
        return Role.config
    if name in SYSLINUX_LOADERS or name in IPXE_BINARIES or name in _EFI_OTHER_LOADERS \
            or name.endswith((".kpxe", ".pxe", ".0")):
        return Role.loader
    if name.startswith("ldlinux.") or name.endswith((".c32", ".e64", ".e32")):
        return Role.module
    if name.endswith((".md5", ".sha256", ".sha512", ".sha1", ".sig", ".asc")) \
            or name in ("sha512sums", "sha256sums", "md5sums"):
        return Role.checksum
    if name in ("airootfs.sfs", "sysrcd.dat", "filesystem.squashfs") or name.endswith(
            (".sfs", ".squashfs", ".iso", ".erofs")):
        return Role.rootfs
    if name.startswith(("vmlinuz", "vmlinux", "bzimage", "kernel", "rescue32", "rescue64",
                        "altker")) or name in ("linux", "linux64", "linux32", "memdisk") \
            or name.endswith(".bin"):
        return Role.kernel
    if name.startswith(("initrd", "initram", "initramfs")) or name.endswith(
            (".img", ".igz", ".gz", ".cpio", ".xz", ".zst", ".lz4")) or "ucode" in name:
        return Role.initramfs
    return Role.other


def _strong_boot_name(path: str) -> bool:
    """Names that are a kernel or an initramfs whoever asks (not judged by suffix alone)."""
    name = posixpath.basename(path.split("?", 1)[0]).lower()
    return name.startswith(("vmlinuz", "vmlinux", "bzimage", "initrd", "initram", "rescue32",
                            "rescue64")) or "ucode" in name


def loader_family(path: str) -> str:
    """``syslinux``, ``ipxe``, ``grub`` or ``other`` for a boot loader file name."""
    name = posixpath.basename(path).lower()
    if name in SYSLINUX_LOADERS:
        return "syslinux"
    if name in IPXE_BINARIES or name.endswith((".kpxe", ".lkrn")):
        return "ipxe"
    if name.startswith(("grub", "shim", "boot")):
        return "grub"
    return "other"


def arch_firmware(arch: int | None) -> str:
    """Option 93 (RFC 4578 section 2.1) -> ``bios``, ``efi`` or ``""`` when unknown."""
    if arch is None:
        return ""
    if arch == 0:
        return "bios"
    if arch in (6, 7, 9, 10, 11, 15, 16, 18, 19):
        return "efi"
    return ""


def is_config_search_miss(path: str) -> bool:
    """True for the names pxelinux tries before ``default`` (a miss there is normal)."""
    p = path.strip().lstrip("/")
    parent = posixpath.basename(posixpath.dirname(p)).lower()
    name = posixpath.basename(p)
    if parent == "pxelinux.cfg" and _CFG_SEARCH.match(name):
        return True
    return name.lower() in _OPTIONAL


def is_normal_miss(ev: TransferFailed) -> bool:
    """A file that is not there where pxelinux (or GRUB) only looks for it: ``01-<mac>``,
    the hex IP prefixes before ``default``... A miss, not a failure: Live and ``serve`` show it
    dim and do not count it (issue 18); the timeline marks the step ``normal_miss``."""
    return _is_not_found(ev) and is_config_search_miss(ev.path)


def _ip_of(peer: str) -> str:
    host = peer.rsplit(":", 1)[0] if peer.count(":") == 1 else peer
    return host if _is_ip(host) else ""


def _is_ip(s: str) -> bool:
    """A dotted-quad IPv4 address (as ``ipaddress.IPv4Address`` accepts: four decimal
    octets, no leading zeros). ``inet_pton``: 0.2 us, against 6 us for ipaddress, and the
    timeline asks this several times per event (issue 22: DHCP through ``serve``); the
    answers are remembered (a dict lookup: 0.05 us), up to _MEMO_MAX strings."""
    if not isinstance(s, str):
        return False
    ok = _IP_MEMO.get(s)
    if ok is None:
        try:
            socket.inet_pton(socket.AF_INET, s)
            ok = True
        except (OSError, ValueError, TypeError):
            ok = False
        _remember(_IP_MEMO, s, ok)
    return ok


def _norm_mac(s: str) -> str:
    m = _MAC_MEMO.get(s)
    if m is None:
        m = s.strip().lower().replace("-", ":")
        _remember(_MAC_MEMO, s, m)
    return m


_MEMO_MAX = 1 << 16
"""Strings remembered by :func:`_is_ip` and :func:`_norm_mac` (a LAN's clients; anything
the network sends beyond that only costs the memo being started again)."""
_IP_MEMO: dict[str, bool] = {}
_MAC_MEMO: dict[str, str] = {}


def _remember(memo: dict, key: str, value: object) -> None:
    if len(memo) >= _MEMO_MAX:
        memo.clear()
    memo[key] = value


# --- what a snapshot shows -------------------------------------------------------------


class Status(StrEnum):
    """State of one step."""

    running = "running"
    ok = "ok"
    normal_miss = "not there (normal)"
    probe = "size probe (normal)"
    failed = "failed"
    ignored = "ignored"


@dataclass(frozen=True, kw_only=True)
class Step:
    """One line of a client's timeline: a DHCP transaction, a file, a session or a note."""

    kind: str
    """``dhcp``, ``transfer``, ``session`` or ``note``."""
    stage: Stage
    """Stage this step belongs to."""
    title: str
    """What happened, in words (``DHCP DISCOVER -> OFFER 10.99.0.115``, ``tftp pxelinux.0``)."""
    started: float
    """Time of its first event."""
    ended: float | None = None
    """Time it finished (None while running)."""
    status: Status = Status.running
    """Running, ok, a normal miss, a probe, failed or ignored."""
    service: str = ""
    """Service that handled it."""
    path: str = ""
    """File or export (transfers and sessions)."""
    role: Role | None = None
    """File role (transfers)."""
    size: int | None = None
    """Total size in bytes, when known."""
    sent: int = 0
    """Bytes sent so far."""
    last_activity: float = 0.0
    """Time of its latest event (progress included)."""
    detail: str = ""
    """Reason, options or DHCP particulars."""
    events: tuple[Event, ...] = ()
    """The events behind it (the latest progress event only)."""

    @property
    def seconds(self) -> float:
        end = self.ended if self.ended is not None else self.last_activity
        return max(0.0, end - self.started)

    @property
    def rate(self) -> float:
        """Bytes per second over the step's duration (0 when unknown)."""
        s = self.seconds
        return self.sent / s if s > 0 else 0.0

    @property
    def fraction(self) -> float | None:
        """Share of the file sent (None when the size is unknown)."""
        if not self.size:
            return None
        return min(1.0, self.sent / self.size)

    @property
    def is_problem(self) -> bool:
        return self.status is Status.failed


@dataclass(frozen=True, kw_only=True)
class ClientSummary:
    """One row of the Clients list."""

    client: str
    """Key: MAC, or IP while the MAC is unknown."""
    mac: str
    """MAC address, when known."""
    ip: str
    """Latest IPv4 address, when known."""
    firmware: str
    """Option 93 in words (``BIOS``, ``EFI x64``), with ``iPXE`` when seen."""
    stage: Stage
    """Furthest stage reached."""
    label: str
    """Stage and current activity in words (``kernel 45%``, ``stage 3 http airootfs.sfs``)."""
    progress: float | None
    """Fraction of the running (or last) transfer, None when unknown."""
    last_activity: float
    """Time of the client's latest event."""
    idle: float
    """Seconds since then (at the snapshot's ``now``)."""
    failed: bool
    """A step of the current attempt failed (a real failure, not a normal miss)."""


@dataclass(frozen=True, kw_only=True)
class Timeline:
    """Everything known about one client's current boot attempt."""

    client: str
    """Key: MAC, or IP while the MAC is unknown."""
    mac: str = ""
    """MAC address."""
    ip: str = ""
    """Latest IPv4 address."""
    ips: tuple[str, ...] = ()
    """Every address the client used."""
    arch: int | None = None
    """First option 93 value seen (the firmware's; later loaders may omit it)."""
    arch_name: str = ""
    """Option 93 in words."""
    vendor_class: str = ""
    """First option 60 seen (``PXEClient:Arch:00000:UNDI:002001``)."""
    ipxe: bool = False
    """iPXE identified itself (user class ``iPXE``)."""
    stage: Stage = Stage.waiting
    """Furthest stage reached in this attempt."""
    steps: tuple[Step, ...] = ()
    """Steps in order of their start."""
    events: tuple[Event, ...] = ()
    """Events of this attempt (progress left out), in arrival order."""
    console: tuple[ConsoleLine, ...] = ()
    """Latest console lines (lab VMs)."""
    first_seen: float = 0.0
    """Time of the client's first event."""
    last_activity: float = 0.0
    """Time of its latest event."""
    idle: float = 0.0
    """Seconds since the latest event, at the snapshot's ``now``."""
    attempt: int = 1
    """Boot attempt number (a new PXE DISCOVER after the kernel starts a new one)."""
    earlier: tuple[Timeline, ...] = ()
    """The client's earlier boot attempts, oldest first (the last MAX_EARLIER)."""

    @property
    def firmware(self) -> str:
        """``bios``, ``efi`` or ``""`` from option 93."""
        return arch_firmware(self.arch)

    def transfers(self, role: Role | None = None) -> list[Step]:
        return [s for s in self.steps if s.kind == "transfer" and (role is None or s.role is role)]

    def dhcp_events(self) -> list[DhcpExchange]:
        return [e for e in self.events if isinstance(e, DhcpExchange)]

    def bytes_by_stage(self) -> dict[Stage, int]:
        out: dict[Stage, int] = {}
        for s in self.steps:
            if s.kind in ("transfer", "session"):
                out[s.stage] = out.get(s.stage, 0) + s.sent
        return out

    @property
    def current(self) -> Step | None:
        """The running transfer or session, else the latest transfer."""
        for s in reversed(self.steps):
            if s.kind in ("transfer", "session") and s.status is Status.running:
                return s
        for s in reversed(self.steps):
            if s.kind in ("transfer", "session"):
                return s
        return None

    @property
    def failed(self) -> bool:
        return any(s.status is Status.failed for s in self.steps)

    def summary(self) -> ClientSummary:
        cur = self.current
        label = self.stage.label
        progress = None
        if cur is not None and self.stage is not Stage.done:
            progress = cur.fraction
            name = posixpath.basename(cur.path) or cur.path
            pct = f" {progress:.0%}" if progress is not None and cur.status is Status.running else ""
            label = f"{self.stage.label}: {cur.service} {name}{pct}"
        fw = self.arch_name or ("EFI" if self.firmware == "efi" else "")
        if self.ipxe:
            fw = f"{fw} iPXE".strip()
        return ClientSummary(client=self.client, mac=self.mac, ip=self.ip, firmware=fw,
                             stage=self.stage, label=label, progress=progress,
                             last_activity=self.last_activity, idle=self.idle,
                             failed=self.failed)


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """Every client's timeline plus what the host-level events say, at one ``now``."""

    now: float
    """The time the snapshot was taken for (idle times are relative to it)."""
    clients: tuple[Timeline, ...] = ()
    """One timeline per client, in order of first appearance."""
    started: float | None = None
    """When the first service started (or the first event, when no ServiceStarted was seen)."""
    services: tuple[ServiceStarted, ...] = ()
    """Services running (started and not stopped)."""
    dhcp_servers: tuple[DhcpServerSeen, ...] = ()
    """DHCP servers seen on the wire (the probe's answers)."""
    host_events: tuple[Event, ...] = ()
    """Warnings and errors with no client (log lines, dropped packets, stops)."""
    dhcp_requests: int = 0
    """DHCP requests seen from any client."""
    last_event: float | None = None
    """Time of the latest event of any kind."""
    plan: PlanLoaded | None = None
    """What the Plan asked for, as logged at start (kept after the services stop)."""
    bpdus: tuple[BpduSeen, ...] = ()
    """Spanning-tree BPDUs seen on our interface, the latest per bridge id."""

    def client(self, key: str) -> Timeline | None:
        key = key.lower()
        for tl in self.clients:
            if tl.client == key or tl.mac == key or key in tl.ips:
                return tl
        return None

    def summaries(self) -> list[ClientSummary]:
        return [tl.summary() for tl in self.clients]


# --- the builder -------------------------------------------------------------------------


@dataclass
class _StepState:
    kind: str
    stage: Stage
    title: str
    started: float
    ended: float | None = None
    status: Status = Status.running
    service: str = ""
    path: str = ""
    role: Role | None = None
    size: int | None = None
    sent: int = 0
    last_activity: float = 0.0
    detail: str = ""
    peer: str = ""
    key: Any = None
    events: list[Event] = field(default_factory=list)
    progress: Event | None = None
    stale: bool = False
    """A DHCP step took events since its title, status and detail were worked out."""
    _frozen: tuple[Any, Step] | None = field(default=None, repr=False, compare=False)

    def _summarise_dhcp(self) -> None:
        """Title, status and detail of a DHCP transaction from its events (once per
        snapshot, not once per packet: a DHCP flood feeds thousands a second)."""
        self.stale = False
        self.title = _dhcp_title(self.events)
        answered = [e for e in self.events
                    if isinstance(e, DhcpExchange) and e.msg_out.upper() != "-"]
        if answered and answered[-1].msg_out.upper() == "NAK":
            self.status = Status.failed
        elif answered:
            self.status = Status.ok
        else:
            self.status = Status.ignored
        reasons = [e.reason for e in self.events
                   if isinstance(e, DhcpExchange) and e.msg_out == "-" and e.reason]
        self.detail = reasons[-1] if reasons else getattr(self.events[-1], "reason", "")

    def freeze(self) -> Step:
        """The frozen Step, rebuilt only when something shown changed."""
        if self.stale:
            self._summarise_dhcp()
        evs = tuple(self.events) + ((self.progress,) if self.progress is not None else ())
        key = (self.status, self.sent, self.last_activity, self.ended, self.title, self.detail,
               self.size, len(evs), id(self.progress))
        if self._frozen is not None and self._frozen[0] == key:
            return self._frozen[1]
        step = self._build(evs)
        self._frozen = (key, step)
        return step

    def _build(self, evs: tuple[Event, ...]) -> Step:
        return Step(kind=self.kind, stage=self.stage, title=self.title, started=self.started,
                    ended=self.ended, status=self.status, service=self.service, path=self.path,
                    role=self.role, size=self.size, sent=self.sent,
                    last_activity=self.last_activity or self.started, detail=self.detail,
                    events=evs)


MAX_EVENTS_PER_CLIENT = 2000
"""Events kept per client for evidence; beyond it the oldest go (steps stay)."""
MAX_EARLIER = 5
"""Earlier boot attempts kept per client (replay and doctor show how each ended)."""
MAX_STEPS_PER_CLIENT = 256
"""Steps kept per client attempt: a PC that renews its lease every few minutes for days
adds a DHCP step each time; beyond this the oldest steps go."""
MAX_CLIENTS = 4096
"""Clients with a timeline. Anyone on the segment can send DHCP from a new MAC per packet;
past this the least recently active eighth is forgotten (counted in ``evicted``), so
memory and the cost of a snapshot stay bounded whatever the LAN sends."""
MAX_EVENTS_TOTAL = 400_000
"""Events held by all timelines together (about 200 MB): many clients with long histories
are evicted the same way, least recently active first."""
_EVENTS = operator.attrgetter("events")
_ACTIVITY = operator.attrgetter("last_activity")


@dataclass
class _Client:
    key: str
    mac: str = ""
    ips: list[str] = field(default_factory=list)
    arch: int | None = None
    arch_name: str = ""
    vendor_class: str = ""
    ipxe: bool = False
    stage: Stage = Stage.waiting
    steps: list[_StepState] = field(default_factory=list)
    events: deque[Event] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS_PER_CLIENT))
    console: deque[ConsoleLine] = field(default_factory=lambda: deque(maxlen=200))
    first_seen: float = 0.0
    last_activity: float = 0.0
    attempt: int = 1
    earlier: list[Timeline] = field(default_factory=list)
    kernel_up: bool = False
    """A DHCP request came after the initramfs: the kernel runs, later files are stage 3."""
    version: int = 0
    cached: tuple[int, Timeline] | None = None

    def touch(self, ts: float) -> None:
        if not self.first_seen or ts < self.first_seen:
            self.first_seen = ts
        self.last_activity = max(self.last_activity, ts)
        self.version += 1

    def reach(self, stage: Stage) -> None:
        if stage > self.stage:
            self.stage = stage

    def add_step(self, step: _StepState) -> None:
        self.steps.append(step)
        if len(self.steps) > MAX_STEPS_PER_CLIENT:
            del self.steps[:len(self.steps) - MAX_STEPS_PER_CLIENT]

    def _ordered_steps(self) -> list[_StepState]:
        # Steps arrive in time order except after a merge (learn): sort only then.
        if any(b.started < a.started for a, b in zip(self.steps, self.steps[1:])):
            self.steps.sort(key=lambda s: s.started)
        return self.steps

    def freeze(self, now: float) -> Timeline:
        if self.cached is None or self.cached[0] != self.version:
            tl = Timeline(client=self.key, mac=self.mac, ip=self.ips[-1] if self.ips else "",
                          ips=tuple(self.ips), arch=self.arch, arch_name=self.arch_name,
                          vendor_class=self.vendor_class, ipxe=self.ipxe, stage=self.stage,
                          steps=tuple(s.freeze() for s in self._ordered_steps()),
                          events=tuple(self.events), console=tuple(self.console),
                          first_seen=self.first_seen, last_activity=self.last_activity,
                          attempt=self.attempt, earlier=tuple(self.earlier))
            self.cached = (self.version, tl)
        tl = self.cached[1]
        idle = max(0.0, now - self.last_activity) if self.last_activity else 0.0
        return _with_idle(tl, idle)


def _with_idle(tl: Timeline, idle: float) -> Timeline:
    # dataclasses.replace() re-runs __init__ with every field; this is the same, explicit.
    new = object.__new__(Timeline)
    new.__dict__.update(tl.__dict__)
    object.__setattr__(new, "idle", idle)
    return new


class TimelineBuilder:
    """Incremental per-client timelines: ``feed(event)`` each event, ``snapshot(now)`` any time.

    Cheap enough to call on every event: a client's frozen timeline is rebuilt
    only when one of its events arrived since the last snapshot.
    """

    def __init__(self) -> None:
        self._clients: dict[str, _Client] = {}
        self._ip_to_mac: dict[str, str] = {}
        self._started: float | None = None
        self._first_event: float | None = None
        self._last_event: float | None = None
        self._services: dict[tuple[str, int, str], ServiceStarted] = {}
        self._servers: list[DhcpServerSeen] = []
        self._host: deque[Event] = deque(maxlen=500)
        self._dhcp_requests = 0
        self._plan: PlanLoaded | None = None
        self._bpdus: dict[str, BpduSeen] = {}
        self.evicted = 0
        """Clients forgotten to keep within MAX_CLIENTS and MAX_EVENTS_TOTAL."""

    # -- public --------------------------------------------------------------------

    def feed(self, event: Event) -> str | None:
        """Take one event; returns the key of the client it concerned (None: host-level)."""
        ts = event.ts
        if self._first_event is None or ts < self._first_event:
            self._first_event = ts
        if self._last_event is None or ts > self._last_event:
            self._last_event = ts
        match event:  # the kinds a busy server sends most come first
            case DhcpExchange():
                return self._dhcp(event)
            case LeaseChanged():
                mac = _norm_mac(event.mac)
                c = None
                if event.state in ("bound", "offered") and event.ip:
                    c = self.learn(event.ip, mac)
                if c is None:
                    c = self._client(mac)
                    c.mac = mac
                    self._add_ip(c, event.ip)
                c.events.append(event)
                c.touch(ts)
                return c.key
            case TransferStarted() | TransferProgress() | TransferDone() | TransferFailed():
                return self._transfer(event)
            case ServiceStarted():
                if self._started is None:
                    self._started = ts
                self._services[(event.service, event.port, event.proto)] = event
                return None
            case ServiceStopped():
                for k in [k for k in self._services if k[0] == event.service]:
                    del self._services[k]
                self._host.append(event)
                return None
            case DhcpServerSeen():
                self._servers.append(event)
                return None
            case PlanLoaded():
                self._plan = event
                return None
            case BpduSeen():
                self._bpdus[event.bridge_id] = event
                return None
            case RpcVersionRefused() | BlksizeGranted():
                key = self._key(event)
                if not key:
                    self._host.append(event)
                    return None
                c = self._client(key)
                c.events.append(event)
                c.touch(ts)
                return c.key
            case SessionOpened() | SessionClosed():
                return self._session(event)
            case ConsoleLine():
                key = self._key(event)
                if not key:
                    self._host.append(event)
                    return None
                c = self._client(key)
                c.console.append(event)
                c.events.append(event)
                c.touch(ts)
                return c.key
            case LogLine() | PacketDropped():
                key = self._key(event)
                if not key:
                    if isinstance(event, PacketDropped) or event.level in ("warning", "error"):
                        self._host.append(event)
                    return None
                c = self._client(key)
                level = getattr(event, "level", "warning")
                if level in ("warning", "error"):
                    text = event.message if isinstance(event, LogLine) else event.reason
                    c.add_step(_StepState(kind="note", stage=c.stage, title=text,
                                          started=ts, ended=ts, status=Status.ignored,
                                          service=event.service, last_activity=ts,
                                          events=[event]))
                c.events.append(event)
                c.touch(ts)
                return c.key
        return None

    def feed_many(self, events: Iterable[Event]) -> None:
        for ev in events:
            self.feed(ev)

    def learn(self, ip: str, mac: str) -> _Client | None:
        """Join an IP to a MAC (from our leases or the neighbour table); merges timelines.
        The MAC's client, its IP added; None when nothing was seen from it yet."""
        c = self._clients.get(mac)
        if c is not None and c.mac == mac and c.ips and c.ips[-1] == ip \
                and self._ip_to_mac.get(ip) == mac and ip not in self._clients:
            c.version += 1  # known already (every ACK and lease event says it again)
            return c
        if not ip or not mac or not _is_ip(ip):
            return None
        mac = _norm_mac(mac)
        self._ip_to_mac[ip] = mac
        by_ip = self._clients.pop(ip, None)
        if by_ip is None and mac not in self._clients:
            return None  # nothing seen from it yet: remember the pair only
        target = self._client(mac)
        target.mac = mac
        self._add_ip(target, ip)
        if by_ip is not None and by_ip is not target:
            target.steps.extend(by_ip.steps)
            target.events = deque(sorted([*target.events, *by_ip.events], key=lambda e: e.ts),
                                  maxlen=MAX_EVENTS_PER_CLIENT)
            target.console.extend(by_ip.console)
            target.reach(by_ip.stage)
            if by_ip.first_seen:
                target.touch(by_ip.first_seen)
            target.touch(by_ip.last_activity)
        target.version += 1
        return target

    def mac_of(self, ip: str) -> str | None:
        return self._ip_to_mac.get(ip)

    def unknown_ips(self) -> list[str]:
        """Client IPs with no MAC yet (ask the neighbour table about these)."""
        return [k for k in self._clients if _is_ip(k)]

    def snapshot(self, now: float) -> Snapshot:
        clients = sorted(self._clients.values(), key=lambda c: c.first_seen)
        return Snapshot(
            now=now, clients=tuple(c.freeze(now) for c in clients),
            started=self._started if self._started is not None else self._first_event,
            services=tuple(self._services.values()), dhcp_servers=tuple(self._servers),
            host_events=tuple(self._host), dhcp_requests=self._dhcp_requests,
            last_event=self._last_event, plan=self._plan, bpdus=tuple(self._bpdus.values()))

    def timeline(self, key: str, now: float) -> Timeline | None:
        key = key.lower()
        c = self._clients.get(key) or self._clients.get(self._ip_to_mac.get(key, ""))
        return c.freeze(now) if c is not None else None

    # -- internals ------------------------------------------------------------------------

    def _key(self, ev: Event) -> str:
        c = ev.client.strip().lower()
        if not c:
            c = _ip_of(getattr(ev, "peer", "") or "")
        if not c:
            return ""
        if _is_ip(c):
            return self._ip_to_mac.get(c, c)
        return _norm_mac(c)

    def _client(self, key: str) -> _Client:
        c = self._clients.get(key)
        if c is None:
            n = len(self._clients)
            if n >= MAX_CLIENTS or (n % 256 == 0 and n and self._held() > MAX_EVENTS_TOTAL):
                self._evict()
            c = self._clients[key] = _Client(key=key)
            if _is_ip(key):
                c.ips.append(key)
            elif re.match(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$", key):
                c.mac = key
        return c

    def _held(self) -> int:
        return sum(map(len, map(_EVENTS, self._clients.values())))

    def _evict(self) -> None:
        """Forget the least recently active eighth of the clients (MAX_CLIENTS), and more
        while their events together exceed MAX_EVENTS_TOTAL."""
        by_age = sorted(self._clients.values(), key=_ACTIVITY)
        # a client created a moment ago has no activity yet: it is the newest, not the oldest
        fresh = next((i for i, c in enumerate(by_age) if c.last_activity), len(by_age))
        if fresh:
            by_age = by_age[fresh:] + by_age[:fresh]
        n = max(1, len(by_age) // 8)
        held = sum(map(len, map(_EVENTS, by_age[n:])))
        while held > MAX_EVENTS_TOTAL and n < len(by_age) - 1:
            held -= len(by_age[n].events)
            n += 1
        gone = by_age[:n]
        for c in gone:
            del self._clients[c.key]
        self.evicted += len(gone)
        if len(self._ip_to_mac) > 2 * MAX_CLIENTS:
            keep = {c.mac for c in self._clients.values() if c.mac}
            self._ip_to_mac = {ip: m for ip, m in self._ip_to_mac.items() if m in keep}

    @staticmethod
    def _add_ip(c: _Client, ip: str) -> None:
        ips = c.ips
        if ips and ips[-1] == ip:
            return  # already its latest (every DHCP answer says it again)
        if ip and _is_ip(ip):
            if ip in ips:
                ips.remove(ip)
            ips.append(ip)

    def _new_attempt(self, c: _Client) -> None:
        done = _with_idle(c.freeze(c.last_activity), 0.0)  # a copy: safe to trim
        for name in ("earlier", "events", "console"):  # its steps say how it ended
            object.__setattr__(done, name, ())
        c.earlier = [*c.earlier, done][-MAX_EARLIER:]
        c.attempt += 1
        c.steps.clear()
        c.events.clear()
        c.console.clear()
        c.stage = Stage.waiting
        c.arch, c.arch_name, c.vendor_class, c.ipxe = None, "", "", False
        c.kernel_up = False

    def _dhcp(self, ev: DhcpExchange) -> str:
        self._dhcp_requests += 1
        mac = _norm_mac(ev.mac or ev.client)
        if not mac:
            self._host.append(ev)
            return ""
        c = self._client(mac)
        c.mac = mac
        ts = ev.ts
        msg_in, msg_out = ev.msg_in.upper(), ev.msg_out.upper()
        if msg_in == "DISCOVER" and ev.vendor_class.startswith("PXEClient") and (
                c.stage >= Stage.kernel
                or (ev.arch is not None and c.arch is not None and ev.arch != c.arch)):
            self._new_attempt(c)   # a reboot, or the same machine now in the other firmware
        if ev.arch is not None and c.arch is None:
            c.arch, c.arch_name = ev.arch, ev.arch_name
        if ev.vendor_class and not c.vendor_class:
            c.vendor_class = ev.vendor_class
        if ev.user_class.lower().startswith("ipxe"):
            c.ipxe = True
        if ev.yiaddr and msg_out == "ACK":
            self.learn(ev.yiaddr, mac)
        elif ev.yiaddr and msg_out == "OFFER" and ev.yiaddr not in self._ip_to_mac:
            self.learn(ev.yiaddr, mac)
        if ev.service == "proxydhcp" and ev.requested_ip and msg_in in ("REQUEST", "INFORM"):
            # the REQUEST to the other server names the address (option 50), and a 4011
            # request comes from it (ciaddr): either way it is this client's address
            self.learn(ev.requested_ip, mac)
        c = self._clients.get(mac) or self._client(mac)  # learn may have merged into it
        if c.stage >= Stage.initramfs and any(
                s.role is Role.initramfs and s.status is Status.ok for s in c.steps):
            c.kernel_up = True
        c.events.append(ev)
        c.touch(ts)
        if c.stage < Stage.dhcp:
            c.stage = Stage.dhcp
        key = (ev.service, ev.xid)
        steps = c.steps
        step = steps[-1] if steps else None  # a REQUEST follows its DISCOVER's step
        if step is None or step.kind != "dhcp" or step.key != key:
            step = next((s for s in reversed(steps) if s.kind == "dhcp" and s.key == key), None)
        if step is None:
            step = _StepState(kind="dhcp", stage=Stage.dhcp, title="", started=ts,
                              service=ev.service, key=key)
            c.add_step(step)
        step.events.append(ev)
        step.last_activity = ts
        step.ended = ts
        step.stale = True  # title, status and detail: worked out when the step is shown
        return c.key

    def _transfer(self, ev: TransferStarted | TransferProgress | TransferDone | TransferFailed
                  ) -> str | None:
        key = self._key(ev)
        if not key:
            self._host.append(ev)
            return None
        c = self._client(key)
        ts = ev.ts
        if not isinstance(ev, TransferProgress):
            c.events.append(ev)
        c.touch(ts)
        role = classify(ev.path, ev.service)
        if c.kernel_up and role in (Role.kernel, Role.initramfs, Role.other) \
                and not _strong_boot_name(ev.path):
            role = Role.rootfs   # asked by the running kernel: stage 3 (e.g. root.img, x.bin)
        step = None
        if not isinstance(ev, TransferStarted):
            step = self._open_step(c, ev.service, ev.path, ev.peer)
        if step is None:
            stage = _ROLE_STAGE.get(role)
            if stage is None:
                stage = Stage.stage3 if (c.stage >= Stage.initramfs and ev.service != "tftp") \
                    else max(c.stage, Stage.loader)
            step = _StepState(kind="transfer", stage=stage, title=f"{ev.service} {ev.path}",
                              started=ts, service=ev.service, path=ev.path, role=role,
                              peer=ev.peer)
            c.add_step(step)
        step.last_activity = ts
        match ev:
            case TransferStarted():
                step.size = ev.size
                step.events.append(ev)
                if ev.options:
                    step.detail = " ".join(f"{k}={v}" for k, v in ev.options.items())
                self._advance(c, step)
            case TransferProgress():
                step.sent = max(step.sent, ev.sent)
                if ev.size is not None:
                    step.size = ev.size
                step.progress = ev
            case TransferDone():
                step.sent, step.ended, step.status = ev.sent, ts, Status.ok
                step.events.append(ev)
                step.progress = None
                self._advance(c, step)
                if step.stage is Stage.stage3 and role is Role.rootfs and ev.sent > 1:
                    c.reach(Stage.done)
            case TransferFailed():
                step.sent = max(step.sent, ev.sent)
                step.ended = ts
                step.events.append(ev)
                step.progress = None
                step.detail = ev.reason
                if ev.probe:
                    step.status = Status.probe
                elif ev.cause == FailCause.superseded:
                    step.status = Status.ignored   # the client asked again: not a failure
                elif is_normal_miss(ev):
                    step.status = Status.normal_miss
                else:
                    step.status = Status.failed
        return c.key

    @staticmethod
    def _open_step(c: _Client, service: str, path: str, peer: str) -> _StepState | None:
        fallback = None
        for s in reversed(c.steps):
            if s.kind == "transfer" and s.service == service and s.path == path \
                    and s.status is Status.running:
                if not peer or not s.peer or s.peer == peer:
                    return s
                fallback = fallback or s
        return fallback

    @staticmethod
    def _advance(c: _Client, step: _StepState) -> None:
        # A config miss or a size probe proves nothing; a real request moves the client on.
        if step.stage is Stage.stage3 or step.role in (Role.loader, Role.module, Role.kernel,
                                                      Role.initramfs):
            c.reach(step.stage)
        elif step.role is Role.config and (step.status is Status.ok or
                                           not is_config_search_miss(step.path)):
            c.reach(step.stage)
        elif step.role is Role.other and step.status is Status.ok:
            c.reach(step.stage)

    def _session(self, ev: SessionOpened | SessionClosed) -> str | None:
        key = self._key(ev)
        if not key:
            self._host.append(ev)
            return None
        c = self._client(key)
        c.events.append(ev)
        c.touch(ev.ts)
        if isinstance(ev, SessionOpened):
            title = f"{ev.service} {ev.target}".strip()
            c.add_step(_StepState(kind="session", stage=Stage.stage3, title=title,
                                  started=ev.ts, service=ev.service, path=ev.target,
                                  role=Role.rootfs, peer=ev.peer, detail=ev.detail,
                                  last_activity=ev.ts, events=[ev]))
            c.reach(Stage.stage3)
        else:
            for s in reversed(c.steps):
                if s.kind == "session" and s.service == ev.service and s.peer == ev.peer \
                        and s.status is Status.running:
                    s.sent, s.ended, s.status = ev.read, ev.ts, Status.ok
                    s.last_activity = ev.ts
                    if ev.reason:
                        s.detail = f"{s.detail} ({ev.reason})".strip()
                    s.events.append(ev)
                    break
        return c.key


def _dhcp_title(events: list[Event]) -> str:
    """``DHCP DISCOVER -> OFFER x2, REQUEST -> ACK 10.99.0.115 file pxelinux.0``."""
    parts: list[list[Any]] = []
    yiaddr = boot = ""
    service = "dhcp"
    for e in events:
        if not isinstance(e, DhcpExchange):
            continue
        service = e.service
        out = e.msg_out.upper() if e.msg_out != "-" else "no answer"
        p = f"{e.msg_in.upper()} -> {out}"
        if parts and parts[-1][0] == p:
            parts[-1][1] += 1
        else:
            parts.append([p, 1])
        yiaddr = e.yiaddr or yiaddr
        boot = e.boot_file or boot
    chain = ", ".join(p if n == 1 else f"{p} x{n}" for p, n in parts)
    what = "proxyDHCP" if service == "proxydhcp" else "DHCP"
    extras = " ".join(x for x in (yiaddr, boot and f"file {boot}") if x)
    return f"{what} {chain}" + (f" {extras}" if extras else "")


def _is_not_found(ev: TransferFailed) -> bool:
    return ev.cause == FailCause.not_found


def build(events: Iterable[Event], now: float | None = None,
          neighbours: dict[str, str] | None = None) -> Snapshot:
    """All timelines from a list of events (``now`` defaults to the latest event's time)."""
    b = TimelineBuilder()
    evs = list(events)
    for ip, mac in (neighbours or {}).items():
        b.learn(ip, mac)
    b.feed_many(evs)
    if now is None:
        now = max((e.ts for e in evs), default=0.0)
    return b.snapshot(now)


# --- words --------------------------------------------------------------------------------


def format_timeline(tl: Timeline) -> list[str]:
    """The timeline as lines of text (doctor, bug reports); times relative to the first event."""
    t0 = tl.first_seen
    who = " ".join(x for x in (tl.mac or tl.client, tl.ip and f"({tl.ip})") if x)
    fw = tl.summary().firmware
    head = f"{who}{' ' + fw if fw else ''}: {tl.stage.label}, idle {tl.idle:.0f} s"
    if tl.attempt > 1:
        head += f", boot attempt {tl.attempt}"
    lines = [head]
    for e in tl.earlier:  # how each earlier attempt ended, with what failed in it
        failed = [s for s in e.steps if s.status is Status.failed]
        lines.append(f"  boot attempt {e.attempt} (earlier): reached {e.stage.label}"
                     + (f", {len(failed)} failed step(s)" if failed else ""))
        for s in failed:
            lines.append(f"  +{s.started - t0:7.2f}s FAIL  {s.title}"
                         + (f"  ({s.detail})" if s.detail else ""))
    if tl.earlier:
        lines.append(f"  boot attempt {tl.attempt} (latest):")
    for s in tl.steps:
        rel = s.started - t0
        mark = {Status.ok: "ok", Status.running: "..", Status.failed: "FAIL",
                Status.normal_miss: "miss", Status.probe: "probe",
                Status.ignored: "--"}[s.status]
        line = f"  +{rel:7.2f}s {mark:<5} {s.title}"
        if s.kind in ("transfer", "session") and (s.sent or s.size):
            line += f"  {size_text(s.sent)}"
            if s.size and s.status is Status.running:
                line += f"/{size_text(s.size)}"
            if s.rate and s.sent > 65536:
                line += f" at {s.rate / 1e6:.1f} MB/s"
        if s.status in (Status.failed, Status.ignored) and s.detail:
            line += f"  ({s.detail})"
        lines.append(line)
    per = tl.bytes_by_stage()
    if per:
        lines.append("  bytes: " + ", ".join(f"{st.label} {size_text(n)}"
                                              for st, n in sorted(per.items())))
    return [escape_controls(ln) for ln in lines]  # titles and details hold network text
