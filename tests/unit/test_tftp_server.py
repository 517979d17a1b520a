"""The TFTP adapter on 127.0.0.1 with a minimal in-test client: jail, NAKs, writes, bad input.

Loopback only, no root, no namespaces: real third-party clients are in tests/net.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pxewizard.events import (
    Event,
    EventBus,
    FailCause,
    PacketDropped,
    ServiceStarted,
    ServiceStopped,
    TransferDone,
    TransferFailed,
    TransferStarted,
)
from pxewizard.files import FileTree
from pxewizard.proto.tftp import Ack, Data, Error, OAck, Opcode, Request, decode, encode
from pxewizard.servers.tftp import READ_ONLY_MESSAGE, TftpService, start_tftp


class Client:
    """Blocking, one-request-at-a-time TFTP client (in a thread)."""

    def __init__(self, port: int) -> None:
        self.server = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(3)

    def close(self) -> None:
        self.sock.close()

    def request(self, name: str, op: Opcode = Opcode.RRQ, mode: str = "octet",
                **options: object) -> tuple[object, tuple[str, int]]:
        req = Request(opcode=op, filename=name, mode=mode,
                      options={k: str(v) for k, v in options.items()})
        self.sock.sendto(encode(req), self.server)
        raw, addr = self.sock.recvfrom(70000)
        return decode(raw), addr

    def get(self, name: str, **options: object) -> bytes | Error:
        pkt, tid = self.request(name, **options)
        blksize = int(options.get("blksize", 512))  # type: ignore[arg-type]
        got = bytearray()
        if isinstance(pkt, Error):
            return pkt
        if isinstance(pkt, OAck):
            self.sock.sendto(encode(Ack(0)), tid)
            pkt = decode(self.sock.recvfrom(70000)[0])
        window = int(options.get("windowsize", 1))  # type: ignore[arg-type]
        expected, in_window = 1, 0
        while True:
            assert isinstance(pkt, Data), pkt
            assert pkt.block == expected & 0xFFFF
            got += pkt.payload
            expected += 1
            in_window += 1
            last = len(pkt.payload) < blksize
            if in_window == window or last:
                self.sock.sendto(encode(Ack(pkt.block)), tid)
                in_window = 0
            if last:
                return bytes(got)
            pkt = decode(self.sock.recvfrom(70000)[0])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "sub").mkdir(parents=True)
    (r / "hello.txt").write_bytes(b"hello\nworld\n")
    (r / "sub" / "k.bin").write_bytes(os.urandom(3000))
    (r / "secret").write_bytes(b"no")
    os.chmod(r / "secret", 0o600)
    (tmp_path / "outside.txt").write_bytes(b"outside")
    os.chmod(tmp_path / "outside.txt", 0o644)
    (r / "escape").symlink_to(tmp_path / "outside.txt")
    for p in (r / "hello.txt", r / "sub" / "k.bin"):
        os.chmod(p, 0o644)
    return r


async def _start(root: Path, **kw: object) -> tuple[TftpService, list[Event]]:
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    tree = FileTree([root])
    tree.add_bytes("menu/generated.cfg", "DEFAULT linux\n")
    svc = await start_tftp(tree=tree, bus=bus, address="127.0.0.1", port=0, **kw)  # type: ignore
    return svc, events


@pytest.fixture
async def server(root: Path) -> AsyncIterator[tuple[TftpService, list[Event]]]:
    svc, events = await _start(root)
    yield svc, events
    await svc.close()


async def wait_for(events: list[Event], kind: type, n: int = 1) -> list[Event]:
    for _ in range(300):
        found = [e for e in events if isinstance(e, kind)]
        if len(found) >= n:
            return found
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {kind.__name__} in {events}")


async def test_serves_files_and_generated_files(server, root: Path) -> None:
    svc, events = server
    c = Client(svc.port)
    try:
        assert await asyncio.to_thread(c.get, "hello.txt") == b"hello\nworld\n"
        assert await asyncio.to_thread(c.get, "/sub/k.bin", blksize=1000, tsize=0) == \
            (root / "sub" / "k.bin").read_bytes()
        assert await asyncio.to_thread(c.get, "sub\\k.bin") == (root / "sub/k.bin").read_bytes()
        assert await asyncio.to_thread(c.get, "menu/generated.cfg") == b"DEFAULT linux\n"
        assert await asyncio.to_thread(c.get, "hello.txt", mode="netascii") == \
            b"hello\r\nworld\r\n"
    finally:
        c.close()
    done = await wait_for(events, TransferDone, 5)
    assert {e.path for e in done} >= {"hello.txt", "/sub/k.bin", "menu/generated.cfg"}
    started = [e for e in events if isinstance(e, TransferStarted)]
    assert started[1].options == {"blksize": "1000", "tsize": "3000"}
    assert isinstance(events[0], ServiceStarted)


@pytest.mark.parametrize("name, nak", [
    ("../outside.txt", "Access violation"),
    ("sub/../../outside.txt", "Access violation"),
    ("escape", "Access violation"),
    ("secret", "File must have global read permissions"),
    ("missing.bin", "File not found"),
    ("sub", "File not found"),
])
async def test_refusals_in_words(server, name: str, nak: str) -> None:
    svc, events = server
    c = Client(svc.port)
    try:
        got = await asyncio.to_thread(c.get, name)
    finally:
        c.close()
    assert isinstance(got, Error) and got.message == nak
    (failed,) = await wait_for(events, TransferFailed)
    assert failed.code == got.code and failed.reason  # the operator's version, with details
    # what the diagnosis matches on: the cause, not the words
    assert failed.cause == {"Access violation": FailCause.refused,
                            "File not found": FailCause.not_found}.get(nak, FailCause.permission)


async def test_absolute_path_outside_is_inside_the_root(server, tmp_path: Path) -> None:
    svc, events = server
    c = Client(svc.port)
    try:
        got = await asyncio.to_thread(c.get, str(tmp_path / "outside.txt"))
    finally:
        c.close()
    assert isinstance(got, Error) and got.message == "File not found"
    # A NUL inside the name ends the name field; what follows no longer parses as
    # mode + option pairs, so the request is malformed: logged and dropped.
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"\x00\x01hello.txt\x00../../outside.txt\x00octet\x00", ("127.0.0.1", svc.port))
    s.close()
    (dropped,) = await wait_for(events, PacketDropped)
    assert "name/value pairs" in dropped.reason


async def test_write_refused_when_read_only(server) -> None:
    svc, events = server
    c = Client(svc.port)
    try:
        got, _ = await asyncio.to_thread(c.request, "up.bin", Opcode.WRQ)
    finally:
        c.close()
    assert isinstance(got, Error) and got.code == 2 and got.message == READ_ONLY_MESSAGE


async def test_write_allowed_into_write_root(root: Path, tmp_path: Path) -> None:
    wroot = tmp_path / "incoming"
    wroot.mkdir()
    svc, events = await _start(root, allow_write=True, write_root=wroot)
    c = Client(svc.port)
    payload = os.urandom(1300)

    def upload() -> object:
        pkt, tid = c.request("up.bin", Opcode.WRQ, blksize=512)
        assert pkt == OAck(options={"blksize": "512"})
        for i in range(3):
            c.sock.sendto(encode(Data(block=i + 1, payload=payload[i * 512:(i + 1) * 512])), tid)
            assert decode(c.sock.recvfrom(100)[0]) == Ack(block=i + 1)
        again, _ = c.request("up.bin", Opcode.WRQ)
        escape, _ = c.request("../up.bin", Opcode.WRQ)
        return again, escape

    try:
        again, escape = await asyncio.to_thread(upload)
    finally:
        c.close()
        await svc.close()
    assert (wroot / "up.bin").read_bytes() == payload
    assert isinstance(again, Error) and again.code == 6
    assert isinstance(escape, Error) and escape.code == 2
    assert [p.name for p in wroot.iterdir()] == ["up.bin"]
    assert any(isinstance(e, TransferDone) and e.path == "up.bin" for e in events)


async def test_write_through_a_linked_directory_is_refused(root: Path, tmp_path: Path) -> None:
    """An upload's directory is reached the jailed way: a link to outside is refused."""
    wroot = tmp_path / "incoming"
    wroot.mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.symlink(outside, wroot / "sub")
    svc, _events = await _start(root, allow_write=True, write_root=wroot)
    c = Client(svc.port)
    try:
        got, _ = await asyncio.to_thread(c.request, "sub/x.bin", Opcode.WRQ)
    finally:
        c.close()
        await svc.close()
    assert isinstance(got, Error) and got.code == 2
    assert list(outside.iterdir()) == []


