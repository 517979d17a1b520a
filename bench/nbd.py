#!/usr/bin/env python3
"""NBD read throughput: pxewizard's server against nbd-server and qemu-nbd, in one run.

    python3 bench/nbd.py [--runs 3] [--mib 256]

Installs what is missing with apt-get (nbd-server, qemu-utils for qemu-nbd,
libnbd-bin for nbdcopy). The three servers export the same file read-only on
127.0.0.1; ``nbdcopy nbd://127.0.0.1:PORT/archiso null:`` reads it whole
(nbdcopy's defaults: multi-conn when the server allows it, 64 requests in
flight). Runs are interleaved so all servers see the same machine load.
Prints MB/s per run, medians, our ratio to the faster peer, and each server's
CPU seconds per GiB served (the figure a busy machine disturbs least). The
machine may be shared: ratios from the same run matter, not absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, server_cpu, stop, wait_port  # noqa: E402
TOOLS = {"nbd-server": "nbd-server", "qemu-nbd": "qemu-utils", "nbdcopy": "libnbd-bin"}


def ensure_tools() -> None:
    missing = sorted({pkg for tool, pkg in TOOLS.items() if not shutil.which(tool)})
    if missing:
        subprocess.run(["apt-get", "install", "-y", *missing], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def serve_ours(image: str, port: int) -> None:
    """Child mode: our NBD server alone in this process."""
    sys.path.insert(0, str(REPO))
    from pxewizard.events import EventBus
    from pxewizard.servers.nbd import start_nbd

    async def main() -> None:
        bus = EventBus()
        bus.bind_loop(asyncio.get_running_loop())
        await start_nbd(bus=bus, address="127.0.0.1", port=port, oldstyle_port=None,
                        exports={"archiso": Path(image)}, interface=None)
        await asyncio.Event().wait()

    asyncio.run(main())


WORKLOADS = {
    "multi-conn": [],
    "1 connection": ["--connections=1"],
}
"""nbdcopy's defaults (4 connections when the server allows multi-conn), and one connection
like the kernel's nbd-client that SystemRescue uses."""


def copy_rate(port: int, size: int, extra: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(["nbdcopy", *extra, f"nbd://127.0.0.1:{port}/archiso", "null:"], check=True)
    return size / (time.perf_counter() - t) / 1e6


def stop_pidfile(pidfile: Path) -> None:
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--serve", nargs=2, metavar=("IMAGE", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve_ours(args.serve[0], int(args.serve[1]))
        return
    ensure_tools()
    size = args.mib << 20
    with tempfile.TemporaryDirectory(prefix="pxw-bench-nbd-") as tmp:
        work = Path(tmp)
        image = work / "archiso.iso"
        with open(image, "wb") as fh:
            fh.write(os.urandom(size))
        p_ours, p_nbd, p_qemu = free_port(), free_port(), free_port()
        conf = work / "nbd-server.conf"
        conf.write_text(f"[generic]\n    port = {p_nbd}\n    listenaddr = 127.0.0.1\n"
                        f"    allowlist = true\n[archiso]\n    exportname = {image}\n"
                        "    readonly = true\n")
        pidfile = work / "nbd-server.pid"
        procs = [
            subprocess.Popen([sys.executable, __file__, "--serve", str(image), str(p_ours)],
                             start_new_session=True),
            subprocess.Popen(["qemu-nbd", "-r", "-t", "-f", "raw", "-x", "archiso",
                              "-b", "127.0.0.1", "-p", str(p_qemu), "--shared=16", str(image)],
                             start_new_session=True, stderr=subprocess.DEVNULL),
        ]
        # nbd-server forks into the background; it is stopped through its pid file
        subprocess.run(["nbd-server", "-C", str(conf), "-p", str(pidfile)], check=True)
        servers = {"pxewizard": p_ours, "nbd-server": p_nbd, "qemu-nbd": p_qemu}
        res: dict[tuple[str, str], list[float]] = {}
        cpu: dict[tuple[str, str], float] = {}
        try:
            for port in servers.values():
                wait_port(port)
                copy_rate(port, size, [])  # warm the page cache and the server
            pids = {"pxewizard": procs[0].pid, "qemu-nbd": procs[1].pid,
                    "nbd-server": int(pidfile.read_text().split()[0])}
            for _ in range(args.runs):
                for wl, extra in WORKLOADS.items():
                    for name, port in servers.items():
                        c0 = server_cpu(pids[name])
                        res.setdefault((wl, name), []).append(copy_rate(port, size, extra))
                        cpu[(wl, name)] = cpu.get((wl, name), 0.0) + server_cpu(pids[name]) - c0
        finally:
            for p in procs:
                stop(p)
            stop_pidfile(pidfile)
    print(f"NBD on loopback: nbdcopy of {args.mib} MiB to null:, {args.runs} runs, "
          f"{os.cpu_count()} cores")
    for wl in WORKLOADS:
        med = {name: statistics.median(res[(wl, name)]) for name in servers}
        for name in servers:
            per_gib = cpu[(wl, name)] / (args.runs * size / (1 << 30))
            print(f"  {wl:13s} {name:10s} median {med[name]:8.0f} MB/s   server CPU "
                  f"{per_gib:.2f} s/GiB   runs: " + " ".join(f"{r:.0f}" for r in res[(wl, name)]))
        peer = max(("nbd-server", "qemu-nbd"), key=lambda n: med[n])
        print(f"  {wl:13s} ratio pxewizard/{peer} (the faster peer) = "
              f"{med['pxewizard'] / med[peer]:.2f}; pxewizard/"
              + "; pxewizard/".join(f"{n} = {med['pxewizard'] / med[n]:.2f}"
                                    for n in ("nbd-server", "qemu-nbd")))


if __name__ == "__main__":
    main()
