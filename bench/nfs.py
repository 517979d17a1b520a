#!/usr/bin/env python3
"""NFS read throughput: pxewizard's NFSv3 server against nfs-ganesha, read with libnfs's nfs-cat.

Run as root from the repository root (not run by CI):

    python3 bench/nfs.py [--size-mib 256] [--runs 5] [--clients 4]

Both servers run in turn in the same server namespace, the reader in a client
namespace joined by a veth pair (10.99.0.1 <-> 10.99.0.10); no traffic leaves
the namespaces. The peer is nfs-ganesha (VFS FSAL; apt-get nfs-ganesha
nfs-ganesha-vfs rpcbind, installed when missing) with its own rpcbind in a
private mount namespace, so nothing of it touches the host's /run. When
ganesha does not start, kernel nfsd is tried (only if the kernel has it),
else the peer is reported as unavailable. The kernel NFS client is used too
when this kernel has one (``nfs`` in /proc/filesystems).

Prints MB/s (best and median of the runs, one client and N parallel clients)
and the ratio ours/peer. Files are checked byte for byte once per server.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.netns import link_netns, namespace  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from _common import stop  # noqa: E402

SERVER, CLIENT = "10.99.0.1", "10.99.0.10"


def sh(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


def wait_port(cli, port: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    probe = f"import socket; socket.create_connection(('{SERVER}', {port}), timeout=1).close()"
    while time.monotonic() < deadline:
        if cli.run(sys.executable, "-c", probe, check=False).returncode == 0:
            return True
        time.sleep(0.3)
    return False


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a server process (all its threads)."""
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def read_runs(cli, url: str, runs: int, size: int, clients: int, pid: int) -> dict[str, float]:
    """MB/s of nfs-cat to /dev/null: best/median of one client, and N clients in parallel;
    plus the server's CPU seconds per GiB sent (what a busy machine disturbs least)."""
    cpu0 = cpu_seconds(pid)
    single = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run(cli.cmd("sh", "-c", f"nfs-cat '{url}' > /dev/null"),
                           capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            raise RuntimeError(f"nfs-cat failed: {r.stderr.strip()}")
        single.append(size / dt / 1e6)
    cpu_per_gib = (cpu_seconds(pid) - cpu0) / (runs * size / 2**30)
    par = []
    for _ in range(max(1, runs // 2)):
        t0 = time.perf_counter()
        procs = [subprocess.Popen(cli.cmd("sh", "-c", f"nfs-cat '{url}' > /dev/null"))
                 for _ in range(clients)]
        if any(p.wait() != 0 for p in procs):
            raise RuntimeError("a parallel nfs-cat failed")
        par.append(size * clients / (time.perf_counter() - t0) / 1e6)
    return {"best": max(single), "median": statistics.median(single), "parallel": max(par),
            "cpu": cpu_per_gib}


def check_identical(cli, url: str, want: str) -> None:
    p = subprocess.run(cli.cmd("nfs-cat", url), capture_output=True)
    got = hashlib.sha256(p.stdout).hexdigest()
    if got != want:
        raise RuntimeError(f"{url}: sha256 {got} != {want}")


def kernel_client(cli, srv_path: str, mount_opts: str, size: int, runs: int) -> float | None:
    """Best MB/s with the kernel NFS client, or None when this kernel has none."""
    if "nfs" not in Path("/proc/filesystems").read_text().split():
        return None
    mnt = tempfile.mkdtemp(prefix="pxw-nfsbench-mnt-")
    try:
        r = cli.run("mount", "-t", "nfs", "-o", mount_opts, f"{SERVER}:{srv_path}", mnt,
                    check=False)
        if r.returncode != 0:
            print(f"  kernel client mount failed: {r.stderr.strip()}")
            return None
        best = 0.0
        for _ in range(runs):
            cli.run("sh", "-c", "echo 3 > /proc/sys/vm/drop_caches", check=False)
            t0 = time.perf_counter()
            cli.run("dd", f"if={mnt}/big.bin", "of=/dev/null", "bs=1M")
            best = max(best, size / (time.perf_counter() - t0) / 1e6)
        cli.run("umount", mnt, check=False)
        return best
    finally:
        os.rmdir(mnt)


def run_ours(srv, cli, data: Path, tmp: Path, args, want: str) -> dict[str, float]:
    import tomli_w

    plan = tmp / "plan.toml"
    plan.write_text(tomli_w.dumps({
        "interface": "pxe0", "server_ip": SERVER, "state_dir": str(tmp / "state"),
        "dhcp": {"mode": "none"}, "tftp": {"enabled": False}, "http": {"enabled": False},
        "boot": {"transport": "nfs"}, "nfs": {"enabled": True, "exports": [{"path": str(data)}]},
    }))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = srv.popen(sys.executable, "-m", "pxewizard", "serve", "--quiet", "--plan", str(plan),
                     env=env, stdout=subprocess.DEVNULL)
    try:
        if not wait_port(cli, 2049):
            raise RuntimeError("pxewizard serve did not start")
        url = f"nfs://{SERVER}{data}/big.bin"
        check_identical(cli, url, want)
        res = read_runs(cli, url, args.runs, args.size_mib << 20, args.clients, proc.pid)
        k = kernel_client(cli, str(data), "vers=3,nolock,tcp,port=2049,mountport=20048",
                          args.size_mib << 20, args.runs)
        if k is not None:
            res["kernel"] = k
        return res
    finally:
        stop(proc, grace=10)


GANESHA_CONF = """
NFS_CORE_PARAM {{ NFS_Port = 2049; MNT_Port = 20048; Protocols = 3; Enable_NLM = false;
                 Enable_RQUOTA = false; Bind_addr = {server}; }}
NFSV4 {{ Graceless = true; }}
EXPORT {{ Export_Id = 1; Path = {path}; Pseudo = {path}; Access_Type = RO;
         Squash = No_Root_Squash; Protocols = 3; Transports = TCP; SecType = sys;
         FSAL {{ Name = VFS; }} }}
LOG {{ Default_Log_Level = WARN; }}
"""

GANESHA_START = """
set -e
# a private /run: rpcbind's socket and ganesha's state never reach the host's /run
mount -t tmpfs tmpfs /run
mkdir -p /run/ganesha /run/rpcbind /var/lib/nfs/ganesha
rpcbind -w -f &
sleep 1
exec ganesha.nfsd -F -L {log} -f {conf} -p /run/ganesha/pid
"""


def ensure_ganesha() -> bool:
    if shutil.which("ganesha.nfsd") and shutil.which("rpcbind") and \
            Path("/usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so").exists():
        return True
    r = sh("apt-get", "install", "-y", "-q", "--no-install-recommends", "nfs-ganesha",
           "nfs-ganesha-vfs", "rpcbind", check=False,
           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    return r.returncode == 0 and shutil.which("ganesha.nfsd") is not None


def run_ganesha(srv, cli, data: Path, tmp: Path, args, want: str) -> dict[str, float] | str:
    if not ensure_ganesha():
        return "nfs-ganesha could not be installed"
    conf, log = tmp / "ganesha.conf", tmp / "ganesha.log"
    conf.write_text(GANESHA_CONF.format(server=SERVER, path=data))
    start = tmp / "ganesha.sh"
    start.write_text(GANESHA_START.format(log=log, conf=conf))
    proc = srv.popen("unshare", "-m", "--propagation", "private", "sh", str(start),
                     stdout=subprocess.DEVNULL)
    try:
        if not wait_port(cli, 2049) or proc.poll() is not None:
            tail = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else []
            return "nfs-ganesha did not start: " + " | ".join(tail)
        url = f"nfs://{SERVER}{data}/big.bin"
        check_identical(cli, url, want)
        res = read_runs(cli, url, args.runs, args.size_mib << 20, args.clients, proc.pid)
        k = kernel_client(cli, str(data), "vers=3,nolock,tcp,port=2049,mountport=20048",
                          args.size_mib << 20, args.runs)
        if k is not None:
            res["kernel"] = k
        return res
    finally:
        stop(proc, grace=10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root (network namespaces)")
        return 2
    if not shutil.which("nfs-cat"):
        sh("apt-get", "install", "-y", "-q", "libnfs-utils",
           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    tmp = Path(tempfile.mkdtemp(prefix="pxw-nfsbench-"))
    try:
        data = tmp / "data"
        data.mkdir()
        big = data / "big.bin"
        h = hashlib.sha256()
        with open(big, "wb") as f:
            for _ in range(args.size_mib):
                chunk = os.urandom(1 << 20)
                h.update(chunk)
                f.write(chunk)
        want = h.hexdigest()
        with namespace("nfsb-srv") as srv, namespace("nfsb-cli") as cli:
            link_netns(srv, "pxe0", cli, "eth0", a_addr=f"{SERVER}/24", b_addr=f"{CLIENT}/24")
            print(f"file: {args.size_mib} MiB, page cache warm; nfs-cat runs: {args.runs}; "
                  f"parallel clients: {args.clients}; 2 cores shared with other work")
            ours = run_ours(srv, cli, data, tmp, args, want)
            peer = run_ganesha(srv, cli, data, tmp, args, want)
        kernel_note = "" if "nfs" in Path("/proc/filesystems").read_text().split() else \
            " (kernel NFS client: not in this kernel, skipped)"
        print(f"pxewizard     nfs-cat best {ours['best']:7.1f} MB/s  median "
              f"{ours['median']:7.1f}  {args.clients} clients {ours['parallel']:7.1f} MB/s  "
              f"server CPU {ours['cpu']:.2f} s/GiB"
              + (f"  kernel client {ours['kernel']:.1f} MB/s" if "kernel" in ours else ""))
        if isinstance(peer, str):
            print(f"peer: {peer}; kernel nfsd: "
                  + ("present" if "nfsd" in Path("/proc/filesystems").read_text() else
                     "not in this kernel") + " - no ratio")
            return 0
        print(f"nfs-ganesha   nfs-cat best {peer['best']:7.1f} MB/s  median "
              f"{peer['median']:7.1f}  {args.clients} clients {peer['parallel']:7.1f} MB/s  "
              f"server CPU {peer['cpu']:.2f} s/GiB"
              + (f"  kernel client {peer['kernel']:.1f} MB/s" if "kernel" in peer else ""))
        print(f"ratio ours/ganesha: best {ours['best'] / peer['best']:.2f}  median "
              f"{ours['median'] / peer['median']:.2f}  parallel "
              f"{ours['parallel'] / peer['parallel']:.2f}  CPU/GiB (lower is better) "
              f"{ours['cpu'] / peer['cpu']:.2f}" + kernel_note)
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
