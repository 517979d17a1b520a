#!/usr/bin/env python3
"""HTTP throughput: pxewizard's server against nginx, on loopback, in one run.

    python3 bench/http.py [--runs 3] [--big-mib 256] [--small-mib 16] [--clients 50]

Installs nginx (Debian's nginx-light, falling back to nginx) with apt-get when
it is missing. Both servers serve the same temporary directory on 127.0.0.1;
curl downloads to /dev/null. Two workloads: one big file, and N concurrent
downloads of a smaller one. Prints MB/s per run, medians, our/nginx ratios, and
each server's CPU seconds per GiB served (the figure a busy machine disturbs
least).
The machine may be shared: ratios from the same run matter, not absolutes.
"""

from __future__ import annotations

import os
import sys

# This file is named like the stdlib's `http` package that aiohttp imports: keep its own
# folder off the import path, or `import http` would find this script.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse
import asyncio
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, _HERE)
from _common import free_port, server_cpu, stop, wait_port  # noqa: E402

sys.path.remove(_HERE)  # off the path again before aiohttp imports `http`


def ensure_nginx() -> str:
    for cand in ("nginx", "/usr/sbin/nginx"):
        if shutil.which(cand):
            return shutil.which(cand) or cand
    for pkg in ("nginx-light", "nginx"):
        if subprocess.run(["apt-get", "install", "-y", pkg], capture_output=True).returncode == 0:
            break
    path = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(path):
        sys.exit("nginx is not installed and apt-get could not install it")
    return path


def serve_ours(root: str, port: int) -> None:
    """Child mode: run our server alone in this process (as `pxewizard serve` would)."""
    sys.path.insert(0, str(REPO))
    from pxewizard.events import EventBus
    from pxewizard.files import FileTree
    from pxewizard.servers.http import start_http

    async def main() -> None:
        bus = EventBus()
        bus.bind_loop(asyncio.get_running_loop())
        await start_http(tree=FileTree([Path(root)]), bus=bus, address="127.0.0.1",
                         port=port, interface=None)
        await asyncio.Event().wait()

    asyncio.run(main())


def start_nginx(nginx: str, root: Path, port: int, work: Path) -> subprocess.Popen:
    conf = work / "nginx.conf"
    conf.write_text(f"""
worker_processes auto;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
""")
    return subprocess.Popen([nginx, "-c", str(conf), "-p", str(work), "-g", "daemon off;"],
                            start_new_session=True)


def one(url: str) -> None:
    subprocess.run(["curl", "-sf", "-o", "/dev/null", url], check=True)


def timed_single(url: str, size: int) -> float:
    t = time.perf_counter()
    one(url)
    return size / (time.perf_counter() - t) / 1e6


def timed_parallel(url: str, size: int, clients: int) -> float:
    t = time.perf_counter()
    procs = [subprocess.Popen(["curl", "-sf", "-o", "/dev/null", url]) for _ in range(clients)]
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError(f"curl failed on {url}")
    return clients * size / (time.perf_counter() - t) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--big-mib", type=int, default=256)
    ap.add_argument("--small-mib", type=int, default=16)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--serve", nargs=2, metavar=("ROOT", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve_ours(args.serve[0], int(args.serve[1]))
        return
    nginx = ensure_nginx()
    with tempfile.TemporaryDirectory(prefix="pxw-bench-http-") as tmp:
        work = Path(tmp)
        root = work / "root"
        root.mkdir()
        big, small = root / "big.bin", root / "small.bin"
        for f, mib in ((big, args.big_mib), (small, args.small_mib)):
            with open(f, "wb") as fh:
                fh.write(os.urandom(mib << 20))
            f.chmod(0o644)
        root.chmod(0o755)
        work.chmod(0o755)  # nginx workers run as www-data
        p_ours, p_ng = free_port(), free_port()
        ours = subprocess.Popen([sys.executable, __file__, "--serve", str(root), str(p_ours)],
                                start_new_session=True)
        ng = start_nginx(nginx, root, p_ng, work)
        try:
            wait_port(p_ours)
            wait_port(p_ng)
            servers = {"pxewizard": p_ours, "nginx": p_ng}
            pids = {"pxewizard": ours.pid, "nginx": ng.pid}
            for port in servers.values():  # warm the page cache and both servers
                one(f"http://127.0.0.1:{port}/big.bin")
            res: dict[tuple[str, str], list[float]] = {}
            cpu: dict[tuple[str, str], float] = {}
            for _ in range(args.runs):
                for name, port in servers.items():  # interleaved: same machine load for both
                    for wl in ("single", "parallel"):
                        c0 = server_cpu(pids[name])
                        if wl == "single":
                            rate = timed_single(f"http://127.0.0.1:{port}/big.bin",
                                                args.big_mib << 20)
                        else:
                            rate = timed_parallel(f"http://127.0.0.1:{port}/small.bin",
                                                  args.small_mib << 20, args.clients)
                        res.setdefault((name, wl), []).append(rate)
                        cpu[(name, wl)] = cpu.get((name, wl), 0.0) + server_cpu(pids[name]) - c0
        finally:
            stop(ours)
            stop(ng)
    print(f"HTTP on loopback, {args.runs} runs, curl -o /dev/null, {os.cpu_count()} cores")
    labels = {"single": f"1 x {args.big_mib} MiB",
              "parallel": f"{args.clients} x {args.small_mib} MiB concurrent"}
    gib = {"single": args.big_mib / 1024, "parallel": args.clients * args.small_mib / 1024}
    for work_name, label in labels.items():
        med = {}
        for name in ("pxewizard", "nginx"):
            runs = res[(name, work_name)]
            med[name] = statistics.median(runs)
            per_gib = cpu[(name, work_name)] / (args.runs * gib[work_name])
            print(f"  {label:28s} {name:10s} median {med[name]:8.0f} MB/s   server CPU "
                  f"{per_gib:.2f} s/GiB   runs: " + " ".join(f"{r:.0f}" for r in runs))
        print(f"  {label:28s} ratio pxewizard/nginx = {med['pxewizard'] / med['nginx']:.2f}")


if __name__ == "__main__":
    main()
