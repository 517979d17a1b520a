"""Real operating systems' own boot code, from Debian packages, behind one three-medium menu.

Issue 19. Nothing here is built by us: the Debian installer's netboot kernel and
initrd come from ``debian-installer-12-netboot-amd64`` and memtest86+ from
``memtest86+`` (``apt-get download`` into ``tests/e2e/.cache/debs``, unpacked
with ``dpkg-deb -x``, never installed), as guest.py does for the kernel.

The Plan serves ONE menu of three media, the way an operator would list them:

1. a SystemRescue-layout medium (``sysresccd/boot/x86_64/vmlinuz`` ...; small
   placeholder files: it is in the menu, not booted here),
2. the Debian installer netboot tree where the package installs it
   (``usr/lib/debian-installer/images/12/amd64/text``),
3. memtest86+ where the package installs it (``boot/memtest86+x64.bin``, ``.efi``).

Each boot picks its entry through a per-MAC default (``dhcp.reservations`` with
``boot_entry``), so no keystroke is needed: pxelinux/syslinux.efi read
``pxelinux.cfg/01-<mac>`` first, whose DEFAULT names the entry inside its
medium's submenu (menu.c32 opens that submenu and boots it at the timeout).
``boot.extra_cmdline = "console=ttyS0,115200"`` reaches the installer (after its
``---``) and memtest86+ (which reads the same ``console=`` syntax).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pxewizard.commands.lab import LabVM, VmSpec
from pxewizard.plan import plan_from_dict

from .guest import CACHE
from .harness import POOL, PREFIX, SERVER_IP, LabNet

PACKAGES = ("debian-installer-12-netboot-amd64", "memtest86+")
NETBOOT_SUBDIR = "usr/lib/debian-installer/images/12/amd64/text"
REAL_OS_TIMEOUT = float(os.environ.get("PXWTEST_REAL_OS_TIMEOUT", "300"))

# The installer's first question, as debconf's newt frontend draws it on a serial console
# (localechooser's language question; its title is "Select a language").
DI_MARKER = "Select a language"
# memtest86+ 6.x draws its banner in the top line: "Memtest86+ v6.10".
MEMTEST_MARKER = "Memtest86+ v"


@dataclass(frozen=True)
class RealCase:
    """One boot of real code through the shared three-medium menu."""

    name: str
    firmware: str
    """bios: SeaBIOS + QEMU's iPXE ROM chaining pxelinux.0; uefi: OVMF's own PXE + syslinux.efi."""
    entry: str
    """Menu entry this client's MAC boots by default."""
    mac: str
    marker: str
    files: tuple[str, ...]
    """Tree paths (after the loader's own) our TFTP log must show for this boot."""
    memory: int = 512
    display: bool = False
    """Give the VM a display device: memtest86+'s EFI build stops without a graphics output
    (its efisetup.c: set_screen_info() needs a GOP), as on a headless UEFI machine."""


DI = "debian-12-bookworm-installer-netboot/debian-installer/amd64/"
MT = "memtest86/boot/"

REAL_CASES: tuple[RealCase, ...] = (
    RealCase("bios_debian_installer", "bios", "debian-installer", "52:54:00:19:00:11",
             DI_MARKER, (DI + "linux", DI + "initrd.gz"), memory=1024),
    RealCase("uefi_debian_installer", "uefi", "debian-installer", "52:54:00:19:00:12",
             DI_MARKER, (DI + "linux", DI + "initrd.gz"), memory=1024),
    RealCase("bios_memtest", "bios", "memtest", "52:54:00:19:00:13", MEMTEST_MARKER,
             (MT + "memtest86+x64.bin",)),
    RealCase("uefi_memtest", "uefi", "memtest-efi", "52:54:00:19:00:14", MEMTEST_MARKER,
             (MT + "memtest86+x64.efi",), display=True),
)


def _run(*cmd: str, cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")


def unpacked(package: str, cache: Path = CACHE) -> Path:
    """``package`` downloaded once (apt-get download) and unpacked (dpkg-deb -x), cached."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    have = sorted(debs.glob(f"{package}_*.deb"))
    if not have:
        _run("apt-get", "download", "-q", package, cwd=debs)
        have = sorted(debs.glob(f"{package}_*.deb"))
    if not have:
        raise RuntimeError(f"apt-get download {package} left no .deb in {debs}")
    root = cache / "realos" / have[-1].stem
    if (root / ".done").exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    _run("dpkg-deb", "-x", str(have[-1]), str(root))
    (root / ".done").write_text(have[-1].name)
    return root


def _placeholder(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(path.name.encode() * (size // len(path.name) + 1))


def sysrescue_layout(root: Path) -> Path:
    """A SystemRescue-layout medium (archiso names), small placeholder files."""
    for rel, size in (("sysresccd/boot/x86_64/vmlinuz", 4096),
                      ("sysresccd/boot/x86_64/sysresccd.img", 4096),
                      ("sysresccd/boot/intel_ucode.img", 512),
                      ("sysresccd/x86_64/airootfs.sfs", 65536)):
        _placeholder(root / rel, size)
    (root / "sysresccd/VERSION").write_text("11.01\n")
    return root


def three_media_plan(work: Path) -> dict[str, Any]:
    """The Plan: full DHCP on the lab bridge, pxelinux/syslinux.efi, three media, per-MAC."""
    netboot = unpacked(PACKAGES[0]) / NETBOOT_SUBDIR
    memtest = unpacked(PACKAGES[1])
    media = [sysrescue_layout(work / "sysrescue"), netboot, memtest]
    plan: dict[str, Any] = {
        "interface": "pxe0", "server_ip": SERVER_IP, "prefix": PREFIX,
        "state_dir": str(work / "state"),
        "dhcp": {"mode": "full", "range_start": POOL[0], "range_end": POOL[1],
                 # no iPXE script: QEMU's BIOS ROM is iPXE and would get the script
                 "boot_files": {"bios": "pxelinux.0", "efi_x64": "efi64/syslinux.efi",
                                "ipxe_script": ""},
                 "reservations": [{"mac": c.mac, "boot_entry": c.entry} for c in REAL_CASES]},
        "http": {"port": 80},
        "boot": {"media": [str(m) for m in media], "transport": "http", "timeout": 1,
                 "default": "sysresccd", "host_memtest": False,
                 "extra_cmdline": "console=ttyS0,115200"},
    }
    plan_from_dict(plan)  # a bad field fails here, named
    return plan


def boot_until(net: LabNet, case: RealCase, timeout: float = REAL_OS_TIMEOUT):
    """Boot the case's VM (its MAC) on the lab bridge until its marker shows on ttyS0."""
    spec = VmSpec(tap="tap0", firmware=case.firmware, memory=case.memory, mac=case.mac,
                  romfile="" if case.firmware == "uefi" else None, name=case.name,
                  extra=("-device", "VGA") if case.display else ())
    vm = LabVM(spec, bridge="br0", netns=net.bridge.name)

    async def go():
        await vm.start()
        try:
            return await vm.wait(timeout=timeout, until=lambda line: case.marker in line
                                 or "Kernel panic" in line)
        finally:
            await vm.stop()

    return asyncio.run(go())


def loader_files(case: RealCase) -> set[str]:
    """What the loader itself must fetch: the per-MAC menu proves the entry was chosen there."""
    mac_file = "01-" + case.mac.replace(":", "-")
    if case.firmware == "bios":
        return {"pxelinux.0", "ldlinux.c32", f"pxelinux.cfg/{mac_file}"}
    return {"efi64/syslinux.efi", "efi64/ldlinux.e64", f"efi64/pxelinux.cfg/{mac_file}"}
