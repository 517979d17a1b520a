"""The event types: what the servers, the probe and the lab report.

Events are the only output channel of the servers. Each is a frozen,
keyword-only dataclass; ``kind`` is derived from the class name
(``TransferDone`` -> ``transfer_done``) and is what the JSONL log, the
timeline and the diagnosis rules key on. :mod:`.bus` fans them out and logs them.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _kind_of(cls: type) -> str:
    return _CAMEL.sub("_", cls.__name__).lower()


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every event."""

    kind: ClassVar[str] = "event"
    abstract: ClassVar[bool] = False
    """A base of events that is never published itself (``TransferEvent``)."""
    ts: float = field(default_factory=time.time)
    """Wall-clock time of the event (seconds since the epoch)."""
    client: str = ""
    """Client key: its MAC (``aa:bb:cc:dd:ee:ff``) where known, else its IP, else empty."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.kind = _kind_of(cls)
        cls.abstract = bool(cls.__dict__.get("abstract", False))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind}
        for name in _field_names(type(self)):
            v = getattr(self, name)
            if v is None or type(v) in _PLAIN:
                d[name] = v
            elif isinstance(v, (tuple, list)):
                d[name] = [x if type(x) in _PLAIN else str(x) for x in v]
            elif isinstance(v, dict):
                d[name] = {str(k): (x if type(x) in _PLAIN else str(x)) for k, x in v.items()}
            else:
                d[name] = str(v)
        return d


_PLAIN = frozenset({int, float, str, bool, type(None)})


@functools.cache
def _field_set(cls: type) -> frozenset[str]:
    return frozenset(_field_names(cls))


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


# --- service lifecycle and log lines ------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ServiceStarted(Event):
    """A server is listening."""

    service: str
    """Service name: ``dhcp``, ``proxydhcp``, ``tftp``, ``http``, ``nbd``, ``nfs``, ``mountd``, ``portmap``."""
    address: str
    """Address it listens on."""
    port: int
    """Port it listens on."""
    proto: str = "udp"
    """``udp`` or ``tcp``."""


@dataclass(frozen=True, kw_only=True)
class ServiceStopped(Event):
    """A server stopped listening."""

    service: str
    """Service name."""
    reason: str = ""
    """Why, when it was not asked to stop."""


@dataclass(frozen=True, kw_only=True)
class PlanLoaded(Event):
    """What the Plan asks for, logged once at start so a replayed log knows it too (the
    DHCP mode cannot be read back from services that a clean stop removed)."""

    dhcp_mode: str
    """``full``, ``proxy`` or ``none``."""
    server_ip: str = ""
    """Our address."""
    interface: str = ""
    """Interface served on."""
    transport: str = ""
    """Stage-3 transport (http, tftp, nfs, nbd)."""
    menu_timeout: int | None = None
    """Menu timeout in seconds (0 waits forever)."""
    cmdlines: list[str] = field(default_factory=list)
    """Kernel command lines of the generated menu entries and of boot.extra_cmdline."""
    stage3_elsewhere: list[str] = field(default_factory=list)
    """Stage-3 locations on those command lines (URLs, nfsroot=) on a host other than this
    server (and boot.external_http)."""
    bin_kernels: list[str] = field(default_factory=list)
    """``config:kernel`` for each ``KERNEL x.bin`` line of a served pxelinux config (pxelinux
    boots those as boot sectors); empty with the generated menus, which use ``LINUX``."""


@dataclass(frozen=True, kw_only=True)
class LogLine(Event):
    """A free-form line for the operator, with a level."""

    service: str
    """Which part of pxewizard says it."""
    level: str
    """``debug``, ``info``, ``warning`` or ``error``."""
    message: str
    """The line, in words."""


@dataclass(frozen=True, kw_only=True)
class PacketDropped(Event):
    """A malformed or unwanted packet was logged and dropped."""

    service: str
    """Service that received it."""
    peer: str
    """``ip:port`` of the sender."""
    reason: str
    """Why it was dropped, in words."""
    size: int = 0
    """Its length in bytes."""


@dataclass(frozen=True, kw_only=True)
class EventsSuppressed(Event):
    """Refusal/drop events of one kind past the rate limit, counted instead of logged."""

    service: str
    """Service whose events were held back."""
    of_kind: str
    """Kind of the events held back (``packet_dropped``, ``transfer_failed`` ...)."""
    count: int
    """How many were held back."""
    seconds: float
    """Over how long."""
    latest: str = ""
    """The last one held back, in words (its reason)."""


# --- DHCP --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DhcpExchange(Event):
    """One DHCP request and what we did with it (answered or not)."""

    service: str
    """``dhcp`` (port 67) or ``proxydhcp`` (port 4011)."""
    mac: str
    """Client hardware address."""
    xid: int
    """Transaction id."""
    msg_in: str
    """Message type received: DISCOVER, REQUEST, INFORM, RELEASE, DECLINE."""
    msg_out: str
    """Message type sent (OFFER, ACK, NAK) or ``-`` when we stayed silent."""
    arch: int | None = None
    """Option 93 client architecture, if sent."""
    arch_name: str = ""
    """Option 93 in words (``BIOS``, ``EFI x64`` ...)."""
    vendor_class: str = ""
    """Option 60."""
    user_class: str = ""
    """Option 77 (``iPXE`` for iPXE)."""
    requested_ip: str = ""
    """Option 50 or ciaddr."""
    yiaddr: str = ""
    """Address offered or acknowledged."""
    boot_file: str = ""
    """Boot file (option 67 / file field) given."""
    next_server: str = ""
    """siaddr / option 66 given."""
    relay: str = ""
    """giaddr when the request came through a relay agent."""
    secs: int = 0
    """The request's ``secs`` field: seconds since the client began this DHCP (a first
    DISCOVER with secs well above 0 means earlier ones did not get through)."""
    reason: str = ""
    """Why this answer (or silence), in words."""
    cause: str = ""
    """Why we stayed silent, as a key for rules: ``not_allowed`` (outside dhcp.allowed_macs),
    ``not_pxe`` (proxy mode, an ordinary DHCP client)."""


@dataclass(frozen=True, kw_only=True)
class BpduSeen(Event):
    """A spanning-tree BPDU (802.1D or RSTP) reached our interface: some bridge or switch
    port on the segment runs STP, and a port that comes up waits before it forwards."""

    interface: str
    """Interface it arrived on."""
    bridge_id: str
    """Sender's bridge id (``8000.52:54:00:aa:bb:cc``)."""
    root_id: str = ""
    """Root bridge id."""
    protocol: str = "stp"
    """``stp`` (802.1D) or ``rstp`` (802.1w)."""
    forward_delay: float = 0.0
    """Forward delay in seconds, as the root announces it."""
    hello: float = 0.0
    """Hello time in seconds."""


