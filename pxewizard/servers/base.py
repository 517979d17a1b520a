"""What every server adapter shares: binding sockets with errors in words, the Service shape."""

from __future__ import annotations

import errno
import socket
from typing import Protocol

from ..errors import NeedsRoot, PortInUse, PxeError
from ..events import EventBus, PacketDropped


class Service(Protocol):
    """A running server. ``start_*`` functions return one; ``close()`` stops it."""

    name: str

    async def close(self) -> None: ...


def port_holder(port: int, proto: str = "udp") -> str | None:
    """Name the process holding a local port: ``dnsmasq (pid 812)``, or None."""
    import psutil  # here: client scripts of the tests import the NFS package without it

    try:
        conns = psutil.net_connections(kind=proto)
    except (psutil.AccessDenied, PermissionError, OSError):
        return None
    for c in conns:
        if c.laddr and c.laddr.port == port and (proto == "udp" or c.status == psutil.CONN_LISTEN):
            if c.pid is None:
                return "an unknown process (run as root to see which)"
            try:
                p = psutil.Process(c.pid)
                return f"{p.name()} (pid {c.pid})"
            except psutil.Error:
                return f"pid {c.pid}"
    return None


def _bind_error(exc: OSError, proto: str, address: str, port: int) -> PxeError:
    if exc.errno == errno.EADDRINUSE:
        return PortInUse(proto, address, port, port_holder(port, proto))
    if exc.errno == errno.EACCES:
        return NeedsRoot(f"cannot bind {proto.upper()} {address}:{port}: permission denied",
                         "run pxewizard as root (ports below 1024 need it)")
    if exc.errno == errno.EADDRNOTAVAIL:
        return PxeError(f"cannot bind {proto.upper()} {address}:{port}: this machine has no "
                        f"address {address}",
                        "check the plan's server_ip against `ip -4 addr` or assign the "
                        "address to the interface")
    return PxeError(f"cannot bind {proto.upper()} {address}:{port}: {exc.strerror}")


def bind_device(sock: socket.socket, interface: str | None) -> None:
    """SO_BINDTODEVICE, so a server only sees its interface's traffic."""
    if not interface:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode() + b"\0")
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            raise PxeError(f"interface {interface} does not exist",
                           "check `ip link` and the plan's interface") from None
        if exc.errno == errno.EPERM:
            raise NeedsRoot(f"cannot bind to interface {interface}: permission denied",
                            "run pxewizard as root") from None
        raise


def udp_socket(address: str, port: int, *, interface: str | None = None,
               broadcast: bool = False, reuse: bool = False) -> socket.socket:
    """A bound, non-blocking UDP socket, or a PxeError that says why not."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if broadcast:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        bind_device(sock, interface)
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        if isinstance(exc, PxeError):
            raise
        raise _bind_error(exc, "udp", address, port) from None
    except PxeError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


TCP_USER_TIMEOUT_MS = 60_000
"""A peer that acknowledges nothing we sent for this long is gone (powered off, cable
pulled, no FIN or RST): the kernel aborts the connection, so its descriptors and open file
are freed instead of after ~15 min of retransmissions. A live client that reads nothing for
as long (a zero window) is cut off too, as nginx's 60 s send_timeout does."""
KEEPALIVE = (60, 10, 5)
"""Idle connections (an NBD root between reads): probe after 60 s, every 10 s, 5 times."""


def _detect_dead_peers(sock: socket.socket) -> None:
    """Set on the listener; Linux copies these options to every accepted connection."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE[0])
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE[1])
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE[2])
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, TCP_USER_TIMEOUT_MS)


def tcp_listener(address: str, port: int, *, interface: str | None = None,
                 backlog: int = 128) -> socket.socket:
    """A bound, listening, non-blocking TCP socket, or a PxeError that says why not."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _detect_dead_peers(sock)
        bind_device(sock, interface)
        sock.bind((address, port))
        sock.listen(backlog)
    except PxeError:
        sock.close()
        raise
    except OSError as exc:
        sock.close()
        raise _bind_error(exc, "tcp", address, port) from None
    sock.setblocking(False)
    return sock


class RefusalLog:
    """Refusals and drops of one service, each a :class:`PacketDropped` event.

    A flood of refusals (connections over a cap, a slowloris's timeouts) must not become a
    flood of events: the bus holds back past its limit and summarises once a second
    (:class:`pxewizard.events.RefusalLimit`, one limit for every kind and service).
    """

    def __init__(self, bus: EventBus, service: str) -> None:
        self.bus = bus
        self.service = service

    def __call__(self, peer: str, reason: str, client: str = "") -> None:
        self.bus.publish(PacketDropped(service=self.service, peer=peer, reason=reason,
                                       client=client))
