"""TFTP transfer processes under `pxewizard serve`, with real clients (curl, tftp-hpa).

Many clients at once: their transfers are split between the engine and its transfer
process; every download is byte-identical and every event (started, progress, done) is
in the serve log of the main process. Then the transfer process is killed mid-transfer:
that transfer ends with TransferFailed and the server keeps serving.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.net.test_tftp import UnbufferedNs, _drain
from tests.support.netns import net_pair
from tests.support.serving import serve, write_plan
from tests.support.tools import require, require_root

pytestmark = pytest.mark.net

SERVER = "10.99.0.1"
CLIENTS = 16
SIZE = 4 * 1024 * 1024 + 1001
SLOW = 32 * 1024 * 1024 + 7
"""Lockstep in 512-byte blocks: a few seconds, long enough for progress events."""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    require_root()
    require("tftp", "curl")
    tmp = tmp_path_factory.mktemp("tftpmp")
    root = tmp / "root"
    root.mkdir()
    files = {"four.bin": os.urandom(SIZE), "slow.bin": os.urandom(SLOW)}
    for name, content in files.items():
        (root / name).write_bytes(content)
        (root / name).chmod(0o644)
    for p in (tmp, root):
        p.chmod(0o755)
    plan = write_plan(tmp, {
        "interface": "pxe0", "server_ip": SERVER,
        "dhcp": {"mode": "none"}, "http": {"enabled": False},
        "boot": {"transport": "tftp"},
        "tftp": {"root": str(root), "max_transfers": 40, "max_per_client": 40},
    })
    with net_pair() as pair:
        client_ip = pair.client_address()
        with serve(UnbufferedNs(pair.server.name, pair.server.procs), plan,
                   extra_env={"PXW_TFTP_PROCS": "1"}) as srv:
            threading.Thread(target=_drain, args=(srv,), daemon=True).start()
            ready = srv.wait_event(lambda e: e["kind"] == "log_line"
                                   and "transfer process 1 ready" in e["message"], 20)
            found = re.search(r"pid (\d+)", ready["message"])
            assert found, ready
            pid = int(found.group(1))
            yield pair, srv, files, tmp, pid, client_ip


def later(srv, start: int, pred, timeout: float) -> dict:
    """The first event from index ``start`` of the log on that matches ``pred``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in srv.events(settle=0)[start:]:
            if pred(e):
                return e
        time.sleep(0.1)
    raise AssertionError(f"no matching event in {timeout} s: {srv.events()[start:][-10:]}")


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_many_real_clients_split_between_processes(served) -> None:
    pair, srv, files, tmp, pid, client_ip = served
    status = Path(f"/proc/{pid}/status").read_text()
    assert re.search(r"^Uid:\s+65534\s", status, re.M), status  # no privileges kept
    assert re.search(r"^CapEff:\s+0+$", status, re.M), status
    before = _cpu_ticks(pid)
    procs = []
    for i in range(CLIENTS):
        blk = ("1468", "8192", "512")[i % 3]
        procs.append(subprocess.Popen(pair.client.cmd(
            "curl", "-sS", "--fail", "--tftp-blksize", blk, "-o", str(tmp / f"c{i}.bin"),
            f"tftp://{SERVER}/four.bin"), stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    # and one long lockstep transfer in 512-byte blocks (tftp-hpa): progress events
    procs.append(subprocess.Popen(pair.client.cmd(
        "tftp", SERVER, "-m", "binary", "-c", "get", "slow.bin", str(tmp / "slow.bin")),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    try:
        for p in procs:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for i in range(CLIENTS):
        got = tmp / f"c{i}.bin"
        assert sha(got.read_bytes()) == sha(files["four.bin"]), i
        got.unlink()
    assert sha((tmp / "slow.bin").read_bytes()) == sha(files["slow.bin"])
    (tmp / "slow.bin").unlink()
    deadline = time.monotonic() + 10
    while True:
        evs = srv.events()
        done = [e for e in evs if e["kind"] == "transfer_done"]
        if len(done) >= CLIENTS + 1 or time.monotonic() > deadline:
            break
    assert sorted(e["sent"] for e in done) == [SIZE] * CLIENTS + [SLOW]
    assert len({e["peer"] for e in done}) == CLIENTS + 1
    assert all(e["client"] == client_ip for e in done)
    assert any(e["kind"] == "transfer_progress" and e["path"] == "slow.bin"
               and e["size"] == SLOW and 0 < e["sent"] <= SLOW for e in evs)
    assert not [e for e in evs if e["kind"] == "transfer_failed"]
    assert _cpu_ticks(pid) - before > 5  # the transfer process did its share of the work


def test_transfer_process_killed_mid_transfer(served) -> None:
    pair, srv, files, tmp, pid, client_ip = served
    n0 = len(srv.events())
    client = subprocess.Popen(pair.client.cmd(
        "tftp", SERVER, "-m", "binary", "-c", "get", "slow.bin", str(tmp / "killed.bin")),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        later(srv, n0, lambda e: e["kind"] == "transfer_progress" and e["path"] == "slow.bin"
              and e["sent"] < SLOW, 30)
        n = len(srv.events(settle=0))
        os.kill(pid, signal.SIGKILL)  # the server's transfer process (a child of our serve)
        failed = later(srv, n, lambda e: e["kind"] == "transfer_failed"
                       and e["path"] == "slow.bin", 10)
        assert failed["cause"] == "server_error"
        assert "transfer process" in failed["reason"]
        assert any(e["kind"] == "log_line" and e["level"] == "error"
                   and "in-process" in e["message"] for e in srv.events()[n:])
    finally:
        if client.poll() is None:
            client.kill()
        client.wait()
    r = subprocess.run(pair.client.cmd(
        "curl", "-sS", "--fail", "--tftp-blksize", "1468", "-o", str(tmp / "after.bin"),
        f"tftp://{SERVER}/four.bin"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sha((tmp / "after.bin").read_bytes()) == sha(files["four.bin"])
    assert srv.proc.poll() is None