@dataclass(frozen=True, kw_only=True)
class LeaseChanged(Event):
    """A lease was bound, renewed, released, declined or expired."""

    mac: str
    """Client hardware address."""
    ip: str
    """The address."""
    state: str
    """``bound``, ``released``, ``declined``, ``expired`` (``offered`` in older logs: an
    offer is now said by the OFFER's :class:`DhcpExchange` alone; ``released`` also when a
    client took another server's offer and ours was dropped)."""
    expires: float = 0.0
    """Expiry time (epoch seconds)."""
    hostname: str = ""
    """Option 12 from the client."""


@dataclass(frozen=True, kw_only=True)
class DhcpServerSeen(Event):
    """The probe saw a DHCP server answer on the wire."""

    server_id: str
    """Option 54."""
    server_mac: str
    """Source MAC of the answer."""
    offered_ip: str = ""
    """yiaddr of the offer (empty for a proxyDHCP offer)."""
    router: str = ""
    """Option 3."""
    dns: str = ""
    """Option 6, comma-separated."""
    next_server: str = ""
    """siaddr."""
    boot_file: str = ""
    """File field or option 67."""
    proxy: bool = False
    """True when the offer carries no address (proxyDHCP)."""


# --- IPv6 Router Advertisements -----------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RouterAdvertSent(Event):
    """We sent an ICMPv6 Router Advertisement (lifetime 0, no prefixes, M=O=0) that ends a
    client's wait for an IPv6 router, or (``solicit``) our start-up Router Solicitation."""

    dest: str
    """IPv6 destination: the soliciting client's address, ff02::1 or (solicit) ff02::2."""
    reason: str
    """Why it was sent, in words."""
    solicit: bool = False
    """True for our own Router Solicitation at start (looking for a router that exists)."""


