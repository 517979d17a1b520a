"""Boot media: what can be booted, found in a directory, a mounted CD or an .iso file.

A medium is looked at through a small read-only view (:class:`DirSource` for a
directory, :class:`IsoSource` for an ISO read with pycdlib, never mounted),
then each profile below checks for its own files, in this order:

==================== ==========================================================
profile              recognised by
==================== ==========================================================
``sysrescue-archiso`` ``sysresccd/boot/x86_64/vmlinuz`` + ``sysresccd.img``
                     (+ ``sysresccd/boot/{intel,amd}_ucode.img``),
                     root image ``sysresccd/x86_64/airootfs.sfs`` (+ ``.sha512``)
``sysrescue-legacy``  SystemRescueCd 1.x-5.x: ``rescue64``/``rescue32``/``altker*``
                     + ``initram.igz`` (in ``isolinux/``, ``bootdisk/`` or the
                     root), root image ``sysrcd.dat`` (+ ``sysrcd.md5``)
``debian-live``      ``live/vmlinuz*`` + ``live/initrd*`` + ``live/*.squashfs``
``ubuntu-casper``    ``casper/vmlinuz*`` + ``casper/initrd*`` + ``casper/*.squashfs``
``nfsroot``          a directory holding a Linux root: ``etc/``, ``bin`` or
                     ``usr/bin``, ``boot/vmlinuz*`` and ``boot/initrd*`` /
                     ``boot/initramfs*`` (diskless clients, issue 12)
``debian-installer`` Debian's netboot installer: ``debian-installer/amd64/linux`` +
                     ``initrd.gz`` (as ``debian-installer-12-netboot-amd64`` installs
                     it under ``/usr/lib/debian-installer/images/12/amd64/text``)
``debian-iso``       a Debian netinst/DVD ISO (``install.amd/vmlinuz`` +
                     ``initrd.gz``): its initrd looks for the CD, so the entry only
                     says where the netboot initrd comes from
``redhat-installer`` Fedora/RHEL/Alma/Rocky tree or ISO: ``images/pxeboot/vmlinuz`` +
                     ``initrd.img`` (anaconda; ``.treeinfo`` names it)
``windows-pe``       ``bootmgr`` + ``boot/bcd`` + ``boot/boot.sdi`` + ``sources/boot.wim``
                     (any case): an iPXE entry through wimboot
``generic``          a kernel + initramfs pair at the top or in ``boot/``
``memtest``          memtest86+ alone (``memtest``, ``memtest.bin``, ``memtest.efi``,
                     Debian's ``boot/memtest86+x64.bin`` / ``.efi``...)
==================== ==========================================================

Several media make one menu (:func:`arrange`): each medium's entries form a
group (a pxelinux ``MENU BEGIN`` submenu, an iPXE submenu); the first medium
sits at the tree's root and each other one below ``<its key>/``. An entry keeps
the id its profile gives it unless an earlier medium took it; then it becomes
``<id>-<medium key>``. So appending a medium never renames an existing entry.

Every medium also gets "Boot from local disk". Entries found here are
*transport-agnostic*: their ``cmdline`` holds only what the profile always
needs (``archisobasedir=sysresccd``...). :func:`pxewizard.boot.cmdline.entries_for`
turns them into the final entries for a Plan's transport and server address;
menus are written from those.
"""

from __future__ import annotations

import glob
import os
import re
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from ..errors import PxeError
from .initramfs import nfs_support

PROFILES = ("sysrescue-archiso", "sysrescue-legacy", "debian-live", "ubuntu-casper",
            "nfsroot", "debian-installer", "debian-iso", "redhat-installer", "windows-pe",
            "generic", "memtest")

# Profiles whose directory is not served whole: only the files their entries name
# (a root filesystem, /boot with its initrds, a package's tree with its own pxelinux).
FILES_ONLY = ("nfsroot", "memtest", "debian-installer", "debian-iso")

# Where Debian's memtest86+ package puts its binaries (added when no medium has memtest).
HOST_MEMTEST_DIRS: tuple[str, ...] = ("/boot",)
# Where Debian's debian-installer-<N>-netboot-<arch> packages install the netboot tree.
DEBIAN_NETBOOT_GLOB = "/usr/lib/debian-installer/images/*/amd64/text"

# Where a running live system keeps its boot medium, and where CDs get mounted.
AUTODETECT_DIRS: tuple[str, ...] = (
    "/run/archiso/bootmnt", "/run/live/medium", "/run/initramfs/live", "/cdrom",
    "/run/media/*/*", "/media/*", "/media/*/*", "/mnt", "/mnt/*")


