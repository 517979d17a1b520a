"""Boot loaders installed on this system: pxelinux, syslinux.efi and iPXE.

Nothing is copied: the boot tree maps these files where they lie. BIOS and
EFI syslinux modules share their names (``menu.c32`` exists in both flavours),
so :class:`Loaders` keeps them apart and the tree puts the EFI ones in the
directory of ``syslinux.efi`` (see ``tree.py``).

Search order: the directories given by the caller (e.g. the boot medium's own
``sysresccd/boot/syslinux``), then Debian/Ubuntu paths, then Arch/SystemRescue
paths. The first directory holding a file wins.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path

# The BIOS and EFI com32 modules a menu needs: menu.c32/vesamenu.c32 load libutil and libcom32.
MENU_MODULES: tuple[str, ...] = ("menu.c32", "vesamenu.c32", "libutil.c32", "libcom32.c32")


@dataclass(frozen=True)
class LoaderFile:
    """What a boot loader file name is (the one catalogue: detection, timeline, diagnosis)."""

    family: str
    """``syslinux``, ``ipxe`` or ``grub`` (GRUB, shim and the EFI fallback names)."""
    debian: str = ""
    """Debian/Ubuntu package that provides it (empty: none we can name)."""
    arch: str = ""
    """Arch/SystemRescue package."""
    module: bool = False
    """A module the loader fetches itself (ldlinux.*), not a file DHCP hands out."""


_SYSLINUX_BIOS = LoaderFile("syslinux", "pxelinux", "syslinux")
_SYSLINUX_EFI = LoaderFile("syslinux", "syslinux-efi", "syslinux")
_IPXE = LoaderFile("ipxe", "ipxe", "ipxe")
_GRUB = LoaderFile("grub", "grub-efi-amd64-signed", "grub")
_SHIM = LoaderFile("grub", "shim-signed", "shim")

LOADER_FILES: dict[str, LoaderFile] = {
    "pxelinux.0": _SYSLINUX_BIOS, "lpxelinux.0": _SYSLINUX_BIOS, "gpxelinux.0": _SYSLINUX_BIOS,
    "ldlinux.c32": LoaderFile("syslinux", "syslinux-common", "syslinux", module=True),
    "syslinux.efi": _SYSLINUX_EFI,
    "syslinux64.efi": LoaderFile("syslinux"), "syslinux32.efi": LoaderFile("syslinux"),
    "ldlinux.e64": LoaderFile("syslinux", "syslinux-efi", "syslinux", module=True),
    "ldlinux.e32": LoaderFile("syslinux", "syslinux-efi", "syslinux", module=True),
    "undionly.kpxe": _IPXE, "ipxe.efi": _IPXE, "snponly.efi": _IPXE, "ipxe.pxe": _IPXE,
    "ipxe.lkrn": _IPXE,
    "undionly.kkpxe": LoaderFile("ipxe"), "undionly.kkkpxe": LoaderFile("ipxe"),
    "ipxe.kpxe": LoaderFile("ipxe"), "snp.efi": LoaderFile("ipxe"),
    "ipxe-x86_64.efi": LoaderFile("ipxe"), "ipxe-arm64.efi": LoaderFile("ipxe"),
    "grubx64.efi": _GRUB, "grubnetx64.efi.signed": _GRUB, "grubnetx64.efi": _GRUB,
    "grubia32.efi": LoaderFile("grub"), "grubaa64.efi": LoaderFile("grub"),
    "shimx64.efi": _SHIM, "shimx64.efi.signed": _SHIM,
    "bootx64.efi": LoaderFile("grub"), "bootia32.efi": LoaderFile("grub"),
    "bootaa64.efi": LoaderFile("grub"),
}
"""Every boot loader file name we know, lower case (menu modules: :data:`MENU_MODULES`)."""


def loader_firmware(path: str) -> str:
    """``bios`` or ``efi``: which firmware a loader (or syslinux module) runs on, or ``""``."""
    name = posixpath.basename(path).lower()
    if name.endswith((".efi", ".e64", ".e32", ".efi.signed")):
        return "efi"
    if name.endswith((".0", ".kpxe", ".pxe", ".kkpxe", ".kkkpxe", ".lkrn")) or name == "ldlinux.c32":
        return "bios"
    return ""


def loader_names(family: str) -> frozenset[str]:
    """Loader file names (not modules) of one family."""
    return frozenset(n for n, f in LOADER_FILES.items() if f.family == family and not f.module)


# file name -> (Debian/Ubuntu package, Arch/SystemRescue package), for the files we look for
PACKAGES: dict[str, tuple[str, str]] = {
    **{n: (f.debian, f.arch) for n, f in LOADER_FILES.items() if f.debian},
    **{m: ("syslinux-common", "syslinux") for m in MENU_MODULES},
    **{f"efi64/{m}": ("syslinux-efi", "syslinux") for m in MENU_MODULES},
}

# Where each flavour lives on Debian (first) and Arch/SystemRescue (second).
BIOS_LOADER_DIRS: tuple[Path, ...] = (Path("/usr/lib/PXELINUX"), Path("/usr/lib/syslinux/bios"))
BIOS_MODULE_DIRS: tuple[Path, ...] = (Path("/usr/lib/syslinux/modules/bios"),
                                      Path("/usr/lib/syslinux/bios"))
EFI64_LOADER_DIRS: tuple[Path, ...] = (Path("/usr/lib/SYSLINUX.EFI/efi64"),
                                       Path("/usr/lib/syslinux/efi64"))
EFI64_MODULE_DIRS: tuple[Path, ...] = (Path("/usr/lib/syslinux/modules/efi64"),
                                       Path("/usr/lib/syslinux/efi64"))
IPXE_DIRS: tuple[Path, ...] = (Path("/usr/lib/ipxe"), Path("/usr/share/ipxe"),
                               Path("/usr/share/ipxe/x86_64"), Path("/boot"))
# wimboot (iPXE's Windows boot loader) is in no Debian package; Arch's wimboot package and
# hand installs put it in one of these.
WIMBOOT_DIRS: tuple[Path, ...] = (Path("/usr/share/wimboot"), Path("/usr/lib/wimboot"),
                                  Path("/usr/share/ipxe"), Path("/usr/lib/ipxe"), Path("/boot"))
# Secure Boot: shim signed by Microsoft's UEFI CA, and GRUB signed by Debian for network boot
# (Debian's shim-signed and grub-efi-amd64-signed; Ubuntu uses the same directories).
SHIM_DIRS: tuple[Path, ...] = (Path("/usr/lib/shim"),)
SIGNED_GRUB_DIRS: tuple[Path, ...] = (Path("/usr/lib/grub/x86_64-efi-signed"),)
WIMBOOT_HINT = ("wimboot is not installed here: download it from "
                "https://github.com/ipxe/wimboot/releases/latest/download/wimboot (one file) "
                "into /usr/share/wimboot/ (or tftp.root), then restart")


@dataclass(frozen=True)
class Loaders:
    """Real paths of the boot loader files found (None: not installed here)."""

    pxelinux: Path | None = None
    """BIOS pxelinux.0 (TFTP only)."""
    lpxelinux: Path | None = None
    """BIOS lpxelinux.0 (also fetches http:// paths)."""
    ldlinux_c32: Path | None = None
    """BIOS core module pxelinux.0 loads first."""
    bios_modules: dict[str, Path] = field(default_factory=dict)
    """BIOS com32 modules by name (menu.c32, vesamenu.c32, libutil.c32, libcom32.c32)."""
    syslinux_efi64: Path | None = None
    """64-bit UEFI syslinux.efi."""
    ldlinux_e64: Path | None = None
    """Core module syslinux.efi loads from its own directory."""
    efi64_modules: dict[str, Path] = field(default_factory=dict)
    """64-bit UEFI com32 modules by name (same names as the BIOS ones, other binaries)."""
    undionly_kpxe: Path | None = None
    """iPXE for BIOS, using the ROM's UNDI driver."""
    ipxe_efi: Path | None = None
    """iPXE for 64-bit UEFI with its own drivers."""
    snponly_efi: Path | None = None
    """iPXE for 64-bit UEFI using the firmware's SNP driver."""
    wimboot: Path | None = None
    """iPXE's Windows PE loader (wimboot), for Windows media."""
    shim_x64: Path | None = None
    """Signed shim for 64-bit UEFI (shimx64.efi.signed), the first loader of a Secure Boot
    client; it loads ``grubx64.efi`` from its own directory."""
    mok_x64: Path | None = None
    """Signed MokManager (mmx64.efi.signed), which shim starts when a key must be enrolled."""
    grub_net_x64: Path | None = None
    """GRUB signed for network boot (grubnetx64.efi.signed); its built-in prefix is /grub."""
    searched: tuple[Path, ...] = ()
    """Every directory looked in, in order (for messages)."""

    def missing(self) -> list[str]:
        """Names of the files not found (keys of :data:`PACKAGES`)."""
        out = []
        for name, attr in (("pxelinux.0", "pxelinux"), ("lpxelinux.0", "lpxelinux"),
                           ("ldlinux.c32", "ldlinux_c32"), ("syslinux.efi", "syslinux_efi64"),
                           ("ldlinux.e64", "ldlinux_e64"), ("undionly.kpxe", "undionly_kpxe"),
                           ("ipxe.efi", "ipxe_efi"), ("snponly.efi", "snponly_efi")):
            if getattr(self, attr) is None:
                out.append(name)
        out += [m for m in MENU_MODULES if m not in self.bios_modules]
        out += [f"efi64/{m}" for m in MENU_MODULES if m not in self.efi64_modules]
        return out


def missing_message(name: str, searched: tuple[Path, ...] | list[Path] = ()) -> str:
    """Which package provides ``name``, in words, with where we looked."""
    deb, arch = PACKAGES.get(name, ("syslinux-common", "syslinux"))
    where = ""
    if searched:
        where = " (looked in " + ", ".join(str(p) for p in searched) + ")"
    return (f"boot loader file {name} not found{where}; install it: "
            f"`apt-get install {deb}` on Debian/Ubuntu, `pacman -S {arch}` on Arch/SystemRescue")


def _first(name: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        p = d / name
        if p.is_file():
            return p
    return None


def find_loaders(search: list[Path] | None = None) -> Loaders:
    """Locate every boot loader file; ``search`` directories are tried before system paths.

    A caller-given directory may hold any flavour; EFI modules are only taken from it
    when it also holds ``ldlinux.e64`` (so a BIOS module directory never passes for EFI).
    """
    extra = [Path(p) for p in search or []]
    bios_dirs = extra + list(BIOS_LOADER_DIRS)
    bios_mod_dirs = [d for d in extra if not (d / "ldlinux.e64").exists()] + list(BIOS_MODULE_DIRS)
    efi_dirs = [d for d in extra if (d / "ldlinux.e64").exists()]
    efi_loader_dirs = efi_dirs + list(EFI64_LOADER_DIRS)
    efi_mod_dirs = efi_dirs + list(EFI64_MODULE_DIRS)
    ipxe_dirs = extra + list(IPXE_DIRS)
    searched: list[Path] = []
    for d in (bios_dirs + bios_mod_dirs + efi_loader_dirs + efi_mod_dirs + ipxe_dirs
              + list(SHIM_DIRS) + list(SIGNED_GRUB_DIRS)):
        if d not in searched:
            searched.append(d)

    def modules(dirs: list[Path]) -> dict[str, Path]:
        found = {}
        for m in MENU_MODULES:
            p = _first(m, dirs)
            if p is not None:
                found[m] = p
        return found

    return Loaders(
        pxelinux=_first("pxelinux.0", bios_dirs),
        lpxelinux=_first("lpxelinux.0", bios_dirs),
        ldlinux_c32=_first("ldlinux.c32", bios_mod_dirs),
        bios_modules=modules(bios_mod_dirs),
        syslinux_efi64=_first("syslinux.efi", efi_loader_dirs),
        ldlinux_e64=_first("ldlinux.e64", efi_mod_dirs),
        efi64_modules=modules(efi_mod_dirs),
        undionly_kpxe=_first("undionly.kpxe", ipxe_dirs),
        ipxe_efi=_first("ipxe.efi", ipxe_dirs),
        snponly_efi=_first("snponly.efi", ipxe_dirs),
        wimboot=_first("wimboot", extra + list(WIMBOOT_DIRS)),
        shim_x64=_first("shimx64.efi.signed", list(SHIM_DIRS)),
        mok_x64=_first("mmx64.efi.signed", list(SHIM_DIRS)),
        grub_net_x64=_first("grubnetx64.efi.signed", list(SIGNED_GRUB_DIRS)),
        searched=tuple(searched),
    )
