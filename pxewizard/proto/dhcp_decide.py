"""What to answer to a DHCP request: a pure function of (request, policy, leases, now).

``decide()`` reads a lease table through :class:`LeaseView` and never changes
it: the lease changes it wants (hold an offer, bind, release, decline) come back
as :class:`LeaseOp` values in the :class:`Decision`, which the server applies
and persists before it sends the reply. Nothing here reads a clock or a socket,
so every rule is tested with plain packets.

Leases are keyed by the hardware address (chaddr), not by option 61: a PXE ROM,
the boot loader's own DHCP and the booted system send different client ids (or
none) for one machine, and that machine must keep one address across them.

Rules (RFC 2131 §4.3 unless noted)
----------------------------------
full mode, port 67
  DISCOVER  -> OFFER of: the MAC's reservation, else its previous address, else
               the address it asks for (option 50) when free, else the next free
               one; the offer is held ``offer_hold`` seconds so two DISCOVERs in
               flight never get the same address. Pool exhausted -> silence + reason.
  REQUEST   -> server id of another server: silence (and drop our held offer);
               INIT-REBOOT / RENEWING from a MAC we have no record of (no lease, no
               reservation): silence (§4.3.2 "MUST remain silent"; dnsmasq without
               --dhcp-authoritative does the same), so nobody binds addresses
               without a DISCOVER; address ours to give to this MAC: ACK + bind;
               else NAK (§4.3.2).
  DECLINE   -> the address is held as unusable for ``decline_hold`` seconds.
  RELEASE   -> the binding is released (the MAC keeps its affinity to it).
  INFORM    -> ACK with options, no address, no lease time (§4.3.5); only for a
               ciaddr inside the subnet it came from (else we would reflect to anyone).
any mode
  giaddr set (relayed, §4.3.1) -> answered only when giaddr is a relay agent the
               Plan lists (``relay_agents``); anyone on the LAN can write a giaddr.
  INFORM    -> ACK with options, no address, no lease time (§4.3.5).
every mode: with ``known_macs`` set, any other MAC -> silence (cause ``not_allowed``).
proxy mode, ports 67 and 4011 (PXE 2.1 §2.2)
  only vendor class PXEClient / HTTPClient; never an address (yiaddr 0).
  67:   DISCOVER -> OFFER with option 43 (discovery control 8) and the boot file;
        REQUEST naming us -> ACK.
  4011: REQUEST / INFORM -> ACK with the boot file, to the sender's address and port.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network
from typing import Any, Protocol

from .dhcp_codec import (BOOTREQUEST, FLAG_BROADCAST, MsgType, Packet, arch_from_vendor_class,
                         arch_name, assemble, encode_option, encode_suboptions, ip_int, ip_str,
                         pack_header)

BROADCAST = 0xFFFFFFFF
SERVER_PORT, CLIENT_PORT, PXE_PORT = 67, 68, 4011


class Mode(StrEnum):
    FULL = "full"
    PROXY = "proxy"


class LeaseState(StrEnum):
    OFFERED = "offered"
    BOUND = "bound"
    RELEASED = "released"
    DECLINED = "declined"
    FREE = "free"
    """Only in a LeaseOp: forget a held offer (the client took another server's)."""


ACTIVE = (LeaseState.OFFERED, LeaseState.BOUND, LeaseState.DECLINED)


@dataclass(slots=True)
class LeaseInfo:
    """One row of the lease table as the decision sees it (read-only by convention: the
    plain slots class is ~3x faster to build than a frozen one, and this is the hot path)."""

    mac: str
    ip: int
    state: LeaseState
    expires: float
    hostname: str = ""
    arch: int | None = None
    """Option 93 this MAC sent last, so its later DHCP without 93 (syslinux.efi) is recognised."""

    def active(self, now: float) -> bool:
        """Holds its address against everyone else right now."""
        return self.state in ACTIVE and self.expires > now


class LeaseView(Protocol):
    """Read-only access to the lease table."""

    def by_mac(self, mac: str) -> LeaseInfo | None: ...

    def by_ip(self, ip: int) -> LeaseInfo | None: ...

    def find_free(self, start: int, end: int, now: float, exclude: Container[int],
                  offers_expiring_before: float | None = None) -> int | None:
        """An address in [start, end] not held by anyone: never used first, then the
        longest-expired; then, when ``offers_expiring_before`` is given, the oldest
        address merely offered (never bound) whose hold ends before that time; None when
        the pool is exhausted."""
        ...


@dataclass(slots=True)
class LeaseOp:
    """A change the decision asks for; the server applies it before replying."""

    state: LeaseState
    mac: str
    ip: int
    expires: float
    hostname: str = ""
    arch: int | None = None


@dataclass(slots=True)
class Destination:
    """Where the reply goes (RFC 2131 §4.1)."""

    ip: int
    port: int
    broadcast: bool = False
    arp_mac: str | None = None
    """Set: unicast to a client without an address yet; put ``arp_mac -> ip`` in the
    neighbour table first (the client cannot answer ARP before it is configured)."""

    def __str__(self) -> str:
        return f"{ip_str(self.ip)}:{self.port}"


# --- the policy ------------------------------------------------------------------------


def _v4(v: object) -> IPv4Address:
    a = ip_address(str(v))
    if not isinstance(a, IPv4Address):
        raise ValueError(f"{v} is not an IPv4 address")
    return a


def _v4opt(v: object | None) -> IPv4Address | None:
    return None if v is None else _v4(v)


@dataclass(frozen=True, kw_only=True)
class Reservation:
    """A fixed address and/or boot file for one MAC."""

    mac: str
    ip: IPv4Address | None = None
    hostname: str | None = None
    boot_file: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mac", self.mac.lower().replace("-", ":"))
        object.__setattr__(self, "ip", _v4opt(self.ip))


@dataclass(frozen=True, kw_only=True)
class Pool:
    """A range of addresses with what clients of that subnet are told."""

    subnet: IPv4Network
    range_start: IPv4Address
    range_end: IPv4Address
    router: IPv4Address | None = None
    dns: tuple[IPv4Address, ...] = ()

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "subnet", ip_network(str(self.subnet), strict=False))
        s(self, "range_start", _v4(self.range_start))
        s(self, "range_end", _v4(self.range_end))
        s(self, "router", _v4opt(self.router))
        s(self, "dns", tuple(_v4(d) for d in self.dns))
        if int(self.range_start) > int(self.range_end):
            raise ValueError(f"pool start {self.range_start} is after its end {self.range_end}")
        # ints for the hot path (ipaddress objects are slow to compare)
        s(self, "start", int(self.range_start))
        s(self, "end", int(self.range_end))
        s(self, "net_lo", int(self.subnet.network_address))
        s(self, "net_hi", int(self.subnet.broadcast_address))

    start: int = field(init=False, repr=False, compare=False, default=0)
    end: int = field(init=False, repr=False, compare=False, default=0)
    net_lo: int = field(init=False, repr=False, compare=False, default=0)
    net_hi: int = field(init=False, repr=False, compare=False, default=0)

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    def in_range(self, ip: int) -> bool:
        return self.start <= ip <= self.end

    def in_subnet(self, ip: int) -> bool:
        """A host address of the subnet (not its network or broadcast address)."""
        return self.net_lo < ip < self.net_hi

    def describe(self) -> str:
        return f"{self.range_start}-{self.range_end}"


