#!/usr/bin/env python3
"""DHCP DORA transactions per second: pxewizard against dnsmasq and kea-dhcp4, in one run.

    sudo python3 bench/dhcp.py [--macs 5000] [--rounds 2] [--window 64] [--runs 3]
                               [--servers ours,ours-serve,dnsmasq,kea]

Topology: a server namespace (pxe0 10.99.0.1/16) and a client namespace
(eth0 10.99.0.2/16) joined by a veth pair (``pxwt-bench-*``, removed at the end).
Each server runs in turn in the server namespace with a pool of 10,240
addresses (10.99.1.0-10.99.40.255) and its leases on tmpfs (/dev/shm).

The load generator (this file, ``--loadgen``) acts as a relay agent: it binds
UDP 10.99.0.2:67 and sends every request with giaddr 10.99.0.2, so one socket
can speak for thousands of MACs and replies come back unicast to it. It keeps
``--window`` transactions in flight, one DORA per distinct MAC (``--macs``,
5,000 by default: lease-table size moves these figures a lot), retransmits
after 1 s (3 tries), and checks that no address was ACKed to two MACs.

Fair setup for the peers (the issue's notes): dnsmasq ``--no-ping --quiet-dhcp
--dhcp-lease-max=200000``; Kea logging at WARN, memfile leases on tmpfs. Ours
runs ``start_dhcp`` with no event subscriber (the equivalent of the peers'
quiet logging) and, as a second line, the real ``pxewizard serve`` path with
every event written to the JSONL log.

Server CPU is the process's and its descendants' (serve's insight process counts),
from when the server has settled after start (its CPU time still for 0.5 s) to the
last DORA. Peers come from Debian (apt-get install dnsmasq-base kea-dhcp4-server when
missing). The machine may be shared: compare ratios from the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SERVER, CLIENT, PREFIX = "10.99.0.1", "10.99.0.2", 16
POOL = ("10.99.1.0", "10.99.40.255")


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def load() -> str:
    """The machine's load averages (1, 5, 15 min), printed with every result."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- load generator (runs inside the client namespace) ---------------------------------------

def _packet(mac: bytes, xid: int, msg: int, giaddr: bytes, extra: bytes = b"") -> bytes:
    head = bytearray(236)
    head[0:4] = b"\x01\x01\x06\x01"  # BOOTREQUEST, Ethernet, hlen 6, hops 1 (relayed)
    head[4:8] = xid.to_bytes(4, "big")
    head[24:28] = giaddr
    head[28:34] = mac
    opts = b"\x35\x01" + bytes((msg,)) + b"\x3d\x07\x01" + mac + extra + \
        b"\x37\x04\x01\x03\x06\x0f\xff"
    return bytes(head) + b"\x63\x82\x53\x63" + opts


def _opt(data: bytes, code: int) -> bytes | None:
    i, n = 240, len(data)
    while i < n:
        c = data[i]
        if c == 0:
            i += 1
            continue
        if c == 255 or i + 1 >= n:
            return None
        ln = data[i + 1]
        if c == code:
            return data[i + 2:i + 2 + ln]
        i += 2 + ln
    return None


