"""Fixed detection results for the UI tests: no host facts leak into a test or a snapshot."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pxewizard.boot.media import LOCAL_ENTRY, BootEntry, Media
from pxewizard.detect.host import HostFacts, LoaderStatus
from pxewizard.detect.interfaces import BridgeInfo, InterfaceInfo
from pxewizard.detect.ports import PortStatus
from pxewizard.errors import PxeError
from pxewizard.events import DhcpServerSeen

GIB = 1024**3
MIB = 1024**2


def _entry(**kw: Any) -> BootEntry:
    kw.setdefault("files", ())
    kw.setdefault("initrds", ())
    kw.setdefault("cmdline", "")
    kw.setdefault("image_size", 0)
    kw.setdefault("kind", "linux")
    return BootEntry(**kw)


def _media(**kw: Any) -> Media:
    return Media(**kw)


SRCD_IMAGE = 900 * MIB
SRCD_FILES = (("sysresccd/boot/x86_64/vmlinuz", 12 * MIB),
              ("sysresccd/boot/intel_ucode.img", 8 * MIB),
              ("sysresccd/boot/amd_ucode.img", 0),
              ("sysresccd/boot/x86_64/sysresccd.img", 92 * MIB),
              ("sysresccd/x86_64/airootfs.sfs", SRCD_IMAGE))


def sysrescue_media(path: str = "/run/archiso/bootmnt") -> Any:
    entries = (
        _entry(id="sysresccd", label="Boot SystemRescue", kernel="sysresccd/boot/x86_64/vmlinuz",
               initrds=("sysresccd/boot/intel_ucode.img", "sysresccd/boot/amd_ucode.img",
                        "sysresccd/boot/x86_64/sysresccd.img"),
               cmdline="archisobasedir=sysresccd", image_size=SRCD_IMAGE, files=SRCD_FILES),
        _entry(id="sysresccd-copytoram", label="Boot SystemRescue and copy system to RAM",
               kernel="sysresccd/boot/x86_64/vmlinuz",
               initrds=("sysresccd/boot/x86_64/sysresccd.img",),
               cmdline="archisobasedir=sysresccd copytoram", image_size=SRCD_IMAGE,
               files=SRCD_FILES),
        LOCAL_ENTRY,
    )
    return _media(path=Path(path), profile="sysrescue-archiso", label="SystemRescue 11.02",
                  version="11.02",
                  entries=entries, image=Path(path) / "sysresccd/x86_64/airootfs.sfs",
                  image_size=SRCD_IMAGE, image_vpath="sysresccd/x86_64/airootfs.sfs")


def debian_iso(path: str = "/srv/iso/debian-live-12.iso") -> Any:
    entries = (
        _entry(id="live", label="Debian Live", kernel="live/vmlinuz", initrds=("live/initrd.img",),
               cmdline="boot=live", image_size=2 * GIB),
        LOCAL_ENTRY,
    )
    return _media(path=Path(path), profile="debian-live", label="Debian Live 12", version="12",
                  entries=entries, image=Path(path), image_size=2 * GIB,
                  image_vpath="live/filesystem.squashfs")


def fake_interfaces() -> list[InterfaceInfo]:
    return [
        InterfaceInfo(name="lo", index=1, state="unknown", carrier=True, ipv4=("127.0.0.1/8",),
                      loopback=True, mtu=65536),
        InterfaceInfo(name="eth0", index=2, state="up", carrier=True, speed_mbps=1000,
                      mac="52:54:00:12:34:56", ipv4=("192.168.50.2/24",), gateway="192.168.50.1"),
        InterfaceInfo(name="eth1", index=3, state="down", carrier=False, speed_mbps=0,
                      mac="52:54:00:12:34:57"),
        InterfaceInfo(name="br0", index=4, state="up", carrier=True, mac="52:54:00:aa:bb:cc",
                      ipv4=("10.0.0.1/24",), kind="bridge",
                      bridge=BridgeInfo(stp=True, forward_delay=15.0, ports=("eth2",))),
        InterfaceInfo(name="wlan0", index=5, state="up", carrier=True, mac="a4:5e:60:01:02:03",
                      ipv4=("172.16.0.9/16",), wireless=True),
    ]


def fake_host(root: bool = True) -> HostFacts:
    return HostFacts(
        is_root=root, ram_total=16 * GIB, ram_available=12 * GIB,
        loaders=(LoaderStatus(name="pxelinux.0", path="/usr/lib/PXELINUX/pxelinux.0",
                              package="pxelinux"),
                 LoaderStatus(name="ldlinux.c32", path="/usr/lib/syslinux/modules/bios/ldlinux.c32",
                              package="syslinux-common"),
                 LoaderStatus(name="syslinux.efi", package="syslinux-efi"),
                 LoaderStatus(name="ipxe.efi", package="ipxe")),
        dns_servers=("192.168.50.1",),
        versions="pxewizard 0.1.0 on Python 3.11 (test)\ntextual 8 (test)")


def fake_ports() -> list[PortStatus]:
    return [PortStatus(port=67, proto="udp", service="DHCP / proxyDHCP"),
            PortStatus(port=69, proto="udp", service="TFTP"),
            PortStatus(port=80, proto="tcp", service="HTTP", holder="nginx (pid 812)"),
            PortStatus(port=4011, proto="udp", service="proxyDHCP (UEFI asks here)")]


def seen_server() -> DhcpServerSeen:
    return DhcpServerSeen(ts=1_700_000_000.0, server_id="192.168.50.1",
                          server_mac="52:54:00:00:00:01", offered_ip="192.168.50.57",
                          router="192.168.50.1", dns="192.168.50.1")


@dataclass
class FakeDetector:
    """A Detector with fixed answers; records what the wizard asked it to change."""

    interfaces_: list[InterfaceInfo] = field(default_factory=fake_interfaces)
    host_: HostFacts = field(default_factory=fake_host)
    ports_: list[PortStatus] = field(default_factory=fake_ports)
    servers: list[DhcpServerSeen] = field(default_factory=list)
    media_: list[Any] = field(default_factory=lambda: [sysrescue_media()])
    paths: dict[str, list[Any]] = field(default_factory=lambda: {
        "/srv/iso/debian-live-12.iso": [debian_iso()]})
    probe_delay: float = 0.0
    assigned: list[tuple[str, str, int, str | None]] = field(default_factory=list)
    bridges_fixed: list[str] = field(default_factory=list)
    probes: list[tuple[str, float]] = field(default_factory=list)

    async def host(self) -> HostFacts:
        return self.host_

    async def interfaces(self) -> list[InterfaceInfo]:
        return list(self.interfaces_)

    async def ports(self) -> list[PortStatus]:
        return list(self.ports_)

    async def probe(self, interface: str, timeout: float) -> list[DhcpServerSeen]:
        self.probes.append((interface, timeout))
        if self.probe_delay:
            await asyncio.sleep(self.probe_delay)
        return list(self.servers)

    async def media(self, path: str | None = None) -> list[Any]:
        if path is None:
            return list(self.media_)
        if path in self.paths:
            return list(self.paths[path])
        raise PxeError(f"{path}: no such file or directory",
                       "give the path of an .iso file or a directory holding a boot medium")

    async def assign_address(self, interface: str, address: str, prefix: int,
                             gateway: str | None = None) -> None:
        import dataclasses

        self.assigned.append((interface, address, prefix, gateway))
        self.interfaces_ = [dataclasses.replace(i, ipv4=(f"{address}/{prefix}",), state="up",
                                                gateway=gateway or "")
                            if i.name == interface else i for i in self.interfaces_]

    async def bridge_forward_now(self, bridge: str) -> None:
        import dataclasses

        self.bridges_fixed.append(bridge)
        self.interfaces_ = [dataclasses.replace(i, bridge=BridgeInfo(stp=False, forward_delay=0,
                                                                     ports=i.bridge.ports))
                            if i.name == bridge and i.bridge else i for i in self.interfaces_]
