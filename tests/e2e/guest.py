"""The test guest: Debian's kernel (unpacked, never installed) and a tiny busybox initramfs.

The initramfs's ``/init`` brings the NIC up with udhcpc, reads
``pxwtest.stage3=`` from the kernel command line, fetches or mounts stage 3
and prints ``PXWTEST-OK sha256=<hex>`` on the serial console, then powers the
VM off. On any failure it prints ``PXWTEST-FAIL <why>`` and powers off too,
so a broken boot ends at once instead of at the harness's timeout.

Stage-3 URL forms understood by /init::

    http://IP[:PORT]/path            busybox wget
    tftp://IP/path                   busybox tftp
    nbd:IP:PORT:EXPORT               Debian's nbd-client (copied in with its libraries)
    nfs:IP:/export:relative/file     kernel NFSv3 client, options passed as a string

Everything is cached under ``tests/e2e/.cache`` (git-ignored): the .debs from
``apt-get download``, the unpacked kernel tree and the built images, keyed by a
hash of what went into them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("PXWTEST_CACHE", HERE / ".cache"))

MARKER = "PXWTEST-OK"
FAIL_MARKER = "PXWTEST-FAIL"

# Root modules the guest loads; their dependencies are found from each module's own
# `depends=` field (Debian's package ships no modules.dep).
ROOT_MODULES = ("virtio_pci", "virtio_net", "e1000", "nbd", "nfs", "nfsv3")

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
NBD_CLIENT_CANDIDATES = ("/usr/sbin/nbd-client", "/sbin/nbd-client")

FIND_NIC = r"""ip link set lo up
IF=""
for i in 1 2 3 4 5 6 7 8 9 10; do
  for d in /sys/class/net/*; do n=${d##*/}; [ "$n" = lo ] || { IF=$n; break; }; done
  [ -n "$IF" ] && break
  sleep 0.5
done
"""
"""Guest shell: lo up, and the first other NIC in $IF (it may take a moment to appear)."""

INIT = r"""#!/bin/busybox sh
# pxwtest guest init: network up, fetch/mount stage 3, print its sha256, power off.
/bin/busybox mkdir -p /proc /sys /dev /tmp /mnt /run /var/run
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
fail() { echo "PXWTEST-FAIL $*"; sync; poweroff -f; sleep 5; }
for m in $(cat /modules.list); do
  insmod /lib/modules/$m.ko 2>/dev/null || echo "pxwtest: insmod $m failed"
done
arg() { for w in $(cat /proc/cmdline); do case "$w" in "$1="*) echo "${w#*=}";; esac; done; }
STAGE3=$(arg pxwtest.stage3)
[ -n "$STAGE3" ] || fail "no pxwtest.stage3= on the kernel command line"
""" + FIND_NIC + r"""[ -n "$IF" ] || fail "no network interface appeared"
ip link set "$IF" up
echo "pxwtest: dhcp on $IF"
udhcpc -i "$IF" -s /udhcpc.sh -q -f -n -t 8 -T 2 >/tmp/udhcpc.log 2>&1 \
  || { cat /tmp/udhcpc.log; fail "udhcpc got no lease on $IF"; }
echo "pxwtest: $(ip -4 -o addr show dev $IF | awk '{print $4}') stage3=$STAGE3"
case "$STAGE3" in
  http://*)
    wget -q -O /tmp/stage3 "$STAGE3" || fail "wget $STAGE3"
    SUM=$(sha256sum /tmp/stage3) ;;
  tftp://*)
    rest=${STAGE3#tftp://}; host=${rest%%/*}; path=${rest#*/}
    tftp -g -b 1408 -r "$path" -l /tmp/stage3 "$host" || fail "tftp $STAGE3"
    SUM=$(sha256sum /tmp/stage3) ;;
  nbd:*)
    IFS=: read -r _ host port export <<EOF
$STAGE3
EOF
    nbd-client -N "$export" "$host" "$port" /dev/nbd0 -readonly >/tmp/nbd.log 2>&1 \
      || { cat /tmp/nbd.log; fail "nbd-client $STAGE3"; }
    SUM=$(sha256sum /dev/nbd0)
    nbd-client -d /dev/nbd0 >/dev/null 2>&1 ;;
  nfs:*)
    IFS=: read -r _ host export file <<EOF
$STAGE3
EOF
    NFSOPTS=$(arg pxwtest.nfsopts)
    [ -n "$NFSOPTS" ] || NFSOPTS="vers=3,proto=tcp,nolock,port=2049,mountport=20048,mountproto=tcp"
    mount -t nfs -o "ro,$NFSOPTS,addr=$host" "$host:$export" /mnt || fail "mount nfs $host:$export"
    SUM=$(sha256sum "/mnt/$file") || fail "read /mnt/$file"
    umount /mnt ;;
  *) fail "unknown stage3 form $STAGE3" ;;
