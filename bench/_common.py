"""What the side-by-side benchmarks share: ports on loopback and a server's CPU time."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time


def server_cpu(pid: int) -> float:
    """CPU seconds used so far by a server process, its live children and its reaped ones
    (nbd-server forks per client, nginx has workers): a figure the machine's load hardly moves."""
    import psutil

    proc = psutil.Process(pid)
    t = proc.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in proc.children(recursive=True):
        try:
            c = child.cpu_times()
            total += c.user + c.system
        except psutil.Error:
            pass
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Stop a server we started (its process group, by PID): TERM, then KILL after ``grace`` s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
