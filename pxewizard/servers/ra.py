"""The Router Advertisement adapter: a raw ICMPv6 socket on the Plan's interface.

Every decision is in :mod:`pxewizard.proto.ra`; this module owns the socket,
the clock and the one timer. The socket is bound to the interface
(SO_BINDTODEVICE) and to its link-local address (RAs come from a link-local
source, RFC 4861 4.2), sends with hop limit 255, joins ff02::2 (all-routers,
where clients send their Router Solicitations) and lets only RS and RA in
(ICMP6_FILTER). It starts in the background: an interface that just came up
holds its link-local address "tentative" for about a second (duplicate address
detection), and serving IPv4 need not wait for that.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from pathlib import Path

from ..errors import NeedsRoot, PxeError
from ..events import (EventBus, ForeignRouterSeen, LogLine, PacketDropped, RouterAdvertSent,
                      ServiceStarted, ServiceStopped)
from ..proto.ra import (ALL_ROUTERS, ICMP6_RA, ICMP6_RS, DroppedNote, ForeignRouterNote,
                        RaSentNote, Responder)
from .base import bind_device

ICMP6_FILTER = 1
"""<netinet/icmp6.h>; Python's socket module lacks it."""
IFA_F_DADFAILED, IFA_F_TENTATIVE = 0x08, 0x40
LINK_LOCAL_WAIT = 10.0
"""Seconds to wait for a usable (non-tentative) link-local address at start."""


def link_local(interface: str, ifindex: int) -> tuple[str | None, bool]:
    """(the interface's link-local address or None, whether it is still tentative),
    from /proc/net/if_inet6 (no netlink needed)."""
    try:
        text = Path("/proc/net/if_inet6").read_text()
    except OSError:
        return None, False
    found: tuple[str | None, bool] = (None, False)
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 6 or int(parts[1], 16) != ifindex or int(parts[3], 16) != 0x20:
            continue
        flags = int(parts[4], 16)
        if flags & IFA_F_DADFAILED:
            continue
        addr = socket.inet_ntop(socket.AF_INET6, bytes.fromhex(parts[0]))
        if not flags & IFA_F_TENTATIVE:
            return addr, False
        found = (addr, True)
    return found


def interface_mac(interface: str) -> bytes:
    try:
        text = Path(f"/sys/class/net/{interface}/address").read_text().strip()
        return bytes.fromhex(text.replace(":", ""))[:6]
    except (OSError, ValueError):
        return b"\0" * 6


def _icmp6_filter(*allowed: int) -> bytes:
    """struct icmp6_filter: a set bit blocks that type (Linux's convention)."""
    words = [0xFFFFFFFF] * 8
    for t in allowed:
        words[t >> 5] &= ~(1 << (t & 31))
    return struct.pack("=8I", *words)


