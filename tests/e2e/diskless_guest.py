"""The diskless guest of issue 12: an initramfs that makes an NFS export its root, read-write.

Stage 1 (``/init`` in the initramfs): network up with udhcpc, then the kernel
NFSv3 client mounts ``pxwtest.nfsroot=IP:/path`` read-write with the options
in ``pxwtest.nfsopts=`` (``pxewizard.proto.nfs3.nfs_mount_options``: no
portmapper, ``nolock``) on ``/newroot``, moves /dev, /proc and /sys there and
``switch_root``s into it, running ``/sbin/init`` from the NFS root.

Stage 2 (``/sbin/init`` in the NFS root, a busybox tree the test writes):
writes ``/data/written.bin`` (a line with ``pxwtest.token=`` and 256 KiB from
/dev/urandom, written under a temporary name and renamed), ``sync``s, drops
the page cache, mounts the same export again on /mnt as a separate mount
(``nosharecache``: its own superblock, so every byte comes back from the
server), reads the file back there, compares it with the root's copy and
prints ``PXWTEST-OK sha256=<hex>`` of what it read back. The test then
checks the server's own copy on disk.

Built from the same pieces as ``guest.py`` (Debian's kernel and modules, the
host's static busybox), nothing installed.
"""

from __future__ import annotations

import gzip
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .guest import (
    BUSYBOX_CANDIDATES,
    CACHE,
    FIND_NIC,
    _find,
    busybox_cpio,
    kernel_modules,
)

MODULES = ("virtio_pci", "virtio_net", "nfs", "nfsv3")
WRITTEN = "data/written.bin"

STAGE1 = r"""#!/bin/busybox sh
# pxwtest diskless stage 1: network up, NFS root read-write, switch_root.
/bin/busybox mkdir -p /proc /sys /dev /tmp /newroot
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
fail() { echo "PXWTEST-FAIL $*"; sync; poweroff -f; sleep 5; }
for m in $(cat /modules.list); do insmod /lib/modules/$m.ko 2>/dev/null || echo "pxwtest: insmod $m failed"; done
arg() { for w in $(cat /proc/cmdline); do case "$w" in "$1="*) echo "${w#*=}";; esac; done; }
ROOT=$(arg pxwtest.nfsroot)
OPTS=$(arg pxwtest.nfsopts)
[ -n "$ROOT" ] && [ -n "$OPTS" ] || fail "no pxwtest.nfsroot= / pxwtest.nfsopts= on the command line"
""" + FIND_NIC + r"""[ -n "$IF" ] || fail "no network interface appeared"
ip link set "$IF" up
udhcpc -i "$IF" -s /udhcpc.sh -q -f -n -t 8 -T 2 >/tmp/udhcpc.log 2>&1 || { cat /tmp/udhcpc.log; fail "udhcpc got no lease on $IF"; }
echo "pxwtest: $(ip -4 -o addr show dev $IF | awk '{print $4}') nfsroot=$ROOT"
mount -t nfs -o "rw,$OPTS" "$ROOT" /newroot || fail "mount nfs $ROOT read-write"
[ -x /newroot/sbin/init ] || fail "no /sbin/init in the NFS root"
for d in dev proc sys; do mount --move /$d /newroot/$d || fail "mount --move /$d"; done
echo "pxwtest: switch_root to $ROOT"
exec switch_root /newroot /sbin/init
fail "switch_root returned"
"""

STAGE2 = r"""#!/bin/busybox sh
# pxwtest diskless stage 2: PID 1 on the NFS root. Write, sync, read back on a fresh mount.
bb=/bin/busybox
fail() { echo "PXWTEST-FAIL $*"; $bb sync; $bb poweroff -f; $bb sleep 5; }
arg() { for w in $($bb cat /proc/cmdline); do case "$w" in "$1="*) echo "${w#*=}";; esac; done; }
[ "$$" = 1 ] || fail "stage 2 is not PID 1"
ROOT=$(arg pxwtest.nfsroot)
OPTS=$(arg pxwtest.nfsopts)
TOKEN=$(arg pxwtest.token)
echo "pxwtest: stage 2 on $($bb awk '$2 == "/" {print $1, $3, $4}' /proc/mounts | $bb tail -n 1)"
$bb mkdir -p /data || fail "mkdir /data"
{ echo "pxwtest.token=$TOKEN"; $bb head -c 262144 /dev/urandom; } > /data/written.tmp \
  || fail "write /data/written.tmp"
$bb mv /data/written.tmp /data/written.bin || fail "rename to /data/written.bin"
$bb chmod 0640 /data/written.bin || fail "chmod"
$bb sync
ROOTSUM=$($bb sha256sum /data/written.bin) || fail "read /data/written.bin"
echo 3 > /proc/sys/vm/drop_caches
$bb mount -t nfs -o "ro,nosharecache,$OPTS" "$ROOT" /mnt || fail "second mount of $ROOT"
SUM=$($bb sha256sum /mnt/data/written.bin) || fail "read back /mnt/data/written.bin"
$bb umount /mnt
[ "${SUM%% *}" = "${ROOTSUM%% *}" ] || fail "read back ${SUM%% *}, the root's copy is ${ROOTSUM%% *}"
echo "PXWTEST-OK sha256=${SUM%% *}"
$bb sync
$bb poweroff -f
$bb sleep 5
"""


@dataclass(frozen=True)
class DisklessImages:
    """The kernel and the stage-1 initramfs."""

    kernel: Path
    initrd: Path


def build_initrd(dest: Path, cache: Path = CACHE) -> DisklessImages:
    """Debian's kernel + a stage-1 initramfs (busybox, NIC and NFS modules) in ``dest``."""
    vmlinuz, version, modules = kernel_modules(MODULES, cache)
    busybox = _find(BUSYBOX_CANDIDATES, "busybox", "busybox-static")

    cpio = busybox_cpio(busybox, STAGE1, modules, ("newroot",))

    dest.mkdir(parents=True, exist_ok=True)
    kernel, initrd = dest / "vmlinuz", dest / "initrd.gz"
    shutil.copyfile(vmlinuz, kernel)
    initrd.write_bytes(gzip.compress(cpio.finish(), compresslevel=6, mtime=0))
    return DisklessImages(kernel=kernel, initrd=initrd)


def build_root(dest: Path) -> Path:
    """The busybox root tree the guest mounts read-write: /bin/busybox and /sbin/init only."""
    busybox = _find(BUSYBOX_CANDIDATES, "busybox", "busybox-static")
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "mnt", "etc"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(busybox, dest / "bin" / "busybox")
    os.chmod(dest / "bin" / "busybox", 0o755)
    os.symlink("busybox", dest / "bin" / "sh")
    (dest / "sbin" / "init").write_text(STAGE2)
    os.chmod(dest / "sbin" / "init", 0o755)
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
    return dest
