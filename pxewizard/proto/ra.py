"""IPv6 Router Advertisements that end a PXE client's wait for a router, sans-I/O.

Why: after its DHCPv4, every iPXE (QEMU's ROMs, ``undionly.kpxe``, ``ipxe.efi``)
also configures IPv6 and waits ~16 s for a router before it looks at its boot
file. One Router Advertisement with router lifetime 0 ("I am not a default
router"), M=O=0 (no DHCPv6) and no Prefix Information ends that wait at once
and configures nothing on the client (RFC 4861 6.2.3, 4.2).

Nothing here opens a socket or reads a clock (aioquic's shape): ICMPv6 messages
(without their IPv6 header, as a raw ICMPv6 socket delivers them), their
source, hop limit and ``now`` go in; datagrams to send, the next timer and
notes (for the event log) come out. The adapter is :mod:`pxewizard.servers.ra`.

Rules:

- We are a guest on the segment's IPv6. At start we solicit (an RS to
  ff02::2) and listen for :data:`LISTEN_FIRST` seconds; a router that exists
  answers within 0.5 s (MAX_RA_DELAY_TIME, RFC 4861 10). With no answer we send
  one unsolicited RA to ff02::1 (that also answers every RS heard meanwhile).
- An RA from any other address, at any time, means a router owns IPv6 here:
  that router's RA ends the clients' wait, so we fall silent for good.
- An RS is answered by unicast to its source (no multicast rate limit then,
  RFC 4861 6.2.6 allows it), or to ff02::1 when its source is ``::``.
- RS and RA with a hop limit other than 255 came through a router and are
  dropped (RFC 4861 6.1.1, 6.1.2), as are malformed ones.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from ipaddress import IPv6Address

ICMP6_RS = 133
ICMP6_RA = 134
OPT_SOURCE_LLADDR = 1
OPT_PREFIX_INFO = 3
ALL_NODES = "ff02::1"
ALL_ROUTERS = "ff02::2"
UNSPECIFIED = "::"

LISTEN_FIRST = 1.0
"""Seconds we listen for a router after our own RS before we send anything (a router
answers an RS within MAX_RA_DELAY_TIME = 0.5 s, RFC 4861 10)."""
PER_CLIENT_GAP = 0.5
"""At most one answer per soliciting address in this many seconds (iPXE sends an RS
every second or more; a flood from one address gets one RA per gap)."""
RATE, BURST = 20.0, 50.0
"""All answers together: a token bucket of 20 RAs a second, burst 50 (a segment of PXE
clients booting at once stays far below; a flood of forged sources is capped)."""
NOTE_EVERY = 60.0
"""A foreign router is reported when first seen, then at most once per this many seconds."""
DROP_NOTE_EVERY = 1.0
"""Dropped packets are reported at most once a second (the count rides along)."""


# --- codec ------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class RouterSolicitation:
    """RFC 4861 4.1."""

    source_lladdr: bytes | None = None
    """The Source Link-Layer Address option (the client's MAC), if sent."""


@dataclass(frozen=True, kw_only=True)
class RouterAdvertisement:
    """RFC 4861 4.2 (the fields a PXE client acts on)."""

    cur_hop_limit: int = 0
    managed: bool = False
    """M: addresses from DHCPv6."""
    other: bool = False
    """O: other configuration from DHCPv6."""
    router_lifetime: int = 0
    """Seconds this router is a default router; 0: not a default router."""
    reachable_time: int = 0
    retrans_timer: int = 0
    prefixes: tuple[str, ...] = ()
    """Prefix Information options, as ``2001:db8::/64``."""
    source_lladdr: bytes | None = None
    """The router's MAC (Source Link-Layer Address option)."""


def _options(data: bytes, start: int) -> list[tuple[int, bytes]]:
    """(type, body) of each option; RFC 4861 4.6: a zero length is invalid."""
    out = []
    i = start
    while i < len(data):
        if len(data) - i < 2:
            raise ValueError(f"truncated option at offset {i}")
        typ, units = data[i], data[i + 1]
        if units == 0:
            raise ValueError(f"option {typ} has length 0")
        end = i + units * 8
        if end > len(data):
            raise ValueError(f"option {typ} runs past the end ({units * 8} bytes at offset {i})")
        out.append((typ, data[i + 2:end]))
        i = end
    return out


def _lladdr(opts: list[tuple[int, bytes]]) -> bytes | None:
    for typ, body in opts:
        if typ == OPT_SOURCE_LLADDR:
            return body[:6]
    return None


def parse(data: bytes, source: str = "") -> RouterSolicitation | RouterAdvertisement:
    """An RS or RA from its ICMPv6 bytes; ValueError for anything else or malformed."""
    if len(data) < 8:
        raise ValueError(f"{len(data)} bytes is too short for an ICMPv6 message")
    typ, code = data[0], data[1]
    if typ not in (ICMP6_RS, ICMP6_RA):
        raise ValueError(f"ICMPv6 type {typ} is neither a Router Solicitation nor an "
                         "Advertisement")
    if code != 0:
        raise ValueError(f"ICMPv6 code {code} (must be 0, RFC 4861 6.1)")
    if typ == ICMP6_RS:
        opts = _options(data, 8)
        lladdr = _lladdr(opts)
        if source == UNSPECIFIED and lladdr is not None:
            raise ValueError("RS from :: carries a source link-layer address (RFC 4861 6.1.1)")
        return RouterSolicitation(source_lladdr=lladdr)
    if len(data) < 16:
        raise ValueError(f"{len(data)} bytes is too short for a Router Advertisement")
    hop, flags, lifetime, reach, retrans = struct.unpack_from("!BBHII", data, 4)
    opts = _options(data, 16)
    prefixes = []
    for t, body in opts:
        if t == OPT_PREFIX_INFO and len(body) >= 30:
            prefixes.append(f"{IPv6Address(body[14:30])}/{body[0]}")
    return RouterAdvertisement(cur_hop_limit=hop, managed=bool(flags & 0x80),
                               other=bool(flags & 0x40), router_lifetime=lifetime,
                               reachable_time=reach, retrans_timer=retrans,
                               prefixes=tuple(prefixes), source_lladdr=_lladdr(opts))


def _lladdr_option(mac: bytes) -> bytes:
    return bytes([OPT_SOURCE_LLADDR, 1]) + mac[:6].ljust(6, b"\0")


def build_ra(mac: bytes) -> bytes:
    """Our RA: hop limit unspecified, M=O=0, router lifetime 0, reachable/retrans
    unspecified, no prefixes; only the Source Link-Layer Address option (RFC 4861 4.2),
    so a client need not resolve us. The checksum (zero here) is the kernel's to fill
    (raw ICMPv6 sockets always compute it, RFC 3542 3.1)."""
    return struct.pack("!BBHBBHII", ICMP6_RA, 0, 0, 0, 0, 0, 0, 0) + _lladdr_option(mac)


def build_rs(mac: bytes) -> bytes:
    """Our RS at start (asking any router there is to show itself), RFC 4861 4.1."""
    return struct.pack("!BBHI", ICMP6_RS, 0, 0, 0) + _lladdr_option(mac)


def mac_text(mac: bytes | None) -> str:
    return ":".join(f"{b:02x}" for b in mac) if mac else ""


# --- the responder --------------------------------------------------------------------

class State(Enum):
    LISTENING = "listening"
    """We solicited and wait for a router to answer before we say anything."""
    ANSWERING = "answering"
    """No router here: we answer every RS."""
    SILENT = "silent"
    """A router owns IPv6 on this segment: we never send again."""


# Rules: (state, input) -> next state; an absent pair is an impossible transition.
TRANSITIONS: dict[tuple[State, str], State] = {
    (State.LISTENING, "quiet"): State.ANSWERING,      # LISTEN_FIRST passed, nobody answered
    (State.LISTENING, "foreign_ra"): State.SILENT,
    (State.ANSWERING, "foreign_ra"): State.SILENT,
    (State.SILENT, "foreign_ra"): State.SILENT,
}


@dataclass(frozen=True, kw_only=True)
class Datagram:
    """An ICMPv6 message to send to ``dest`` on the interface."""

    data: bytes
    dest: str


@dataclass(frozen=True, kw_only=True)
class RaSentNote:
    """We sent an RA (or our start-up RS, ``solicit`` True)."""

    dest: str
    reason: str
    client: str = ""
    """The soliciting client's MAC, when its RS named it."""
    solicit: bool = False


@dataclass(frozen=True, kw_only=True)
class ForeignRouterNote:
    """An RA from another router was heard."""

    router: str
    mac: str
    lifetime: int
    managed: bool
    other: bool
    prefixes: tuple[str, ...]
    first: bool
    """True the first time this router is reported (we fell silent then)."""


@dataclass(frozen=True, kw_only=True)
class DroppedNote:
    peer: str
    reason: str
    size: int
    count: int = 1
    """Drops since the last report (this one included)."""


Note = RaSentNote | ForeignRouterNote | DroppedNote


@dataclass
class Responder:
    """Answers Router Solicitations on one segment until another router shows up."""

    mac: bytes
    """Our interface's MAC (the RA's Source Link-Layer Address option)."""
    own: frozenset[str] = frozenset()
    """Our own IPv6 addresses on the interface (our RA looped back is not foreign)."""
    listen_first: float = LISTEN_FIRST
    state: State = field(default=State.LISTENING, init=False)
    _timer: float | None = field(default=None, init=False, repr=False)
    _out: deque[Datagram] = field(default_factory=deque, init=False, repr=False)
    _notes: deque[Note] = field(default_factory=deque, init=False, repr=False)
    _answered: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    """Destination -> when we last answered it (PER_CLIENT_GAP)."""
    _tokens: float = field(default=BURST, init=False, repr=False)
    _tokens_at: float = field(default=0.0, init=False, repr=False)
    _routers: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    """Foreign router -> when we last reported it (NOTE_EVERY)."""
    _heard: int = field(default=0, init=False, repr=False)
    """RSs heard while listening (answered together by the unsolicited RA)."""
    _drops: int = field(default=0, init=False, repr=False)
    _drop_said: float = field(default=float("-inf"), init=False, repr=False)

    def _go(self, what: str) -> None:
        try:
            self.state = TRANSITIONS[(self.state, what)]
        except KeyError:
            raise AssertionError(f"RA responder: {what} in state {self.state.value}") from None

    # --- inputs ---

    def start(self, now: float) -> None:
        """Solicit any router there is and listen for ``listen_first`` seconds."""
        self._tokens_at = now
        self._out.append(Datagram(data=build_rs(self.mac), dest=ALL_ROUTERS))
        self._notes.append(RaSentNote(dest=ALL_ROUTERS, solicit=True,
                                      reason=f"asking for routers; listening "
                                             f"{self.listen_first:g} s before answering"))
        self._timer = now + self.listen_first

    def get_timer(self) -> float | None:
        return self._timer

    def handle_timer(self, now: float) -> None:
        if self._timer is None or now < self._timer:
            return
        self._timer = None
        if self.state is not State.LISTENING:
            return
        self._go("quiet")
        heard = f"; answers the {self._heard} RS heard meanwhile" if self._heard else ""
        self._send_ra(ALL_NODES, f"no router answered in {self.listen_first:g} s: one "
                                 f"unsolicited RA (lifetime 0, no prefixes){heard}", "", now,
                      limited=False)

    def receive(self, data: bytes, source: str, hop_limit: int | None, now: float) -> None:
        """One ICMPv6 message (RS or RA) received from ``source`` with ``hop_limit``."""
        src = source.split("%", 1)[0]
        if src in self.own:
            return  # our own RA or RS, looped back
        try:
            msg = parse(data, src)
        except ValueError as exc:
            self._drop(src, str(exc), len(data), now)
            return
        if hop_limit is not None and hop_limit != 255:
            self._drop(src, f"hop limit {hop_limit}, not 255: it came through a router "
                            "(RFC 4861 6.1)", len(data), now)
            return
        if isinstance(msg, RouterAdvertisement):
            self._foreign(src, msg, now)
        else:
            self._solicited(src, msg, now)

    # --- outputs ---

    def datagrams_to_send(self) -> list[Datagram]:
        out = list(self._out)
        self._out.clear()
        return out

    def next_note(self) -> Note | None:
        return self._notes.popleft() if self._notes else None

    # --- rules ---

    def _foreign(self, src: str, ra: RouterAdvertisement, now: float) -> None:
        first = self.state is not State.SILENT
        self._go("foreign_ra")
        self._timer = None
        last = self._routers.get(src)
        if not first and last is not None and now - last < NOTE_EVERY:
            return
        if len(self._routers) > 256:
            self._routers.clear()
        self._routers[src] = now
        self._notes.append(ForeignRouterNote(
            router=src, mac=mac_text(ra.source_lladdr), lifetime=ra.router_lifetime,
            managed=ra.managed, other=ra.other, prefixes=ra.prefixes, first=first))

    def _solicited(self, src: str, rs: RouterSolicitation, now: float) -> None:
        if self.state is State.LISTENING:
            self._heard += 1
            return
        if self.state is State.SILENT:
            return  # the router that is there answers it
        dest = ALL_NODES if src == UNSPECIFIED else src
        last = self._answered.get(dest)
        if last is not None and now - last < PER_CLIENT_GAP:
            return  # answered it a moment ago; that RA is on the wire
        self._send_ra(dest, "Router Solicitation: RA with lifetime 0, no prefixes, M=O=0",
                      mac_text(rs.source_lladdr), now)

    def _send_ra(self, dest: str, reason: str, client: str, now: float, *,
                 limited: bool = True) -> None:
        if limited:
            self._tokens = min(BURST, self._tokens + (now - self._tokens_at) * RATE)
            self._tokens_at = now
            if self._tokens < 1.0:
                self._drop(dest, f"rate limit: more than {RATE:g} Router Solicitations a "
                                 "second; this one is not answered", 0, now)
                return
            self._tokens -= 1.0
        if len(self._answered) > 4096:
            self._answered.clear()
        self._answered[dest] = now
        self._out.append(Datagram(data=build_ra(self.mac), dest=dest))
        self._notes.append(RaSentNote(dest=dest, reason=reason, client=client))

    def _drop(self, peer: str, reason: str, size: int, now: float) -> None:
        self._drops += 1
        if now - self._drop_said < DROP_NOTE_EVERY:
            return
        self._drop_said = now
        self._notes.append(DroppedNote(peer=peer, reason=reason, size=size, count=self._drops))
        self._drops = 0


__all__ = ["ALL_NODES", "ALL_ROUTERS", "Datagram", "DroppedNote", "ForeignRouterNote",
           "RaSentNote", "Responder", "RouterAdvertisement", "RouterSolicitation", "State",
           "build_ra", "build_rs", "parse"]