def loadgen(macs: int, window: int, server: str, relay: str, seed: int,
            rounds: int = 1) -> dict:
    """Run ``rounds`` DORAs for each of ``macs`` MACs (round 1 fills the lease table,
    later rounds re-bind at that table size) with ``window`` in flight."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.bind((relay, 67))
    sock.setblocking(False)
    gi = socket.inet_aton(relay)
    dest = (server, 67)
    base = seed << 24
    total = macs * rounds
    mac_of = [bytes((0x02, seed & 0xFF)) + (i % macs).to_bytes(4, "big") for i in range(total)]
    # per transaction: [state, sent_at, tries, last_packet, started]; xid = base + index
    state: dict[int, list] = {}
    acked: dict[bytes, str] = {}  # address -> MAC
    dup = naks = failed = done = retrans = 0
    latency: list[float] = []  # DISCOVER sent (first try) to ACK received, seconds
    nxt = 0
    t0 = time.perf_counter()

    def start(i: int, now: float) -> None:
        pkt = _packet(mac_of[i], base + i, 1, gi)
        state[i] = [1, now, 1, pkt, now]
        sock.sendto(pkt, dest)

    now = time.perf_counter()
    while nxt < total and len(state) < window:
        start(nxt, now)
        nxt += 1
    last_scan = now
    while state:
        r, _, _ = select.select([sock], [], [], 0.05)
        now = time.perf_counter()
        if r:
            while True:
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    break
                if len(data) < 240:
                    continue
                i = int.from_bytes(data[4:8], "big") - base
                st = state.get(i)
                if st is None:
                    continue
                mt = _opt(data, 53)
                if st[0] == 1 and mt == b"\x02":
                    yi = data[16:20]
                    sid = _opt(data, 54) or socket.inet_aton(server)
                    pkt = _packet(mac_of[i], base + i, 3, gi,
                                  b"\x32\x04" + yi + b"\x36\x04" + sid)
                    st[0], st[1], st[2], st[3] = 3, now, 1, pkt
                    sock.sendto(pkt, dest)
                elif st[0] == 3 and mt == b"\x05":
                    yi = data[16:20]
                    holder = acked.get(yi)
                    if holder is not None and holder != mac_of[i]:
                        dup += 1
                    acked[yi] = mac_of[i]
                    done += 1
                    latency.append(now - st[4])
                    del state[i]
                    if nxt < total:
                        start(nxt, now)
                        nxt += 1
                elif mt == b"\x06":
                    naks += 1
                    del state[i]
                    if nxt < total:
                        start(nxt, now)
                        nxt += 1
        if now - last_scan > 0.2:
            last_scan = now
            for i, st in list(state.items()):
                if now - st[1] > 1.0:
                    if st[2] >= 3:
                        failed += 1
                        del state[i]
                        if nxt < total:
                            start(nxt, now)
                            nxt += 1
                    else:
                        st[1], st[2] = now, st[2] + 1
                        retrans += 1
                        sock.sendto(st[3], dest)
    elapsed = time.perf_counter() - t0
    latency.sort()
    pct = {f"p{q}": latency[min(len(latency) - 1, len(latency) * q // 100)] if latency else 0.0
           for q in (50, 99)}
    return {"macs": macs, "rounds": rounds, "done": done, "naks": naks, "failed": failed,
            "dup": dup,
            "retransmits": retrans, "distinct_ips": len(acked), "seconds": elapsed,
            "rate": done / elapsed if elapsed else 0.0, **pct}


# --- our server, quiet (runs inside the server namespace) ------------------------------------

async def _run_ours(lease_file: str, interface: str) -> None:
    from pxewizard.events import EventBus
    from pxewizard.proto.dhcp import BootFiles, Policy
    from pxewizard.servers.dhcp import start_dhcp

    bus = EventBus()
    bus.bind_loop(asyncio.get_running_loop())
    policy = Policy(server_ip=SERVER, network=f"{SERVER}/{PREFIX}", range_start=POOL[0],
                    range_end=POOL[1], router=SERVER, dns=(SERVER,), lease_time=3600,
                    boot=BootFiles(), relay_agents=(CLIENT,))
    svc = await start_dhcp(bus=bus, policy=policy, interface=interface, lease_file=lease_file)
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await svc.close()


# --- orchestration ----------------------------------------------------------------------------

@contextlib.contextmanager
def topology() -> Iterator[tuple[str, str]]:
    tag = secrets.token_hex(3)
    srv, cli = f"pxwt-bench-dsrv-{tag}", f"pxwt-bench-dcli-{tag}"
    a, b = f"v{secrets.token_hex(4)}", f"v{secrets.token_hex(4)}"
    sh("ip", "netns", "add", srv)
    sh("ip", "netns", "add", cli)
    try:
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        sh("ip", "link", "set", a, "netns", srv)
        sh("ip", "link", "set", b, "netns", cli)
        for ns, old, new, addr in ((srv, a, "pxe0", SERVER), (cli, b, "eth0", CLIENT)):
            sh("ip", "netns", "exec", ns, "ip", "link", "set", old, "name", new)
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{addr}/{PREFIX}", "dev", new)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", new, "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield srv, cli
    finally:
        sh("ip", "netns", "del", srv, check=False)
        sh("ip", "netns", "del", cli, check=False)


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)


def _wait_udp67(ns: str, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"server exited early ({proc.returncode}):\n{out[-3000:]}")
        r = sh("ip", "netns", "exec", ns, "ss", "-Hlun", "sport = :67", check=False)
        if r.stdout.strip():
            time.sleep(0.3)
            return
        time.sleep(0.2)
    raise RuntimeError("server did not bind UDP 67 in time")


def start_server(name: str, ns: str, tmp: Path) -> subprocess.Popen:
    ex = ["ip", "netns", "exec", ns]
    kw = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    if name == "ours":
        cmd = ex + [sys.executable, str(Path(__file__).resolve()), "--run-ours",
                    "--lease-file", str(tmp / "ours.sqlite")]
    elif name == "ours-serve":
        import tomli_w
        plan = {"interface": "pxe0", "server_ip": SERVER, "prefix": PREFIX,
                "state_dir": str(tmp / "state"), "tftp": {"enabled": False},
                "http": {"enabled": False}, "boot": {"external_http": f"http://{SERVER}/"},
                "dhcp": {"mode": "full", "range_start": POOL[0], "range_end": POOL[1],
                         "router": SERVER, "dns": [SERVER],
                         "lease_file": str(tmp / "serve.sqlite"),
                         "relay_agents": [CLIENT]}}
        (tmp / "plan.toml").write_text(tomli_w.dumps(plan))
        cmd = ex + [sys.executable, "-m", "pxewizard", "serve", "--quiet", "--plan",
                    str(tmp / "plan.toml")]
    elif name == "dnsmasq":
        cmd = ex + ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
                    "--interface=pxe0", "--bind-interfaces", "--user=root",
                    f"--dhcp-range={POOL[0]},{POOL[1]},255.255.0.0,1h",
                    f"--dhcp-leasefile={tmp / 'dnsmasq.leases'}",
                    f"--pid-file={tmp / 'dnsmasq.pid'}", "--no-ping", "--quiet-dhcp",
                    "--dhcp-lease-max=200000", f"--dhcp-option=3,{SERVER}",
                    f"--dhcp-option=6,{SERVER}"]
    elif name == "kea":
        conf = {"Dhcp4": {
            "interfaces-config": {"interfaces": ["pxe0"], "dhcp-socket-type": "udp"},
            "lease-database": {"type": "memfile", "persist": True,
                               "name": str(tmp / "kea-leases4.csv"), "lfc-interval": 0},
            "valid-lifetime": 3600,
            "subnet4": [{"subnet": f"10.99.0.0/{PREFIX}", "id": 1,
                         "pools": [{"pool": f"{POOL[0]} - {POOL[1]}"}],
                         "option-data": [{"name": "routers", "data": SERVER},
                                         {"name": "domain-name-servers", "data": SERVER}]}],
            "loggers": [{"name": "kea-dhcp4", "severity": "WARN",
                         "output_options": [{"output": "stdout"}]}]}}
        (tmp / "kea.json").write_text(json.dumps(conf))
        kw["env"] = dict(os.environ, KEA_PIDFILE_DIR=str(tmp), KEA_LOCKFILE_DIR=str(tmp))
        cmd = ex + ["kea-dhcp4", "-c", str(tmp / "kea.json")]
    else:
        raise SystemExit(f"unknown server {name}")
    if name == "ours-serve":
        kw["env"] = dict(os.environ, PYTHONPATH=str(REPO))
        kw["cwd"] = str(REPO)
    p = subprocess.Popen(cmd, **kw)  # type: ignore[call-overload]
    _wait_udp67(ns, p, 30.0 if name == "ours-serve" else 20.0)
    return p


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) a process and its live descendants used so far (serve's
    insight process is part of the server's cost): robust on a shared machine."""
    return _cpu_split(pid)[1]


