"""This machine: root or not, RAM, boot loaders found, name servers; and the Detector.

The wizard never reads the host directly: it asks a :class:`Detector`. The real
one, :class:`SystemDetector`, wraps detect/ and boot/; tests hand the app a fake
that returns fixed records, so every screen can be driven and snapshotted on any
machine. Every result is a plain frozen dataclass.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..events import DhcpServerSeen
    from .interfaces import InterfaceInfo
    from .ports import PortStatus


@dataclass(frozen=True, kw_only=True)
class LoaderStatus:
    """One boot loader file: where it was found, or which package provides it."""

    name: str
    """File name (pxelinux.0, ldlinux.c32, syslinux.efi, ipxe.efi ...)."""
    path: str = ""
    """Where it lies on this system; empty when missing."""
    package: str = ""
    """Package that provides it (Debian name, Arch name in parentheses when they differ)."""

    @property
    def found(self) -> bool:
        return bool(self.path)


@dataclass(frozen=True, kw_only=True)
class HostFacts:
    """What the Preflight screen reports about this machine."""

    is_root: bool
    """Running as uid 0 (ports below 1024, SO_BINDTODEVICE and netlink changes need it)."""
    ram_total: int = 0
    """Bytes of RAM."""
    ram_available: int = 0
    """Bytes available now (the image of an ISO we serve may be cached in it)."""
    loaders: tuple[LoaderStatus, ...] = ()
    """Boot loaders found or missing."""
    dns_servers: tuple[str, ...] = ()
    """IPv4 name servers from /etc/resolv.conf (offered to full-DHCP clients only when on
    their segment, see :func:`dns_for_segment`)."""
    versions: str = ""
    """pxewizard, Python and dependency versions (``pxewizard --version``)."""
    notes: tuple[str, ...] = field(default_factory=tuple)
    """Anything detection could not find out, in words."""

    def missing_packages(self) -> list[str]:
        """Packages that would provide the missing loaders, without duplicates."""
        seen: list[str] = []
        for ld in self.loaders:
            if not ld.found and ld.package and ld.package not in seen:
                seen.append(ld.package)
        return seen

    def root_limits(self) -> list[str]:
        """What will not work without root, in words (empty as root)."""
        if self.is_root:
            return []
        return ["ports below 1024 (DHCP 67, TFTP 69, HTTP 80, portmap 111) cannot be bound",
                "servers cannot be tied to one interface (SO_BINDTODEVICE)",
                "addresses and bridge settings cannot be changed",
                "the holders of busy ports cannot all be named"]


def _resolv_conf(path: Path = Path("/etc/resolv.conf")) -> tuple[str, ...]:
    import ipaddress

    out = []
    try:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                try:
                    ip = ipaddress.IPv4Address(parts[1])
                except ValueError:
                    continue
                if not ip.is_loopback:
                    out.append(str(ip))
    except OSError:
        pass
    return tuple(out)


def dns_for_segment(dns_servers: tuple[str, ...] | list[str], network: object,
                    server_ip: object) -> tuple[str, ...]:
    """The name servers worth offering to clients on ``network``: those on the segment itself.

    This host's resolvers are loopback stubs (127.0.0.53, systemd-resolved) or sit behind
    its uplink, which clients of an isolated segment cannot reach (nothing routes for them);
    offering one makes every lookup time out. None is better: PXE boots need no DNS.
    """
    import ipaddress

    net = ipaddress.ip_network(str(network), strict=False)
    out = []
    for d in dns_servers:
        try:
            ip = ipaddress.ip_address(str(d).strip())
        except ValueError:
            continue
        if ip in net and not ip.is_loopback and str(ip) != str(server_ip):
            out.append(str(ip))
    return tuple(out)


_LOADER_ATTRS: tuple[tuple[str, str], ...] = (
    ("pxelinux.0", "pxelinux"), ("lpxelinux.0", "lpxelinux"), ("ldlinux.c32", "ldlinux_c32"),
    ("syslinux.efi", "syslinux_efi64"), ("ldlinux.e64", "ldlinux_e64"),
    ("undionly.kpxe", "undionly_kpxe"), ("ipxe.efi", "ipxe_efi"), ("snponly.efi", "snponly_efi"))


def _loader_statuses() -> tuple[tuple[LoaderStatus, ...], tuple[str, ...]]:
    """Every boot loader file :func:`pxewizard.boot.loaders.find_loaders` knows, found or not."""
    try:
        from ..boot.loaders import MENU_MODULES, PACKAGES, find_loaders
    except ImportError:
        return (), ("boot loader detection is not available in this build",)
    try:
        found = find_loaders()
    except Exception as exc:  # a detection bug must not stop the wizard
        return (), (f"boot loader detection failed: {exc}",)
    out = []

    def add(name: str, path: Any) -> None:
        deb, arch = PACKAGES.get(name, ("", ""))
        pkg = deb if deb == arch or not arch else f"{deb} (Arch: {arch})"
        out.append(LoaderStatus(name=name, path=str(path) if path else "", package=pkg))

    for name, attr in _LOADER_ATTRS:
        add(name, getattr(found, attr, None))
    for m in MENU_MODULES:
        add(m, found.bios_modules.get(m))
    for m in MENU_MODULES:
        add(f"efi64/{m}", found.efi64_modules.get(m))
    return tuple(out), ()


def detect_host() -> HostFacts:
    """Blocking host facts (a few ms; the loaders scan stats files)."""
    import psutil

    from ..cli import version_text

    vm = psutil.virtual_memory()
    loaders, notes = _loader_statuses()
    return HostFacts(is_root=os.geteuid() == 0, ram_total=vm.total, ram_available=vm.available,
                     loaders=loaders, dns_servers=_resolv_conf(), versions=version_text(),
                     notes=notes)


@runtime_checkable
class Detector(Protocol):
    """Everything the wizard asks of the machine and the network. Fakes replace it in tests."""

    async def host(self) -> HostFacts:
        """Root, RAM, boot loaders, name servers, versions."""
        ...

    async def interfaces(self) -> list[InterfaceInfo]:
        """Every network interface."""
        ...

    async def ports(self) -> list[PortStatus]:
        """The ports pxewizard may need, free or held by whom."""
        ...

    async def probe(self, interface: str, timeout: float) -> list[DhcpServerSeen]:
        """DHCP servers answering a DISCOVER on ``interface`` within ``timeout`` seconds."""
        ...

    async def media(self, path: str | None = None) -> list[Any]:
        """Boot media (``pxewizard.boot.media.Media``) found on this machine, or at ``path``.
        Raises PxeError (in words) when ``path`` holds nothing bootable."""
        ...

    async def assign_address(self, interface: str, address: str, prefix: int,
                             gateway: str | None = None) -> None:
        """Give ``interface`` an IPv4 address (and a default route)."""
        ...

    async def bridge_forward_now(self, bridge: str) -> None:
        """STP off and forward delay 0 on ``bridge``."""
        ...


class SystemDetector:
    """The real Detector: this machine, through detect/ and boot/ (each call off the UI loop)."""

    async def host(self) -> HostFacts:
        return await asyncio.to_thread(detect_host)

    async def interfaces(self) -> list[InterfaceInfo]:
        from .interfaces import list_interfaces

        return await list_interfaces()

    async def ports(self) -> list[PortStatus]:
        from .ports import check_ports

        return await check_ports()

    async def probe(self, interface: str, timeout: float) -> list[DhcpServerSeen]:
        from .dhcp_probe import probe

        return list(await probe(interface, timeout))

    async def media(self, path: str | None = None) -> list[Any]:
        from ..boot.media import find_media

        return list(await asyncio.to_thread(find_media, Path(path) if path else None))

    async def assign_address(self, interface: str, address: str, prefix: int,
                             gateway: str | None = None) -> None:
        from .interfaces import assign_address

        await assign_address(interface, address, prefix, gateway)

    async def bridge_forward_now(self, bridge: str) -> None:
        from .interfaces import bridge_forward_now

        await bridge_forward_now(bridge)