esac
echo "PXWTEST-OK sha256=${SUM%% *}"
sync
poweroff -f
sleep 5
"""

UDHCPC_SCRIPT = r"""#!/bin/sh
# Minimal udhcpc hook: configure the address and the default route.
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface"
    echo "pxwtest: lease $ip/${mask:-24} from ${serverid:-?}" ;;
esac
exit 0
"""


@dataclass(frozen=True)
class GuestImages:
    """The built kernel and initramfs, plus where they came from."""

    kernel: Path
    initrd: Path
    kernel_version: str


# --- cpio newc writer (so the build needs neither root nor the cpio tool) ----------------

class Cpio:
    """An in-memory cpio "newc" archive, the format the kernel unpacks as initramfs."""

    def __init__(self) -> None:
        self._buf = io.BytesIO()
        self._ino = 1000
        self._dirs: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"",
               rdev: tuple[int, int] = (0, 0)) -> None:
        self._ino += 1
        namez = name.encode() + b"\0"
        hdr = ("070701" + "".join(f"{v:08x}" for v in (
            self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(namez), 0)))
        self._buf.write(hdr.encode() + namez)
        self._pad()
        self._buf.write(data)
        self._pad()

    def _pad(self) -> None:
        self._buf.write(b"\0" * (-self._buf.tell() % 4))

    def mkdir(self, path: str) -> None:
        path = path.strip("/")
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d and d not in self._dirs:
                self._dirs.add(d)
                self._entry(d, stat.S_IFDIR | 0o755)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        path = path.strip("/")
        if "/" in path:
            self.mkdir(path.rsplit("/", 1)[0])
        self._entry(path, stat.S_IFREG | mode, data)

    def symlink(self, path: str, target: str) -> None:
        path = path.strip("/")
        if "/" in path:
            self.mkdir(path.rsplit("/", 1)[0])
        self._entry(path, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        path = path.strip("/")
        self.mkdir(path.rsplit("/", 1)[0])
        self._entry(path, stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self._buf.getvalue()


# --- kernel package -------------------------------------------------------------------

def _run(*cmd: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def _download_kernel_debs(debs: Path) -> list[Path]:
    """apt-get download linux-image-amd64 and the linux-image-6.x package it depends on."""
    debs.mkdir(parents=True, exist_ok=True)
    have = sorted(debs.glob("linux-image-[0-9]*-amd64_*.deb"))
    if have:
        return have
    out = _run("apt-cache", "depends", "linux-image-amd64")
    deps = re.findall(r"Depends:\s+(linux-image-\d\S*)", out)
    if not deps:
        raise RuntimeError(f"apt-cache depends linux-image-amd64 names no kernel package:\n{out}")
    for pkg in ["linux-image-amd64", *deps]:
        _run("apt-get", "download", "-q", pkg, cwd=debs)
    return sorted(debs.glob("linux-image-[0-9]*-amd64_*.deb"))


def unpack_kernel(cache: Path = CACHE) -> Path:
    """The unpacked kernel package (boot/ and lib/modules/ only); downloaded on first use."""
    deb = _download_kernel_debs(cache / "debs")[-1]
    root = cache / "kernel" / deb.stem
    if (root / ".done").exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    # dpkg-deb -x unpacks everything; we take only the kernel and the modules.
    tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(root), "--wildcards", "./boot/vmlinuz-*",
                    "./lib/modules/*"], stdin=tar.stdout, check=True)
    tar.stdout.close()  # type: ignore[union-attr]
    if tar.wait() != 0:
        raise RuntimeError(f"dpkg-deb --fsys-tarfile {deb} failed")
    (root / ".done").write_text(deb.name)
    return root


_MODINFO = re.compile(rb"(?:^|\0)(name|depends)=([^\0]*)")


def _decompress_module(path: Path) -> bytes:
    """A module's bytes, decompressed when the package ships .ko.xz / .ko.zst / .ko.gz."""
    data = path.read_bytes()
    if path.suffix == ".ko":
        return data
    if path.suffix == ".xz":
        import lzma

        return lzma.decompress(data)
    if path.suffix == ".gz":
        return gzip.decompress(data)
    if path.suffix == ".zst":
        return subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True).stdout
    raise ValueError(f"unknown module compression: {path}")


def module_index(moddir: Path) -> dict[str, Path]:
    """Module name (dashes as underscores) -> file, for every module in the tree."""
    index: dict[str, Path] = {}
    for p in moddir.rglob("*.ko*"):
        name = p.name.split(".ko")[0].replace("-", "_")
        index[name] = p
    return index


def module_depends(data: bytes) -> list[str]:
    """The module's own ``depends=`` field from its .modinfo section."""
    for key, value in _MODINFO.findall(data):
        if key == b"depends":
            return [d.replace("-", "_") for d in value.decode().split(",") if d]
    return []


