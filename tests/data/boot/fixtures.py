"""Fixture media built by the tests: small files with the real names and layouts.

Each ``make_*`` writes one medium under ``root`` and returns ``root``. Sizes
differ per file so a test can tell them apart.
"""

from __future__ import annotations

import gzip
import lzma
import subprocess
from pathlib import Path


def put(root: Path, rel: str, size: int | None = None, data: bytes | None = None) -> Path:
    """Write ``rel`` under ``root`` with ``data`` or ``size`` bytes derived from its name."""
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        seed = rel.encode()
        data = (seed * (size // len(seed) + 1))[:size] if size else b""
    p.write_bytes(data)
    return p


SYSRESCUE_DEFAULTS_YAML = b"""---
global:
    copytoram: false
    checksum: false
    loadsrm: false
    dostartx: false
    dovnc: false
    noautologin: false
    nofirewall: false

autorun:
    ar_disable: false
    ar_nowait: true
    ar_nodel: false
    ar_attempts: 1
    ar_ignorefail: false
    ar_suffixes: "0,1,2,3,4,5,6,7,8,9,A,B,C,D,E,F"
"""
"""SystemRescue's own sysrescue.d/100-defaults.yaml (9.00 and later)."""


def make_archiso(root: Path, *, version: str = "11.01", memtest: bool = True) -> Path:
    """Modern SystemRescue (archiso layout); 9.00 and later also carry sysrescue.d/."""
    put(root, "sysresccd/boot/x86_64/vmlinuz", 1200)
    put(root, "sysresccd/boot/x86_64/sysresccd.img", 2300)
    put(root, "sysresccd/boot/intel_ucode.img", 300)
    put(root, "sysresccd/boot/amd_ucode.img", 200)
    put(root, "sysresccd/x86_64/airootfs.sfs", 9000)
    put(root, "sysresccd/x86_64/airootfs.sha512", data=b"0" * 128 + b"  airootfs.sfs\n")
    put(root, "sysresccd/VERSION", data=version.encode() + b"\n")
    put(root, "sysresccd/boot/syslinux/ldlinux.c32", 100)
    put(root, "EFI/boot/bootx64.efi", 400)
    if int(version.split(".")[0]) >= 9:
        put(root, "sysrescue.d/100-defaults.yaml", data=SYSRESCUE_DEFAULTS_YAML)
    if memtest:
        put(root, "sysresccd/boot/x86_64/memtest", 150)
        put(root, "sysresccd/boot/x86_64/memtest.efi", 160)
    return root


def make_legacy(root: Path, *, version: str = "5.3.2") -> Path:
    """Old SystemRescueCd (1.x-5.x): kernels in isolinux/, sysrcd.dat at the top."""
    for name, size in (("rescue64", 1100), ("rescue32", 1000), ("altker64", 1050),
                       ("altker32", 950)):
        put(root, f"isolinux/{name}", size)
    put(root, "isolinux/initram.igz", 700)
    put(root, "isolinux/isolinux.bin", 64)
    put(root, "isolinux/memtestp", 90)
    put(root, "sysrcd.dat", 8000)
    put(root, "sysrcd.md5", data=b"d41d8cd98f00b204e9800998ecf8427e  sysrcd.dat\n")
    put(root, "version", data=version.encode() + b"\n")
    return root


def make_debian_live(root: Path) -> Path:
    put(root, "live/vmlinuz-6.1.0-13-amd64", 1300)
    put(root, "live/initrd.img-6.1.0-13-amd64", 1400)
    put(root, "live/filesystem.squashfs", 7000)
    put(root, ".disk/info", data=b"Debian GNU/Linux 12.2.0 \"Bookworm\" - Official amd64 LIVE\n")
    return root


def make_casper(root: Path) -> Path:
    put(root, "casper/vmlinuz", 1250)
    put(root, "casper/initrd", 1450)
    put(root, "casper/filesystem.squashfs", 6000)
    put(root, ".disk/info", data=b"Ubuntu 22.04.3 LTS \"Jammy Jellyfish\" - Release amd64\n")
    return root


def make_generic(root: Path) -> Path:
    put(root, "boot/vmlinuz", 1111)
    put(root, "boot/initrd.img", 2222)
    return root


def make_memtest(root: Path) -> Path:
    put(root, "boot/memtest.bin", 140)
    put(root, "boot/memtest.efi", 145)
    return root


# --- initramfs (cpio newc) -----------------------------------------------------------


def cpio_newc(names: list[str]) -> bytes:
    """A newc cpio archive holding ``names`` (directories end with '/'), as the kernel reads."""
    out = bytearray()
    ino = 1

    def entry(name: str, mode: int, data: bytes) -> None:
        nonlocal ino
        nb = name.encode() + b"\x00"
        hdr = "070701" + "".join(f"{v:08X}" for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0))
        out.extend(hdr.encode() + nb)
        out.extend(b"\x00" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\x00" * (-len(out) % 4))
        ino += 1

    for n in names:
        if n.endswith("/"):
            entry(n.rstrip("/"), 0o40755, b"")
        else:
            entry(n, 0o100644, f"content of {n}\n".encode())
    entry("TRAILER!!!", 0, b"")
    out.extend(b"\x00" * (-len(out) % 512))
    return bytes(out)


INITRAMFS_TOOLS_NFS = ["conf/", "conf/initramfs.conf", "scripts/", "scripts/nfs",
                       "scripts/local", "bin/", "bin/nfsmount", "init",
                       "usr/lib/modules/6.1.0-13-amd64/kernel/fs/nfs/nfs.ko",
                       "usr/lib/modules/6.1.0-13-amd64/kernel/fs/nfs/nfsv3.ko"]
INITRAMFS_TOOLS_LOCAL = ["conf/", "conf/initramfs.conf", "scripts/", "scripts/local", "init",
                         "usr/lib/modules/6.1.0-13-amd64/kernel/fs/ext4/ext4.ko"]
DRACUT_NFS = ["usr/lib/dracut/", "usr/lib/dracut/hooks/cmdline/90-parse-nfsroot.sh",
              "usr/lib/nfs-lib.sh", "usr/sbin/nfsroot", "usr/sbin/mount.nfs",
              "usr/lib/modules/5.14.0-362.el9.x86_64/kernel/fs/nfs/nfs.ko.xz", "init"]
DRACUT_NO_NFS = ["usr/lib/dracut/", "usr/lib/dracut/hooks/cmdline/30-parse-lvm.sh", "init",
                 "usr/lib/modules/5.14.0-362.el9.x86_64/kernel/fs/xfs/xfs.ko.xz"]


def initramfs(names: list[str], compression: str = "gzip", microcode: bool = False) -> bytes:
    """An initramfs image: optional uncompressed early-microcode archive, then the main one."""
    body = cpio_newc(names)
    if compression == "gzip":
        body = gzip.compress(body)
    elif compression == "xz":
        body = lzma.compress(body, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
    elif compression == "zstd":
        body = subprocess.run(["zstd", "-q", "-c"], input=body, stdout=subprocess.PIPE,
                              check=True).stdout
    elif compression != "none":
        raise ValueError(compression)
    if microcode:
        body = cpio_newc(["kernel/", "kernel/x86/", "kernel/x86/microcode/",
                          "kernel/x86/microcode/GenuineIntel.bin"]) + body
    return body


def make_nfsroot(root: Path, names: list[str], *, compression: str = "gzip",
                 kver: str = "6.1.0-13-amd64", pretty: str = "Debian GNU/Linux 12 (bookworm)",
                 microcode: bool = False) -> Path:
    """A Linux root tree for diskless clients, with a kernel and an initramfs in boot/."""
    put(root, "etc/os-release", data=f'PRETTY_NAME="{pretty}"\nID=debian\n'.encode())
    put(root, "etc/fstab", data=b"# empty\n")
    put(root, "usr/bin/sh", 10)
    (root / "bin").mkdir(exist_ok=True)
    put(root, f"boot/vmlinuz-{kver}", 1500)
    put(root, f"boot/initrd.img-{kver}", data=initramfs(names, compression, microcode))
    return root


def make_iso(src: Path, out: Path, *, volume: str = "RESCUE1101", bootable: bool = False) -> Path:
    """An ISO 9660 image (Rock Ridge + Joliet) of ``src`` built with xorriso."""
    cmd = ["xorriso", "-as", "mkisofs", "-quiet", "-R", "-J", "-V", volume, "-o", str(out)]
    if bootable:
        put(src, "isolinux/isolinux.bin", 2048)
        cmd += ["-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat", "-no-emul-boot",
                "-boot-load-size", "4"]
    subprocess.run(cmd + [str(src)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return out


# --- installers, memtest86+ and Windows: the real layouts (issue 19) -----------------------


def sparse(root: Path, rel: str, size: int) -> Path:
    """A file of ``size`` bytes that takes no disk space (real sizes cost nothing)."""
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "wb") as fh:
        fh.truncate(size)
    return p


# debian-installer-12-netboot-amd64 20230607+deb12u15, as installed under
# /usr/lib/debian-installer/images/12/amd64/text (sizes from that package)
DEBIAN_NETBOOT = {
    "debian-installer/amd64/linux": 8222656,
    "debian-installer/amd64/initrd.gz": 40810276,
    "debian-installer/amd64/pxelinux.0": 42430,
    "debian-installer/amd64/bootnetx64.efi": 1048504,
    "debian-installer/amd64/grubx64.efi": 3843520,
    "debian-installer/amd64/boot-screens/ldlinux.c32": 119524,
    "debian-installer/amd64/boot-screens/vesamenu.c32": 26744,
    "debian-installer/amd64/boot-screens/syslinux.cfg": 265,
    "debian-installer/amd64/boot-screens/txt.cfg": 139,
}
DEBIAN_NETBOOT_VERSION = b"Debian version:  12 (bookworm)\nInstaller build: 20230607+deb12u15\n"


def make_debian_netboot(root: Path, *, scale: int = 1) -> Path:
    """Debian's netboot installer tree (``scale`` divides the sizes, for ISOs)."""
    for rel, size in DEBIAN_NETBOOT.items():
        sparse(root, rel, size // scale)
    put(root, "version.info", data=DEBIAN_NETBOOT_VERSION)
    return root


# memtest86+ 6.10-4 (Debian 12): /boot/memtest86+{x64,ia32}.{bin,efi}
MEMTEST_DEB = {"boot/memtest86+x64.bin": 144312, "boot/memtest86+x64.efi": 145408,
               "boot/memtest86+ia32.bin": 138712, "boot/memtest86+ia32.efi": 139776}


def make_memtest_deb(root: Path) -> Path:
    """What ``dpkg-deb -x memtest86+_6.10-4_amd64.deb`` unpacks (its /boot part)."""
    for rel, size in MEMTEST_DEB.items():
        sparse(root, rel, size)
    put(root, "etc/grub.d/20_memtest86+", 3000)
    return root


def make_debian_netinst(root: Path, *, scale: int = 1) -> Path:
    """A Debian 12 netinst ISO's content: the CD installer in install.amd/ (sizes about
    those of debian-12.x-amd64-netinst.iso)."""
    sparse(root, "install.amd/vmlinuz", 8_200_000 // scale)
    sparse(root, "install.amd/initrd.gz", 18_000_000 // scale)
    sparse(root, "install.amd/gtk/initrd.gz", 40_000_000 // scale)
    sparse(root, "isolinux/isolinux.bin", 38_912 // scale)
    put(root, ".disk/info", data=b'Debian GNU/Linux 12.5.0 "Bookworm" - Official amd64 '
                                 b'NETINST with firmware 20240210-11:27\n')
    put(root, "pool/main/b/base-files/base-files_12.4+deb12u5_amd64.deb", 70)
    return root


TREEINFO_ALMA = b"""[general]
family = AlmaLinux
name = AlmaLinux 9.3
version = 9.3
arch = x86_64
[release]
name = AlmaLinux
short = AlmaLinux
version = 9.3
[stage2]
mainimage = images/install.img
[images-x86_64]
kernel = images/pxeboot/vmlinuz
initrd = images/pxeboot/initrd.img
"""


def make_redhat(root: Path, *, dvd: bool = False, scale: int = 1,
                treeinfo: bytes = TREEINFO_ALMA) -> Path:
    """An AlmaLinux/Fedora/RHEL tree: images/pxeboot + images/install.img (+ BaseOS repo
    for a DVD; sizes about those of AlmaLinux 9.3)."""
    sparse(root, "images/pxeboot/vmlinuz", 13_000_000 // scale)
    sparse(root, "images/pxeboot/initrd.img", 100_000_000 // scale)
    sparse(root, "images/install.img", 870_000_000 // scale)
    put(root, ".treeinfo", data=treeinfo)
    if dvd:
        put(root, "BaseOS/repodata/repomd.xml", 4000)
        put(root, "BaseOS/Packages/b/bash-5.1.8-6.el9.x86_64.rpm", 90)
    return root


def make_ubuntu_server(root: Path, *, scale: int = 1) -> Path:
    """An Ubuntu 22.04 live-server ISO's content (casper/, several squashfs layers)."""
    sparse(root, "casper/vmlinuz", 13_000_000 // scale)
    sparse(root, "casper/initrd", 105_000_000 // scale)
    sparse(root, "casper/ubuntu-server-minimal.squashfs", 400_000_000 // scale)
    sparse(root, "casper/ubuntu-server-minimal.ubuntu-server.squashfs", 360_000_000 // scale)
    put(root, ".disk/info", data=b'Ubuntu-Server 22.04.4 LTS "Jammy Jellyfish" - Release '
                                 b'amd64 (20240216)\n')
    return root


def make_winpe(root: Path, *, scale: int = 1) -> Path:
    """A Windows PE / setup medium as Microsoft ships it (upper-case BCD, EFI tree)."""
    sparse(root, "bootmgr", 413_738 // scale)
    sparse(root, "boot/BCD", 16_384 // scale)
    sparse(root, "boot/boot.sdi", 3_170_304 // scale)
    sparse(root, "sources/boot.wim", 300_000_000 // scale)
    sparse(root, "efi/boot/bootx64.efi", 2_600_000 // scale)
    return root
