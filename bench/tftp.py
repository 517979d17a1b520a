#!/usr/bin/env python3
"""TFTP throughput: pxewizard's server against tftpd-hpa and dnsmasq, in one run.

    python3 bench/tftp.py [--runs 5] [--big-mib 64] [--small-mib 16] [--clients 20]

Run as root. dnsmasq cannot move its TFTP port, so the servers run at once
on port 69 of their own loopback address (ours 127.0.0.1, tftpd-hpa
127.0.0.2, dnsmasq 127.0.0.3) inside a private network namespace
(``pxwt-bench-*``, removed at the end); a veth pair is kept inside it because
in.tftpd ``-a`` exits when the namespace only has loopback. Peers come from Debian: dnsmasq
(dnsmasq-base, installed with apt-get when missing) and tftpd-hpa (fetched with
``apt-get download`` and unpacked with ``dpkg-deb -x``: it conflicts with
atftpd and its package would start a system service). Clients: curl
(``--tftp-blksize``, lockstep) and atftp (``--option windowsize``), both C.

Workloads (each test runs on every server back to back, in a rotating order, so
noise from a shared machine hits all of them alike):

- one 64 MiB download at blksize 1468 (curl), and at 8192 (curl);
- one 64 MiB download at blksize 1468 + windowsize 8 (atftp; neither peer
  implements RFC 7440, so they run it lockstep and the ratio is against that);
- 20 concurrent curl downloads of a 16 MiB file at blksize 1468 (aggregate MB/s).

Prints MB/s per run, medians and our/peer ratios. The machine may be shared:
ratios from the same run matter, not absolutes.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def ensure_peers(cache: Path) -> tuple[str, str]:
    """(dnsmasq binary, in.tftpd binary), installing from Debian packages when missing."""
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not os.path.exists(dnsmasq):
        sh("apt-get", "install", "-y", "--no-install-recommends", "dnsmasq-base")
    intftpd = shutil.which("in.tftpd") or "/usr/sbin/in.tftpd"
    if not os.path.exists(intftpd):
        unpacked = cache / "tftpd-hpa" / "usr" / "sbin" / "in.tftpd"
        if not unpacked.exists():
            cache.mkdir(parents=True, exist_ok=True)
            sh("bash", "-c", f"cd {cache} && rm -f tftpd-hpa_*.deb && "
                             "apt-get download tftpd-hpa")
            deb = next(cache.glob("tftpd-hpa_*.deb"))
            sh("dpkg-deb", "-x", str(deb), str(cache / "tftpd-hpa"))
        intftpd = str(unpacked)
    for tool, pkg in (("curl", "curl"), ("atftp", "atftp")):
        if not shutil.which(tool):
            sh("apt-get", "install", "-y", "--no-install-recommends", pkg)
    return dnsmasq, intftpd


@contextlib.contextmanager
def bench_namespace() -> Iterator[str]:
    name = f"pxwt-bench-{secrets.token_hex(3)}"
    sh("ip", "netns", "add", name)
    try:
        ex = ("ip", "netns", "exec", name)
        sh(*ex, "ip", "link", "set", "lo", "up")
        sh(*ex, "ip", "link", "add", "bv0", "type", "veth", "peer", "name", "bv1")
        sh(*ex, "ip", "addr", "add", "10.98.0.1/24", "dev", "bv0")
        sh(*ex, "ip", "link", "set", "bv0", "up")
        sh(*ex, "ip", "link", "set", "bv1", "up")
        yield name
    finally:
        sh("ip", "netns", "del", name, check=False)


class Server:
    def __init__(self, name: str, ns: str, addr: str, cmd: list[str],
                 env: dict[str, str] | None = None):
        self.name, self.ns, self.addr, self.cmd, self.env = name, ns, addr, cmd, env
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, *self.cmd],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=self.env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""
                raise RuntimeError(f"{self.name} exited: {out}")
            listening = sh("ip", "netns", "exec", self.ns, "ss", "-uln").stdout
            if re.search(rf"\s{re.escape(self.addr)}(%\S+)?:69\s", listening):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not bind port 69")

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its reaped children (tftpd-hpa forks per client)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def timed(ns: str, cmds: list[list[str]]) -> float:
    """Run commands concurrently in the namespace; seconds until all ended (all must succeed)."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(["ip", "netns", "exec", ns, *c], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for c in cmds]
    errs = []
    for p in procs:
        _, err = p.communicate(timeout=300)
        if p.returncode != 0:
            errs.append(err.decode(errors="replace")[-300:])
    dt = time.perf_counter() - t0
    if errs:
        raise RuntimeError(f"{len(errs)} client(s) failed: {errs[0]}")
    return dt


def curl(addr: str, name: str, blksize: int, out: str) -> list[str]:
    return ["curl", "-sS", "--fail", "-o", out, "--tftp-blksize", str(blksize),
            f"tftp://{addr}/{name}"]


def atftp(addr: str, name: str, blksize: int, windowsize: int, out: str) -> list[str]:
    return ["atftp", "--option", f"blksize {blksize}", "--option", f"windowsize {windowsize}",
            "-g", "-r", name, "-l", out, addr, "69"]


def sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--big-mib", type=int, default=64)
    ap.add_argument("--small-mib", type=int, default=16)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--only", nargs="*", help="servers to run (ours, tftpd-hpa, dnsmasq)")
    ap.add_argument("--cache", default="/var/tmp/pxw-bench-peers")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (network namespace, port 69)")
    dnsmasq, intftpd = ensure_peers(Path(args.cache))

    work = Path(tempfile.mkdtemp(prefix="pxw-bench-tftp-"))
    os.chmod(work, 0o755)
    root = work / "root"
    root.mkdir(mode=0o755)
    out_dir = Path(tempfile.mkdtemp(prefix="pxw-bench-out-", dir="/dev/shm"))
    try:
        big, small = root / "big.bin", root / "small.bin"
        big.write_bytes(os.urandom(args.big_mib * MiB))
        small.write_bytes(os.urandom(args.small_mib * MiB))
        for f in (big, small):
            os.chmod(f, 0o644)
        big_sha = sha(big)
        state = work / "state"
        plan = work / "plan.toml"
        plan.write_text(
            f'interface = "lo"\nserver_ip = "127.0.0.1"\nprefix = 8\nstate_dir = "{state}"\n'
            f'[dhcp]\nmode = "none"\n[http]\nenabled = false\n[boot]\ntransport = "tftp"\n'
            f'[tftp]\nroot = "{root}"\nwindowsize = 16\n')
        env = dict(os.environ, PYTHONPATH=str(REPO))
        addrs = {"ours": "127.0.0.1", "tftpd-hpa": "127.0.0.2", "dnsmasq": "127.0.0.3"}
        with bench_namespace() as ns, contextlib.ExitStack() as stack:
            servers = {
                "ours": lambda: Server("ours", ns, addrs["ours"], [
                    sys.executable, "-m", "pxewizard", "serve", "--quiet", "--plan", str(plan)],
                    env),
                "tftpd-hpa": lambda: Server("tftpd-hpa", ns, addrs["tftpd-hpa"], [
                    intftpd, "-L", "-s", str(root), "-a", f"{addrs['tftpd-hpa']}:69",
                    "-u", "nobody"]),
                "dnsmasq": lambda: Server("dnsmasq", ns, addrs["dnsmasq"], [
                    dnsmasq, "-k", "-C", "/dev/null", "--port=0", "--enable-tftp",
                    f"--tftp-root={root}", f"--listen-address={addrs['dnsmasq']}",
                    "--bind-interfaces", "--user=nobody", f"--pid-file={work}/dnsmasq.pid",
                    "--log-facility=-"]),
            }
            names = args.only or list(servers)
            # All servers run at once (port 69 of their own loopback address) and each test
            # runs on every server back to back, in an order that rotates: a busy machine
            # then disturbs all of them alike.
            running = {n: stack.enter_context(servers[n]()) for n in names}
            tests = {
                "1468": lambda a, o: [curl(a, "big.bin", 1468, o + "/a")],
                "8192": lambda a, o: [curl(a, "big.bin", 8192, o + "/a")],
                "1468 w8": lambda a, o: [atftp(a, "big.bin", 1468, 8, o + "/a")],
                f"{args.clients}x{args.small_mib}MiB": lambda a, o: [
                    curl(a, "small.bin", 1468, f"{o}/c{i}") for i in range(args.clients)],
            }
            volume = {"1468": args.big_mib, "8192": args.big_mib, "1468 w8": args.big_mib,
                      f"{args.clients}x{args.small_mib}MiB": args.small_mib * args.clients}
            res: dict[str, dict[str, list[float]]] = {n: {t: [] for t in tests} for n in names}
            cpu: dict[str, dict[str, list[float]]] = {n: {t: [] for t in tests} for n in names}
            for run in range(args.runs):
                for t, make in tests.items():
                    k = run % len(names)
                    for n in names[k:] + names[:k]:
                        pid = running[n].proc.pid  # type: ignore[union-attr]
                        c0 = cpu_seconds(pid)
                        dt = timed(ns, make(addrs[n], str(out_dir)))
                        time.sleep(0.2)  # let tftpd-hpa reap its children
                        cpu[n][t].append((cpu_seconds(pid) - c0) / (volume[t] * MiB / 1e9))
                        res[n][t].append(volume[t] * MiB / dt / 1e6)
                        if run == 0 and t in ("1468", "1468 w8"):
                            if sha(out_dir / "a") != big_sha:
                                raise RuntimeError(f"{n} {t}: download differs")
                        for f in out_dir.iterdir():
                            f.unlink()
                print(f"run {run + 1}: " + "  ".join(
                    f"{n}[" + " ".join(f"{t}={res[n][t][-1]:.0f}" for t in tests) + "]"
                    for n in names), flush=True)
        print(f"\nmedians of {args.runs} runs, MB/s (1 MB = 10^6 bytes); clients: curl "
              "(lockstep), atftp (windowsize)")
        header = f"{'test':<14}" + "".join(f"{n:>11}" for n in names)
        peers = [n for n in names if n != "ours"]
        if "ours" in names and peers:
            header += "".join(f"{'ours/' + p:>16}" for p in peers) + f"{'ours/best':>11}"
        print(header)
        for t in tests:
            med = {n: statistics.median(res[n][t]) for n in names}
            line = f"{t:<14}" + "".join(f"{med[n]:>11.1f}" for n in names)
            if "ours" in names and peers:
                line += "".join(f"{med['ours'] / med[p]:>16.2f}" for p in peers)
                line += f"{med['ours'] / max(med[p] for p in peers):>11.2f}"
            print(line)
        print("\nbest of the runs, MB/s (what each server does when the machine lets it)")
        print(header)
        for t in tests:
            best = {n: max(res[n][t]) for n in names}
            line = f"{t:<14}" + "".join(f"{best[n]:>11.1f}" for n in names)
            if "ours" in names and peers:
                line += "".join(f"{best['ours'] / best[p]:>16.2f}" for p in peers)
                line += f"{best['ours'] / max(best[p] for p in peers):>11.2f}"
            print(line)
        print("\nserver CPU seconds per GB sent (medians; lower is better; user + system)")
        print(f"{'test':<14}" + "".join(f"{n:>11}" for n in names))
        for t in tests:
            print(f"{t:<14}" + "".join(f"{statistics.median(cpu[n][t]):>11.2f}" for n in names))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(out_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