def open_socket(interface: str, ifindex: int) -> socket.socket:
    """The raw ICMPv6 socket (root or CAP_NET_RAW), or a PxeError that says why not."""
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    except PermissionError:
        raise NeedsRoot("cannot open a raw ICMPv6 socket for Router Advertisements: "
                        "permission denied",
                        "run pxewizard as root, or set dhcp.ipv6_ra = \"off\"") from None
    except OSError as exc:  # EAFNOSUPPORT: IPv6 is not built into this kernel
        raise PxeError(f"cannot open a raw ICMPv6 socket: {exc.strerror}",
                       "set dhcp.ipv6_ra = \"off\" (this machine has no IPv6)") from None
    try:
        bind_device(sock, interface)
        v6 = socket.IPPROTO_IPV6
        sock.setsockopt(v6, socket.IPV6_MULTICAST_HOPS, 255)
        sock.setsockopt(v6, socket.IPV6_UNICAST_HOPS, 255)
        sock.setsockopt(v6, socket.IPV6_MULTICAST_IF, ifindex)
        sock.setsockopt(v6, socket.IPV6_MULTICAST_LOOP, 0)
        sock.setsockopt(v6, socket.IPV6_RECVHOPLIMIT, 1)
        sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, _icmp6_filter(ICMP6_RS, ICMP6_RA))
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class RaService:
    """Router Advertisements on one interface (see :mod:`pxewizard.proto.ra`)."""

    name = "ra"

    def __init__(self, *, bus: EventBus, interface: str, sock: socket.socket,
                 ifindex: int, mac: bytes, listen_first: float | None = None) -> None:
        self.bus = bus
        self.interface = interface
        self.sock = sock
        self.ifindex = ifindex
        self.mac = mac
        self._listen_first = listen_first
        self.core: Responder | None = None
        self.stats = {"received": 0, "sent": 0}
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._task = asyncio.create_task(self._begin())

    async def _begin(self) -> None:
        """Wait for a usable link-local address, bind it, join ff02::2, solicit, listen.

        A bridge without ports (``pxewizard lab`` adds its VM's tap later) has no carrier
        and so no link-local address yet: after LINK_LOCAL_WAIT we say so once and keep
        looking, so the RAs start when the first port comes up."""
        deadline = time.monotonic() + LINK_LOCAL_WAIT
        said = False
        while True:
            addr, tentative = link_local(self.interface, self.ifindex)
            if addr is not None and not tentative:
                break
            if not said and time.monotonic() > deadline:
                said = True
                why = ("its link-local address is still tentative (duplicate address "
                       "detection)" if addr else "it has no IPv6 link-local address (no "
                       "carrier yet, or IPv6 disabled)")
                self.bus.publish(LogLine(
                    service="ra", level="warning",
                    message=f"no Router Advertisements on {self.interface} yet: {why}; they "
                            "start when it has one. Until then iPXE clients wait ~16 s for "
                            "an IPv6 router. Fix: bring a port up, or `sysctl "
                            f"net.ipv6.conf.{self.interface}.disable_ipv6=0`; or set "
                            "dhcp.ipv6_ra = \"off\" to silence this"))
            await asyncio.sleep(0.1 if not said else 1.0)
        try:
            self.sock.bind((addr, 0, 0, self.ifindex))
            mreq = socket.inet_pton(socket.AF_INET6, ALL_ROUTERS) + struct.pack("@I",
                                                                             self.ifindex)
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
        except OSError as exc:
            self.bus.publish(LogLine(service="ra", level="warning",
                                     message=f"no Router Advertisements on {self.interface}: "
                                             f"cannot use {addr}: {exc.strerror}"))
            return
        kw = {"listen_first": self._listen_first} if self._listen_first is not None else {}
        self.core = Responder(mac=self.mac, own=frozenset({addr}), **kw)
        self._loop.add_reader(self.sock.fileno(), self._readable)
        self.bus.publish(ServiceStarted(service="ra", address=f"{addr}%{self.interface}",
                                        port=0, proto="icmpv6"))
        self.core.start(time.time())
        self._transmit()

    # --- the one flush-and-re-arm path ---

    def _readable(self) -> None:
        core = self.core
        assert core is not None
        for _ in range(64):
            try:
                data, anc, _flags, peer = self.sock.recvmsg(1500, socket.CMSG_SPACE(4))
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            self.stats["received"] += 1
            hop = None
            for level, typ, cdata in anc:
                if level == socket.IPPROTO_IPV6 and typ == socket.IPV6_HOPLIMIT and len(cdata) >= 4:
                    hop = struct.unpack("@i", cdata[:4])[0]
            try:
                core.receive(data, peer[0], hop, time.time())
            except Exception as exc:  # the server never dies of a packet
                self.bus.publish(PacketDropped(service="ra", peer=str(peer[0]), size=len(data),
                                               reason=f"internal error on this packet: "
                                                      f"{type(exc).__name__}: {exc}"))
        self._transmit()

    def _on_timer(self) -> None:
        self._timer = None
        if self.core is not None:
            self.core.handle_timer(time.time())
            self._transmit()

    def _transmit(self) -> None:
        core = self.core
        if core is None:
            return
        failed: dict[str, str] = {}
        for dg in core.datagrams_to_send():
            try:
                self.sock.sendto(dg.data, (dg.dest, 0, 0, self.ifindex))
                self.stats["sent"] += 1
            except OSError as exc:
                failed[dg.dest] = exc.strerror or str(exc)
        while (note := core.next_note()) is not None:
            self.bus.publish(self._event(note, failed))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = core.get_timer()
        if when is not None:
            self._timer = self._loop.call_later(max(0.0, when - time.time()), self._on_timer)

    @staticmethod
    def _event(note: object, failed: dict[str, str]):
        if isinstance(note, RaSentNote):
            err = failed.get(note.dest)
            if err:
                return LogLine(service="ra", level="warning", client=note.client,
                               message=f"sending to {note.dest} failed: {err}")
            return RouterAdvertSent(dest=note.dest, reason=note.reason, solicit=note.solicit,
                                    client=note.client)
        if isinstance(note, ForeignRouterNote):
            return ForeignRouterSeen(router=note.router, router_mac=note.mac,
                                     lifetime=note.lifetime, managed=note.managed,
                                     other=note.other, prefixes=note.prefixes,
                                     silenced=note.first)
        assert isinstance(note, DroppedNote)
        more = f" ({note.count} dropped since the last report)" if note.count > 1 else ""
        return PacketDropped(service="ra", peer=note.peer, reason=note.reason + more,
                             size=note.size)

    async def close(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, Exception):
            pass
        if self._timer is not None:
            self._timer.cancel()
        try:
            self._loop.remove_reader(self.sock.fileno())
        except (ValueError, OSError):
            pass
        self.sock.close()
        self.bus.publish(ServiceStopped(service="ra"))


async def start_ra(*, bus: EventBus, interface: str,
                   listen_first: float | None = None) -> RaService:
    """Start answering Router Solicitations on ``interface`` (PxeError if it cannot)."""
    try:
        ifindex = socket.if_nametoindex(interface)
    except OSError:
        raise PxeError(f"interface {interface} does not exist",
                       "check `ip link` and the plan's interface") from None
    sock = open_socket(interface, ifindex)
    return RaService(bus=bus, interface=interface, sock=sock, ifindex=ifindex,
                     mac=interface_mac(interface), listen_first=listen_first)


__all__ = ["RaService", "link_local", "start_ra"]