async def test_garbage_is_dropped_and_server_keeps_serving(server, root: Path) -> None:
    svc, events = server
    junk = [b"", b"\x00", b"\x00\x09hello", b"\x00\x01noterm", b"\x00\x04\x00\x01",
            b"\x00\x03\x00\x01data", b"\x00\x01f\x00octet\x00blksize\x00",
            b"\x00\x01hello.txt\x00mail\x00"]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for j in junk:
        s.sendto(j, ("127.0.0.1", svc.port))
    s.close()
    dropped = await wait_for(events, PacketDropped, 6)
    assert any("unknown opcode 9" in e.reason for e in dropped)
    c = Client(svc.port)
    try:
        assert await asyncio.to_thread(c.get, "hello.txt") == b"hello\nworld\n"
    finally:
        c.close()


async def test_close_stops_everything(root: Path) -> None:
    svc, events = await _start(root)
    port = svc.port
    await svc.close()
    assert isinstance(events[-1], ServiceStopped)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))  # the port is free again
    s.close()
    assert not svc.engine.alive()


async def test_many_concurrent_transfers_windowed_and_lockstep(server, root: Path) -> None:
    svc, events = server
    big = os.urandom(300_000)
    (root / "big.bin").write_bytes(big)
    os.chmod(root / "big.bin", 0o644)
    variants = [{}, {"blksize": 1468}, {"blksize": 1468, "windowsize": 8},
                {"blksize": 8192, "windowsize": 4}, {"blksize": 512, "windowsize": 16}]

    def one(i: int) -> bytes | Error:
        c = Client(svc.port)
        try:
            return c.get("big.bin", **variants[i % len(variants)])
        finally:
            c.close()

    results = await asyncio.gather(*(asyncio.to_thread(one, i) for i in range(15)))
    assert all(r == big for r in results)
    done = await wait_for(events, TransferDone, 15)
    assert all(e.sent == len(big) for e in done)
    started = [e for e in events if isinstance(e, TransferStarted)]
    assert {"windowsize": "8", "blksize": "1468"} in [e.options for e in started]


