"""TFTP transfer processes: transfers handed to a second process, events back in the engine.

The engine keeps the policy (caps, negotiation, TransferStarted); a transfer process runs
the transfer and reports; these tests check what crosses the process boundary.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path

import pytest

from pxewizard.events import (
    EventBus,
    FailCause,
    LogLine,
    TransferDone,
    TransferFailed,
    TransferProgress,
    TransferStarted,
)
from pxewizard.files import FileTree
from pxewizard.proto.tftp import Ack, Data, Error, OAck, Opcode, Request, decode, encode
from pxewizard.servers.tftp import TOO_MANY, TftpService, start_tftp
from tests.unit.test_tftp_server import Client, wait_for

pytestmark = pytest.mark.unit

SIZE = 1 << 20


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    (r / "big.bin").write_bytes(os.urandom(SIZE))
    (r / "small.txt").write_bytes(b"small\n")
    for p in r.iterdir():
        os.chmod(p, 0o644)
    return r


async def _start(root: Path, **kw: object) -> tuple[TftpService, list[object]]:
    bus = EventBus()
    events: list[object] = []
    bus.subscribe(events.append)
    svc = await start_tftp(tree=FileTree([root]), bus=bus, address="127.0.0.1", port=0,
                           procs=1, **kw)  # type: ignore[arg-type]
    for _ in range(1000):  # the process imports, drops its privileges, says ready
        if all(h.ready for h in svc.engine.helpers):
            return svc, events
        await asyncio.sleep(0.02)
    await svc.close()
    raise AssertionError(f"transfer process never ready: {events}")


def _stalled(port: int, name: str = "big.bin") -> tuple[socket.socket, tuple[str, int], object]:
    """A client that asks, acknowledges the OACK, takes block 1 and then says nothing."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    s.sendto(encode(Request(opcode=Opcode.RRQ, filename=name, mode="octet",
                            options={"blksize": "1468", "tsize": "0"})), ("127.0.0.1", port))
    raw, tid = s.recvfrom(70000)
    pkt = decode(raw)
    if isinstance(pkt, OAck):
        s.sendto(encode(Ack(0)), tid)
        pkt = decode(s.recvfrom(70000)[0])
    return s, tid, pkt


def _helper_status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


async def test_concurrent_reads_run_in_the_transfer_process(root: Path) -> None:
    svc, events = await _start(root)
    h = svc.engine.helpers[0]
    try:
        big = (root / "big.bin").read_bytes()
        opts = [{"blksize": 1468}, {"blksize": 8192, "windowsize": 8}, {}]

        def one(i: int) -> bytes | Error:
            c = Client(svc.port)
            try:
                return c.get("big.bin", **opts[i % 3]) if i % 4 else c.get("small.txt")
            finally:
                c.close()

        results = await asyncio.gather(*(asyncio.to_thread(one, i) for i in range(12)))
        assert all(r == (big if i % 4 else b"small\n") for i, r in enumerate(results))
        done = await wait_for(events, TransferDone, 12)
        assert sorted(e.sent for e in done) == [6] * 3 + [SIZE] * 9  # type: ignore[attr-defined]
        assert all(e.peer and e.client == "127.0.0.1" for e in done)  # type: ignore[attr-defined]
        assert h.handed >= 3  # the tie goes to the process; small files stay here
        for _ in range(100):  # "closed" releases each admission in the engine
            if not svc.engine.per_client and not h.transfers:
                break
            await asyncio.sleep(0.02)
        assert svc.engine.per_client == {} and h.transfers == {}
        st = _helper_status(h.pid)
        if os.geteuid() == 0:
            assert st["Uid"].split()[0] == "65534"
        assert int(st["CapEff"], 16) == 0 and st["NoNewPrivs"] == "1"
    finally:
        await svc.close()
    assert h.proc is not None and h.proc.poll() is not None  # ended with the server
    assert any(isinstance(e, LogLine) and "transfer process 1 ready" in e.message
               for e in events)


async def test_progress_of_a_remote_transfer_reaches_the_bus(root: Path) -> None:
    svc, events = await _start(root)
    try:
        s, tid, pkt = _stalled(svc.port)
        assert isinstance(pkt, Data) and pkt.block == 1
        assert svc.engine.helpers[0].handed == 1
        s.sendto(encode(Ack(1)), tid)  # one more block, then silence: progress, timeouts
        progress = await wait_for(events, TransferProgress)
        assert progress[0].sent == 1468 and progress[0].size == SIZE  # type: ignore[attr-defined]
        s.close()
    finally:
        await svc.close()
    failed = [e for e in events if isinstance(e, TransferFailed)]
    assert failed and failed[-1].cause in (FailCause.stopped, FailCause.timeout)


async def test_transfer_process_killed_mid_transfer(root: Path) -> None:
    svc, events = await _start(root)
    h = svc.engine.helpers[0]
    try:
        s, _tid, pkt = _stalled(svc.port)
        assert isinstance(pkt, Data) and h.handed == 1
        os.kill(h.pid, signal.SIGKILL)
        failed = await wait_for(events, TransferFailed)
        assert failed[0].cause is FailCause.server_error  # type: ignore[attr-defined]
        assert "transfer process" in failed[0].reason  # type: ignore[attr-defined]
        assert any(isinstance(e, LogLine) and e.level == "error" and "in-process" in e.message
                   for e in events)
        assert svc.engine.per_client == {}
        s.close()
        c = Client(svc.port)  # the server keeps serving, here
        assert c.get("big.bin", blksize=1468) == (root / "big.bin").read_bytes()
        c.close()
        assert h.handed == 1
    finally:
        await svc.close()


async def test_caps_hold_across_processes(root: Path) -> None:
    svc, events = await _start(root, max_transfers=3, max_per_client=2)
    try:
        clients = [_stalled(svc.port) for _ in range(2)]
        assert svc.engine.helpers[0].handed >= 1
        third = _stalled(svc.port)  # max_per_client = 2: refused, wherever the others run
        assert isinstance(third[2], Error) and third[2].message == TOO_MANY
        for c in clients:
            c[0].close()
        third[0].close()
        await wait_for(events, TransferStarted, 2)
        await asyncio.sleep(0.1)
        assert len([e for e in events if isinstance(e, TransferStarted)]) == 2
    finally:
        await svc.close()
    stopped = [e for e in events if isinstance(e, TransferFailed)
               and e.cause is FailCause.stopped]
    assert len(stopped) == 2
    assert svc.engine.per_client == {}


def test_a_hand_over_that_cannot_run_is_reported_and_released() -> None:
    """Descriptors lost on the way (the process is out of them): TransferFailed, then
    closed, so the engine's admission is released."""
    import json

    from pxewizard.servers.tftp import _ProcEngine, _ProcWorker

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    w = _ProcWorker(_ProcEngine(60.0, 60.0), b)
    try:
        w._adopt_handed({"peer": "10.0.0.9:2000", "path": "k", "client": "10.0.0.9"}, [], 0.0)
        first, second = json.loads(a.recv(65536)), json.loads(a.recv(65536))
        assert first["ev"]["kind"] == "transfer_failed"
        assert first["ev"]["cause"] == "server_error" and "descriptors" in first["ev"]["reason"]
        assert second == {"op": "closed", "peer": "10.0.0.9:2000", "path": "k"}
        assert not w.transfers
    finally:
        a.close()
        b.close()
        w.ep.close()
