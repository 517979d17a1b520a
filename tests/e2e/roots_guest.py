"""The guest of issue 23: a root tree many diskless clients boot, with an initramfs-tools-like
initramfs that implements what Debian's real scripts do.

Debian's initramfs-tools and its ``overlayroot`` package are too heavy to build here, so the
stage-1 initramfs reproduces their interface and their steps with busybox, in the same
files the real image holds (pxewizard reads those names to tell which initramfs a tree has,
so the tree is recognised as "initramfs-tools with overlayroot" and gets the command line a
real Debian tree gets):

- ``/init`` reads ``nfsroot=SERVER:PATH,OPTIONS`` and ``ro``/``rw`` from the kernel command
  line (what pxewizard writes: ``root=/dev/nfs nfsroot=... ip=dhcp ro overlayroot=tmpfs``),
  brings the network up with udhcpc (``ip=dhcp``), then sources ``/scripts/nfs``;
- ``/scripts/nfs`` mounts the NFS root on ``${rootmnt}`` (``/root``) read-only or
  read-write, as initramfs-tools' nfs_mount_root does. busybox's mount takes the extra
  options ``pxwtest.nfsextra=`` adds (explicit ports, no portmapper) where klibc's nfsmount
  would ask the portmapper;
- ``/scripts/init-bottom/overlayroot`` does what overlayroot 0.18 does for
  ``overlayroot=tmpfs``: a tmpfs on /media/root-rw, the root moved to /media/root-ro, an
  overlay (upperdir /media/root-rw/overlay, workdir /media/root-rw/overlay-workdir) mounted
  on ${rootmnt}, and both layers moved under the new root;
- then ``switch_root`` to ``/sbin/init`` of the tree.

Stage 2 (``/sbin/init`` in the tree) names itself after its MAC (``client-52-54-00-...``),
lists the other names it sees in ``/data``, writes ``/data/<its name>`` with the token and
prints ``PXWTEST-OK sha256=<of that file> name=<name> others=[<names>] root=<root mount>``.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

from .guest import (
    BUSYBOX_CANDIDATES,
    CACHE,
    FIND_NIC,
    _find,
    busybox_cpio,
    kernel_modules,
)

MODULES = ("virtio_pci", "virtio_net", "nfs", "nfsv3", "overlay")

INIT = r"""#!/bin/busybox sh
# pxwtest roots stage 1: initramfs-tools' steps for root=/dev/nfs, then init-bottom.
/bin/busybox mkdir -p /proc /sys /dev /tmp /root /media
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
panic() { echo "PXWTEST-FAIL $*"; sync; poweroff -f; sleep 5; }
for m in $(cat /modules.list); do insmod /lib/modules/$m.ko 2>/dev/null || echo "pxwtest: insmod $m failed"; done
export rootmnt=/root readonly=y NFSROOT="" EXTRA=""
for w in $(cat /proc/cmdline); do
  case "$w" in
    nfsroot=*) NFSROOT="${w#nfsroot=}";;
    ro) readonly=y;;
    rw) readonly=n;;
    pxwtest.nfsextra=*) EXTRA="${w#*=}";;
  esac
done
[ -n "$NFSROOT" ] || panic "no nfsroot= on the command line"
""" + FIND_NIC + r"""[ -n "$IF" ] || panic "no network interface appeared"
ip link set "$IF" up
udhcpc -i "$IF" -s /udhcpc.sh -q -f -n -t 8 -T 2 >/tmp/udhcpc.log 2>&1 || { cat /tmp/udhcpc.log; panic "udhcpc got no lease on $IF"; }
. /scripts/nfs
mountroot
/scripts/init-bottom/overlayroot || panic "init-bottom/overlayroot failed"
[ -x $rootmnt/sbin/init ] || panic "no /sbin/init in the root"
for d in dev proc sys; do mkdir -p $rootmnt/$d; mount --move /$d $rootmnt/$d || panic "mount --move /$d"; done
exec switch_root $rootmnt /sbin/init
panic "switch_root returned"
"""

SCRIPTS_NFS = r"""# initramfs-tools scripts/nfs, reduced: nfsroot=SERVER:PATH[,OPTIONS], ro/rw.
mountroot() {
  case "$NFSROOT" in
    *,*) NFSOPTS="${NFSROOT#*,}"; NFSROOT="${NFSROOT%%,*}";;
    *) NFSOPTS="";;
  esac
  if [ "$readonly" = y ]; then roflag=ro; else roflag=rw; fi
  echo "pxwtest: nfs mount $NFSROOT $roflag,$NFSOPTS on $rootmnt"
  mount -t nfs -o "$roflag,$NFSOPTS${EXTRA:+,$EXTRA}" "$NFSROOT" "$rootmnt" \
    || panic "mount -t nfs $NFSROOT $rootmnt"
}
"""

OVERLAYROOT = r"""#!/bin/sh
# overlayroot's init-bottom steps for overlayroot=tmpfs (overlayroot 0.18, driver overlay).
overlayroot=""
for w in $(cat /proc/cmdline); do case "$w" in overlayroot=*) overlayroot="${w#*=}";; esac; done
case "${overlayroot:-disabled}" in
  tmpfs|tmpfs:*) ;;
  disabled) echo "pxwtest: overlayroot disabled"; exit 0;;
  *) echo "pxwtest: overlayroot=$overlayroot not supported here"; exit 1;;