@dataclass(frozen=True)
class BootEntry:
    """One menu entry: what the loader fetches and the kernel command line."""

    id: str
    """Menu label id (pxelinux LABEL, iPXE item); [a-z0-9_-]."""
    label: str
    """Text shown in the menu."""
    kernel: str
    """Virtual path of the kernel in the served tree ('' for local boot; a URL for remote)."""
    initrds: tuple[str, ...]
    """Virtual paths (or URLs) of the initramfs files, in load order (microcode first)."""
    cmdline: str
    """Kernel command line: final after ``cmdline.entries_for``; the profile's fixed part
    before."""
    files: tuple[tuple[str, int], ...]
    """(virtual path, size) of every file the entry needs, stage-3 image included."""
    image_size: int
    """Bytes of the stage-3 root image (airootfs.sfs, sysrcd.dat, squashfs); 0 if none."""
    kind: str
    """linux, memtest, localboot, remote, wimboot (iPXE only) or message (cannot boot from
    here: the label and notes say why and what to do)."""
    firmware: str = "any"
    """any, bios or efi: memtest86+ comes as a BIOS binary and an EFI one."""
    notes: tuple[str, ...] = ()
    """Things the operator should know (a transport fallback, a missing NFS module...)."""
    group_id: str = ""
    """Key of the medium this entry comes from in a several-media menu ('' = top level)."""
    group: str = ""
    """Heading of that medium's submenu (its label)."""
    names: tuple[str, ...] = ()
    """wimboot: the name each initrd is given (bootmgr, BCD, boot.sdi, boot.wim)."""


@dataclass(frozen=True)
class Media:
    """A bootable medium and the entries it offers."""

    path: Path
    """Directory (mount point) or .iso file."""
    profile: str
    """One of :data:`PROFILES`."""
    label: str
    """Human name, e.g. "SystemRescue 11.01"."""
    version: str
    """Version found on the medium ('' when unknown)."""
    entries: tuple[BootEntry, ...]
    """Entries, transport-agnostic (see the module docstring); local boot last."""
    image: Path | None
    """Stage-3 image on disk: airootfs.sfs / sysrcd.dat / squashfs; the .iso itself for an ISO."""
    image_size: int
    """Bytes of the stage-3 root image (inside the ISO for an ISO)."""
    image_vpath: str = ""
    """Virtual path of the stage-3 image in the served tree ('' if none)."""
    nbd_source: Path | None = None
    """What NBD exports for this medium: the .iso, or the block device under a mount point."""
    flavour: str = ""
    """nfsroot: dracut or initramfs-tools (from the initramfs); redhat-installer: inst.repo
    (a whole repository) or inst.stage2 (the installer image only); '' when unknown."""
    overlay: str = ""
    """nfsroot: the root overlay its initramfs holds (initramfs.overlay_support); '' none."""
    warnings: tuple[str, ...] = ()
    """Problems found that do not stop serving (e.g. an initramfs without NFS support)."""
    extents: dict[str, tuple[int, int]] | None = field(default=None, compare=False, repr=False)
    """ISO only: virtual path -> (byte offset in the .iso, size) of every file."""
    key: str = ""
    """Short stable name ([a-z0-9-]) from the label: submenu id and tree directory."""
    vprefix: str = ""
    """Where its files sit in the served tree ('' = the root, else '<key>/')."""

    @property
    def is_iso(self) -> bool:
        return self.extents is not None


LOCAL_ENTRY = BootEntry(id="local", label="Boot from local disk", kernel="", initrds=(),
                        cmdline="", files=(), image_size=0, kind="localboot")


# --- read-only views of a medium ---------------------------------------------------


class Source(Protocol):
    """A read-only view of a medium's files by virtual path ('a/b/c', no leading slash)."""

    where: str

    def size(self, vpath: str) -> int | None: ...
    def is_dir(self, vpath: str) -> bool: ...
    def listdir(self, vpath: str) -> list[str]: ...
    def read(self, vpath: str, limit: int = 65536) -> bytes: ...


