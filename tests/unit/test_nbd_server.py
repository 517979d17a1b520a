"""NBD server in-process on 127.0.0.1 with a raw asyncio client: data, errors, events."""

from __future__ import annotations

import asyncio
import os
import struct
from pathlib import Path

import pytest

from pxewizard.errors import PortInUse, PxeError
from pxewizard.events import (
    EventBus,
    PacketDropped,
    SessionClosed,
    SessionOpened,
    TransferDone,
    TransferFailed,
)
from pxewizard.proto import nbd
from pxewizard.servers.nbd import FileRange, start_nbd

SIZE = 4 * 1024 * 1024 + 4321


@pytest.fixture
async def server(tmp_path: Path):
    img = tmp_path / "archiso.iso"
    img.write_bytes(os.urandom(SIZE))
    bus = EventBus()
    bus.bind_loop(asyncio.get_running_loop())
    events: list = []
    bus.subscribe(events.append)
    svc = await start_nbd(bus=bus, address="127.0.0.1", port=0, oldstyle_port=0,
                          exports={"archiso": img}, interface=None)
    yield svc, img.read_bytes(), events
    await svc.close()


async def connect_go(port: int, name: str = "archiso"):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    greet = await r.readexactly(18)
    assert greet[:16] == b"NBDMAGICIHAVEOPT"
    raw = name.encode()
    w.write(struct.pack(">I", 3) + struct.pack(">QII", nbd.IHAVEOPT, nbd.OPT_GO, 6 + len(raw))
            + struct.pack(">I", len(raw)) + raw + b"\x00\x00")
    while True:
        _magic, _opt, typ, n = struct.unpack(">QIII", await r.readexactly(20))
        await r.readexactly(n)
        if typ == nbd.REP_ACK:
            return r, w
        assert typ == nbd.REP_INFO, typ


def request(cmd: int, handle: int, offset: int, length: int) -> bytes:
    return struct.pack(">IHHQQI", nbd.REQUEST_MAGIC, 0, cmd, handle, offset, length)


async def reply(r) -> tuple[int, int]:
    magic, err, handle = struct.unpack(">IIQ", await r.readexactly(16))
    assert magic == nbd.SIMPLE_REPLY_MAGIC
    return err, handle


async def test_pipelined_reads(server) -> None:
    svc, data, events = server
    r, w = await connect_go(svc.ports["newstyle"])
    chunks = [(i, (i * 70001) % (SIZE - 65536), 1 + (i * 977) % 65536) for i in range(200)]
    w.write(b"".join(request(nbd.CMD_READ, h, off, n) for h, off, n in chunks))
    for h, off, n in chunks:  # replies come in request order
        assert await reply(r) == (0, h)
        assert await r.readexactly(n) == data[off:off + n]
    w.write(request(nbd.CMD_DISC, 0, 0, 0))
    assert await r.read() == b""
    w.close()
    await asyncio.sleep(0.05)
    opened = [e for e in events if isinstance(e, SessionOpened)]
    assert opened[0].target == "archiso" and "newstyle" in opened[0].detail
    closed = [e for e in events if isinstance(e, SessionClosed)][-1]
    assert closed.read == sum(n for _, _, n in chunks) and "DISC" in closed.reason
    assert [e for e in events if isinstance(e, TransferDone)][-1].sent == closed.read


async def test_errors_keep_the_session(server) -> None:
    svc, data, events = server
    r, w = await connect_go(svc.ports["newstyle"])
    w.write(request(nbd.CMD_WRITE, 1, 0, 512) + b"x" * 512)
    w.write(request(nbd.CMD_TRIM, 2, 0, 512))
    w.write(request(nbd.CMD_READ, 3, SIZE - 1, 2))
    w.write(request(nbd.CMD_READ, 4, 0, 64 << 20))
    w.write(request(nbd.CMD_READ, 5, SIZE - 10, 10))
    assert await reply(r) == (nbd.EPERM, 1)
    assert await reply(r) == (nbd.EPERM, 2)
    assert await reply(r) == (nbd.EINVAL, 3)
    assert await reply(r) == (nbd.EINVAL, 4)
    assert await reply(r) == (0, 5) and await r.readexactly(10) == data[-10:]
    w.close()
    fails = [e for e in events if isinstance(e, TransferFailed)]
    assert any("WRITE refused" in e.reason and e.code == nbd.EPERM for e in fails)