def resolve_modules(index: dict[str, Path], roots: Iterable[str],
                    builtin: set[str]) -> list[tuple[str, bytes]]:
    """Roots and their dependencies, dependencies first (a topological order)."""
    order: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in seen or name in builtin:
            return
        if name in chain:
            raise RuntimeError(f"module dependency cycle: {' -> '.join(chain + (name,))}")
        if name not in index:
            raise RuntimeError(f"module {name} (needed by {' -> '.join(chain) or 'the guest'}) "
                               "is not in the kernel package")
        data = _decompress_module(index[name])
        for dep in module_depends(data):
            visit(dep, chain + (name,))
        seen.add(name)
        order.append((name, data))

    for r in roots:
        visit(r.replace("-", "_"), ())
    return order


def _binary_with_libs(cpio: Cpio, binary: str) -> None:
    """Copy a dynamically linked binary and every library ldd names, at the same paths."""
    cpio.file(binary, Path(binary).read_bytes(), 0o755)
    out = _run("ldd", binary)
    for line in out.splitlines():
        m = re.search(r"(/\S+)\s+\(0x", line)
        if not m:
            continue
        lib = m.group(1)
        real = Path(lib).resolve()
        cpio.file(lib, real.read_bytes(), 0o755)


def _find(candidates: Iterable[str], what: str, package: str) -> str:
    for c in candidates:
        if os.path.exists(c):
            return c
    raise RuntimeError(f"{what} not found; install the Debian package {package}")


def kernel_modules(wanted: Iterable[str], cache: Path = CACHE
                   ) -> tuple[Path, str, list[tuple[str, bytes]]]:
    """Debian's kernel image, its version, and the ``wanted`` modules with their
    dependencies (built-in ones left out), for a guest's initramfs."""
    root = unpack_kernel(cache)
    vmlinuz = max((root / "boot").glob("vmlinuz-*"))
    version = vmlinuz.name[len("vmlinuz-"):]
    moddir = root / "lib" / "modules" / version
    builtin: set[str] = set()
    if (moddir / "modules.builtin").exists():
        for line in (moddir / "modules.builtin").read_text().splitlines():
            builtin.add(Path(line).name.split(".ko")[0].replace("-", "_"))
    return vmlinuz, version, resolve_modules(module_index(moddir / "kernel"), wanted, builtin)


def busybox_cpio(busybox: str | Path, init: str, modules: list[tuple[str, bytes]],
                 extra_dirs: tuple[str, ...] = ()) -> "Cpio":
    """The base of every guest initramfs: busybox as /bin/sh, console nodes, /init, the
    udhcpc script, and the kernel modules with /modules.list in load order."""
    cpio = Cpio()
    for d in ("bin", "sbin", "proc", "sys", "dev", "tmp", "lib/modules", *extra_dirs):
        cpio.mkdir(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.chardev("dev/null", 1, 3, 0o666)
    cpio.file("bin/busybox", Path(busybox).read_bytes(), 0o755)
    cpio.symlink("bin/sh", "busybox")
    cpio.file("init", init.encode(), 0o755)
    cpio.file("udhcpc.sh", UDHCPC_SCRIPT.encode(), 0o755)
    for name, data in modules:
        cpio.file(f"lib/modules/{name}.ko", data)
    cpio.file("modules.list", "\n".join(n for n, _ in modules).encode() + b"\n")
    return cpio


def build_guest(cache: Path = CACHE) -> GuestImages:
    """Kernel + initramfs for the e2e boots (cached; rebuilt when the inputs change)."""
    root = unpack_kernel(cache)
    vmlinuz = sorted((root / "boot").glob("vmlinuz-*"))[-1]
    version = vmlinuz.name[len("vmlinuz-"):]
    busybox = _find(BUSYBOX_CANDIDATES, "busybox", "busybox-static")
    nbd_client = _find(NBD_CLIENT_CANDIDATES, "nbd-client", "nbd-client")

    key = hashlib.sha256()
    for part in (INIT, UDHCPC_SCRIPT, ",".join(ROOT_MODULES), version,
                 str(os.stat(busybox).st_mtime), str(os.stat(nbd_client).st_mtime),
                 Path(__file__).read_text()):
        key.update(part.encode())
    out = cache / "guest" / key.hexdigest()[:16]
    kernel, initrd = out / "vmlinuz", out / "initrd.gz"
    if kernel.exists() and initrd.exists():
        return GuestImages(kernel=kernel, initrd=initrd, kernel_version=version)

    vmlinuz, version, modules = kernel_modules(ROOT_MODULES, cache)

    cpio = busybox_cpio(busybox, INIT, modules,
                        ("usr/bin", "usr/sbin", "mnt", "etc", "run"))
    _binary_with_libs(cpio, nbd_client)
    cpio.file("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n")

    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    shutil.copyfile(vmlinuz, tmp / "vmlinuz")
    (tmp / "initrd.gz").write_bytes(gzip.compress(cpio.finish(), compresslevel=6, mtime=0))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return GuestImages(kernel=kernel, initrd=initrd, kernel_version=version)


if __name__ == "__main__":  # build by hand: python3 -m tests.e2e.guest
    g = build_guest()
    print(g.kernel, g.kernel.stat().st_size)
    print(g.initrd, g.initrd.stat().st_size)