async def test_lost_packet_is_sent_again_by_the_timer(server, root: Path) -> None:
    """The client ignores the first DATA; the 1 s timer (timeout option) sends it again."""
    svc, events = server
    c = Client(svc.port)

    def lossy() -> tuple[object, object]:
        pkt, tid = c.request("hello.txt", timeout=1)
        c.sock.sendto(encode(Ack(0)), tid)
        first = decode(c.sock.recvfrom(1000)[0])
        again = decode(c.sock.recvfrom(1000)[0])  # nothing ACKed: the same block again
        c.sock.sendto(encode(Ack(1)), tid)
        return first, again

    try:
        first, again = await asyncio.to_thread(lossy)
    finally:
        c.close()
    assert first == again == Data(block=1, payload=b"hello\nworld\n")
    (done,) = await wait_for(events, TransferDone)
    assert done.path == "hello.txt"


async def test_client_that_vanishes_times_out(root: Path) -> None:
    svc, events = await _start(root, timeout=0.2, retries=2)
    c = Client(svc.port)
    try:
        pkt, _ = await asyncio.to_thread(c.request, "hello.txt")
        assert isinstance(pkt, Data)
        (failed,) = await wait_for(events, TransferFailed)
    finally:
        c.close()
        await svc.close()
    assert "timed out after 2 retries" in failed.reason and not failed.probe
    assert failed.cause == FailCause.timeout


async def test_file_truncated_while_served_ends_that_transfer_only(server, root: Path) -> None:
    """cp over a file being served: no SIGBUS (no mmap), the client is told, others go on."""
    svc, events = server
    path = root / "growing.bin"
    path.write_bytes(os.urandom(3 << 20))
    os.chmod(path, 0o644)
    c = Client(svc.port)

    def download_while_truncating() -> object:
        pkt, tid = c.request("growing.bin", blksize=8192)
        c.sock.sendto(encode(Ack(0)), tid)
        first = decode(c.sock.recvfrom(70000)[0])
        assert isinstance(first, Data)
        path.write_bytes(b"short now")  # truncates in place, as cp does
        block = first.block
        while True:
            c.sock.sendto(encode(Ack(block)), tid)
            pkt = decode(c.sock.recvfrom(70000)[0])
            if not isinstance(pkt, Data):
                return pkt
            block = pkt.block

    try:
        err = await asyncio.to_thread(download_while_truncating)
        assert isinstance(err, Error) and "changed" in err.message
        assert await asyncio.to_thread(c.get, "hello.txt") == b"hello\nworld\n"
    finally:
        c.close()
    failed = [e for e in await wait_for(events, TransferFailed) if e.path == "growing.bin"]
    assert "shorter" in failed[0].reason