esac
root_rw=/media/root-rw root_ro=/media/root-ro
mkdir -p $root_rw $root_ro
mount -t tmpfs tmpfs-root $root_rw || exit 1
mkdir -p $root_rw/overlay $root_rw/overlay-workdir
mount --move "$rootmnt" $root_ro || exit 1
mount -t overlay -o lowerdir=$root_ro,upperdir=$root_rw/overlay,workdir=$root_rw/overlay-workdir overlayroot "$rootmnt" \
  || { mount --move $root_ro "$rootmnt"; exit 1; }
mkdir -p "$rootmnt$root_ro" "$rootmnt$root_rw"
mount --move $root_ro "$rootmnt$root_ro" || exit 1
mount --move $root_rw "$rootmnt$root_rw" || exit 1
echo "pxwtest: overlayroot: tmpfs over the NFS root"
"""

STAGE2 = r"""#!/bin/busybox sh
# pxwtest roots stage 2: PID 1 on the shared or own root. Write a file named after us.
bb=/bin/busybox
fail() { echo "PXWTEST-FAIL $*"; $bb sync; $bb poweroff -f; $bb sleep 5; }
arg() { for w in $($bb cat /proc/cmdline); do case "$w" in "$1="*) echo "${w#*=}";; esac; done; }
[ "$$" = 1 ] || fail "stage 2 is not PID 1"
MAC=""
for a in /sys/class/net/*/address; do m=$($bb cat $a); [ "$m" = 00:00:00:00:00:00 ] || MAC=$m; done
NAME=client-$(echo "$MAC" | $bb tr : -)
ROOT=$($bb awk '$2 == "/" {print $1 "," $3 "," $4}' /proc/mounts | $bb tail -n 1 | $bb cut -d, -f1-3)
OTHERS=$($bb ls /data | $bb grep -v "^$NAME\$" | $bb tr '\n' ' ')
echo "pxwtest: $NAME on $ROOT sees [$OTHERS]"
echo "pxwtest.token=$(arg pxwtest.token) $NAME" > /data/$NAME || fail "write /data/$NAME"
$bb sync
SUM=$($bb sha256sum /data/$NAME) || fail "read /data/$NAME"
echo "PXWTEST-OK sha256=${SUM%% *} name=$NAME others=[$OTHERS] root=$ROOT"
$bb sync
$bb poweroff -f
$bb sleep 5
"""


def build_tree(dest: Path, cache: Path = CACHE) -> tuple[Path, str]:
    """The root tree (busybox, stage 2, /data, Debian's kernel and our initramfs in boot/);
    returns the tree and the kernel version."""
    vmlinuz, version, modules = kernel_modules(MODULES, cache)
    busybox = _find(BUSYBOX_CANDIDATES, "busybox", "busybox-static")

    cpio = busybox_cpio(busybox, INIT, modules, ("root", "media"))
    cpio.file("conf/initramfs.conf", b"BOOT=nfs\n")
    cpio.file("scripts/nfs", SCRIPTS_NFS.encode(), 0o644)
    cpio.file("scripts/init-bottom/overlayroot", OVERLAYROOT.encode(), 0o755)

    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "etc", "boot", "data", "media"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(busybox, dest / "bin" / "busybox")
    os.chmod(dest / "bin" / "busybox", 0o755)
    os.symlink("busybox", dest / "bin" / "sh")
    (dest / "sbin" / "init").write_text(STAGE2)
    os.chmod(dest / "sbin" / "init", 0o755)
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
    (dest / "etc" / "os-release").write_text('PRETTY_NAME="pxwtest busybox root"\n')
    (dest / "etc" / "fstab").write_text("proc /proc proc defaults 0 0\n")
    shutil.copyfile(vmlinuz, dest / "boot" / f"vmlinuz-{version}")
    (dest / "boot" / f"initrd.img-{version}").write_bytes(
        gzip.compress(cpio.finish(), compresslevel=6, mtime=0))
    for f in (dest / "boot").iterdir():
        os.chmod(f, 0o644)
    return dest, version
