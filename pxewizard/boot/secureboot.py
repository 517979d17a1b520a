"""Secure Boot: the signed chain shim -> GRUB -> grub.cfg, and which kernels are signed.

A UEFI x64 machine with Secure Boot on starts only EFI programs signed by a key in
its db (on most PCs: Microsoft's UEFI CA). syslinux.efi and iPXE are not signed, so
the firmware refuses them, usually with nothing on screen. Debian's signed chain is:

- shim (``shim-signed``: ``/usr/lib/shim/shimx64.efi.signed``, signed by Microsoft),
  which loads ``grubx64.efi`` from its own directory (over TFTP, or HTTP after a UEFI
  HTTP boot) and checks it against Debian's key built into shim;
- GRUB signed by Debian for network boot (``grub-efi-amd64-signed``:
  ``grubnetx64.efi.signed``). Its built-in prefix is ``/grub`` (read from the image:
  ``grubnetx64-installer.efi.signed`` has ``/debian-installer/amd64/grub`` instead),
  and its built-in config sources ``$prefix/x86_64-efi/grub.cfg`` else
  ``$prefix/grub.cfg`` from the server it was loaded from. So the menu is served as
  ``grub/grub.cfg``. Under Secure Boot GRUB asks shim to verify each kernel it loads.

The tree serves them as ``sb/shimx64.efi``, ``sb/grubx64.efi`` (the name shim asks for),
``sb/mmx64.efi`` (MokManager, started by shim to enrol a key) and ``grub/grub.cfg``.
The chain also boots machines with Secure Boot off, so it replaces
``dhcp.boot_files.efi_x64`` for every UEFI x64 client while it is served.

A kernel is "signed" when its PE optional header's certificate table (data directory
4, the Authenticode signature) is not empty. That is checked, not verified: a kernel
signed by a key the machine does not trust is still refused, but an unsigned one is
refused for sure, and its menu entry says "needs Secure Boot off".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from .loaders import Loaders, missing_message

SHIM_VPATH = "sb/shimx64.efi"
GRUB_VPATH = "sb/grubx64.efi"
MOK_VPATH = "sb/mmx64.efi"
GRUB_CFG_VPATH = "grub/grub.cfg"
UNSIGNED_NOTE = "needs Secure Boot off"

# PE/COFF: the optional header's data directory 4 is the certificate table
# (Microsoft PE format, "Optional Header Data Directories"); its offset in the
# optional header is 128 for PE32 (magic 0x10b) and 144 for PE32+ (0x20b).
_CERT_DIR = {0x10B: (128, 92), 0x20B: (144, 108)}  # magic -> (cert dir offset, NumberOfRva)
PE_HEAD = 4096
"""Bytes of a file :func:`pe_signed` needs (the headers of any real kernel fit)."""


def pe_signed(head: bytes) -> bool | None:
    """True: a PE image with an Authenticode signature; False: a PE image without one;
    None: not a PE image (a BIOS-only kernel, memtest .bin) or headers cut short."""
    if len(head) < 64 or head[:2] != b"MZ":
        return None
    (pe,) = struct.unpack_from("<I", head, 0x3C)
    if pe + 24 + 2 > len(head) or head[pe:pe + 4] != b"PE\0\0":
        return None
    opt = pe + 24
    (magic,) = struct.unpack_from("<H", head, opt)
    if magic not in _CERT_DIR:
        return None
    cert_off, nrva_off = _CERT_DIR[magic]
    if opt + cert_off + 8 > len(head):
        return None
    (nrva,) = struct.unpack_from("<I", head, opt + nrva_off)
    if nrva <= 4:
        return False
    _addr, size = struct.unpack_from("<II", head, opt + cert_off)
    return size > 0


def read_head(path: Path, offset: int = 0, size: int = PE_HEAD) -> bytes:
    """The first bytes of a file (or of a file inside an .iso at ``offset``); b"" when
    it cannot be read."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read(min(size, PE_HEAD))
    except OSError:
        return b""