async def test_a_flood_is_summarised_past_the_event_rate_limit(root: Path, monkeypatch) -> None:
    import re

    from pxewizard.servers import tftp as adapter

    monkeypatch.setattr(adapter, "DROP_EVENTS_PER_SECOND", 10)
    svc, events = await _start(root)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i in range(50):
            s.sendto(b"\x00\x63junk%d" % i, ("127.0.0.1", svc.port))
        for _ in range(300):
            drops = [e for e in events if isinstance(e, PacketDropped)]
            summaries = [int(m.group(1)) for e in drops
                         if (m := re.match(r"(\d+) more packets dropped", e.reason))]
            if summaries and len(drops) - len(summaries) + sum(summaries) >= 50:
                break
            await asyncio.sleep(0.01)
    finally:
        s.close()
        await svc.close()
    assert summaries, drops
    assert len(drops) - len(summaries) <= 20
    assert len(drops) - len(summaries) + sum(summaries) == 50


def _drive(chooser, per_packet: dict[bool, float], packets: int) -> list[bool]:
    """Feed ``packets`` arrivals, each taking per_packet[mode] seconds; the modes used."""
    now, modes = 0.0, []
    for _ in range(packets):
        modes.append(chooser.spin)
        now += per_packet[chooser.spin]
        chooser.tick(now)
    return modes


def test_spin_chosen_only_where_it_measures_faster() -> None:
    from pxewizard.servers.tftp import SpinChooser

    probes = SpinChooser.PROBE * 5  # warm-up, then sleep/spin/sleep/spin
    idle = SpinChooser(True)  # an idle machine: a sleeping round trip pays a CPU wake-up
    modes = _drive(idle, {False: 60e-6, True: 23e-6}, probes + 20000)
    assert all(modes[probes:probes + SpinChooser.KEEP])
    assert sum(modes) > 0.9 * len(modes)
    assert idle.keep > SpinChooser.KEEP  # a mode that keeps winning is kept longer

    busy = SpinChooser(True)  # a loaded machine: spinning takes the client's CPU
    modes = _drive(busy, {False: 16e-6, True: 45e-6}, probes + 20000)
    assert not any(modes[probes:probes + SpinChooser.KEEP])
    assert sum(modes) < 0.1 * len(modes)

    close = SpinChooser(True)  # spinning must win clearly: sleeping costs no CPU
    modes = _drive(close, {False: 30e-6, True: 29e-6}, probes + 5000)
    assert not any(modes[probes:probes + SpinChooser.KEEP])
    assert sum(modes) < 0.3 * len(modes)


def test_spin_probes_count_blocks_so_a_windowed_transfer_is_not_spent_probing() -> None:
    from pxewizard.servers.tftp import SpinChooser

    c = SpinChooser(True)
    now, acks = 0.0, 0
    while c.chosen is None:  # windowsize 8: each ACK acknowledges 8 blocks
        now += 160e-6 if c.spin else 400e-6
        c.tick(now, 8)
        acks += 1
    assert c.chosen is True
    assert acks == SpinChooser.PROBE * 5 // 8  # not PROBE * 5 ACKs (40,960 blocks)


def test_spin_not_even_probed_while_the_machine_is_busy() -> None:
    from pxewizard.servers.tftp import SpinChooser

    load = [True]
    c = SpinChooser(True, lambda: load[0])  # spinning would measure faster, but no probe
    modes = _drive(c, {False: 60e-6, True: 23e-6}, 40000)
    assert not any(modes)
    assert c.keep == SpinChooser.KEEP_MAX  # looks again less and less often
    load[0] = False  # the machine went quiet: the next look probes, and spinning wins
    modes = _drive(c, {False: 60e-6, True: 23e-6}, SpinChooser.KEEP_MAX + 5 * SpinChooser.PROBE)
    assert c.chosen is True and sum(modes) > SpinChooser.KEEP


def test_busy_is_what_runs_now_not_the_load_average(monkeypatch) -> None:
    from pxewizard.servers import tftp

    monkeypatch.setattr(tftp.os, "cpu_count", lambda: 2)
    # an idle machine minutes after a burst: load average 30, one thread runnable (ours)
    assert not tftp.machine_busy(lambda: "30.55 15.29 8.03 1/109 30043\n")
    # our loop and its client on a 2-core machine: not busy
    assert not tftp.machine_busy(lambda: "1.50 1.20 0.90 2/110 30050\n")
    # two CPU hogs beside them: busy
    assert tftp.machine_busy(lambda: "0.40 0.30 0.20 4/112 30060\n")
    # a moment of three runnable among quiet looks is not busy
    looks = iter(["0 0 0 3/100 1", "0 0 0 1/100 1", "0 0 0 3/100 1"])
    assert not tftp.machine_busy(lambda: next(looks))
    # unreadable: not busy (the chooser then measures, as on any machine)
    assert not tftp.machine_busy(lambda: "")