@dataclass(frozen=True, kw_only=True)
class BootFiles:
    """Boot file per client architecture (RFC 4578 §2.1); None: not configured."""

    bios: str | None = "pxelinux.0"
    efi_ia32: str | None = None
    efi_x64: str | None = "syslinux.efi"
    efi_arm64: str | None = None
    uefi_http: str | None = None
    """Full http:// URL for UEFI HTTP boot (arch 16, vendor class HTTPClient)."""
    ipxe_script: str | None = None
    """Full http:// URL of the iPXE script handed to iPXE clients."""


ARCH_FIELD: dict[int, str] = {0: "bios", 6: "efi_ia32", 7: "efi_x64", 9: "efi_x64",
                              11: "efi_arm64", 16: "uefi_http"}
"""Option 93 value -> BootFiles field. EDK2 sends 7; some firmware sends 9 for x64."""


@dataclass(frozen=True, kw_only=True)
class Policy:
    """Everything the DHCP decision needs from the Plan (servers never see the Plan)."""

    mode: Mode = Mode.FULL
    server_ip: IPv4Address
    """Our address on the served interface: server id (54), siaddr, option 66."""
    network: IPv4Network
    """The interface's subnet (subnet mask, the main pool's subnet)."""
    range_start: IPv4Address | None = None
    range_end: IPv4Address | None = None
    router: IPv4Address | None = None
    dns: tuple[IPv4Address, ...] = ()
    domain: str | None = None
    lease_time: int = 3600
    reservations: tuple[Reservation, ...] = ()
    relay_pools: tuple[Pool, ...] = ()
    relay_agents: tuple[IPv4Address, ...] = ()
    """giaddr values accepted: relayed requests from any other giaddr are not answered."""
    boot: BootFiles = field(default_factory=BootFiles)
    known_macs: frozenset[str] | None = None
    """Set: the only MACs answered, in every mode (dnsmasq's dhcp-ignore=tag:!known)."""
    offer_hold: float = 30.0
    """Seconds an offered address stays reserved for the client it was offered to."""
    offer_reclaim_after: float = 2.0
    """With the pool exhausted, an offer older than this many seconds that was never
    REQUESTed goes to the next new client (oldest first). A DISCOVER flood from random
    MACs would otherwise hold every address for ``offer_hold`` seconds and starve real
    clients; real ones REQUEST within a second (OVMF, which collects offers for ~4 s,
    is NAKed under such a flood and starts again, instead of getting nothing)."""
    decline_hold: float = 600.0
    """Seconds an address a client DECLINEd stays out of the pool."""
    _pool: Pool | None = field(init=False, repr=False, compare=False, default=None)
    _by_mac: Mapping[str, Reservation] = field(init=False, repr=False, compare=False,
                                               default_factory=dict)
    _excluded: frozenset[int] = field(init=False, repr=False, compare=False,
                                      default=frozenset())
    _static: dict[object, Any] = field(init=False, repr=False, compare=False,
                                          default_factory=dict)
    """Options encoded once: server id, lease times, TFTP server, each pool's network."""

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "mode", Mode(self.mode))
        s(self, "server_ip", _v4(self.server_ip))
        s(self, "network", ip_network(str(self.network), strict=False))
        s(self, "range_start", _v4opt(self.range_start))
        s(self, "range_end", _v4opt(self.range_end))
        s(self, "router", _v4opt(self.router))
        s(self, "dns", tuple(_v4(d) for d in self.dns))
        s(self, "reservations", tuple(self.reservations))
        s(self, "relay_pools", tuple(self.relay_pools))
        s(self, "relay_agents", tuple(_v4(a) for a in self.relay_agents))
        if self.range_start is not None and self.range_end is not None:
            s(self, "_pool", Pool(subnet=self.network, range_start=self.range_start,
                                  range_end=self.range_end, router=self.router, dns=self.dns))
        elif self.mode is Mode.FULL and not self.relay_pools:
            raise ValueError("full DHCP needs range_start and range_end (or relay pools)")
        s(self, "_by_mac", {r.mac: r for r in self.reservations})
        excluded = {int(self.server_ip)} | {int(r.ip) for r in self.reservations if r.ip}
        excluded |= {int(p.router) for p in self.pools if p.router is not None}
        s(self, "_excluded", frozenset(excluded))
        t = self.lease_time
        static: dict[object, Any] = {
            "sid": encode_option(54, self.server_ip.packed),
            "lease": encode_option(51, t.to_bytes(4, "big"))
            + encode_option(58, (t // 2).to_bytes(4, "big"))
            + encode_option(59, (t * 7 // 8).to_bytes(4, "big")),
            "tftp": encode_option(66, str(self.server_ip).encode()),
            "siaddr": int(self.server_ip), "ns": str(self.server_ip)}
        for p in self.pools:
            static[id(p)] = _pool_options(p, self.domain)
        static["pools"] = self.pools
        static["relays"] = frozenset(int(a) for a in self.relay_agents)
        s(self, "_static", static)

    @property
    def pools(self) -> tuple[Pool, ...]:
        return ((self._pool,) if self._pool else ()) + self.relay_pools

    def reservation(self, mac: str) -> Reservation | None:
        return self._by_mac.get(mac)

    def reserved_for_other(self, ip: int, mac: str) -> str | None:
        """The MAC an address is reserved for, when that is not ``mac``."""
        for r in self.reservations:
            if r.ip is not None and int(r.ip) == ip and r.mac != mac:
                return r.mac
        return None

    def pool_for(self, giaddr: int) -> Pool | None:
        """RFC 2131 §4.3.1: the relay's giaddr picks the subnet; no relay: our own pool."""
        if not giaddr:
            return self._pool
        for p in self._static["pools"]:
            if p.net_lo <= giaddr <= p.net_hi:
                return p
        return None


# --- the decision ------------------------------------------------------------------------


@dataclass(slots=True)
class Decision:
    """A reply (or silence) with the lease changes it needs and the words for the event."""

    msg_in: str
    msg_out: str = "-"
    """OFFER / ACK / NAK or ``-`` for silence."""
    reply: bytes | None = None
    dest: Destination | None = None
    ops: tuple[LeaseOp, ...] = ()
    reason: str = ""
    mac: str = ""
    xid: int = 0
    arch: int | None = None
    vendor_class: str = ""
    boot_file: str = ""
    next_server: str = ""
    yiaddr_int: int = 0
    """The address offered or acknowledged (0: none)."""
    request: Packet | None = None
    """The request, for the words computed on demand below (only events need them)."""
    cause: str = ""
    """Why we stayed silent, as a key rules and rate limits match on (never the words of
    ``reason``): ``not_allowed`` (outside known_macs), ``not_pxe`` (proxy mode, an ordinary
    DHCP client), ``no_boot_file`` (proxy mode, no loader for its architecture),
    ``pool_full`` (every address leased or offered), ``address_held`` (its reserved address
    is held by another MAC), ``no_pool`` (no pool for where it asked from)."""

    @property
    def arch_name(self) -> str:
        return arch_name(self.arch)

    @property
    def yiaddr(self) -> str:
        return ip_str(self.yiaddr_int) if self.yiaddr_int else ""

    @property
    def requested_ip(self) -> str:
        """Option 50, else ciaddr."""
        r = self.request
        if r is None:
            return ""
        rip = r.options.get(50)
        if rip and len(rip) == 4:
            return ip_str(int.from_bytes(rip, "big"))
        return ip_str(r.ciaddr) if r.ciaddr else ""

    @property
    def relay(self) -> str:
        r = self.request
        return ip_str(r.giaddr) if r is not None and r.giaddr else ""

    @property
    def user_class(self) -> str:
        r = self.request
        if r is None or 77 not in r.options:
            return ""
        return ",".join(u.decode("ascii", "replace") for u in r.user_classes)


@dataclass(slots=True)
class _Client:
    """What the request says about the client, decoded once."""

    req: Packet
    mac: str
    mt: int
    arch: int | None
    vc: str
    pxe: bool
    http: bool
    ipxe: bool


def _client(req: Packet) -> _Client:
    vc = req.vendor_class
    arch = req.arch
    if arch is None and vc.startswith(("PXEClient", "HTTPClient")):
        arch = arch_from_vendor_class(vc)
    ucs = req.user_classes if 77 in req.options else []
    return _Client(req=req, mac=req.mac, mt=req.msg_type or 0, arch=arch, vc=vc,
                   pxe=vc.startswith("PXEClient"), http=vc.startswith("HTTPClient"),
                   ipxe=175 in req.options or b"iPXE" in ucs)


def _silent(c: _Client, reason: str, ops: tuple[LeaseOp, ...] = (), *, cause: str = "",
            **kw: object) -> Decision:
    d = _decision(c, "-", None, None, reason, ops, **kw)
    d.cause = cause
    return d


def _decision(c: _Client, out: str, reply: bytes | None, dest: Destination | None, reason: str,
              ops: tuple[LeaseOp, ...] = (), *, yiaddr: int = 0, boot_file: str = "",
              next_server: str = "") -> Decision:
    r = c.req
    return Decision(r.msg_name, out, reply, dest, ops, reason, c.mac, r.xid, c.arch, c.vc,
                    boot_file, next_server, yiaddr, r)


def choose_boot_file(c: _Client, policy: Policy) -> tuple[str | None, str]:
    """The boot file for this client and why (the why goes into the event).

    Order: iPXE gets its script URL (never the iPXE binary again, or it loops);
    then a per-MAC boot file; then option 93 of this request; a PXE ROM without
    option 93: the BIOS file; a request with neither option 60 PXEClient/HTTPClient
    nor option 93 (syslinux.efi's own DHCP, an initramfs's udhcpc): no boot file.
    """
    b = policy.boot
    res = policy.reservation(c.mac)
    ipxe_note = ""
    if c.ipxe:
        if res and res.boot_file and (res.boot_file.endswith(".ipxe")
                                      or res.boot_file.startswith(("http://", "https://"))):
            return res.boot_file, "per-MAC iPXE script (dhcp.reservations)"
        if b.ipxe_script:
            return b.ipxe_script, ("iPXE client (user class iPXE / option 175): its script "
                                   "over HTTP, not the iPXE binary again")
        ipxe_note = "; iPXE client but no iPXE script is configured, it may load iPXE again"
    if res and res.boot_file:
        return res.boot_file, f"per-MAC boot file (dhcp.reservations){ipxe_note}"
    arch, how = c.arch, "option 93"
    if arch is None:
        if not (c.pxe or c.http or c.ipxe):
            # Answer by what this request says, not by what the MAC said before: on one
            # segment the same MAC's later DHCP (syslinux.efi's own, the initramfs's
            # udhcpc) is no PXE ROM and must not be handed a boot loader.
            return None, ("not a PXE client (no option 60 PXEClient, no option 93): an "
                          "address only, no boot file")
        return b.bios, f"no option 93 (PXE ROM without it): the BIOS default{ipxe_note}"
    fname = ARCH_FIELD.get(arch)
    if fname is None:
        return None, (f"{how} = {arch} ({arch_name(arch)}): no boot file for that "
                      "architecture; unknown to the plan (set a per-MAC boot_file)")
    f = getattr(b, fname)
    if f is None:
        return None, (f"{how} = {arch} ({arch_name(arch)}) but dhcp.boot_files.{fname} is "
                      "not set; set it to boot such clients")
    return f, f"{how} = {arch} ({arch_name(arch)}) -> boot_files.{fname}{ipxe_note}"


def _destination(req: Packet, out: MsgType, yiaddr: int) -> Destination:
    """RFC 2131 §4.1 (reply addressing), §4.3.2 (NAK is broadcast)."""
    if req.giaddr:
        return Destination(req.giaddr, SERVER_PORT)
    if out is MsgType.NAK:
        return Destination(BROADCAST, CLIENT_PORT, broadcast=True)
    if req.ciaddr:
        return Destination(req.ciaddr, CLIENT_PORT)
    if req.broadcast or not yiaddr:
        return Destination(BROADCAST, CLIENT_PORT, broadcast=True)
    return Destination(yiaddr, CLIENT_PORT, arp_mac=req.mac)


def _ipb(*ips: IPv4Address) -> bytes:
    return b"".join(i.packed for i in ips)


def _pool_options(pool: Pool, domain: str | None) -> list[bytes]:
    """Encoded options every reply from this pool carries (computed once per policy)."""
    chunks = [encode_option(1, pool.subnet.netmask.packed)]
    if pool.router is not None:
        chunks.append(encode_option(3, pool.router.packed))
    if pool.dns:
        chunks.append(encode_option(6, _ipb(*pool.dns)))
    if domain:
        chunks.append(encode_option(15, domain.encode()))
    chunks.append(encode_option(28, pool.subnet.broadcast_address.packed))
    return chunks


_MSG = {t: encode_option(53, bytes((t,))) for t in MsgType}
_PXE_VENDOR = encode_option(60, b"PXEClient")
_HTTP_VENDOR = encode_option(60, b"HTTPClient")
_DISCOVERY_8 = encode_option(43, encode_suboptions({6: bytes((8,))}))


def _build(c: _Client, policy: Policy, out: MsgType, *, yiaddr: int = 0, pool: Pool | None,
           boot_file: str | None, lease: bool = True, pxe_reply: bool = False,
           hostname: str | None = None, message: str = "") -> bytes:
    """The reply datagram, options in importance order (the encoder drops from the end).

    Hot path: options that depend only on the policy are encoded once
    (``Policy._static``); only the per-client ones are encoded here.
    """
    req = c.req
    opts = req.options
    st = policy._static
    chunks = [_MSG[out], st["sid"]]
    if out is MsgType.NAK:
        if message:
            chunks.append(encode_option(56, message.encode()[:255]))
        if 82 in opts:
            chunks.append(encode_option(82, opts[82]))
        flags = req.flags | (FLAG_BROADCAST if req.giaddr else 0)  # §4.3.2
        head = pack_header(2, req.htype, req.hlen, 0, req.xid, 0, flags, 0, 0, 0, req.giaddr,
                           req.chaddr)
        return assemble(head, chunks, req.max_size)
    if lease and yiaddr:
        chunks.append(st["lease"])  # 51, 58 (T1 = 0.5), 59 (T2 = 0.875), §4.4.5
    if pool is not None:
        chunks.extend(st[id(pool)])
        if hostname:
            chunks.append(encode_option(12, hostname.encode()))
    bf = boot_file.encode() if boot_file else b""
    if bf:
        chunks.append(st["tftp"])
        chunks.append(encode_option(67, bf))
    if c.http:
        chunks.append(_HTTP_VENDOR)
    elif c.pxe:
        # PXE 2.1 §2.2: a reply carrying "PXEClient" must carry option 43 too, or the ROM
        # goes looking for a boot server on 4011; discovery control 8 = use this file.
        chunks.append(_PXE_VENDOR)
        item = req.pxe_vendor.get(71) if pxe_reply and 43 in opts else None
        if item is not None:
            # echo the boot item the client asked for (PXE 2.1 §2.2.4)
            chunks.append(encode_option(43, encode_suboptions({6: bytes((8,)), 71: item})))
        else:
            chunks.append(_DISCOVERY_8)
    if 97 in opts and (c.pxe or c.http):
        chunks.append(encode_option(97, opts[97]))  # PXE 2.1: echo the client UUID
    if 82 in opts:
        chunks.append(encode_option(82, opts[82]))  # RFC 3046 §2.2: echo relay agent info
    head = pack_header(2, req.htype, req.hlen, 0, req.xid, 0, req.flags,
                       req.ciaddr if out is MsgType.ACK else 0, yiaddr,
                       st["siaddr"] if bf else 0, req.giaddr, req.chaddr, b"",
                       bf if len(bf) < 128 else b"")
    return assemble(head, chunks, req.max_size)


def decide(req: Packet, policy: Policy, leases: LeaseView, now: float, *,
           port: int = SERVER_PORT, peer: tuple[int, int] | None = None) -> Decision:
    """The answer to one request. ``port`` is where it arrived (67 or 4011); ``peer``
    the sender's (ip, port), used to answer on 4011."""
    if req.op != BOOTREQUEST:
        return Decision(msg_in="BOOTREPLY", mac=req.mac, xid=req.xid,
                        reason="a BOOTREPLY (another server's answer), not a request")
    c = _client(req)
    if not c.mt:
        return _silent(c, "BOOTP request without a DHCP message type: plain BOOTP is not "
                          "served")
    if c.mt not in MsgType._value2member_map_:
        return _silent(c, f"unknown DHCP message type {c.mt}")
    if req.giaddr and req.giaddr not in policy._static["relays"]:
        return _silent(c, f"relayed by {ip_str(req.giaddr)}, which is not a relay agent of "
                          "the plan: not answered (list it in dhcp.relay_agents)")
    if policy.known_macs is not None and c.mac not in policy.known_macs:
        return _silent(c, f"{c.mac} is not in dhcp.allowed_macs (nor a reservation): ignored, "
                          "as another PC of this LAN; add it there to boot it",
                       cause="not_allowed")
    if policy.mode is Mode.PROXY:
        return _proxy(c, policy, leases, port, peer)
    if port != SERVER_PORT:
        return _silent(c, f"full DHCP does not answer on port {port}")
    return _FULL[c.mt](c, policy, leases, now)  # IntEnum keys match plain ints


# --- proxyDHCP ----------------------------------------------------------------------------


def _proxy(c: _Client, policy: Policy, leases: LeaseView, port: int,
           peer: tuple[int, int] | None) -> Decision:
    if not (c.pxe or c.http):
        return _silent(c, f"not a PXE client (vendor class {c.vc or 'none'!r}): "
                          "proxyDHCP leaves it to the real DHCP server", cause="not_pxe")
    mt = c.mt
    sid = c.req.server_id
    if port == SERVER_PORT:
        if mt == MsgType.DISCOVER:
            out = MsgType.OFFER
        elif mt == MsgType.REQUEST and sid == policy._static["siaddr"]:
            out = MsgType.ACK
        else:
            return _silent(c, f"{c.req.msg_name} for the DHCP server"
                              f"{' ' + ip_str(sid) if sid else ''}: proxyDHCP only answers "
                              "DISCOVERs on port 67")
    else:
        if mt not in (MsgType.REQUEST, MsgType.INFORM):
            return _silent(c, f"{c.req.msg_name} on port {port}: only REQUEST/INFORM expected")
        if mt == MsgType.INFORM and not c.req.giaddr and peer is not None and peer[0] \
                and not _on_subnet(policy, peer[0]):
            return _silent(c, f"INFORM from {ip_str(peer[0])}, outside {policy.network}: "
                              "answered only on the subnet")
        out = MsgType.ACK
    f, why = choose_boot_file(c, policy)
    if f is None:
        return _silent(c, why, cause="no_boot_file")
    # proxy: no address and no network options, the real DHCP server gives those
    data = _build(c, policy, out, pool=None, boot_file=f, lease=False,
                  pxe_reply=port != SERVER_PORT)
    if port != SERVER_PORT and peer is not None:
        pip, pport = peer
        dest = (Destination(pip, pport) if pip else
                Destination(BROADCAST, pport or CLIENT_PORT, broadcast=True))
    elif c.req.giaddr:
        dest = Destination(c.req.giaddr, SERVER_PORT)
    elif c.req.ciaddr:
        dest = Destination(c.req.ciaddr, CLIENT_PORT)
    else:
        dest = Destination(BROADCAST, CLIENT_PORT, broadcast=True)
    where = "proxy offer" if out is MsgType.OFFER else f"proxy ACK on port {port}"
    return _decision(c, out.name, data, dest, f"{where}: {why}", boot_file=f,
                     next_server=policy._static["ns"])


# --- full DHCP ----------------------------------------------------------------------------


def _available(ip: int, mac: str, leases: LeaseView, now: float) -> LeaseInfo | None:
    """None when ``ip`` may go to ``mac``; else the lease that holds it."""
    held = leases.by_ip(ip)
    if held is None or held.mac == mac and held.state is not LeaseState.DECLINED \
            or not held.active(now):
        return None
    return held


def _choose(c: _Client, policy: Policy, pool: Pool, leases: LeaseView,
            now: float) -> tuple[int | None, str, str]:
    """(address, why, cause of no address) for a DISCOVER."""
    res = policy.reservation(c.mac)
    if res is not None and res.ip is not None:
        ip = int(res.ip)
        if pool.in_subnet(ip):
            held = _available(ip, c.mac, leases, now)
            if held is None:
                return ip, "address reserved for this MAC", ""
            return None, (f"address {res.ip} is reserved for this MAC but {held.mac} holds "
                          f"it ({held.state})"), "address_held"
    cur = leases.by_mac(c.mac)
    if cur is not None and cur.state is not LeaseState.DECLINED and pool.in_range(cur.ip) \
            and cur.ip not in policy._excluded and _available(cur.ip, c.mac, leases, now) is None:
        return cur.ip, f"same address as before ({cur.state})", ""
    rip = c.req.requested_ip
    if rip and pool.in_range(rip) and rip not in policy._excluded \
            and _available(rip, c.mac, leases, now) is None:
        return rip, "the address the client asked for (option 50)", ""
    ip = leases.find_free(pool.start, pool.end, now, policy._excluded,
                          now + policy.offer_hold - policy.offer_reclaim_after)
    if ip is None:
        return None, (f"pool exhausted: all {pool.size} addresses of {pool.describe()} are "
                      "leased or offered; no offer (enlarge the pool or shorten lease_time)"), \
            "pool_full"
    held = leases.by_ip(ip)
    if held is not None and held.active(now):
        return ip, (f"pool exhausted: the unanswered offer of {ip_str(ip)} to {held.mac} "
                    f"(older than {policy.offer_reclaim_after:g} s) is taken back"), ""
    return ip, "next free address in the pool", ""


def _pool_or_reason(c: _Client, policy: Policy) -> tuple[Pool | None, str]:
    pool = policy.pool_for(c.req.giaddr)
    if pool is None:
        if c.req.giaddr:
            return None, (f"relayed by {ip_str(c.req.giaddr)}: no pool for that subnet "
                          "(add a dhcp.relay_pools entry)")
        return None, "no address pool on this interface (only relay pools are configured)"
    return pool, ""


def _full_discover(c: _Client, policy: Policy, leases: LeaseView, now: float) -> Decision:
    pool, why = _pool_or_reason(c, policy)
    if pool is None:
        return _silent(c, why, cause="no_pool")
    ip, why, cause = _choose(c, policy, pool, leases, now)
    if ip is None:
        return _silent(c, why, cause=cause)
    f, fwhy = choose_boot_file(c, policy)
    res = policy.reservation(c.mac)
    cur = leases.by_mac(c.mac)
    ops: tuple[LeaseOp, ...] = ()
    if not (cur is not None and cur.ip == ip and cur.state is LeaseState.BOUND
            and cur.active(now)):
        ops = (LeaseOp(LeaseState.OFFERED, c.mac, ip, now + policy.offer_hold,
                       c.req.hostname, c.arch if c.arch is not None else (cur and cur.arch)),)
    data = _build(c, policy, MsgType.OFFER, yiaddr=ip, pool=pool, boot_file=f,
                  hostname=res.hostname if res else None)
    return _decision(c, "OFFER", data, _destination(c.req, MsgType.OFFER, ip),
                     f"{why}; boot: {fwhy}", ops, yiaddr=ip, boot_file=f or "",
                     next_server=policy._static["ns"] if f else "")


def _nak(c: _Client, policy: Policy, why: str) -> Decision:
    data = _build(c, policy, MsgType.NAK, pool=None, boot_file=None, message=why)
    return _decision(c, "NAK", data, _destination(c.req, MsgType.NAK, 0), why)


def _full_request(c: _Client, policy: Policy, leases: LeaseView, now: float) -> Decision:
    req = c.req
    sid, rip = req.server_id, req.requested_ip
    me = policy._static["siaddr"]
    cur = leases.by_mac(c.mac)
    if sid is not None and sid != me:
        ops: tuple[LeaseOp, ...] = ()
        if cur is not None and cur.state is LeaseState.OFFERED:
            ops = (LeaseOp(LeaseState.FREE, c.mac, cur.ip, now),)
        return _silent(c, f"the client chose DHCP server {ip_str(sid)}", ops)
    target = rip or req.ciaddr
    if not target:
        return _silent(c, "REQUEST with neither option 50 nor ciaddr")
    phase = ("selecting" if sid is not None else
             "init-reboot" if rip and not req.ciaddr else "renewing")
    res = policy.reservation(c.mac)
    if sid is None and cur is None and (res is None or res.ip is None):
        return _silent(c, f"{phase} REQUEST for {ip_str(target)} from a MAC with no lease "
                          "here: no record of this client, so no answer (RFC 2131 §4.3.2)")
    pool, why = _pool_or_reason(c, policy)
    if pool is None:
        return _silent(c, why)
    if not pool.in_subnet(target):
        return _nak(c, policy, f"{ip_str(target)} is not in subnet {pool.subnet} ({phase})")
    if res is not None and res.ip is not None and int(res.ip) != target \
            and pool.in_subnet(int(res.ip)):
        return _nak(c, policy, f"this MAC has reserved address {res.ip}, not {ip_str(target)}")
    other = policy.reserved_for_other(target, c.mac)
    if other:
        return _nak(c, policy, f"{ip_str(target)} is reserved for {other}")
    held = _available(target, c.mac, leases, now)
    if held is not None:
        return _nak(c, policy, f"{ip_str(target)} is held by {held.mac} ({held.state})")
    mine = res is not None and res.ip is not None and int(res.ip) == target
    if not mine and (not pool.in_range(target) or target in policy._excluded):
        return _nak(c, policy, f"{ip_str(target)} is outside the pool {pool.describe()}")
    f, fwhy = choose_boot_file(c, policy)
    arch = c.arch if c.arch is not None else (cur.arch if cur else None)
    op = LeaseOp(LeaseState.BOUND, c.mac, target, now + policy.lease_time,
                 req.hostname or (cur.hostname if cur else ""), arch)
    data = _build(c, policy, MsgType.ACK, yiaddr=target, pool=pool, boot_file=f,
                  hostname=res.hostname if res else None)
    return _decision(c, "ACK", data, _destination(req, MsgType.ACK, target),
                     f"{phase}: bound for {policy.lease_time} s; boot: {fwhy}", (op,),
                     yiaddr=target, boot_file=f or "",
                     next_server=policy._static["ns"] if f else "")


def _full_decline(c: _Client, policy: Policy, leases: LeaseView, now: float) -> Decision:
    rip = c.req.requested_ip
    cur = leases.by_ip(rip) if rip else None
    if rip is None or cur is None or cur.mac != c.mac:
        return _silent(c, "DECLINE for an address this client does not hold: ignored")
    op = LeaseOp(LeaseState.DECLINED, c.mac, rip, now + policy.decline_hold)
    return _silent(c, f"client says {ip_str(rip)} is already in use (ARP answered); kept out "
                      f"of the pool for {policy.decline_hold:.0f} s", (op,))


def _full_release(c: _Client, policy: Policy, leases: LeaseView, now: float) -> Decision:
    cur = leases.by_ip(c.req.ciaddr) if c.req.ciaddr else None
    if cur is None or cur.mac != c.mac:
        return _silent(c, "RELEASE for an address this client does not hold: ignored")
    op = LeaseOp(LeaseState.RELEASED, c.mac, cur.ip, now, cur.hostname, cur.arch)
    return _silent(c, f"client released {ip_str(cur.ip)}", (op,))


def _on_subnet(policy: Policy, ip: int) -> bool:
    net = policy.network
    return int(net.network_address) < ip < int(net.broadcast_address)


def _full_inform(c: _Client, policy: Policy, leases: LeaseView, now: float) -> Decision:
    pool, why = _pool_or_reason(c, policy)
    if pool is None:
        return _silent(c, why)
    if not c.req.ciaddr:
        return _silent(c, "INFORM without ciaddr: nowhere to answer")
    if not pool.in_subnet(c.req.ciaddr):
        return _silent(c, f"INFORM for {ip_str(c.req.ciaddr)}, outside {pool.subnet}: "
                          "answered only on the subnet (the ACK goes to ciaddr)")
    f, fwhy = choose_boot_file(c, policy)
    data = _build(c, policy, MsgType.ACK, pool=pool, boot_file=f, lease=False)
    return _decision(c, "ACK", data, _destination(c.req, MsgType.ACK, 0),
                     f"INFORM: options only (RFC 2131 §4.3.5); boot: {fwhy}", boot_file=f or "",
                     next_server=policy._static["ns"] if f else "")


def _server_only(c: _Client, policy: Policy, leases: LeaseView, now: float) -> Decision:
    return _silent(c, f"{c.req.msg_name} is a server message; a client sent it: ignored")


_FULL = {
    MsgType.DISCOVER: _full_discover, MsgType.REQUEST: _full_request,
    MsgType.DECLINE: _full_decline, MsgType.RELEASE: _full_release,
    MsgType.INFORM: _full_inform, MsgType.OFFER: _server_only, MsgType.ACK: _server_only,
    MsgType.NAK: _server_only,
}
"""Rules: message type -> handler (full mode)."""

__all__ = ["BootFiles", "Decision", "Destination", "LeaseInfo", "LeaseOp", "LeaseState",
           "LeaseView", "Mode", "Policy", "Pool", "Reservation", "choose_boot_file", "decide",
           "ip_int"]