@dataclass(frozen=True)
class Chain:
    """The signed chain served to UEFI x64 clients."""

    shim: Path
    grub: Path
    mok: Path | None = None

    @property
    def boot_file(self) -> str:
        """What DHCP hands UEFI x64 clients (a tree path)."""
        return SHIM_VPATH

    def describe(self) -> str:
        return (f"shim ({self.shim}) -> GRUB signed for network boot ({self.grub}) -> "
                f"{GRUB_CFG_VPATH}")


def choose_chain(setting: str, loaders: Loaders) -> tuple[Chain | None, list[str]]:
    """The chain to serve for ``boot.secure_boot`` and what the operator must know."""
    if setting == "off":
        return None, []
    missing = [name for name, found in (("shimx64.efi", loaders.shim_x64),
                                        ("grubnetx64.efi", loaders.grub_net_x64))
               if found is None]
    if missing:
        if setting == "auto":
            return None, []
        return None, [f"boot.secure_boot = \"on\": " + missing_message(name, (
            Path("/usr/lib/shim") if name.startswith("shim")
            else Path("/usr/lib/grub/x86_64-efi-signed"),)) + "; UEFI clients get "
            "dhcp.boot_files.efi_x64 meanwhile (refused by Secure Boot)" for name in missing]
    assert loaders.shim_x64 is not None and loaders.grub_net_x64 is not None
    return Chain(shim=loaders.shim_x64, grub=loaders.grub_net_x64, mok=loaders.mok_x64), []


def summary(chain: Chain | None, setting: str, efi_x64: str | None, *,
            wizard: bool = False) -> str:
    """One line for the review screen and the exports: are Secure Boot clients served?
    ``wizard``: the setting is named as the wizard shows it (Review > Advanced settings),
    not as the Plan's field."""
    if chain is not None:
        return ("Secure Boot: UEFI x64 PXE clients get the signed chain shim -> GRUB -> "
                f"{GRUB_CFG_VPATH} ({SHIM_VPATH}); entries with unsigned kernels say "
                f"\"{UNSIGNED_NOTE}\"; UEFI HTTP boot clients get iPXE (not signed)")
    name = "Secure Boot" if wizard else "boot.secure_boot ="
    why = {"off": f"{name} \"off\"",
           "auto": f"{name} \"auto\" and shim-signed / grub-efi-amd64-signed "
                   "are not both installed"}.get(setting, "the signed files are missing")
    change = ("choose Secure Boot \"auto\" in Advanced settings (^o)" if wizard
              else "set boot.secure_boot = \"auto\"")
    return (f"Secure Boot: not served ({why}); UEFI x64 clients get {efi_x64 or 'nothing'}, "
            f"which Secure Boot refuses: turn it off on those machines, or {change} with "
            "shim-signed and grub-efi-amd64-signed installed")


def uefi_boot_files(efi_x64: str | None, uefi_http: str | None, *, chain_served: bool,
                    http_base: str | None, served: frozenset[str] | set[str] = frozenset()
                    ) -> tuple[str | None, str | None]:
    """(efi_x64, uefi_http) handed out by DHCP.

    With the chain served, UEFI x64 clients get shim. A UEFI HTTP boot client (arch 16)
    needs an http:// URL of an EFI program that keeps reading over HTTP: the Plan's
    ``uefi_http`` if set; else iPXE (the Plan's own iPXE loader, else snponly.efi, which
    drives the firmware's NIC driver, else ipxe.efi), which then asks DHCP again and
    gets the iPXE menu. Not syslinux.efi (no HTTP), and not shim: Debian 12's signed
    GRUB (2.06-13+deb12u2) started by shim after an OVMF HTTP boot stops at its
    ``grub>`` prompt without reading grub.cfg (measured in tests/e2e), so a Secure Boot
    machine must PXE-boot (TFTP) to get the signed chain. No HTTP server
    (``http_base`` None): arch 16 stays unserved, and the log says so.
    """
    if chain_served:
        efi_x64_out = SHIM_VPATH
    else:
        efi_x64_out = efi_x64
    if uefi_http is None and http_base:
        if efi_x64 and efi_x64.rsplit("/", 1)[-1] in ("snponly.efi", "ipxe.efi"):
            uefi_http = http_base + efi_x64.lstrip("/")
        else:
            uefi_http = next((http_base + f for f in ("snponly.efi", "ipxe.efi")
                              if f in served), None)
    return efi_x64_out, uefi_http