def _cpu_split(pid: int) -> tuple[float, float]:
    """(the process's own CPU seconds, its and its live descendants')."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12]))
                                  / os.sysconf("SC_CLK_TCK"))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, (0, 0.0))[1]
        todo.extend(c for c, (ppid, _) in stats.items() if ppid == p)
    return stats.get(pid, (0, 0.0))[1], total


def _settled(pid: int, timeout: float = 15.0, quiet: float = 0.5) -> None:
    """Wait until the server's CPU time stops moving for ``quiet`` seconds. Before a run:
    work it does after binding port 67 (serve scans the boot tree, forks its insight
    process) must not count as the cost of the DORAs. After one: work it still does for
    them must (serve's insight process reads the log once a burst is over, and looks at
    its findings every 2 s)."""
    deadline = time.monotonic() + timeout
    last, still = _cpu(pid), 0
    while time.monotonic() < deadline and still < quiet * 10:
        time.sleep(0.1)
        now = _cpu(pid)
        still = still + 1 if now == last else 0
        last = now


def run_one(name: str, srv: str, cli: str, macs: int, window: int, seed: int,
            rounds: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="pxwt-bench-dhcp-", dir="/dev/shm") as d:
        tmp = Path(d)
        proc = start_server(name, srv, tmp)
        try:
            _settled(proc.pid)
            own0, cpu0 = _cpu_split(proc.pid)
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            r = sh("ip", "netns", "exec", cli, sys.executable, str(Path(__file__).resolve()),
                   "--loadgen", "--macs", str(macs), "--window", str(window),
                   "--seed", str(seed), "--rounds", str(rounds))
            res = json.loads(r.stdout)
            # what the server still does for these DORAs once they are answered counts too
            # (serve's insight process reads the log after a burst): wait until it rests
            _settled(proc.pid, quiet=2.5)
            own1, cpu1 = _cpu_split(proc.pid)
            res["server_cpu"] = cpu1 - cpu0
            res["helper_cpu"] = (cpu1 - own1) - (cpu0 - own0)  # serve's insight process
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            res["loadgen_cpu"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        finally:
            _stop(proc)
    res["server"] = name
    return res


def ensure_peers(names: list[str]) -> None:
    need = []
    if "dnsmasq" in names and not shutil.which("dnsmasq"):
        need.append("dnsmasq-base")
    if "kea" in names and not shutil.which("kea-dhcp4"):
        need.append("kea-dhcp4-server")
    if need:
        sh("apt-get", "install", "-y", "--no-install-recommends", *need)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--macs", type=int, default=5000)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2,
                    help="DORAs per MAC (round 1 fills the table; longer runs, less noise)")
    ap.add_argument("--servers", default="ours,ours-serve,dnsmasq,kea")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--run-ours", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--lease-file", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.loadgen:
        print(json.dumps(loadgen(a.macs, a.window, SERVER, CLIENT, a.seed, a.rounds)))
        return 0
    if a.run_ours:
        prof = os.environ.get("PXW_BENCH_PROFILE")  # profile the server's hot path
        if prof:
            import cProfile
            cProfile.runctx("asyncio.run(_run_ours(a.lease_file, 'pxe0'))", globals(),
                            {"a": a, "asyncio": asyncio}, prof)
        else:
            asyncio.run(_run_ours(a.lease_file, "pxe0"))
        return 0
    if os.geteuid() != 0:
        raise SystemExit("run as root (network namespaces)")
    names = a.servers.split(",")
    ensure_peers(names)
    print(f"DORA/s, {a.macs} distinct MACs x {a.rounds} DORAs each per server, "
          f"{a.window} in flight, "
          f"pool 10,240 addresses, {os.cpu_count()} CPUs (shared machine: compare ratios)")
    print(f"load at start: {load()}", flush=True)
    results: dict[str, list[dict]] = {n: [] for n in names}
    with topology() as (srv, cli):
        for run in range(a.runs):
            k = run % len(names)  # rotate the order: a busy machine disturbs every server alike
            for n in names[k:] + names[:k]:
                res = run_one(n, srv, cli, a.macs, a.window, a.seed + run, a.rounds)
                results[n].append(res)
                print(f"  run {run + 1} {n:11s} {res['rate']:9.0f} DORA/s  done={res['done']} "
                      f"naks={res['naks']} failed={res['failed']} dup={res['dup']} "
                      f"retransmits={res['retransmits']} distinct_ips={res['distinct_ips']} "
                      f"p50 {res['p50'] * 1e3:.2f} ms p99 {res['p99'] * 1e3:.2f} ms "
                      f"({res['seconds']:.2f} s, server CPU "
                      f"{res['server_cpu'] / max(res['done'], 1) * 1e3:.3f} s/1000 DORA"
                      + (f" of which insight {res['helper_cpu'] / max(res['done'], 1) * 1e3:.3f}"
                         if res["helper_cpu"] > 0 else "") + ", "
                      f"load generator {res['loadgen_cpu'] / max(res['seconds'], 1e-9):.2f} "
                      "CPUs)", flush=True)

    def median(n: str, f: Callable[[dict], float]) -> float:
        return statistics.median(f(r) for r in results[n])

    print(f"\nmedians of {a.runs} runs at {a.macs} MACs (load at end: {load()})")
    print(f"{'server':<12}{'DORA/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU s/1000 DORA':>17}")
    med, cpu = {}, {}
    for n in names:
        med[n] = median(n, lambda r: r["rate"])
        cpu[n] = median(n, lambda r: r["server_cpu"] / max(r["done"], 1) * 1e3)
        print(f"{n:<12}{med[n]:>10.0f}{median(n, lambda r: r['p50']) * 1e3:>9.2f}"
              f"{median(n, lambda r: r['p99']) * 1e3:>9.2f}{cpu[n]:>17.3f}")
    for ours in ("ours", "ours-serve"):
        if ours not in med:
            continue
        for peer in ("dnsmasq", "kea"):
            if peer in med and med[peer]:
                print(f"  {ours}/{peer}: {med[ours] / med[peer]:.2f}x DORA/s, "
                      f"{cpu[peer] / cpu[ours] if cpu[ours] else 0:.2f}x CPU efficiency")
    dups = sum(r["dup"] for rs in results.values() for r in rs if r["server"].startswith("ours"))
    print(f"addresses ACKed to two MACs by ours: {dups}")
    return 0 if dups == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