def test_spin_never_without_a_window_and_reset_measures_afresh() -> None:
    from pxewizard.servers.tftp import SpinChooser

    off = SpinChooser(False)
    assert not any(_drive(off, {False: 60e-6, True: 1e-6}, 50000))

    c = SpinChooser(True)
    _drive(c, {False: 60e-6, True: 23e-6}, SpinChooser.PROBE * 5 + 10)
    assert c.spin
    c.reset()
    assert not c.spin and c.keep == SpinChooser.KEEP


async def test_new_request_for_the_same_file_retires_the_abandoned_transfer(root: Path) -> None:
    """A loader that asks again from a new port abandoned the old transfer: it is retired at
    once (cause superseded) instead of retrying for its whole timeout; the new one runs."""
    from pxewizard.events import FailCause
    svc, events = await _start(root, timeout=0.3, retries=8)
    old, new = Client(svc.port), Client(svc.port)
    try:
        pkt, _ = await asyncio.to_thread(old.request, "sub/k.bin")
        assert isinstance(pkt, Data)   # block 1 sent, never ACKed: abandoned
        await asyncio.sleep(0.6)       # one timeout passed unanswered
        got = await asyncio.to_thread(new.get, "sub/k.bin")
        (failed,) = await wait_for(events, TransferFailed)
        (done,) = await wait_for(events, TransferDone)
    finally:
        old.close()
        new.close()
        await svc.close()
    assert isinstance(got, bytes) and got == (root / "sub" / "k.bin").read_bytes()
    assert failed.cause == FailCause.superseded and failed.path == "sub/k.bin"
    assert "again" in failed.reason and failed.ts <= done.ts
    assert len([e for e in events if isinstance(e, TransferFailed)]) == 1


async def test_lost_big_blocks_grant_that_client_a_blksize_that_fits(root: Path) -> None:
    """OACK acknowledged, block 1 of 1468 bytes never ACKed (a path with a small MTU): the
    server says so in an event and the client's next request gets a block size that fits."""
    from pxewizard.events import BlksizeGranted
    (root / "big.bin").write_bytes(os.urandom(20_000))
    os.chmod(root / "big.bin", 0o644)
    svc, events = await _start(root, timeout=0.2, retries=3)
    c = Client(svc.port)

    def lossy() -> None:
        pkt, tid = c.request("big.bin", blksize=1468)
        assert isinstance(pkt, OAck)
        c.sock.sendto(encode(Ack(0)), tid)   # small packets get through; DATA is "lost"

    try:
        await asyncio.to_thread(lossy)
        (granted,) = await wait_for(events, BlksizeGranted)
        await wait_for(events, TransferFailed)
        again = Client(svc.port)
        try:
            got = await asyncio.to_thread(again.get, "big.bin", blksize=512)
            pkt, _ = await asyncio.to_thread(again.request, "big.bin", blksize=1468)
        finally:
            again.close()
    finally:
        c.close()
        await svc.close()
    assert granted.asked == 1468 and granted.granted == 512 and granted.packet == 1500
    assert granted.path == "big.bin"
    assert got == (root / "big.bin").read_bytes()
    assert isinstance(pkt, OAck) and pkt.options["blksize"] == "512"


def _reader(tmp_path: Path, size: int, chunk: int = 1 << 20) -> tuple[bytes, "ChunkedFile"]:
    from pxewizard.servers.tftp import ChunkedFile
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    return data, ChunkedFile(os.open(tmp_path / "f", os.O_RDONLY), size, "f", chunk=chunk)


