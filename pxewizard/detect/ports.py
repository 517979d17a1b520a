"""Which of the ports pxewizard needs are free, and who holds the others.

The holder is named through psutil (:func:`port_holder`, which the servers also use to name
who holds a port they cannot bind), so the Preflight screen can say "UDP 67 is held by dnsmasq (pid 812)" before
anything fails to bind.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import psutil


@dataclass(frozen=True, kw_only=True)
class PortStatus:
    """One port we may need and whether it is free."""

    port: int
    """Port number."""
    proto: str
    """``udp`` or ``tcp``."""
    service: str
    """What pxewizard runs there, in words."""
    holder: str | None = None
    """Process holding it (``dnsmasq (pid 812)``), or None when free."""

    @property
    def free(self) -> bool:
        return self.holder is None

    def line(self) -> str:
        state = "free" if self.free else f"held by {self.holder}"
        return f"{self.proto.upper()} {self.port:<5} {self.service:<22} {state}"


WANTED: tuple[tuple[int, str, str], ...] = (
    (67, "udp", "DHCP / proxyDHCP"),
    (69, "udp", "TFTP"),
    (80, "tcp", "HTTP"),
    (4011, "udp", "proxyDHCP (UEFI asks here)"),
    (10809, "tcp", "NBD"),
    (111, "udp", "portmapper (NFS)"),
    (111, "tcp", "portmapper (NFS)"),
    (2049, "tcp", "NFSv3"),
    (2049, "udp", "NFSv3"),
    (20048, "tcp", "NFS mountd"),
    (20048, "udp", "NFS mountd"),
)
"""Every port a Plan may use with its default settings."""


def port_holder(port: int, proto: str = "udp") -> str | None:
    """Name the process holding a local port: ``dnsmasq (pid 812)``, or None."""
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


def check_ports_sync(wanted: tuple[tuple[int, str, str], ...] = WANTED) -> list[PortStatus]:
    """Blocking scan of the socket table (a few ms; use :func:`check_ports` from async code)."""
    return [PortStatus(port=p, proto=proto, service=svc, holder=port_holder(p, proto))
            for p, proto, svc in wanted]


async def check_ports(wanted: tuple[tuple[int, str, str], ...] = WANTED) -> list[PortStatus]:
    """Every wanted port with its holder (scan in a thread)."""
    return await asyncio.to_thread(check_ports_sync, wanted)
