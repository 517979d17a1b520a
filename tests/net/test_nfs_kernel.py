"""The Linux kernel's NFS client against our server: rw, ro, squashed, and NFSv4 refused.

This machine's own kernel has no NFS client, so a QEMU guest runs Debian's
kernel (unpacked, with its nfs modules) and a busybox initramfs whose /init
mounts our exports with the options pxewizard prints (``vers=3,nolock,...``),
writes, renames, links, makes a device node, creates as another user, copies
a tree of symlinks, remounts and reads back; then, holding a cwd and open
files, it waits on the serial console while the server restarts, and goes on
through those same handles; then it powers off. QEMU's user
network runs inside a test namespace: the guest's 10.0.2.2 is that
namespace's loopback, where `pxewizard serve` listens. The results are
checked both from the guest's report and on the server's disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import select
import stat
import subprocess
import time
from pathlib import Path

import pytest

from pxewizard.events import RpcVersionRefused, from_dict
from pxewizard.insight.session import diagnose_events
from tests.e2e.guest import FIND_NIC
from tests.net.test_nfs import serve_nfs
from tests.support.netns import namespace
from tests.support.serving import write_plan
from tests.support.tools import require, require_root

GUEST_INIT = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /mnt /mnt2 /mnt3 /run
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
say() { echo "PXWK $*"; }
for m in $(cat /modules.list); do insmod /lib/modules/$m.ko 2>/dev/null; done
arg() { for w in $(cat /proc/cmdline); do case "$w" in "$1="*) echo "${w#*=}";; esac; done; }
""" + FIND_NIC + r"""ip link set "$IF" up
udhcpc -i "$IF" -s /udhcpc.sh -q -f -n -t 8 -T 2 >/tmp/udhcpc.log 2>&1 || say dhcp=fail
echo "u1000:x:1000:1000::/tmp:/bin/sh" >> /etc/passwd
H=10.0.2.2
O="vers=3,proto=tcp,nolock,port=2049,mountport=20048,mountproto=tcp,addr=$H"
# the classic mistake first: an NFSv4 mount (issue 21: named by an event and a finding)
if mount -t nfs -o "vers=4,proto=tcp,port=2049,addr=$H" "$H:$(arg pxwk.ro)" /mnt2 2>/tmp/v4err
then say v4=mounted; umount /mnt2; else say v4=refused; fi
if mount -t nfs -o "rw,$O" "$H:$(arg pxwk.rw)" /mnt; then say mount=ok; else say mount=fail; fi
dd if=/dev/urandom of=/mnt/big.bin bs=1M count=6 2>/dev/null && sync
say big=$(sha256sum /mnt/big.bin | cut -d' ' -f1)
mkdir /mnt/d && say mkdir=ok
echo hello > /mnt/d/a && mv /mnt/d/a /mnt/d/b && say rename=ok
ln /mnt/d/b /mnt/d/c && say link=ok
ln -s b /mnt/d/s && say symlink=$(readlink /mnt/d/s)
mknod /mnt/d/null c 1 3 && say mknod=ok
chmod 0750 /mnt/d/b && say chmod=ok
chown 1000:1000 /mnt/d && say chown=ok
su u1000 -c "echo user > /mnt/d/u.txt" && say user_create=ok
if su u1000 -c "echo x > /mnt/rootonly.txt" 2>/dev/null; then say user_denied=no
else say user_denied=yes; fi
rm /mnt/d/c && say unlink=ok
mkdir /mnt/e && rmdir /mnt/e && say rmdir=ok
cp -a /bin /mnt/bincopy && say cptree=$(ls /mnt/bincopy | wc -l)
truncate -s 100 /mnt/d/t && say truncate=$(stat -c %s /mnt/d/t)
umount /mnt && say umount=ok
mount -t nfs -o "rw,$O" "$H:$(arg pxwk.rw)" /mnt
say big2=$(sha256sum /mnt/big.bin | cut -d' ' -f1)
say b=$(cat /mnt/d/s)
cd /mnt/d
exec 4>>/mnt/d/log
echo before >&4
exec 3</mnt/big.bin
say phase1=ready
read -r go
echo after >&4
say log=$(cat log | tr '\n' ,)
say big3=$(sha256sum <&3 | cut -d' ' -f1)
echo "after restart" > new-after.txt && say create_after=ok
exec 3<&- 4>&-
cd /
umount /mnt
if mount -t nfs -o "rw,$O" "$H:$(arg pxwk.ro)" /mnt2; then
  if touch /mnt2/x 2>/tmp/err; then say ro_write=allowed
  else say ro_write=$(tr ' ' _ </tmp/err); fi
  say ro_read=$(cat /mnt2/keep.txt)
  umount /mnt2
fi
if mount -t nfs -o "rw,$O" "$H:$(arg pxwk.sq)" /mnt3; then
  echo r > /mnt3/byroot && say squash_create=ok
  umount /mnt3
fi
say done
sync
poweroff -f
sleep 5
"""


@pytest.fixture(scope="module")
def guest_images():
    require_root()
    require("qemu-system-x86_64", "busybox", "nbd-client")
    from tests.e2e import guest

    saved = guest.INIT, guest.ROOT_MODULES
    guest.INIT = GUEST_INIT  # the e2e builder, with our /init (cached under its own key)
    guest.ROOT_MODULES = (*guest.ROOT_MODULES, "nfsv4")  # for the NFSv4 attempt
    try:
        return guest.build_guest()
    finally:
        guest.INIT, guest.ROOT_MODULES = saved