@dataclass(frozen=True, kw_only=True)
class ForeignRouterSeen(Event):
    """A Router Advertisement from another router: IPv6 has an owner here, we send no RA."""

    router: str
    """Its IPv6 (link-local) address."""
    router_mac: str = ""
    """Its Source Link-Layer Address option."""
    lifetime: int = 0
    """Its router lifetime in seconds (0: not a default router)."""
    managed: bool = False
    """M flag (addresses from DHCPv6)."""
    other: bool = False
    """O flag (other configuration from DHCPv6)."""
    prefixes: tuple[str, ...] = ()
    """Prefixes it advertises."""
    silenced: bool = False
    """True when this RA made us fall silent (the first one seen)."""


# --- file transfers (TFTP, HTTP, NBD, NFS) ------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TransferEvent(Event):
    """What every transfer event names: the service, the path and the client's address."""

    abstract: ClassVar[bool] = True
    service: str
    """``tftp``, ``http``, ``nbd`` or ``nfs``."""
    path: str
    """Path as the client asked for it."""
    peer: str = ""
    """``ip:port`` of the client."""


@dataclass(frozen=True, kw_only=True)
class TransferStarted(TransferEvent):
    """A client started reading a file (or an export)."""

    size: int | None = None
    """Size in bytes, when known."""
    options: dict[str, str] = field(default_factory=dict)
    """Negotiated options (TFTP blksize/tsize/windowsize, HTTP Range ...)."""


@dataclass(frozen=True, kw_only=True)
class TransferProgress(TransferEvent):
    """Bytes sent so far on a running transfer (rate-limited, a few per second)."""

    sent: int
    """Bytes sent so far."""
    size: int | None = None
    """Total size, when known."""


@dataclass(frozen=True, kw_only=True)
class TransferDone(TransferEvent):
    """A transfer completed."""

    sent: int
    """Bytes sent."""
    seconds: float
    """Duration."""
    status: int = 0
    """HTTP status (0 for other services)."""


class FailCause(StrEnum):
    """Why a transfer failed, set by the server that saw it; the diagnosis rules match on this,
    the ``reason`` says it in words for the operator."""

    unknown = ""
    """Not said (logs written before causes existed)."""
    not_found = "not_found"
    """The file or export does not exist."""
    permission = "permission"
    """The file exists but may not be read (not readable by others, permission denied)."""
    refused = "refused"
    """The request itself was refused (path out of the tree, writes off, unsupported mode)."""
    timeout = "timeout"
    """The client stopped answering and the retries ran out."""
    client_aborted = "client_aborted"
    """The client ended the transfer (TFTP ERROR, cancelled request)."""
    client_gone = "client_gone"
    """The client's connection or port went away mid-transfer."""
    server_error = "server_error"
    """Our side could not read or write (I/O error, no socket, disk full)."""
    stopped = "stopped"
    """The server was stopped while the transfer ran."""
    superseded = "superseded"
    """The client asked for the same file again from a new port; this older transfer was
    abandoned by it and is retired (not a failure of the boot)."""


@dataclass(frozen=True, kw_only=True)
class TransferFailed(TransferEvent):
    """A request was refused or a transfer broke off."""

    reason: str
    """What happened, in words (``file not found``, ``timed out after 5 retries`` ...)."""
    cause: FailCause = FailCause.unknown
    """What happened, for the rules (:class:`FailCause`)."""
    code: int = 0
    """Protocol error code (TFTP error code, HTTP status, NBD/NFS error)."""
    sent: int = 0
    """Bytes sent before it stopped."""
    probe: bool = False
    """True when this is a normal probe, not a failure (EDK2's tsize query aborted with ERROR 8)."""


# --- sessions (NBD connections, NFS mounts) -----------------------------------------


@dataclass(frozen=True, kw_only=True)
class SessionOpened(Event):
    """A client connected or mounted (NBD export, NFS mount)."""

    service: str
    """``nbd``, ``nfs`` or ``mountd``."""
    peer: str
    """``ip:port`` of the client."""
    target: str = ""
    """Export name or path."""
    detail: str = ""
    """Handshake style, flags, auth ..."""


@dataclass(frozen=True, kw_only=True)
class SessionClosed(Event):
    """A client disconnected or unmounted."""

    service: str
    """Service name."""
    peer: str
    """``ip:port`` of the client."""
    target: str = ""
    """Export name or path."""
    read: int = 0
    """Bytes read during the session."""
    reason: str = ""
    """Why it closed."""