class DirSource:
    """A directory (or mount point) as a medium."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.where = str(root)

    def size(self, vpath: str) -> int | None:
        try:
            st = os.stat(self.root / vpath)
        except OSError:
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def is_dir(self, vpath: str) -> bool:
        return (self.root / vpath).is_dir()

    def listdir(self, vpath: str) -> list[str]:
        try:
            return sorted(os.listdir(self.root / vpath))
        except OSError:
            return []

    def read(self, vpath: str, limit: int = 65536) -> bytes:
        with open(self.root / vpath, "rb") as fh:
            return fh.read(limit)

    def is_symlink(self, vpath: str) -> bool:
        return (self.root / vpath).is_symlink()


class IsoSource:
    """An .iso file read with pycdlib (Rock Ridge names, else Joliet, else ISO 9660 ones)."""

    def __init__(self, iso: Path) -> None:
        self.iso = Path(iso)
        self.where = str(iso)
        self.files: dict[str, tuple[int, int]] = {}
        self.dirs: dict[str, list[str]] = {"": []}
        self.volume_id = ""
        self.bootable = False
        self._index()

    def _index(self) -> None:
        import pycdlib
        from pycdlib.pycdlibexception import PyCdlibException

        try:
            total = self.iso.stat().st_size
        except OSError as exc:
            raise PxeError(f"cannot read {self.iso}: {exc.strerror}") from None
        iso = pycdlib.PyCdlib()
        try:
            iso.open(str(self.iso))
        except (PyCdlibException, OSError, ValueError, IndexError) as exc:
            raise PxeError(
                f"{self.iso} is not a readable ISO 9660 image ({total} bytes; pycdlib says: "
                f"{exc}); looked for an ISO 9660 volume descriptor at byte 32768",
                "the file may be truncated or not an ISO: download it again and compare its "
                "checksum, or point boot.media at a directory") from None
        try:
            self.volume_id = iso.pvd.volume_identifier.decode("ascii", "replace").strip()
            self.bootable = iso.eltorito_boot_catalog is not None
            if iso.has_rock_ridge():
                facility = "rr_path"
            elif iso.has_joliet():
                facility = "joliet_path"
            else:
                facility = "iso_path"
            block = iso.logical_block_size
            volume_bytes = iso.pvd.space_size * block
            self._walk(iso, facility, "/", "", block)
        except (PyCdlibException, OSError, ValueError, IndexError) as exc:
            raise PxeError(f"{self.iso}: cannot read its directory tree ({exc})",
                           "the ISO is damaged or truncated; download it again") from None
        finally:
            iso.close()
        # pycdlib quietly shortens files that run past the end; the volume size says more
        if total < volume_bytes:
            short = sorted(v for v, (offset, size) in self.files.items() if offset + size >= total)
            which = f" ({', '.join(short[:3])}{'...' if len(short) > 3 else ''} cut short)" \
                if short else ""
            raise PxeError(
                f"{self.iso} is truncated: its volume descriptor says {volume_bytes} bytes "
                f"but the file has only {total}{which}",
                "download the ISO again and compare its checksum")

    def _walk(self, iso: object, facility: str, path: str, vdir: str, block: int) -> None:
        for child in iso.list_children(**{facility: path}):  # type: ignore[attr-defined]
            if child.is_dot() or child.is_dotdot():
                continue
            name = _record_name(child, facility)
            vpath = f"{vdir}/{name}" if vdir else name
            self.dirs.setdefault(vdir, []).append(name)
            child_path = path.rstrip("/") + "/" + (
                name if facility != "iso_path" else child.file_identifier().decode())
            if child.is_dir():
                self.dirs.setdefault(vpath, [])
                self._walk(iso, facility, child_path, vpath, block)
            elif not child.is_symlink():
                self.files[vpath] = (child.extent_location() * block, child.get_data_length())

    def size(self, vpath: str) -> int | None:
        hit = self.files.get(vpath)
        return None if hit is None else hit[1]

    def is_dir(self, vpath: str) -> bool:
        return vpath in self.dirs

    def listdir(self, vpath: str) -> list[str]:
        return sorted(self.dirs.get(vpath, []))

    def read(self, vpath: str, limit: int = 65536) -> bytes:
        offset, size = self.files[vpath]
        with open(self.iso, "rb") as fh:
            fh.seek(offset)
            return fh.read(min(size, limit))


def _record_name(rec: object, facility: str) -> str:
    if facility == "rr_path" and rec.rock_ridge is not None:  # type: ignore[attr-defined]
        return rec.rock_ridge.name().decode("utf-8", "replace")  # type: ignore[attr-defined]
    ident: bytes = rec.file_identifier()  # type: ignore[attr-defined]
    if facility == "joliet_path":
        return ident.decode("utf-16_be", "replace")
    name = ident.decode("ascii", "replace").split(";")[0]
    return name.rstrip(".").lower()


# --- profiles ---------------------------------------------------------------------


@dataclass
class _Found:
    """What a profile saw; turned into a Media by :func:`_media_from`."""

    profile: str
    label: str
    version: str
    entries: list[BootEntry]
    image_vpath: str = ""
    flavour: str = ""
    warnings: list[str] = field(default_factory=list)
    overlay: str = ""


def _files(src: Source, *vpaths: str) -> tuple[tuple[str, int], ...]:
    return tuple((p, src.size(p) or 0) for p in vpaths if p)


def _first_existing(src: Source, candidates: list[str]) -> str | None:
    return next((c for c in candidates if src.size(c) is not None), None)


def _text(src: Source, vpath: str) -> str:
    try:
        return src.read(vpath, 4096).decode("utf-8", "replace").strip()
    except (OSError, KeyError):
        return ""


def _memtest_entries(src: Source, dirs: list[str], label_prefix: str = "") -> list[BootEntry]:
    """memtest86+: a BIOS binary (loaded as a Linux kernel) and/or an EFI one.

    A lone BIOS binary is kept out of UEFI menus: memtest86+ before 6.0 is BIOS only.
    """
    out = []
    bios = _first_existing(src, [f"{d}{n}" for d in dirs
                                 for n in ("memtest", "memtest.bin", "memtest86+.bin",
                                           "memtest64.bin", "memtestp", "memtest86+x64.bin")])
    efi = _first_existing(src, [f"{d}{n}" for d in dirs
                                for n in ("memtest.efi", "memtest64.efi", "memtest86+.efi",
                                          "memtest86+x64.efi")])
    if bios:
        out.append(BootEntry(id="memtest", label=f"{label_prefix}Memtest86+ (RAM test)",
                             kernel=bios, initrds=(), cmdline="", files=_files(src, bios),
                             image_size=0, kind="memtest", firmware="bios"))
    if efi:
        out.append(BootEntry(id="memtest-efi" if bios else "memtest",
                             label=f"{label_prefix}Memtest86+ (RAM test, UEFI)",
                             kernel=efi, initrds=(), cmdline="", files=_files(src, efi),
                             image_size=0, kind="memtest", firmware="efi"))
    return out


def _sysrescue_archiso(src: Source) -> _Found | None:
    for arch in ("x86_64", "i686"):
        kernel = f"sysresccd/boot/{arch}/vmlinuz"
        initrd = f"sysresccd/boot/{arch}/sysresccd.img"
        if src.size(kernel) is None or src.size(initrd) is None:
            continue
        image = f"sysresccd/{arch}/airootfs.sfs"
        if src.size(image) is None:
            raise PxeError(f"{src.where}: found the SystemRescue kernel {kernel} but not its "
                           f"root image {image}",
                           "the medium is incomplete: copy the whole ISO content, or use the .iso")
        ucode = [p for p in ("sysresccd/boot/intel_ucode.img", "sysresccd/boot/amd_ucode.img",
                             f"sysresccd/boot/{arch}/intel_ucode.img",
                             f"sysresccd/boot/{arch}/amd_ucode.img") if src.size(p) is not None]
        initrds = tuple(ucode) + (initrd,)
        extra = [p for p in (f"sysresccd/{arch}/airootfs.sha512",) if src.size(p) is not None]
        version = _text(src, "sysresccd/VERSION") or _version_from_volume(src)
        label = f"SystemRescue {version}".strip()
        size = src.size(image) or 0
        entry = BootEntry(id="sysresccd", label=f"{label} ({arch})", kernel=kernel,
                          initrds=initrds, cmdline="archisobasedir=sysresccd",
                          files=_files(src, kernel, *initrds, image, *extra),
                          image_size=size, kind="linux")
        entries = [entry] + _memtest_entries(src, [f"sysresccd/boot/{arch}/", "sysresccd/boot/",
                                                   "sysresccd/boot/memtest86+/"])
        return _Found("sysrescue-archiso", label, version, entries, image_vpath=image)
    return None


def _version_from_volume(src: Source) -> str:
    vol = getattr(src, "volume_id", "")
    m = re.match(r"^RESCUE(\d+)(\d\d)$", vol)
    return f"{int(m.group(1))}.{m.group(2)}" if m else ""


_LEGACY_KERNELS = (("rescue64", "64-bit standard kernel"), ("rescue32", "32-bit standard kernel"),
                   ("altker64", "64-bit alternative kernel"),
                   ("altker32", "32-bit alternative kernel"))


def _sysrescue_legacy(src: Source) -> _Found | None:
    if src.size("sysrcd.dat") is None:
        return None
    for d in ("isolinux/", "bootdisk/", "syslinux/", ""):
        found = [(k, what) for k, what in _LEGACY_KERNELS if src.size(d + k) is not None]
        if found and src.size(d + "initram.igz") is not None:
            break
    else:
        raise PxeError(f"{src.where}: found sysrcd.dat but no kernel; looked for "
                       "rescue64, rescue32, altker64, altker32 with initram.igz in isolinux/, "
                       "bootdisk/, syslinux/ and the top directory",
                       "copy the whole SystemRescueCd ISO content, or use the .iso")
    version = _text(src, "version")
    label = f"SystemRescueCd {version}".strip()
    image_size = src.size("sysrcd.dat") or 0
    extra = [p for p in ("sysrcd.md5",) if src.size(p) is not None]
    entries = [BootEntry(id=k, label=f"{label} ({what})", kernel=d + k,
                         initrds=(d + "initram.igz",), cmdline="",
                         files=_files(src, d + k, d + "initram.igz", "sysrcd.dat", *extra),
                         image_size=image_size, kind="linux",
                         # 32-bit kernels cannot start from 64-bit UEFI
                         firmware="bios" if k.endswith("32") else "any") for k, what in found]
    entries += _memtest_entries(src, [d, "bootdisk/"], "")
    return _Found("sysrescue-legacy", label, version, entries, image_vpath="sysrcd.dat")


_KERNEL_RE = re.compile(r"^(vmlinuz|vmlinux|bzImage|linux|kernel)([-.].*)?$")
_INITRD_RE = re.compile(r"^(initrd|initramfs)([-.].*)?$")
_NOT_BOOTABLE = (".sig", ".asc", ".old", ".txt", ".cfg", ".conf", ".md", ".sha256", ".sha512",
                 ".md5", ".config")


def _pairs(src: Source, d: str) -> list[tuple[str, str, str]]:
    """(suffix, kernel vpath, initrd vpath) pairs in directory ``d`` ('' or 'x/')."""
    names = src.listdir(d.rstrip("/"))
    # a root tree's boot/vmlinuz -> vmlinuz-6.1... links would give each kernel twice
    if isinstance(src, DirSource):
        real = [n for n in names if not src.is_symlink(d + n)]
        if any(_KERNEL_RE.match(n) for n in real):
            names = real
    kernels = [n for n in names if _KERNEL_RE.match(n) and src.size(d + n) is not None
               and not n.endswith(_NOT_BOOTABLE)]
    initrds = [n for n in names if _INITRD_RE.match(n) and src.size(d + n) is not None
               and not n.endswith(_NOT_BOOTABLE)]
    out = []
    for k in kernels:
        suffix = _KERNEL_RE.match(k).group(2) or ""  # type: ignore[union-attr]
        version = re.sub(r"^[-.]", "", suffix)
        match = None
        if version:
            match = next((i for i in initrds if version in i), None)
        if match is None and len(initrds) == 1:
            match = initrds[0]
        if match is None:
            match = next((i for i in initrds if not (_INITRD_RE.match(i).group(2) or "")  # type: ignore[union-attr]
                          or i.endswith((".img", ".gz", ".lz", ".xz", ".zst"))), None)
        if match is not None:
            out.append((version, d + k, d + match))
    return out


def _entry_id(prefix: str, version: str, taken: set[str]) -> str:
    base = prefix if not version else f"{prefix}-{version}"
    base = re.sub(r"[^a-z0-9_-]+", "-", base.lower()).strip("-") or prefix
    out, n = base, 2
    while out in taken:
        out, n = f"{base}-{n}", n + 1
    taken.add(out)
    return out


def _disk_info(src: Source) -> str:
    return _text(src, ".disk/info").splitlines()[0] if _text(src, ".disk/info") else ""


def _squashfs(src: Source, d: str) -> str | None:
    names = [n for n in src.listdir(d) if n.endswith(".squashfs") and src.size(f"{d}/{n}")]
    if not names:
        return None
    names.sort(key=lambda n: (n != "filesystem.squashfs", -(src.size(f"{d}/{n}") or 0)))
    return f"{d}/{names[0]}"


def _live(src: Source, d: str, profile: str, fixed: str, name: str) -> _Found | None:
    if not src.is_dir(d):
        return None
    pairs = _pairs(src, d + "/")
    image = _squashfs(src, d)
    if not pairs or image is None:
        return None
    label = _disk_info(src) or name
    taken: set[str] = set()
    entries = [BootEntry(id=_entry_id(d, ver, taken), label=f"{label}" + (f" ({ver})" if ver else ""),
                         kernel=k, initrds=(i,), cmdline=fixed,
                         files=_files(src, k, i, image), image_size=src.size(image) or 0,
                         kind="linux") for ver, k, i in pairs]
    return _Found(profile, label, "", entries, image_vpath=image)


def _debian_live(src: Source) -> _Found | None:
    return _live(src, "live", "debian-live", "boot=live", "Debian live")


def _ubuntu_casper(src: Source) -> _Found | None:
    return _live(src, "casper", "ubuntu-casper", "boot=casper", "Ubuntu live")


def _nfsroot(src: Source) -> _Found | None:
    if not isinstance(src, DirSource):
        return None
    if not (src.is_dir("etc") and (src.is_dir("bin") or src.is_dir("usr/bin"))
            and src.is_dir("boot")):
        return None
    pairs = _pairs(src, "boot/")
    if not pairs:
        return None
    osname = "Linux"
    for line in _text(src, "etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            osname = line.split("=", 1)[1].strip().strip('"')
    taken: set[str] = set()
    entries, warnings, flavour, overlay = [], [], "", ""
    for ver, k, i in pairs:
        support = nfs_support(src.root / i)
        flavour = flavour or support.flavour
        overlay = overlay or support.overlay
        for f in (k, i):
            if not os.stat(src.root / f).st_mode & stat.S_IROTH:
                support.problems.append(f"{f} is not world-readable, so TFTP and HTTP refuse "
                                        f"it: chmod o+r {src.root / f}")
        notes = tuple(support.problems)
        warnings += [f"{i}: {p}" for p in support.problems]
        entries.append(BootEntry(id=_entry_id("nfsroot", ver, taken),
                                 label=f"{osname} over NFS" + (f" ({ver})" if ver else ""),
                                 kernel=k, initrds=(i,), cmdline="",
                                 files=_files(src, k, i), image_size=0, kind="linux",
                                 notes=notes))
    return _Found("nfsroot", f"{osname} (NFS root)", "", entries, flavour=flavour,
                  warnings=warnings, overlay=overlay)


def _ini(text: str) -> dict[str, dict[str, str]]:
    """A small INI reader (.treeinfo): section -> key -> value."""
    out: dict[str, dict[str, str]] = {}
    section = out.setdefault("", {})
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = out.setdefault(line[1:-1].strip().lower(), {})
        elif "=" in line and not line.startswith(("#", ";")):
            k, v = line.split("=", 1)
            section[k.strip().lower()] = v.strip()
    return out


def _ci(src: Source, vpath: str) -> str | None:
    """``vpath`` matched case-insensitively, component by component (Windows media)."""
    cur = ""
    for part in vpath.split("/"):
        hit = next((n for n in src.listdir(cur) if n.lower() == part.lower()), None)
        if hit is None:
            return None
        cur = f"{cur}/{hit}" if cur else hit
    return cur


def _debian_installer(src: Source) -> _Found | None:
    """Debian's netboot installer tree (netboot.tar.gz, or the debian-installer-N-netboot-ARCH
    package): ``debian-installer/<arch>/linux`` + ``initrd.gz``. Its own pxelinux.cfg boots
    ``linux`` with ``initrd.gz`` and ``vga=788 --- quiet``; netcfg then takes the interface
    named by BOOTIF and asks DHCP itself, and the packages come from a mirror."""
    for arch, firmware in (("amd64", "any"), ("i386", "bios")):
        d = f"debian-installer/{arch}/"
        if src.size(d + "linux") is None or src.size(d + "initrd.gz") is None:
            continue
        info = _text(src, "version.info")
        m = re.search(r"Debian version:\s*(.+)", info)
        version = m.group(1).strip() if m else ""
        graphical = src.is_dir(d + "gtk") or "gtk" in Path(src.where).name.lower()
        label = f"Debian {version} installer".replace("  ", " ") if version \
            else "Debian installer"
        what = "graphical, " if graphical else ""
        entry = BootEntry(id="debian-installer" + ("-gtk" if graphical else "")
                          + ("" if arch == "amd64" else f"-{arch}"),
                          label=f"{label} ({what}{arch}, netboot)", kernel=d + "linux",
                          initrds=(d + "initrd.gz",), cmdline="vga=788",
                          files=_files(src, d + "linux", d + "initrd.gz"), image_size=0,
                          kind="linux", firmware=firmware)
        m2 = re.search(r"(\d+)", version)
        return _Found("debian-installer", f"{label} (netboot)",
                      m2.group(1) if m2 else "", [entry])
    return None


def _netboot_hint() -> str:
    import glob

    have = sorted(glob.glob(DEBIAN_NETBOOT_GLOB))
    if have:
        return (f"the netboot installer is installed here: add {have[-1]} to boot.media")
    return ("install it on this machine with `apt-get install "
            "debian-installer-12-netboot-amd64` (it lands in "
            "/usr/lib/debian-installer/images/12/amd64/text) and add that directory to "
            "boot.media, or unpack netboot.tar.gz from a Debian mirror "
            "(dists/<release>/main/installer-amd64/current/images/netboot/)")


def _debian_iso(src: Source) -> _Found | None:
    """A Debian netinst/DVD medium: ``install.amd/`` holds the CD flavour of the installer,
    whose initrd looks for the installation CD and finds none over PXE."""
    for d, arch in (("install.amd", "amd64"), ("install.386", "i386")):
        if src.size(f"{d}/vmlinuz") is None or src.size(f"{d}/initrd.gz") is None:
            continue
        label = _disk_info(src) or "Debian installer CD"
        note = ("this is the CD installer: its initrd looks for the installation disc and "
                "cannot boot over the network (it needs Debian's netboot initrd); "
                + _netboot_hint())
        short = label.split(" - ")[0]
        entry = BootEntry(id="debian-cd", label=f"{short}: needs the netboot initrd",
                          kernel="", initrds=(), cmdline="", files=(), image_size=0,
                          kind="message", notes=(note,))
        return _Found("debian-iso", label, "", [entry])
    return None


def _redhat_installer(src: Source) -> _Found | None:
    """Fedora/RHEL/AlmaLinux/Rocky (anaconda): ``images/pxeboot/vmlinuz`` + ``initrd.img``.
    Their dracut fetches the installer image (``images/install.img``) from ``inst.stage2=``
    or the whole repository from ``inst.repo=``; both name the tree we serve over HTTP."""
    kernel, initrd = "images/pxeboot/vmlinuz", "images/pxeboot/initrd.img"
    if src.size(kernel) is None or src.size(initrd) is None:
        return None
    info = _ini(_text(src, ".treeinfo") if src.size(".treeinfo") is not None else "")
    rel = info.get("release") or info.get("general") or {}
    name = rel.get("name") or rel.get("family") or ""
    version = rel.get("version", "")
    label = f"{name} {version}".strip() or _disk_info(src) or "Fedora/RHEL installer"
    image = next((p for p in ("images/install.img", "LiveOS/squashfs.img")
                  if src.size(p) is not None), "")
    entry = BootEntry(id=_entry_id(name or "redhat", "", set()) + "-install",
                      label=f"{label} installer", kernel=kernel, initrds=(initrd,), cmdline="",
                      files=_files(src, kernel, initrd, image), image_size=src.size(image) or 0
                      if image else 0, kind="linux")
    repo = any(src.is_dir(d) for d in ("repodata", "BaseOS/repodata", "Packages"))
    return _Found("redhat-installer", f"{label} installer", version, [entry], image_vpath=image,
                  flavour="inst.repo" if repo else "inst.stage2")


WINPE_FILES = (("bootmgr", "bootmgr"), ("boot/bcd", "BCD"), ("boot/boot.sdi", "boot.sdi"),
               ("sources/boot.wim", "boot.wim"))


def _windows_pe(src: Source) -> _Found | None:
    """Windows PE / Windows setup: ``bootmgr``, ``boot/bcd``, ``boot/boot.sdi`` and
    ``sources/boot.wim`` (any case). iPXE boots them through wimboot, which gets each
    file under its Windows name (``initrd URL NAME``)."""
    found = [(_ci(src, p), name) for p, name in WINPE_FILES]
    if any(v is None for v, _ in found):
        return None
    paths = tuple(v for v, _ in found if v is not None)
    label = _ci(src, "sources/idwbinfo.txt") and "Windows setup" or "Windows PE"
    entry = BootEntry(id="windows-pe", label=label, kernel="wimboot", initrds=paths,
                      cmdline="", files=_files(src, *paths), image_size=0, kind="wimboot",
                      names=tuple(n for _, n in found))
    vol = getattr(src, "volume_id", "")
    return _Found("windows-pe", f"{label} {vol}".strip(), "", [entry])



def _generic(src: Source) -> _Found | None:
    for d in ("", "boot/"):
        pairs = _pairs(src, d)
        if pairs:
            taken: set[str] = set()
            entries = [BootEntry(id=_entry_id("linux", ver, taken),
                                 label="Linux" + (f" {ver}" if ver else ""), kernel=k,
                                 initrds=(i,), cmdline="", files=_files(src, k, i),
                                 image_size=0, kind="linux") for ver, k, i in pairs]
            return _Found("generic", "Linux kernel + initramfs", "", entries)
    return None


def _memtest(src: Source) -> _Found | None:
    entries = _memtest_entries(src, ["", "boot/", "EFI/BOOT/"])
    if not entries:
        return None
    return _Found("memtest", "Memtest86+", "", entries)


DETECTORS = (_sysrescue_archiso, _sysrescue_legacy, _debian_live, _ubuntu_casper, _nfsroot,
             _debian_installer, _debian_iso, _redhat_installer, _windows_pe, _generic, _memtest)

# What each profile looks for, for "nothing found" messages.
LOOKED_FOR = (
    "sysresccd/boot/x86_64/vmlinuz + sysresccd.img (SystemRescue 6+)",
    "sysrcd.dat + isolinux/rescue64|rescue32 + initram.igz (SystemRescueCd 1-5)",
    "live/vmlinuz* + live/initrd* + live/*.squashfs (Debian live)",
    "casper/vmlinuz* + casper/initrd* + casper/*.squashfs (Ubuntu)",
    "etc/ + bin/ + boot/vmlinuz* + boot/initrd* (an NFS root tree)",
    "debian-installer/amd64/linux + initrd.gz (Debian netboot installer)",
    "install.amd/vmlinuz + initrd.gz (Debian netinst/DVD)",
    "images/pxeboot/vmlinuz + initrd.img (Fedora/RHEL/Alma/Rocky)",
    "bootmgr + boot/bcd + boot/boot.sdi + sources/boot.wim (Windows PE)",
    "vmlinuz*|bzImage + initrd*|initramfs* at the top or in boot/ (generic)",
    "memtest, memtest.bin, memtest.efi, boot/memtest86+x64.bin|.efi (memtest86+)",
)


def _block_device_of(mountpoint: Path) -> Path | None:
    """The block device mounted at ``mountpoint`` (for NBD of the running medium)."""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 2 and parts[1] == str(mountpoint) and parts[0].startswith("/dev/"):
                    return Path(parts[0])
    except OSError:
        pass
    return None


def probe(path: Path) -> Media | None:
    """The medium at ``path`` (directory or .iso), or None when no profile matches.

    Raises PxeError when ``path`` is unreadable or a profile finds a half medium.
    """
    path = Path(path)
    if path.is_dir():
        src: Source = DirSource(path)
    elif path.is_file():
        st = path.stat()
        key = (str(path.resolve()), st.st_mtime, st.st_size)
        with _iso_lock:
            if key in _iso_cache:
                return _iso_cache[key]
        found = _probe_src(path, IsoSource(path))
        with _iso_lock:
            _iso_cache[key] = found
        return found
    else:
        raise PxeError(f"boot medium {path} does not exist",
                       "set boot.media to a directory, a mounted CD or an .iso file")
    return _probe_src(path, src)


# an .iso is read once (pycdlib walks its whole tree): by path, mtime and size
_iso_cache: dict[tuple[str, float, int], Media | None] = {}
_iso_lock = threading.Lock()


def _probe_src(path: Path, src: Source) -> Media | None:
    for detect in DETECTORS:
        found = detect(src)
        if found is not None:
            return _media_from(path, src, found)
    return None


def _media_from(path: Path, src: Source, found: _Found) -> Media:
    iso = isinstance(src, IsoSource)
    image_size = src.size(found.image_vpath) or 0 if found.image_vpath else 0
    if iso:
        image: Path | None = path
        nbd: Path | None = path
    else:
        image = path / found.image_vpath if found.image_vpath else None
        nbd = _block_device_of(path.resolve()) if found.profile == "sysrescue-archiso" else None
        if found.profile == "sysrescue-legacy":
            nbd = image
    warnings = list(found.warnings)
    if iso and not src.bootable:  # type: ignore[union-attr]
        warnings.append(f"{path} has no El Torito boot record (it does not boot from a CD); "
                        "its kernels are served anyway")
    entries = tuple(found.entries) + (LOCAL_ENTRY,)
    if iso and found.profile == "ubuntu-casper":
        # casper's url= downloads the whole .iso into RAM, not only its squashfs
        image_size = path.stat().st_size
        entries = tuple(replace(e, image_size=image_size) if e.kind == "linux" else e
                        for e in entries)
    return Media(path=path, profile=found.profile, label=found.label, version=found.version,
                 entries=entries, image=image, image_size=image_size,
                 image_vpath=found.image_vpath, nbd_source=nbd, flavour=found.flavour,
                 overlay=found.overlay,
                 warnings=tuple(warnings),
                 extents=dict(src.files) if iso else None)  # type: ignore[union-attr]


def host_memtest(dirs: tuple[str, ...] | list[str] | None = None) -> Media | None:
    """memtest86+ installed on this machine (Debian's ``memtest86+``:
    ``/boot/memtest86+x64.bin`` and ``.efi``), as a medium of its own; None if absent.
    Only those binaries are served, never the rest of /boot."""
    for d in HOST_MEMTEST_DIRS if dirs is None else dirs:
        root = Path(d)
        if not root.is_dir():
            continue
        src = DirSource(root)
        entries = _memtest_entries(src, [""])
        if entries:
            return _media_from(root, src, _Found("memtest", "Memtest86+", "", entries))
    return None


SCAN_DEPTH = 3
"""How deep a folder given in boot.media is searched for media."""


def scan_media(paths: list[Path] | tuple[Path, ...]
               ) -> tuple[list[Media], list[tuple[Path, str]]]:
    """Every medium at ``paths``, in order, and the places skipped with the reason.

    Each path is a medium itself (a directory, a mounted CD, an .iso), or a folder searched
    for media inside it (directories and .iso files, :data:`SCAN_DEPTH` levels). A path
    that yields no medium at all raises PxeError saying what was looked for.
    """
    media: list[Media] = []
    skipped: list[tuple[Path, str]] = []
    for path in paths:
        path = Path(path)
        m = probe(path)  # raises for a missing path, a broken ISO, a half medium
        if m is not None:
            media.append(m)
            continue
        if path.is_file():
            extra = "" if IsoSource(path).bootable else \
                " (it is not bootable: no El Torito boot record)"
            raise _nothing_found(path, "ISO", extra)
        found, skips = _scan_folder(path, SCAN_DEPTH)
        if not found:
            extra = " (nor in the folders inside it" + "".join(
                f"; skipped {p}: {why}" for p, why in skips) + ")"
            raise _nothing_found(path, "directory", extra)
        media += found
        skipped += skips
    return media, skipped


def _scan_folder(folder: Path, depth: int) -> tuple[list[Media], list[tuple[Path, str]]]:
    media: list[Media] = []
    skipped: list[tuple[Path, str]] = []
    try:
        children = sorted(folder.iterdir())
    except OSError as exc:
        return [], [(folder, f"cannot list it: {exc.strerror}")]
    for child in children:
        if child.name.startswith("."):
            continue
        is_iso = child.is_file() and child.suffix.lower() == ".iso"
        if not (child.is_dir() or is_iso):
            continue
        try:
            m = probe(child)
        except PxeError as exc:
            skipped.append((child, exc.message.splitlines()[0]))
            continue
        if m is not None:
            media.append(m)
        elif is_iso:
            skipped.append((child, "no bootable system found in it"))
        elif depth > 1:
            inner, inner_skips = _scan_folder(child, depth - 1)
            media += inner
            skipped += inner_skips
    return media, skipped


def _key(label: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:40].strip("-") or "medium"
    out, n = base, 2
    while out in taken:
        out, n = f"{base}-{n}", n + 1
    taken.add(out)
    return out


def _moved(entry: BootEntry, prefix: str) -> BootEntry:
    def mv(p: str) -> str:
        return prefix + p if p and not p.startswith(("http://", "https://")) else p

    kernel = entry.kernel if entry.kind == "wimboot" else mv(entry.kernel)
    return replace(entry, kernel=kernel, initrds=tuple(mv(i) for i in entry.initrds),
                   files=tuple((mv(p), n) for p, n in entry.files))


def arrange(media: list[Media]) -> list[Media]:
    """Media ready to share one menu and one tree (see the module docstring).

    One medium stays as it is (its files at the root, no submenu, local boot last).
    Several: each gets a key, the first stays at the root and the others move below
    ``<key>/``; their entries get a group, lose local boot (the menu adds it once) and
    keep their ids unless an earlier medium took one.
    """
    keys: set[str] = set()
    if len(media) <= 1:
        return [replace(m, key=_key(m.label, keys)) for m in media]
    taken = {LOCAL_ENTRY.id}
    out = []
    for n, m in enumerate(media):
        key = _key(m.label, keys)
        prefix = "" if n == 0 else key + "/"
        entries = []
        for e in m.entries:
            if e.kind == "localboot":
                continue
            eid = e.id
            if eid in taken:
                eid = _entry_id(f"{e.id}-{key}", "", taken)
            taken.add(eid)
            entries.append(replace(_moved(e, prefix), id=eid, group_id=key, group=m.label))
        out.append(replace(m, key=key, vprefix=prefix, entries=tuple(entries),
                           image_vpath=prefix + m.image_vpath if m.image_vpath else ""))
    return out


def _nothing_found(path: Path, src_kind: str, extra: str = "") -> PxeError:
    looked = "\n".join(f"    - {w}" for w in LOOKED_FOR)
    return PxeError(f"no bootable system found in {src_kind} {path}{extra}; looked for:\n{looked}",
                    "point boot.media at a SystemRescue ISO or its mounted/copied content")


def _autodetect_dirs(patterns: tuple[str, ...]) -> Iterator[Path]:
    seen: set[Path] = set()
    for pattern in patterns:
        for hit in sorted(glob.glob(pattern)):
            p = Path(hit)
            if p.is_dir() and p not in seen:
                seen.add(p)
                yield p


def find_media(path: Path | None = None, *,
               search: tuple[str, ...] | list[str] | None = None) -> list[Media]:
    """Bootable media at ``path`` (a directory, a mounted CD or an .iso), or autodetected.

    With ``path`` None, the running live system's medium and mounted CDs are looked at
    (:data:`AUTODETECT_DIRS`, or ``search`` glob patterns); media that match no profile
    are skipped there. With a ``path``, it must hold a bootable system, else PxeError says
    what was looked for and where.
    """
    if path is not None:
        return scan_media([Path(path)])[0]
    patterns = tuple(search) if search is not None else AUTODETECT_DIRS
    found = []
    for d in _autodetect_dirs(patterns):
        try:
            m = probe(d)
        except PxeError:
            continue
        if m is not None:
            found.append(m)
    return found


def whole_iso_vpath(media: Media) -> str:
    """Where an Ubuntu ISO is served whole for casper's ``url=``: its do_urlmount takes the
    URL only when it ends in ``.iso`` (a case-sensitive glob), so the name always does."""
    return media.vprefix + Path(media.path).stem + ".iso"