async def test_garbage_client_does_not_disturb_others(server) -> None:
    svc, data, events = server
    good_r, good_w = await connect_go(svc.ports["newstyle"])
    for junk in (os.urandom(5000), b"\x00" * 4 + b"garbage" * 10, b"NBD"):
        r, w = await asyncio.open_connection("127.0.0.1", svc.ports["newstyle"])
        await r.readexactly(18)
        w.write(junk)
        w.write_eof()  # an incomplete handshake then EOF must close too
        assert len(await asyncio.wait_for(r.read(), 5)) < 1000  # closed (maybe after a reply)
        w.close()
    bad_r, bad_w = await connect_go(svc.ports["newstyle"])
    bad_w.write(b"\xff" * 28)  # bad request magic in transmission
    assert await asyncio.wait_for(bad_r.read(), 5) == b""
    good_w.write(request(nbd.CMD_READ, 9, 100, 1000))
    assert await reply(good_r) == (0, 9) and await good_r.readexactly(1000) == data[100:1100]
    good_w.close()
    assert any(isinstance(e, PacketDropped) for e in events)


async def test_oldstyle_port(server) -> None:
    svc, data, events = server
    r, w = await asyncio.open_connection("127.0.0.1", svc.ports["oldstyle"])
    greet = await r.readexactly(152)
    assert greet[:8] == b"NBDMAGIC"
    assert struct.unpack_from(">QQ", greet, 8) == (0x00420281861253, SIZE)
    w.write(request(nbd.CMD_READ, 1, 0, 4096))
    assert await reply(r) == (0, 1) and await r.readexactly(4096) == data[:4096]
    w.close()
    await asyncio.sleep(0.05)
    assert any(isinstance(e, SessionOpened) and "oldstyle" in e.detail for e in events)


async def test_missing_export_and_busy_port(tmp_path: Path, server) -> None:
    svc, _, _ = server
    bus = EventBus()
    with pytest.raises(PxeError, match="does not exist"):
        await start_nbd(bus=bus, address="127.0.0.1", port=0, oldstyle_port=None,
                        exports={"archiso": tmp_path / "nope.iso"}, interface=None)
    with pytest.raises(PxeError, match="directory"):
        await start_nbd(bus=bus, address="127.0.0.1", port=0, oldstyle_port=None,
                        exports={"archiso": tmp_path}, interface=None)
    with pytest.raises(PortInUse):
        await start_nbd(bus=bus, address="127.0.0.1", port=svc.ports["newstyle"],
                        oldstyle_port=None, exports={"archiso": tmp_path / "archiso.iso"},
                        interface=None)


async def test_close_with_a_stalled_client_is_prompt(tmp_path: Path) -> None:
    img = tmp_path / "a.iso"
    img.write_bytes(os.urandom(SIZE))
    bus = EventBus()
    bus.bind_loop(asyncio.get_running_loop())
    events: list = []
    bus.subscribe(events.append)
    svc = await start_nbd(bus=bus, address="127.0.0.1", port=0, oldstyle_port=None,
                          exports={"archiso": img}, interface=None)
    _r, w = await connect_go(svc.ports["newstyle"])
    # ask for far more than the socket buffers hold, and never read the replies
    w.write(b"".join(request(nbd.CMD_READ, h, 0, 1 << 20) for h in range(400)))
    await asyncio.sleep(0.3)
    t = asyncio.get_running_loop().time()
    await asyncio.wait_for(svc.close(), 5)
    assert asyncio.get_running_loop().time() - t < 3
    closed = [e for e in events if isinstance(e, SessionClosed)]
    assert closed and closed[0].reason == "server stopping"
    w.close()


async def test_option_probes_are_not_failures_but_unknown_exports_are(server) -> None:
    svc, _, events = server
    r, w = await asyncio.open_connection("127.0.0.1", svc.ports["newstyle"])
    await r.readexactly(18)
    w.write(struct.pack(">I", 3) + struct.pack(">QII", nbd.IHAVEOPT, nbd.OPT_EXTENDED_HEADERS, 0))
    _, _, typ, n = struct.unpack(">QIII", await r.readexactly(20))
    await r.readexactly(n)
    assert typ == nbd.REP_ERR_UNSUP
    w.write(struct.pack(">QII", nbd.IHAVEOPT, nbd.OPT_GO, 10) + struct.pack(">I", 4) + b"nope"
            + b"\x00\x00")
    _, _, typ, n = struct.unpack(">QIII", await r.readexactly(20))
    assert typ == nbd.REP_ERR_UNKNOWN and b"archiso" in await r.readexactly(n)
    w.close()
    await asyncio.sleep(0.05)
    fails = [e for e in events if isinstance(e, TransferFailed)]
    assert len(fails) == 1 and "nope" in fails[0].reason