@pytest.mark.parametrize("size", [0, 1, 511, 512, 5000, 3 * 512 * 7, 70001])
@pytest.mark.parametrize("count", [1, 3, 64])
def test_a_file_read_in_packet_slots_gives_every_block_with_room_for_its_header(
        tmp_path: Path, size: int, count: int) -> None:
    """ChunkedFile.framed: each block lands 4 bytes into a slot of blksize + 4, a window's
    blocks back to back, the last one short (or empty), across chunk boundaries."""
    bs = 512
    data, f = _reader(tmp_path, size, chunk=3 * bs)  # small chunks: many boundaries
    try:
        nblocks = size // bs + 1
        got_blocks, i = [], 0
        while i < nblocks:
            view, got = f.framed(i, count, bs)
            assert 1 <= got <= count
            for k in range(got):
                piece = bytes(view[k * (bs + 4):(k + 1) * (bs + 4)])
                assert len(piece) == 4 + len(data[(i + k) * bs:(i + k + 1) * bs])
                got_blocks.append(piece[4:])
            assert len(view) == (got - 1) * (bs + 4) + 4 + len(data[(i + got - 1) * bs:
                                                                   (i + got) * bs])
            i += got
        assert b"".join(got_blocks) == data and len(got_blocks) == nblocks
    finally:
        f.close()


def test_the_next_window_is_read_ahead_once_and_then_served_without_a_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ChunkedFile.ahead (called after a window is sent): the next window is read whole
    then, so its ACK finds it in memory; blocks already held, or past the file's end, cost
    no read; a retransmission of blocks no longer held reads them again."""
    from pxewizard.proto.tftp import Limits, ReadTransfer
    from pxewizard.servers import tftp as tftp_mod
    bs, w = 8192, 8
    data, f = _reader(tmp_path, 40 * bs + 100, chunk=64 << 10)  # 8 blocks a chunk
    reads: list[int] = []
    real = os.preadv

    def counting(fd: int, iov: list, off: int) -> int:  # type: ignore[type-arg]
        reads.append(off // bs)
        return real(fd, iov, off)

    monkeypatch.setattr(tftp_mod.os, "preadv", counting)
    try:
        req = Request(opcode=Opcode.RRQ, filename="f", mode="octet",
                      options={"blksize": str(bs), "windowsize": str(w)})
        core = ReadTransfer(req, f, Limits(max_blksize=bs), 0.0)
        assert core.nblocks == 41
        view, got = core.frames(1, w)
        assert got == w and reads == [0]
        core.ahead(1 + w)  # sent blocks 1..8: the next window, 9..16, is read now
        assert reads == [0, 8]
        core.ahead(1 + w)  # held already: no read
        assert reads == [0, 8]
        view, got = core.frames(1 + w, w)  # its ACK: served from memory, one view
        assert got == w and reads == [0, 8]
        assert bytes(view[4:4 + bs]) == data[w * bs:(w + 1) * bs]
        core.ahead(42)  # past the last block (41): nothing to read
        assert reads == [0, 8]
        view, got = core.frames(3, 1)  # a retransmission of an older block reads it again
        assert reads == [0, 8, 2] and bytes(view[4:]) == data[2 * bs:3 * bs]
        core.ahead(41)  # the last (short) block alone
        view, got = core.frames(41, w)
        assert got == 1 and bytes(view[4:]) == data[40 * bs:] and reads[-1] == 40
    finally:
        f.close()


def test_framed_packets_are_data_packets_a_client_decodes(tmp_path: Path) -> None:
    """ReadTransfer.frames writes each header in place: the views are complete DATA packets,
    and build() (timers, the first packet) copies the same bytes."""
    from pxewizard.proto.tftp import Limits, ReadTransfer
    data, f = _reader(tmp_path, 10 * 1468 + 17)
    try:
        req = Request(opcode=Opcode.RRQ, filename="f", mode="octet",
                      options={"blksize": "1468", "windowsize": "4"})
        core = ReadTransfer(req, f, Limits(), 0.0)
        assert core.framed
        view, got = core.frames(3, 4)
        assert got == 4
        for k in range(4):
            pkt = decode(bytes(view[k * 1472:(k + 1) * 1472]))
            assert pkt == Data(block=3 + k, payload=data[(2 + k) * 1468:(3 + k) * 1468])
        last = core.nblocks
        buf = bytearray(2000)
        n = core.build(buf, last)
        assert decode(bytes(buf[:n])) == Data(block=last, payload=data[(last - 1) * 1468:])
        assert bytes(core.frames(last, 1)[0]) == bytes(buf[:n])
    finally:
        f.close()


def test_a_file_that_shrinks_under_the_reader_says_so(tmp_path: Path) -> None:
    from pxewizard.servers.tftp import FileChanged
    data, f = _reader(tmp_path, 200_000, chunk=64 << 10)
    try:
        f.framed(0, 1, 1468)
        (tmp_path / "f").write_bytes(data[:1000])  # truncated in place, as cp does
        with pytest.raises(FileChanged, match="became shorter"):
            f.framed(100, 1, 1468)
    finally:
        f.close()
