#!/usr/bin/env python3
"""TFTP throughput: pxewizard's server against tftpd-hpa, dnsmasq and atftpd, in one run.

    python3 bench/tftp.py [--runs 5] [--big-mib 64] [--small-mib 16] [--clients 20]
                          [--many 100] [--many-mib 4] [--load 2] [--tests 1468 20 ...]
                          [--only ours atftpd] [--variant PXW_TFTP_WORKERS=4]

Run as root. dnsmasq cannot move its TFTP port, so the servers run at once
on port 69 of their own loopback address (ours 127.0.0.1, tftpd-hpa
127.0.0.2, dnsmasq 127.0.0.3, atftpd 127.0.0.4) inside a private network namespace
(``pxwt-bench-*``, removed at the end); a veth pair is kept inside it because
in.tftpd ``-a`` exits when the namespace only has loopback. Peers come from Debian: dnsmasq
(dnsmasq-base, installed with apt-get when missing), tftpd-hpa and atftpd (fetched with
``apt-get download`` and unpacked with ``dpkg-deb -x``: the two conflict and their
packages would start a system service). Clients: curl (``--tftp-blksize``, lockstep)
and atftp (``--option windowsize``), both C.

Workloads (each test runs on every server back to back, in a rotating order, so
noise from a shared machine hits all of them alike):

- one 64 MiB download at blksize 1468 (curl), and at 8192 (curl);
- one 64 MiB download at blksize 1468 and 8192 + windowsize 8 (atftp; atftpd
  implements RFC 7440, tftpd-hpa and dnsmasq run it lockstep);
- 20 concurrent curl downloads of a 16 MiB file at blksize 1468 (aggregate MB/s and
  the slowest client's seconds), and 100 concurrent downloads of a 4 MiB file.

``--only ours tftpd-hpa pyfork`` adds ``bench/tftp_pyfork.py``, the least a Python server
can do per block (a process per client, lockstep, blocking calls, nothing else): the bound
a Python design reaches beside the C servers on this machine.

``--load N`` keeps N CPU-bound processes running for the whole bench (the
"busy machine" case). Every download of every run is checked by sha256.
Prints MB/s per run, medians, worst-client seconds, our/peer ratios, server CPU
seconds per GB, the clients' CPU seconds per GB, the idle CPUs and the load average. The machine may be shared: ratios from the
same run matter, not absolutes.

Engine settings are compared with ``--variant``, each a column of its own: e.g.
``--variant PXW_TFTP_PROCS=1`` (a transfer process beside the engine, off by default),
``--variant PXW_TFTP_RR=1`` (the loop threads SCHED_RR instead of nice -10).
Our server's CPU includes its transfer processes (children of any of its threads).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def _unpacked(cache: Path, pkg: str, binary: str) -> str:
    """A Debian package's binary, fetched with ``apt-get download`` and unpacked with
    ``dpkg-deb -x`` (installing tftpd-hpa or atftpd would start a system service on port 69,
    and the two packages conflict)."""
    unpacked = cache / pkg / "usr" / "sbin" / binary
    if not unpacked.exists():
        cache.mkdir(parents=True, exist_ok=True)
        sh("bash", "-c", f"cd {cache} && rm -f {pkg}_*.deb && apt-get download {pkg}")
        deb = next(cache.glob(f"{pkg}_*.deb"))
        sh("dpkg-deb", "-x", str(deb), str(cache / pkg))
    return str(unpacked)


def ensure_peers(cache: Path) -> tuple[str, str, str]:
    """(dnsmasq, in.tftpd, atftpd binaries), installing from Debian packages when missing."""
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not os.path.exists(dnsmasq):
        sh("apt-get", "install", "-y", "--no-install-recommends", "dnsmasq-base")
    intftpd = shutil.which("in.tftpd") or _unpacked(cache, "tftpd-hpa", "in.tftpd")
    atftpd = shutil.which("atftpd") or _unpacked(cache, "atftpd", "atftpd")
    for tool, pkg in (("curl", "curl"), ("atftp", "atftp")):
        if not shutil.which(tool):
            sh("apt-get", "install", "-y", "--no-install-recommends", pkg)
    return dnsmasq, intftpd, atftpd


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


def _ticks(pid: int) -> int:
    """utime + stime of one process (all its threads), in clock ticks; 0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(stat[11]) + int(stat[12])