async def test_pread_fallback_without_sendfile(server, monkeypatch) -> None:
    """Some filesystems (FUSE mounts of an ISO) cannot sendfile: pread + send takes over."""
    import errno as errno_mod

    svc, data, events = server
    fds_before = len(os.listdir("/proc/self/fd"))

    def no_sendfile(*_a, **_k):
        raise OSError(errno_mod.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "sendfile", no_sendfile)
    r, w = await connect_go(svc.ports["newstyle"])
    w.write(request(nbd.CMD_READ, 1, 10, 3 * 1024 * 1024) + request(nbd.CMD_READ, 2, 0, 5))
    assert await reply(r) == (0, 1)
    assert await r.readexactly(3 << 20) == data[10:10 + (3 << 20)]
    assert await reply(r) == (0, 2) and await r.readexactly(5) == data[:5]
    w.write(request(nbd.CMD_DISC, 0, 0, 0))
    assert await r.read() == b""
    w.close()
    await asyncio.sleep(0.1)
    assert not svc.exports["archiso"].sendfile
    assert any("pread" in getattr(e, "message", "") for e in events)
    assert len(os.listdir("/proc/self/fd")) <= fds_before  # the session's own fd is closed


async def test_cold_pages_are_read_correctly(server, tmp_path: Path) -> None:
    """Data not in the page cache goes through the thread path (and the readahead hint)."""
    from pxewizard.servers.pagecache import page_cached as cached

    svc, data, _ = server
    fd = os.open(tmp_path / "archiso.iso", os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # evict this file's pages only
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # again: pages just written back
        cold = not cached(fd, 1 << 20, 65536)
        r, w = await connect_go(svc.ports["newstyle"])
        w.write(request(nbd.CMD_READ, 1, 1 << 20, 65536) + request(nbd.CMD_READ, 2, 0, SIZE))
        assert await reply(r) == (0, 1)
        assert await r.readexactly(65536) == data[1 << 20:(1 << 20) + 65536]
        assert await reply(r) == (0, 2) and await r.readexactly(SIZE) == data
        w.close()
        assert cached(fd, 1 << 20, 65536)
        if not cold:
            pytest.skip("the page cache kept the file (nothing was cold)")
    finally:
        os.close(fd)


async def test_a_range_of_a_file_is_exported_as_a_whole_disk(tmp_path: Path) -> None:
    """Old SystemRescueCd's sysrcd.dat inside the .iso (issue 25): offset 0 of the export is
    the range's first byte, its size is the range's, reads past it are refused."""
    iso = tmp_path / "sysrcd.iso"
    data = os.urandom(300_000)
    iso.write_bytes(data)
    start, size = 34_816, 200_000 + 7
    bus = EventBus()
    bus.bind_loop(asyncio.get_running_loop())
    svc = await start_nbd(bus=bus, address="127.0.0.1", port=0, oldstyle_port=0,
                          exports={"sysrcd": FileRange(iso, start, size, "sysrcd.dat")},
                          interface=None)
    try:
        r, w = await asyncio.open_connection("127.0.0.1", svc.ports["oldstyle"])
        greet = await r.readexactly(152)
        assert struct.unpack_from(">QQ", greet, 8) == (0x00420281861253, size)
        w.write(request(nbd.CMD_READ, 1, 0, 4096) + request(nbd.CMD_READ, 2, size - 7, 7)
                + request(nbd.CMD_READ, 3, size - 3, 4096))
        assert await reply(r) == (0, 1) and await r.readexactly(4096) == data[start:start + 4096]
        assert await reply(r) == (0, 2) and await r.readexactly(7) == data[start + size - 7:
                                                                            start + size]
        err, handle = await reply(r)
        assert handle == 3 and err != 0  # past the end of the range, not of the file
        w.close()
        with pytest.raises(PxeError, match="runs past the end"):
            await start_nbd(bus=bus, address="127.0.0.1", port=0, oldstyle_port=None,
                            exports={"x": FileRange(iso, 299_000, 4096, "x.dat")},
                            interface=None)
    finally:
        await svc.close()


async def test_at_the_session_cap_accepting_pauses(tmp_path: Path) -> None:
    """nbd.max_connections: the next client waits in the backlog, served when one ends."""
    img = tmp_path / "a.img"
    img.write_bytes(b"x" * 4096)
    bus = EventBus()
    bus.bind_loop(asyncio.get_running_loop())
    events: list = []
    bus.subscribe(events.append)
    svc = await start_nbd(bus=bus, address="127.0.0.1", port=0, oldstyle_port=None,
                          exports={"archiso": img}, interface=None, max_connections=2,
                          max_per_client=5)
    try:
        port = svc.ports["newstyle"]
        first = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        for r, _w in first:
            assert (await r.readexactly(18))[:8] == b"NBDMAGIC"
        r3, w3 = await asyncio.open_connection("127.0.0.1", port)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(r3.readexactly(18), 0.5)  # not accepted yet
        first[0][1].close()
        assert (await asyncio.wait_for(r3.readexactly(18), 5))[:8] == b"NBDMAGIC"
        assert any("nbd.max_connections" in getattr(e, "reason", "") for e in events)
        w3.close()
        first[1][1].close()
    finally:
        await svc.close()