def test_kernel_client_read_write(guest_images, tmp_path: Path):
    from pxewizard.commands.lab import choose_accel

    rw, ro, sq = tmp_path / "rw", tmp_path / "ro", tmp_path / "sq"
    for d in (rw, ro, sq):
        d.mkdir()
    os.chmod(sq, 0o777)
    (ro / "keep.txt").write_text("readonly-content\n")
    plan = write_plan(tmp_path, {
        "interface": "lo", "server_ip": "127.0.0.1", "prefix": 8,
        "dhcp": {"mode": "none"}, "tftp": {"enabled": False}, "http": {"enabled": False},
        "boot": {"transport": "nfs"},
        "nfs": {"enabled": True, "exports": [
            {"path": str(rw), "rw": True, "squash": "no_root_squash"},
            {"path": str(ro)},
            {"path": str(sq), "rw": True},
        ]},
    })
    cmdline = f"console=ttyS0 panic=-1 quiet pxwk.rw={rw} pxwk.ro={ro} pxwk.sq={sq}"
    with namespace("nfsk") as ns, contextlib.ExitStack() as stack:
        served = stack.enter_context(serve_nfs(ns, plan))
        qemu = ["qemu-system-x86_64", "-accel", choose_accel()[0], "-m", "512", "-no-reboot",
                "-display", "none", "-monitor", "none", "-serial", "stdio",
                "-kernel", str(guest_images.kernel), "-initrd", str(guest_images.initrd),
                "-append", cmdline, "-netdev", "user,id=n0",
                "-device", "virtio-net-pci,netdev=n0"]
        vm = ns.popen(*qemu, stdin=subprocess.PIPE, bufsize=0)
        output = b""
        deadline = time.monotonic() + 300
        restarted = False
        while vm.poll() is None and time.monotonic() < deadline:
            if select.select([vm.stdout], [], [], 0.5)[0]:
                output += os.read(vm.stdout.fileno(), 65536)
            if not restarted and b"PXWK phase1=ready" in output:
                # The guest holds a cwd, an open file for reading and one for appending:
                # restart the server under it, then let it go on with those handles.
                stack.close()
                served = stack.enter_context(serve_nfs(ns, plan))
                vm.stdin.write(b"go\n")
                restarted = True
        if vm.poll() is None:
            vm.kill()
            raise AssertionError("guest did not finish:\n" + output.decode(errors="replace"))
        output += vm.stdout.read()
        errors = [e for e in served.events()
                  if e["kind"] == "log_line" and e["level"] == "error"]
        assert not errors, errors
        kinds = {e["kind"] for e in served.events()}
        assert {"session_opened", "transfer_started"} <= kinds  # (busybox umount sends no UMNT)
        events = [from_dict(e) for e in served.events()]
    stdout = output.decode(errors="replace")
    out = dict(re.findall(r"^PXWK (\w+)=?(.*?)\r?$", stdout, re.M))
    print("\n".join(f"{k}={v}" for k, v in out.items()))
    assert "done" in out, stdout[-3000:]
    # the kernel's NFSv4 attempt: refused with PROG_MISMATCH, said as an event and a finding
    assert out["v4"] == "refused", stdout[-3000:]
    v4 = [e for e in events if isinstance(e, RpcVersionRefused) and e.version == 4]
    assert v4 and v4[0].program == 100003 and (v4[0].low, v4[0].high) == (3, 3)
    _snap, findings = diagnose_events(events)
    (f,) = [f for f in findings if f.rule == "nfs-v4"]
    assert "vers=3" in f.fix
    want_ok = ("mount", "create_after", "mkdir", "rename", "link", "mknod", "chmod", "chown",
               "user_create",
               "unlink", "rmdir", "umount", "squash_create")
    assert {k: out.get(k) for k in want_ok} == {k: "ok" for k in want_ok}, stdout[-3000:]
    big = hashlib.sha256((rw / "big.bin").read_bytes()).hexdigest()
    assert out["big"] == out["big2"] == big
    assert out["symlink"] == "b" and out["b"] == "hello"
    # after the restart: the same handles (cwd, open files) still work
    assert out["log"] == "before,after," and out["big3"] == big
    assert out["create_after"] == "ok" and (d_after := rw / "d" / "new-after.txt").exists()
    assert d_after.read_text() == "after restart\n"
    assert (rw / "d" / "log").read_text() == "before\nafter\n"  # written through the old handle
    assert out["user_denied"] == "yes"
    assert out["truncate"] == "100"
    assert "Read-only_file_system" in out["ro_write"] and out["ro_read"] == "readonly-content"
    # on the server's disk: owners, modes, device node, links
    d = rw / "d"
    assert (os.lstat(d).st_uid, os.lstat(d).st_gid) == (1000, 1000)
    assert stat.S_IMODE(os.lstat(d / "b").st_mode) == 0o750
    assert os.lstat(d / "b").st_nlink == 1 and not (d / "c").exists()
    assert os.readlink(d / "s") == "b"
    n = os.lstat(d / "null")
    assert stat.S_ISCHR(n.st_mode) and (os.major(n.st_rdev), os.minor(n.st_rdev)) == (1, 3)
    assert os.lstat(d / "u.txt").st_uid == 1000 and (d / "u.txt").read_text() == "user\n"
    assert not (rw / "rootonly.txt").exists()
    copied = os.listdir(rw / "bincopy")
    assert int(out["cptree"]) == len(copied) > 100
    assert all(os.path.islink(rw / "bincopy" / x) for x in copied if x != "busybox")
    assert not (ro / "x").exists()
    s = os.lstat(sq / "byroot")
    assert (s.st_uid, s.st_gid) == (65534, 65534)
