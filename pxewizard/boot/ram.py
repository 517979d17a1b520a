"""How much RAM a client needs to boot an entry over a transport, with the reasoning.

Rules (from how the initramfs hooks work):

- archiso (modern SystemRescue) over HTTP: the image is downloaded into a
  tmpfs and then copied again while being set up, so the peak is about twice
  the image, plus the kernel and the unpacked initramfs. TFTP falls back to
  HTTP (no TFTP hook), so the same.
- NFS and NBD read the image on demand: only the kernel, initramfs and the
  running system's working memory; with copytoram, like HTTP.
- old SystemRescueCd: ``sysrcd.dat`` is downloaded once into RAM (HTTP/TFTP, or
  NFS/NBD with ``docache``).
- Debian live ``fetch=`` and Ubuntu ``url=`` download once into RAM.
- Every Linux system also needs working memory once it runs: 256 MiB here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .media import BootEntry, Media

MiB = 1024 * 1024
WORKING_SET = 256 * MiB
"""RAM a booted rescue system needs for itself (shell, tools, page cache)."""
INITRAMFS_FACTOR = 3
"""An initramfs is held compressed while unpacked into a tmpfs about twice its size."""


@dataclass(frozen=True)
class RamEstimate:
    """Client RAM needed, in bytes, and why."""

    needed_bytes: int
    reasoning: list[str] = field(default_factory=list)

    @property
    def needed_mib(self) -> int:
        return -(-self.needed_bytes // MiB)


def _mib(n: int) -> str:
    return f"{n / MiB:,.0f} MiB" if n >= MiB else f"{n:,} bytes"


def ram_estimate(media: Media, entry: BootEntry | None, transport: str,
                 copytoram: bool | None) -> RamEstimate:
    """RAM for ``entry`` (default: the medium's first Linux entry) over ``transport``."""
    if entry is None:
        entry = next((e for e in media.entries if e.kind == "linux"), media.entries[0])
    sizes = dict(entry.files)
    why: list[str] = []
    if entry.kind == "localboot":
        return RamEstimate(0, ["local boot: nothing is loaded over the network"])
    if entry.kind == "memtest":
        size = sizes.get(entry.kernel, 0)
        return RamEstimate(size + 16 * MiB,
                           [f"memtest86+ ({_mib(size)}) runs from a few MiB of RAM"])
    kernel = sizes.get(entry.kernel, 0)
    initrd = sum(sizes.get(i, 0) for i in entry.initrds)
    total = kernel + initrd * INITRAMFS_FACTOR + WORKING_SET
    why.append(f"kernel {_mib(kernel)} + initramfs {_mib(initrd)} x{INITRAMFS_FACTOR} "
               f"(compressed copy and unpacked tmpfs) + {_mib(WORKING_SET)} for the running "
               "system")
    image = entry.image_size
    transport = transport.lower()
    profile = media.profile
    if image:
        if profile == "sysrescue-archiso":
            in_ram = transport in ("http", "tftp") or bool(copytoram)
            if in_ram:
                total += 2 * image
                how = {"http": "HTTP always copies it to RAM",
                       "tftp": "archiso has no TFTP hook, so HTTP is used and copies it to RAM"
                       }.get(transport, f"{transport.upper()} with copytoram copies it to RAM")
                why.append(f"root image {_mib(image)} x2: {how}, and the peak while it is "
                           "set up is about twice its size")
            else:
                why.append(f"root image {_mib(image)} stays on the server: "
                           f"{transport.upper()} reads it on demand (copytoram=n)")
        else:
            in_ram = transport in ("http", "tftp") or bool(copytoram)
            if profile == "ubuntu-casper" and transport != "nfs":
                in_ram = True
            if profile == "debian-live" and transport == "nbd":
                in_ram = True
            if in_ram and profile == "ubuntu-casper":
                # do_urlmount wgets the .iso into the initramfs root, a tmpfs capped at half
                # the RAM: the ISO must fit in that half
                total = max(total + image, 2 * image + 64 * MiB)
                why.append(f"the whole ISO {_mib(image)} is downloaded into the initramfs's "
                           "tmpfs, which may fill at most half the RAM")
            elif in_ram:
                total += image
                why.append(f"root image {_mib(image)} x1: downloaded once into RAM")
            else:
                why.append(f"root image {_mib(image)} stays on the server: "
                           f"{transport.upper()} reads it on demand")
    elif profile == "nfsroot":
        why.append("the root filesystem stays on the NFS server")
    why.append(f"total: about {_mib(total)}")
    return RamEstimate(total, why)
