"""Look inside an initramfs: which files it holds, and whether it can mount an NFS root.

An initramfs is one or more cpio "newc" archives, concatenated, each optionally
compressed (gzip, xz, lzma, bzip2 with Python's own modules; zstd and lz4 with
the ``zstd``/``lz4`` command when installed). Early-microcode images put an
uncompressed archive first. Only names are read; file data is skipped.
"""

from __future__ import annotations

import bz2
import lzma
import os
import shutil
import subprocess
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

_CHUNK = 1 << 20


def _align4(n: int) -> int:
    return (n + 3) & ~3


class _CpioNames:
    """Incremental newc/crc cpio reader: feed bytes, collect names until TRAILER!!!."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.skip = 0
        self.names: list[str] = []
        self.done = False

    def feed(self, data: bytes) -> None:
        self.buf += data
        while not self.done:
            if self.skip:
                n = min(self.skip, len(self.buf))
                del self.buf[:n]
                self.skip -= n
                if self.skip:
                    return
            if len(self.buf) < 110:
                return
            if self.buf[:6] not in (b"070701", b"070702"):
                raise ValueError(f"not a newc cpio header: {bytes(self.buf[:6])!r}")
            filesize = int(self.buf[54:62], 16)
            namesize = int(self.buf[94:102], 16)
            end = _align4(110 + namesize)
            if len(self.buf) < end:
                return
            name = bytes(self.buf[110:110 + namesize - 1]).decode("utf-8", "replace")
            del self.buf[:end]
            if name == "TRAILER!!!":
                self.done = True
                return
            self.names.append(name.removeprefix("./"))
            self.skip = _align4(filesize)


def _decompressor(magic: bytes):  # noqa: ANN202 - returns a zlib/lzma/bz2 decompressor or None
    if magic[:2] == b"\x1f\x8b":
        return zlib.decompressobj(wbits=47)
    if magic[:6] == b"\xfd7zXZ\x00" or magic[:3] == b"\x5d\x00\x00":
        return lzma.LZMADecompressor()
    if magic[:3] == b"BZh":
        return bz2.BZ2Decompressor()
    return None


_TOOLS = {b"\x28\xb5\x2f\xfd": ("zstd", "-dcq"), b"\x02\x21\x4c\x18": ("lz4", "-dcq"),
          b"\x04\x22\x4d\x18": ("lz4", "-dcq")}


def list_initramfs(path: Path) -> list[str]:
    """Every file name in the initramfs at ``path`` (all concatenated archives).

    Raises ValueError with words when a part cannot be read (unknown compression,
    missing zstd/lz4 command, damaged archive).
    """
    names: list[str] = []
    with open(path, "rb") as fh:
        while True:
            head = fh.read(4096)
            stripped = head.lstrip(b"\x00")
            while head and not stripped:
                head = fh.read(4096)
                stripped = head.lstrip(b"\x00")
            if not head:
                return names
            fh.seek(-len(stripped), 1)
            magic = fh.read(8)
            fh.seek(-len(magic), 1)
            if magic[:5] == b"07070":
                parser = _CpioNames()
                while not parser.done:
                    chunk = fh.read(min(_CHUNK, 65536))
                    if not chunk:
                        break
                    parser.feed(chunk)
                names += parser.names
                fh.seek(-len(parser.buf), 1)  # unread what followed the trailer
                continue
            names += _list_compressed(fh, magic)
            return names


def _list_compressed(fh: BinaryIO, magic: bytes) -> list[str]:
    parser = _CpioNames()
    dec = _decompressor(magic)
    if dec is not None:
        while not parser.done:
            chunk = fh.read(_CHUNK)
            if not chunk:
                break
            parser.feed(dec.decompress(chunk))
        return parser.names
    tool = _TOOLS.get(magic[:4])
    if tool is None:
        raise ValueError(f"unknown compression (magic {magic[:4].hex()})")
    if shutil.which(tool[0]) is None:
        raise ValueError(f"it is {tool[0]}-compressed and the {tool[0]} command is not "
                         f"installed (apt-get install {tool[0]})")
    os.lseek(fh.fileno(), fh.tell(), os.SEEK_SET)  # the child reads the fd, not our buffer
    proc = subprocess.Popen([tool[0], tool[1]], stdin=fh, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        while not parser.done:
            chunk = proc.stdout.read(_CHUNK)
            if not chunk:
                break
            parser.feed(chunk)
    finally:
        proc.kill()
        proc.wait()
    return parser.names


@dataclass
class NfsSupport:
    """Whether an initramfs can mount its root over NFS, and which kind it is."""

    flavour: str = ""
    """dracut, initramfs-tools or '' (unknown)."""
    problems: list[str] = field(default_factory=list)
    """Why it may not work, in words (empty: looks fine)."""
    overlay: str = ""
    """How it can put a RAM overlay over a read-only root (nfs.root_mode ro-overlay): see
    :func:`overlay_support`."""


OVERLAYROOT_SCRIPT = "scripts/init-bottom/overlayroot"
"""Debian/Ubuntu's ``overlayroot`` package (cloud-initramfs-tools): read ``overlayroot=tmpfs``,
move ${rootmnt} to /media/root-ro, mount a tmpfs on /media/root-rw and an overlay of the two
on ${rootmnt}. It does this for any root, NFS included (init-bottom runs after scripts/nfs)."""
DRACUT_OVERLAY_NET = "hooks/pre-pivot/10-mount-overlayfs.sh"
"""dracut(-ng)'s 90overlayfs module with its network-root hooks: ``rd.overlay`` (older name,
still read: ``rd.live.overlay.overlayfs=1``) bind-mounts the NFS root on /run/rootfsbase and
mounts an overlay with its upper layer in /run (a tmpfs) at pre-pivot."""
DRACUT_OVERLAY_BLOCK = "hooks/mount/01-mount-overlayfs.sh"
"""The same module in dracut versions that hook only the pre-mount and mount stages (made for
block-device roots)."""


def overlay_support(names: list[str]) -> str:
    """Which root overlay an initramfs holds: ``overlayroot`` (initramfs-tools),
    ``dracut-overlayfs`` (with network-root hooks), ``dracut-overlayfs-block`` (mount hooks
    only) or '' (none)."""
    if any(n.endswith(OVERLAYROOT_SCRIPT) for n in names):
        return "overlayroot"
    if any(n.endswith(DRACUT_OVERLAY_NET) for n in names):
        return "dracut-overlayfs"
    if any(n.endswith(DRACUT_OVERLAY_BLOCK) for n in names):
        return "dracut-overlayfs-block"
    return ""


def nfs_support(path: Path) -> NfsSupport:
    """Inspect ``path`` for dracut's nfs module or initramfs-tools' NFS boot script."""
    try:
        names = list_initramfs(path)
    except (OSError, ValueError, EOFError, lzma.LZMAError, zlib.error) as exc:
        return NfsSupport("", [f"cannot look inside the initramfs ({exc}); "
                               "NFS root support unchecked"])
    s = set(names)
    has_module = any(n.split("/")[-1].startswith(("nfs.ko", "nfsv3.ko")) for n in names)
    module_note = ("" if has_module else
                   "no nfs.ko kernel module inside (fine only if the kernel has NFS built in)")
    if any("dracut" in n for n in names):
        problems = []
        has_dracut_nfs = any(n.endswith(("nfs-lib.sh", "parse-nfsroot.sh", "nfsroot"))
                             for n in names) or any(n.endswith("mount.nfs") for n in names)
        if not has_dracut_nfs:
            problems.append("dracut initramfs without its nfs module (no nfsroot / "
                            "parse-nfsroot.sh / mount.nfs): rebuild it with "
                            "`dracut --add nfs --force` (network and nfs modules)")
        if module_note:
            problems.append(module_note)
        return NfsSupport("dracut", problems, overlay_support(names))
    if "scripts/nfs" in s or "conf/initramfs.conf" in s or any(n.startswith("scripts/") for n in names):
        problems = []
        if "scripts/nfs" not in s:
            problems.append("initramfs-tools image without scripts/nfs: set BOOT=nfs in "
                            "/etc/initramfs-tools/initramfs.conf and run update-initramfs -u")
        if module_note:
            problems.append(module_note + "; set MODULES=netboot or most in initramfs.conf")
        return NfsSupport("initramfs-tools", problems, overlay_support(names))
    return NfsSupport("", ["neither a dracut nor an initramfs-tools image: cannot tell whether "
                           "it mounts an NFS root"] + ([module_note] if module_note else []),
                      overlay_support(names))
