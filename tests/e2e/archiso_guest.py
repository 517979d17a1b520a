"""A SystemRescue-shaped guest whose initramfs mounts its medium the way archiso_pxe_nfs does.

The medium is a directory in SystemRescue's layout (``sysresccd/boot/x86_64/vmlinuz`` +
``sysresccd.img``, ``sysresccd/x86_64/airootfs.sfs``), so pxewizard detects the
``sysrescue-archiso`` profile and writes its real command line for the nfs transport.

``/init`` (busybox sh) does what SystemRescue's initramfs does with that line, with
the real parser: every ``key=value`` word becomes a shell variable (mkinitcpio's
``parse_cmdline``), then the body of archiso v43's ``archiso_pxe_nfs`` hook runs::

    archiso_nfs_srv=$(eval echo ${archiso_nfs_srv})
    [[ -n "${archiso_nfs_opt}" ]] && archiso_nfs_opt="-o ${archiso_nfs_opt}"
    nfsmount ${archiso_nfs_opt} "${archiso_nfs_srv}" "/run/archiso/bootmnt"

with ``nfsmount`` from Debian's klibc-utils (``/usr/lib/klibc/bin/nfsmount`` and the
klibc shared library it names as its interpreter), the program SystemRescue's
mkinitcpio-nfs-utils ports. It first runs the hook with ``pxwtest.old_nfs_opt=``
(the option pxewizard wrote before issue 25) and reports nfsmount's exit status and
words, then with the line pxewizard wrote, reads ``airootfs.sfs`` from the mount and
prints ``PXWTEST-OK sha256=<hex>``.
"""

from __future__ import annotations

import glob
import gzip
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

NFSMOUNT = "/usr/lib/klibc/bin/nfsmount"
MODULES = ("virtio_pci", "virtio_net", "nfs", "nfsv3")
IMAGE = "sysresccd/x86_64/airootfs.sfs"

INIT = r"""#!/bin/busybox sh
# pxwtest archiso guest: SystemRescue's NFS hook with klibc's nfsmount, then airootfs.sfs.
/bin/busybox mkdir -p /proc /sys /dev /tmp /run/archiso/bootmnt
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/lib/klibc/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
fail() { echo "PXWTEST-FAIL $*"; sync; poweroff -f; sleep 5; }
for m in $(cat /modules.list); do
  insmod /lib/modules/$m.ko 2>/dev/null || echo "pxwtest: insmod $m failed"
done
arg() { for w in $(cat /proc/cmdline); do case "$w" in "$1="*) echo "${w#*=}";; esac; done; }
echo "pxwtest: cmdline $(cat /proc/cmdline)"
# mkinitcpio's parse_cmdline: each key=value word (key a shell name) becomes a variable
for w in $(cat /proc/cmdline); do
  case "$w" in *=*) key=${w%%=*}; value=${w#*=} ;; *) key=$w; value=y ;; esac
  case "$key" in ''|*[!a-zA-Z0-9_]*|[0-9]*) continue ;; esac
  eval "$key"='${value}'
done
[ -n "$archiso_nfs_srv" ] || fail "no archiso_nfs_srv= on the kernel command line"
""" + FIND_NIC + r"""[ -n "$IF" ] || fail "no network interface appeared"
ip link set "$IF" up
udhcpc -i "$IF" -s /udhcpc.sh -q -f -n -t 8 -T 2 >/tmp/udhcpc.log 2>&1 \
  || { cat /tmp/udhcpc.log; fail "udhcpc got no lease on $IF"; }

# archiso v43 hooks/archiso_pxe_nfs: run_hook, then the nfsmount of its mount handler
archiso_pxe_nfs() {
    archiso_nfs_srv=$(eval echo ${archiso_nfs_srv})
    [[ -n "${archiso_nfs_opt}" ]] && archiso_nfs_opt="-o ${archiso_nfs_opt}"
    mkdir -p "/run/archiso/bootmnt"
    echo ":: Mounting '${archiso_nfs_srv}'"
    # Do not put "${archiso_nfs_opt}" nfsmount fails!
    nfsmount ${archiso_nfs_opt} "${archiso_nfs_srv}" "/run/archiso/bootmnt"
}

OLD=$(arg pxwtest.old_nfs_opt)
if [ -n "$OLD" ]; then
  ( archiso_nfs_opt="$OLD"; archiso_pxe_nfs ) >/tmp/old.log 2>&1
  rc=$?
  echo "pxwtest: old archiso_nfs_opt=$OLD -> nfsmount exit $rc: $(tr '\n' ' ' </tmp/old.log)"
  [ "$rc" = 0 ] && umount /run/archiso/bootmnt
fi
t0=$(date +%s)
archiso_pxe_nfs >/tmp/new.log 2>&1
rc=$?
echo "pxwtest: new archiso_nfs_opt=${archiso_nfs_opt#-o } -> nfsmount exit $rc after" \
     "$(( $(date +%s) - t0 )) s: $(sort /tmp/new.log | uniq -c | tr '\n' ' ')"
[ "$rc" = 0 ] || fail "nfsmount of the line pxewizard wrote failed"
grep " /run/archiso/bootmnt " /proc/mounts | sed 's/^/pxwtest: mounted /'
F=/run/archiso/bootmnt/${archisobasedir}/x86_64/airootfs.sfs
SUM=$(sha256sum "$F") || fail "read $F"
echo "PXWTEST-OK sha256=${SUM%% *}"
sync
poweroff -f
sleep 5
"""


@dataclass(frozen=True)
class ArchisoMedium:
    """The SystemRescue-shaped medium directory and its root image."""

    root: Path
    image: Path


def klibc_files() -> list[tuple[str, Path]]:
    """(path in the initramfs, file here): nfsmount and the klibc .so it runs under."""
    if not Path(NFSMOUNT).exists():
        raise RuntimeError(f"{NFSMOUNT} not found; install the Debian package klibc-utils")
    libs = sorted(glob.glob("/lib/klibc-*.so") or glob.glob("/usr/lib/klibc-*.so"))
    if not libs:
        raise RuntimeError("klibc's shared library /lib/klibc-*.so not found; install libklibc")
    # nfsmount's ELF interpreter is /lib/klibc-<hash>.so: the same path in the guest
    return [(NFSMOUNT.lstrip("/"), Path(NFSMOUNT)),
            ("lib/" + Path(libs[-1]).name, Path(libs[-1]).resolve())]


def build_medium(root: Path, image_size: int, cache: Path = CACHE) -> ArchisoMedium:
    """sysresccd/boot/x86_64/{vmlinuz,sysresccd.img} + sysresccd/x86_64/airootfs.sfs."""
    vmlinuz, version, modules = kernel_modules(MODULES, cache)
    busybox = _find(BUSYBOX_CANDIDATES, "busybox", "busybox-static")
    cpio = busybox_cpio(busybox, INIT, modules, ("lib", "run/archiso/bootmnt"))
    for inside, here in klibc_files():
        cpio.file(inside, here.read_bytes(), 0o755)

    boot = root / "sysresccd" / "boot" / "x86_64"
    boot.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(vmlinuz, boot / "vmlinuz")
    (boot / "sysresccd.img").write_bytes(gzip.compress(cpio.finish(), compresslevel=6,
                                                       mtime=0))
    (root / "sysresccd" / "VERSION").write_text("12.00\n")
    image = root / IMAGE
    image.parent.mkdir(parents=True, exist_ok=True)
    with open("/dev/urandom", "rb") as rnd:
        image.write_bytes(rnd.read(image_size))
    return ArchisoMedium(root=root, image=image)