class CpuGroup:
    """A cgroup holding one server and everything it forks: its CPU time counts what its
    children spent up to their exit, which sampling /proc misses (tftpd-hpa forks a child
    per client that ignores SIGCHLD: a child's last moments before it exits are never
    sampled). cgroup v2 (cpu.stat) or v1 (cpuacct); None where neither can be made."""

    def __init__(self, path: Path, usage: Callable[[], float], root_procs: Path) -> None:
        self.path, self.usage, self.root_procs = path, usage, root_procs

    @classmethod
    def make(cls, name: str, pid: int) -> CpuGroup | None:
        v2, v1 = Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/cpuacct")
        tag = f"pxwt-bench-{name}-{secrets.token_hex(2)}"
        if (v2 / "cgroup.controllers").exists():
            path, root = v2 / tag, v2

            def usage() -> float:
                stat = (path / "cpu.stat").read_text()
                return int(re.search(r"usage_usec (\d+)", stat).group(1)) / 1e6  # type: ignore
        elif (v1 / "cpuacct.usage").exists():
            path, root = v1 / tag, v1

            def usage() -> float:
                return int((path / "cpuacct.usage").read_text()) / 1e9
        else:
            return None
        try:
            path.mkdir()
        except OSError:
            return None
        group = cls(path, usage, root / "cgroup.procs")
        for p in [pid, *_descendants(pid)]:  # what it forked before it was moved too
            with contextlib.suppress(OSError):
                (path / "cgroup.procs").write_text(str(p))
        return group

    def remove(self) -> None:
        """Move what is left back to the root group, then remove the group."""
        with contextlib.suppress(OSError):
            for p in (self.path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    self.root_procs.write_text(p)
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


def _children(pid: int) -> list[int]:
    """Children of every thread of ``pid`` (ours starts its transfer processes from the
    engine's thread, and /proc lists a child under the thread that forked it)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        with contextlib.suppress(OSError):
            out += [int(x) for x in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return out


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        kids = _children(todo.pop())
        out += kids
        todo += kids
    return out


class CpuMeter:
    """CPU seconds a server spends during one test: from its cgroup (:class:`CpuGroup`:
    exact, its forked children included) or, without one, its own threads plus its
    children sampled every 20 ms while they run (a lower bound for servers that fork)."""

    def __init__(self, pid: int, group: CpuGroup | None = None) -> None:
        self.group = group
        self.pid = pid
        self.seen: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        if group is not None:
            self.start = group.usage()
            return
        self.base = {c: _ticks(c) for c in _children(pid)}
        self.own = _ticks(pid)
        self._thread.start()

    def _sample(self) -> None:
        while True:
            for c in _children(self.pid):
                t = _ticks(c)
                if t > self.seen.get(c, 0):
                    self.seen[c] = t
            if self._stop.wait(0.02):
                return

    def seconds(self) -> float:
        if self.group is not None:
            return self.group.usage() - self.start
        self._stop.set()
        self._thread.join()
        self._sample()  # one last look
        ticks = _ticks(self.pid) - self.own
        ticks += sum(t - self.base.get(c, 0) for c, t in self.seen.items())
        return ticks / os.sysconf("SC_CLK_TCK")


def timed(ns: str, cmds: list[list[str]]) -> list[float]:
    """Run commands concurrently in the namespace; each one's seconds (all must succeed)."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(["ip", "netns", "exec", ns, *c], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for c in cmds]
    ends = [0.0] * len(procs)
    errs: list[str] = []

    def wait(i: int, p: subprocess.Popen) -> None:
        _, err = p.communicate(timeout=600)
        ends[i] = time.perf_counter() - t0
        if p.returncode != 0:
            errs.append(err.decode(errors="replace")[-300:])

    threads = [threading.Thread(target=wait, args=(i, p)) for i, p in enumerate(procs)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errs:
        raise RuntimeError(f"{len(errs)} client(s) failed: {errs[0]}")
    return ends


def _children_cpu() -> float:
    """CPU seconds of this script's reaped children (the clients: ``ip netns exec`` execs
    them; the servers are still running and not counted)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _idle_seconds() -> float:
    """Seconds the machine's CPUs have been idle since boot, summed over CPUs."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


def load() -> str:
    """The machine's load averages (1, 5, 15 min), printed with every result."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@contextlib.contextmanager
def cpu_hogs(n: int) -> Iterator[None]:
    """``n`` CPU-bound background processes (``--load``) for the whole run, stopped by PID."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for h in hogs:
            h.kill()
            h.wait()


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
    ap.add_argument("--many", type=int, default=100, help="clients of the second concurrent test")
    ap.add_argument("--many-mib", type=int, default=4, help="file size of that test")
    ap.add_argument("--load", type=int, default=0,
                    help="CPU-bound background processes running during the whole bench")
    ap.add_argument("--only", nargs="*", help="servers to run (ours, tftpd-hpa, dnsmasq, atftpd)")
    ap.add_argument("--tests", nargs="*", help="tests to run (default: all)")
    ap.add_argument("--variant", action="append", default=[], metavar="VAR=VALUE[,VAR=VALUE]",
                    help="also run our server with these environment variables (a column "
                         "of its own, e.g. PXW_TFTP_WORKERS=2), to compare engine settings")
    ap.add_argument("--cache", default="/var/tmp/pxw-bench-peers")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (network namespace, port 69)")
    dnsmasq, intftpd, atftpd = ensure_peers(Path(args.cache))

    work = Path(tempfile.mkdtemp(prefix="pxw-bench-tftp-"))
    os.chmod(work, 0o755)
    root = work / "root"
    root.mkdir(mode=0o755)
    out_dir = Path(tempfile.mkdtemp(prefix="pxw-bench-out-", dir="/dev/shm"))
    try:
        files = {"big.bin": args.big_mib, "small.bin": args.small_mib, "many.bin": args.many_mib}
        digest = {}
        for name, mib in files.items():
            (root / name).write_bytes(os.urandom(mib * MiB))
            os.chmod(root / name, 0o644)
            digest[name] = sha(root / name)
        state = work / "state"
        plan = work / "plan.toml"
        cap = max(args.clients, args.many) * 2  # every client is 127.0.0.1 here
        plan.write_text(
            f'interface = "lo"\nserver_ip = "127.0.0.1"\nprefix = 8\nstate_dir = "{state}"\n'
            f'[dhcp]\nmode = "none"\n[http]\nenabled = false\n[boot]\ntransport = "tftp"\n'
            f'[tftp]\nroot = "{root}"\nwindowsize = 16\nmax_transfers = {cap}\n'
            f'max_per_client = {cap}\n')
        env = dict(os.environ, PYTHONPATH=str(REPO))
        addrs = {"ours": "127.0.0.1", "tftpd-hpa": "127.0.0.2", "dnsmasq": "127.0.0.3",
                 "atftpd": "127.0.0.4", "pyfork": "127.0.0.5"}
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
                    f"--tftp-max={cap}", "--log-facility=-"]),
                # threads, one per client; RFC 7440 windowsize since 0.7.2
                "atftpd": lambda: Server("atftpd", ns, addrs["atftpd"], [
                    atftpd, "--daemon", "--no-fork", "--bind-address", addrs["atftpd"],
                    "--port", "69", "--user", "nobody", "--group", "nogroup",
                    "--maxthread", str(cap), "--logfile", "/dev/null", "-v0", str(root)]),
                # a measuring stick (only with --only ... pyfork): a Python process per client
                "pyfork": lambda: Server("pyfork", ns, addrs["pyfork"], [
                    sys.executable, str(Path(__file__).with_name("tftp_pyfork.py")),
                    addrs["pyfork"], str(root)]),
            }
            for i, v in enumerate(args.variant):
                # an interface of its own (one pxewizard per interface; a veth pair, as
                # dummy may be missing), with loopback's MTU; traffic to it stays local
                vname, vaddr, dev = f"ours.v{i + 1}", f"10.97.{i + 1}.1", f"pxv{i + 1}"
                print(f"{vname}: our server with {v}")
                ex = ("ip", "netns", "exec", ns, "ip")
                sh(*ex, "link", "add", dev, "mtu", "65535", "type", "veth", "peer", "name",
                   f"{dev}p", "mtu", "65535")
                sh(*ex, "link", "set", f"{dev}p", "up")
                sh(*ex, "link", "set", dev, "up")
                sh(*ex, "addr", "add", f"{vaddr}/24", "dev", dev)
                addrs[vname] = vaddr
                venv = dict(env, **dict(kv.split("=", 1) for kv in v.split(",")))
                vplan = work / f"plan{i}.toml"
                vplan.write_text(plan.read_text().replace('"127.0.0.1"', f'"{vaddr}"').replace(
                    'interface = "lo"', f'interface = "{dev}"').replace(
                    "prefix = 8", "prefix = 24").replace(str(state), f"{state}{i}"))
                servers[vname] = (lambda vn=vname, va=vaddr, ve=venv, vp=vplan: Server(
                    vn, ns, va, [sys.executable, "-m", "pxewizard", "serve", "--quiet",
                                 "--plan", str(vp)], ve))
            names = (args.only or list(servers)[:4]) + [
                f"ours.v{i + 1}" for i in range(len(args.variant))]
            # All servers run at once (port 69 of their own loopback address) and each test
            # runs on every server back to back, in an order that rotates: a busy machine
            # then disturbs all of them alike.
            running = {n: stack.enter_context(servers[n]()) for n in names}
            groups: dict[str, CpuGroup | None] = {}
            for n in names:
                groups[n] = CpuGroup.make(n, running[n].proc.pid)  # type: ignore[union-attr]
                if groups[n] is not None:
                    stack.callback(groups[n].remove)  # type: ignore[union-attr]
            if any(g is None for g in groups.values()):
                print("no cgroup for the CPU figures: servers that fork are under-counted")
            stack.enter_context(cpu_hogs(args.load))
            conc, many = f"{args.clients}x{args.small_mib}MiB", f"{args.many}x{args.many_mib}MiB"
            # test -> (file, clients, command per client)
            all_tests: dict[str, tuple[str, int, Callable[[str, str], list[str]]]] = {
                "1468": ("big.bin", 1, lambda a, o: curl(a, "big.bin", 1468, o)),
                "8192": ("big.bin", 1, lambda a, o: curl(a, "big.bin", 8192, o)),
                "1468 w8": ("big.bin", 1, lambda a, o: atftp(a, "big.bin", 1468, 8, o)),
                "8192 w8": ("big.bin", 1, lambda a, o: atftp(a, "big.bin", 8192, 8, o)),
                conc: ("small.bin", args.clients, lambda a, o: curl(a, "small.bin", 1468, o)),
                many: ("many.bin", args.many, lambda a, o: curl(a, "many.bin", 1468, o)),
            }
            tests = {t: v for t, v in all_tests.items()
                     if not args.tests or t in args.tests or t.split("x")[0] in args.tests}
            res: dict[str, dict[str, list[float]]] = {n: {t: [] for t in tests} for n in names}
            worst: dict[str, dict[str, list[float]]] = {n: {t: [] for t in tests} for n in names}
            cpu: dict[str, dict[str, list[float]]] = {n: {t: [] for t in tests} for n in names}
            ccpu: dict[str, dict[str, list[float]]] = {n: {t: [] for t in tests} for n in names}
            idle: dict[str, dict[str, list[float]]] = {n: {t: [] for t in tests} for n in names}
            print(f"load at start: {load()} (--load {args.load}: {args.load} CPU-bound "
                  "processes of ours run beside)", flush=True)
            for run in range(args.runs):
                for t, (fname, nclients, make) in tests.items():
                    k = run % len(names)
                    volume = files[fname] * MiB * nclients
                    for n in names[k:] + names[:k]:
                        pid = running[n].proc.pid  # type: ignore[union-attr]
                        meter = CpuMeter(pid, groups[n])
                        outs = [str(out_dir / f"c{i}") for i in range(nclients)]
                        before, idle0 = _children_cpu(), _idle_seconds()
                        times = timed(ns, [make(addrs[n], o) for o in outs])
                        ccpu[n][t].append((_children_cpu() - before) / (volume / 1e9))
                        idle[n][t].append((_idle_seconds() - idle0) / max(times))
                        time.sleep(0.2)  # let tftpd-hpa reap its children
                        cpu[n][t].append(meter.seconds() / (volume / 1e9))
                        res[n][t].append(volume / max(times) / 1e6)
                        worst[n][t].append(max(times))
                        for o in outs:  # every download, every run: byte-identical
                            if sha(Path(o)) != digest[fname]:
                                raise RuntimeError(f"{n} {t}: download {o} differs")
                        for f in out_dir.iterdir():
                            f.unlink()
                print(f"run {run + 1} (load {load()}): " + "  ".join(
                    f"{n}[" + " ".join(f"{t}={res[n][t][-1]:.0f}" for t in tests) + "]"
                    for n in names), flush=True)
        # the C peers (pyfork, a Python measuring stick, is no peer: it gets a line below)
        peers = [n for n in names if not n.startswith("ours") and n != "pyfork"]
        ratios = "ours" in names and bool(peers)
        print(f"\nmedians of {args.runs} runs, MB/s (1 MB = 10^6 bytes); --load {args.load}; "
              f"load at end: {load()}; every download checked by sha256")
        header = f"{'test':<14}" + "".join(f"{n:>11}" for n in names)
        if ratios:
            header += "".join(f"{'ours/' + p:>16}" for p in peers) + f"{'ours/best':>11}"
        print(header)
        for t in tests:
            med = {n: statistics.median(res[n][t]) for n in names}
            line = f"{t:<14}" + "".join(f"{med[n]:>11.1f}" for n in names)
            if ratios:
                line += "".join(f"{med['ours'] / med[p]:>16.2f}" for p in peers)
                line += f"{med['ours'] / max(med[p] for p in peers):>11.2f}"
            print(line)
        if "pyfork" in names and peers:
            rated = []
            for t in tests:
                best = max(statistics.median(res[p][t]) for p in peers)
                rated.append(f"{t} {statistics.median(res['pyfork'][t]) / best:.2f}")
            print("pyfork (a Python process per client, bench/tftp_pyfork.py) / best C peer: "
                  + ", ".join(rated))
        print("\nworst client's seconds, concurrent tests (medians; ratio: best peer's / ours, "
              ">= 1 is ours faster)")
        for t, (_, nclients, _) in tests.items():
            if nclients == 1:
                continue
            med = {n: statistics.median(worst[n][t]) for n in names}
            line = f"{t:<14}" + "".join(f"{med[n]:>11.2f}" for n in names)
            if ratios:
                line += "".join(f"{med[p] / med['ours']:>16.2f}" for p in peers)
                line += f"{min(med[p] for p in peers) / med['ours']:>11.2f}"
            print(line)
        print("\nbest of the runs, MB/s (what each server does when the machine lets it)")
        print(header)
        for t in tests:
            best = {n: max(res[n][t]) for n in names}
            line = f"{t:<14}" + "".join(f"{best[n]:>11.1f}" for n in names)
            if ratios:
                line += "".join(f"{best['ours'] / best[p]:>16.2f}" for p in peers)
                line += f"{best['ours'] / max(best[p] for p in peers):>11.2f}"
            print(line)
        print("\nserver CPU seconds per GB sent (medians; lower is better; user + system, "
              "threads and forked children included: each server runs in a cgroup of its own)")
        print(f"{'test':<14}" + "".join(f"{n:>11}" for n in names))
        for t in tests:
            print(f"{t:<14}" + "".join(f"{statistics.median(cpu[n][t]):>11.2f}" for n in names))
        print("\nclients' CPU seconds per GB received (medians; the C clients' own cost, which "
              "a server's pacing changes: a client that finds its next block waiting does "
              "not sleep)")
        for t in tests:
            print(f"{t:<14}" + "".join(f"{statistics.median(ccpu[n][t]):>11.2f}" for n in names))
        print("\nidle CPUs during the test (medians, of the machine's "
              f"{os.cpu_count()}; 0 = every CPU busy)")
        for t in tests:
            print(f"{t:<14}" + "".join(f"{statistics.median(idle[n][t]):>11.2f}" for n in names))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(out_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