@dataclass(frozen=True, kw_only=True)
class NfsActivity(Event):
    """Bytes one NFS client has read and written since the server started (totals; published
    at most every couple of seconds per client, while they change). ``client`` is its IP."""

    service: str = "nfs"
    """Service name."""
    read: int = 0
    """Bytes of file data READ by this client so far."""
    written: int = 0
    """Bytes of file data WRITTEN by this client so far."""


@dataclass(frozen=True, kw_only=True)
class RpcVersionRefused(Event):
    """An RPC call for a program version we do not serve got PROG_MISMATCH (an NFSv4 client
    on port 2049, MOUNT v1); rate-limited per client, program and version."""

    service: str
    """``nfs``, ``mountd`` or ``portmap``."""
    peer: str
    """``ip:port`` of the caller."""
    program: int
    """RPC program number (100003 = NFS, 100005 = MOUNT)."""
    version: int
    """Version asked for."""
    low: int
    """Lowest version served."""
    high: int
    """Highest version served."""


@dataclass(frozen=True, kw_only=True)
class BlksizeGranted(Event):
    """TFTP: a client's blocks of the size it asked did not get through (path MTU), so its
    next requests get a block size that fits."""

    service: str = "tftp"
    """Always ``tftp``."""
    peer: str = ""
    """``ip:port`` of the transfer that showed it."""
    path: str
    """The file whose transfer showed it."""
    asked: int
    """Block size the client negotiated."""
    granted: int
    """Block size it now gets."""
    packet: int
    """Size in bytes of the packets that did not get through (blksize + 32): the path MTU
    is below it."""
    path_mtu: int = 0
    """The route's path MTU when the kernel knows it (ICMP 'fragmentation needed'), else 0."""


# --- virtual client (lab) ----------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ConsoleLine(Event):
    """One line of a lab VM's serial console."""

    vm: str
    """Name of the VM."""
    line: str
    """The text, without its line ending."""


def event_types() -> dict[str, type[Event]]:
    """Every event class by its kind (for decoding JSONL back into events)."""
    seen: dict[str, type[Event]] = {}
    stack: list[type[Event]] = [Event]
    while stack:
        cls = stack.pop()
        if not cls.abstract:
            seen[cls.kind] = cls
        stack.extend(cls.__subclasses__())
    return seen


def _fast_init(cls: type[Event]) -> None:
    """Replace the dataclass ``__init__`` of ``cls`` by one that fills the instance's
    ``__dict__`` directly: what a frozen dataclass's own does through
    ``object.__setattr__``, field by field (2.8 us a DhcpExchange against 1.0 us; ``serve``
    builds four events per DHCP DORA, issue 22). Same signature, defaults and factories;
    the instance stays frozen (its ``__setattr__`` still refuses)."""
    params, body = [], ["    _d = self.__dict__"]
    env: dict[str, Any] = {"_NOTHING": _NOTHING}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            env[f"_dflt_{f.name}"] = f.default
            params.append(f"{f.name}=_dflt_{f.name}")
            body.append(f"    _d[{f.name!r}] = {f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            env[f"_fact_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_NOTHING")
            body.append(f"    _d[{f.name!r}] = _fact_{f.name}() if {f.name} is _NOTHING "
                        f"else {f.name}")
        else:
            params.append(f.name)
            body.append(f"    _d[{f.name!r}] = {f.name}")
    src = "def __init__(self, *, " + ", ".join(params) + ") -> None:\n" + "\n".join(body)
    exec(src, env)  # noqa: S102 - source built above from the class's own field names
    init = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init  # type: ignore[misc]


_NOTHING = object()


def _speed_up_inits() -> None:
    stack: list[type[Event]] = [Event]
    while stack:
        cls = stack.pop()
        if "__init__" in cls.__dict__ and not hasattr(cls, "__post_init__"):
            _fast_init(cls)
        stack.extend(cls.__subclasses__())


_speed_up_inits()


_KINDS: dict[str, type[Event]] = {}


def event_class(kind: str) -> type[Event] | None:
    """The class of an event kind (None: no such kind). A kind not seen yet looks at the
    classes defined by now."""
    cls = _KINDS.get(kind)
    if cls is None:
        _KINDS.update(event_types())
        cls = _KINDS.get(kind)
    return cls


def from_dict(d: dict[str, Any]) -> Event:
    """Rebuild an event from its JSONL form (unknown fields are ignored)."""
    cls = event_class(d.get("kind", "")) or Event
    names = _field_set(cls)
    return cls(**{k: v for k, v in d.items() if k in names})
