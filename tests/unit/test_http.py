"""HTTP server: Range parsing, path decoding, and the server in-process on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import aiohttp
import pytest

from pxewizard.errors import PortInUse
from pxewizard.events import EventBus, TransferDone, TransferFailed, TransferStarted
from pxewizard.files import FileTree
from pxewizard.servers.http import RangeNotSatisfiable, parse_range, request_path, start_http

# --- Range (RFC 9110 section 14) --------------------------------------------------------


@pytest.mark.parametrize("header,size,expect", [
    (None, 10, None),
    ("", 10, None),
    ("bytes=0-0", 10, (0, 0)),           # archiso's one-byte probe
    ("bytes=2-5", 10, (2, 5)),
    ("bytes=2-100", 10, (2, 9)),         # last beyond the end is clamped
    ("bytes=4-", 10, (4, 9)),            # open-ended
    ("bytes=-3", 10, (7, 9)),            # suffix
    ("bytes=-30", 10, (0, 9)),           # suffix longer than the file
    ("BYTES = 1-2", 10, (1, 2)),
    ("bytes=5-2", 10, None),             # invalid: ignored
    ("bytes=a-b", 10, None),
    ("bytes=0-1,4-5", 10, None),         # several ranges: whole file
    ("items=0-1", 10, None),             # unknown unit: ignored
    ("bytes=", 10, None),
    ("bytes=-", 10, None),
    ("bytes=1", 10, None),
    ("bytes=\u00b2-", 10, None),          # '²'.isdigit() is True, but DIGIT is ASCII
    ("bytes=2-" + "9" * 4400, 10, (2, 9)),  # thousands of digits: clamped, never int()-ed
    ("bytes=-" + "9" * 4400, 10, (0, 9)),
    ("bytes=" + "0" * 4400 + "3-4", 10, (3, 4)),
])
def test_parse_range(header: str | None, size: int, expect: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == expect


@pytest.mark.parametrize("header,size", [
    ("bytes=10-", 10), ("bytes=10-20", 10), ("bytes=-0", 10), ("bytes=0-", 0), ("bytes=-5", 0),
    ("bytes=" + "9" * 4400 + "-", 10), ("bytes=" + "1" * 4400 + "-" + "2" * 4400, 10),
])
def test_parse_range_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)


def test_request_path_decodes_once() -> None:
    assert request_path("/a%20b/c?x=1") == "/a b/c"
    assert request_path("/%2e%2e/etc/passwd") == "/../etc/passwd"
    assert request_path("/a%2f..%2fb") == "/a/../b"
    assert request_path("/%252e%252e/x") == "/%2e%2e/x"  # decoded once only
    assert request_path("http://10.0.0.1:8080/boot.ipxe?x") == "/boot.ipxe"  # absolute-form
    assert request_path("http://10.0.0.1") == "/"
    with pytest.raises(UnicodeDecodeError):
        request_path("/%ff%fe")


# --- the server, in-process on 127.0.0.1 ---------------------------------------------------


@pytest.fixture
async def server(tmp_path: Path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (root / "small.txt").write_bytes(b"0123456789")
    (root / "secret.txt").write_bytes(b"private")
    (root / "secret.txt").chmod(0o600)
    (tmp_path / "outside.txt").write_bytes(b"TOP-SECRET-OUTSIDE")
    (root / "link-out").symlink_to(tmp_path / "outside.txt")
    tree = FileTree([root])
    tree.add_bytes("boot.ipxe", "#!ipxe\nchain http://x/menu\n")
    # a file inside an unmounted ISO: an extent of the container
    tree.add_extent("iso/vmlinuz", root / "big.bin", 1000, 70000)
    bus = EventBus()
    bus.bind_loop(asyncio.get_running_loop())
    events: list = []
    bus.subscribe(events.append)
    svc = await start_http(tree=tree, bus=bus, address="127.0.0.1", port=0, interface=None)
    base = f"http://127.0.0.1:{svc.port}"
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield base, session, events, root
    await svc.close()


async def _get(session, url, **kw):
    async with session.get(url, **kw) as r:
        return r.status, r.headers.copy(), await r.read()


async def test_full_and_ranges(server) -> None:
    base, s, events, root = server
    data = (root / "big.bin").read_bytes()
    st, h, body = await _get(s, f"{base}/big.bin")
    assert st == 200 and hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert h["Content-Length"] == str(len(data)) and h["Accept-Ranges"] == "bytes"
    assert "Last-Modified" in h and h["ETag"].startswith('"')
    for rng, want in (("bytes=0-0", data[:1]), ("bytes=100-199", data[100:200]),
                      ("bytes=-1000", data[-1000:]), ("bytes=3145000-", data[3145000:])):
        st, h, body = await _get(s, f"{base}/big.bin", headers={"Range": rng})
        assert st == 206 and body == want, rng
        assert h["Content-Length"] == str(len(want))
    st, h, _ = await _get(s, f"{base}/big.bin", headers={"Range": f"bytes={len(data)}-"})
    assert st == 416 and h["Content-Range"] == f"bytes */{len(data)}"
    done = [e for e in events if isinstance(e, TransferDone)]
    assert done[0].sent == len(data) and done[0].status == 200
    assert [e.status for e in done[1:]] == [206] * 4
    assert any(isinstance(e, TransferFailed) and e.code == 416 for e in events)


async def test_memory_file_head_and_conditional(server) -> None:
    base, s, events, _ = server
    st, h, body = await _get(s, f"{base}/boot.ipxe")
    assert st == 200 and body.startswith(b"#!ipxe")
    async with s.head(f"{base}/boot.ipxe") as r:
        assert r.status == 200 and r.headers["Content-Length"] == str(len(body))
        assert await r.read() == b""
    st, _, body = await _get(s, f"{base}/boot.ipxe", headers={"Range": "bytes=0-5"})
    assert st == 206 and body == b"#!ipxe"
    st, _, _ = await _get(s, f"{base}/small.txt")
    etag, lm = h["ETag"], h["Last-Modified"]
    st, _, body = await _get(s, f"{base}/boot.ipxe", headers={"If-None-Match": etag})
    assert st == 304 and body == b""
    st, _, _ = await _get(s, f"{base}/boot.ipxe", headers={"If-Modified-Since": lm})
    assert st == 304
    # If-Range with a stale validator: the whole file, not the range
    st, _, body = await _get(s, f"{base}/small.txt",
                             headers={"Range": "bytes=0-1", "If-Range": '"stale"'})
    assert st == 200 and body == b"0123456789"
    started = [e for e in events if isinstance(e, TransferStarted)]
    assert started[0].path == "/boot.ipxe" and started[0].client == "127.0.0.1"


@pytest.mark.parametrize("path,status", [
    ("/missing", 404), ("/", 404), ("/../outside.txt", 403), ("/%2e%2e/outside.txt", 403),
    ("/x%2f..%2f..%2foutside.txt", 403), ("/link-out", 403), ("/secret.txt", 403),
    ("/small.txt%00.png", 403), ("/%ff", 400),
])
async def test_refused(server, path: str, status: int) -> None:
    base, s, events, _ = server
    # yarl would normalise "..": send the raw path as a client like curl --path-as-is does
    reader, writer = await asyncio.open_connection("127.0.0.1", int(base.rsplit(":", 1)[1]))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    reply = await reader.read()
    writer.close()
    assert reply.split(b" ", 2)[1] == str(status).encode(), reply[:200]
    assert b"TOP-SECRET" not in reply
    fail = [e for e in events if isinstance(e, TransferFailed)]
    assert fail and fail[-1].code == status and fail[-1].reason


async def test_methods(server) -> None:
    base, s, events, _ = server
    for m in ("POST", "PUT", "DELETE"):
        async with s.request(m, f"{base}/small.txt", data=b"x") as r:
            assert r.status == 405 and r.headers["Allow"] == "GET, HEAD"


async def test_port_in_use_names_holder(tmp_path: Path) -> None:
    bus = EventBus()
    bus.bind_loop(asyncio.get_running_loop())
    svc = await start_http(tree=FileTree([tmp_path]), bus=bus, address="127.0.0.1", port=0,
                           interface=None)
    try:
        with pytest.raises(PortInUse) as ei:
            await start_http(tree=FileTree([tmp_path]), bus=bus, address="127.0.0.1",
                             port=svc.port, interface=None)
        assert str(svc.port) in str(ei.value)
    finally:
        await svc.close()


async def test_progress_events_rate_limited(server, monkeypatch) -> None:
    import pxewizard.servers.http as http_mod

    monkeypatch.setattr(http_mod, "CHUNK", 256 * 1024)
    monkeypatch.setattr(http_mod, "PROGRESS_INTERVAL", 0.0)
    base, s, events, root = server
    st, _, body = await _get(s, f"{base}/big.bin")
    assert st == 200 and len(body) == (root / "big.bin").stat().st_size
    prog = [e for e in events if type(e).__name__ == "TransferProgress"]
    assert len(prog) >= 5 and all(0 < e.sent < len(body) for e in prog)
    assert [e.sent for e in prog] == sorted(e.sent for e in prog)


async def test_client_abort_is_an_event_not_a_traceback(server, monkeypatch, capfd) -> None:
    import pxewizard.servers.http as http_mod

    monkeypatch.setattr(http_mod, "CHUNK", 64 * 1024)
    base, s, events, root = server
    big = root / "huge.bin"
    with open(big, "wb") as fh:
        fh.truncate(512 * 1024 * 1024)  # sparse: sendfile outruns any socket buffer
    big.chmod(0o644)
    port = int(base.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    await reader.readexactly(1000)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_LINGER,
                    b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close with RST
    writer.close()
    for _ in range(100):
        if any(isinstance(e, TransferFailed) for e in events):
            break
        await asyncio.sleep(0.05)
    fail = [e for e in events if isinstance(e, TransferFailed)]
    assert fail and "client closed the connection" in fail[0].reason and fail[0].code == 200
    # the server still serves
    st, _, body = await _get(s, f"{base}/small.txt")
    assert st == 200 and body == b"0123456789"
    assert "Traceback" not in capfd.readouterr().err


async def test_extent_inside_a_container(server) -> None:
    base, s, events, root = server
    data = (root / "big.bin").read_bytes()[1000:71000]
    st, h, body = await _get(s, f"{base}/iso/vmlinuz")
    assert st == 200 and body == data and h["Content-Length"] == "70000"
    st, _, body = await _get(s, f"{base}/iso/vmlinuz", headers={"Range": "bytes=-10"})
    assert st == 206 and body == data[-10:]
    st, _, body = await _get(s, f"{base}/iso/vmlinuz", headers={"Range": "bytes=0-0"})
    assert st == 206 and body == data[:1]


async def test_cold_file_is_warmed_off_the_loop(server, monkeypatch) -> None:
    import pxewizard.servers.http as http_mod

    base, s, _, root = server
    warmed: list[tuple[int, int]] = []
    real_warm = http_mod._warm

    def spy(fd: int, offset: int, count: int) -> None:
        warmed.append((offset, count))
        real_warm(fd, offset, count)

    monkeypatch.setattr(http_mod, "_warm", spy)
    monkeypatch.setattr(http_mod, "CHUNK", 1024 * 1024)
    big = root / "big.bin"
    fd = os.open(big, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # evict this file's pages only
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # again: pages just written back
        cold = not http_mod.page_cached(fd, 1 << 20, 1 << 20)
    finally:
        os.close(fd)
    st, _, body = await _get(s, f"{base}/big.bin")
    assert st == 200 and body == big.read_bytes()
    if not cold:
        pytest.skip("the page cache kept the file (nothing was cold)")
    assert warmed  # (readahead while warming may already cover the later chunks)


async def test_caps_and_the_header_deadline(tmp_path: Path) -> None:
    """http.max_per_client closes the extra connection at once; a head that does not arrive
    within http.header_timeout is cut; a complete request is served meanwhile."""
    (tmp_path / "f.txt").write_bytes(b"hello")
    os.chmod(tmp_path / "f.txt", 0o644)
    bus = EventBus()
    bus.bind_loop(asyncio.get_running_loop())
    events: list = []
    bus.subscribe(events.append)
    svc = await start_http(tree=FileTree([tmp_path]), bus=bus, address="127.0.0.1", port=0,
                           interface=None, max_per_client=2, header_timeout=0.5)
    try:
        slow = [await asyncio.open_connection("127.0.0.1", svc.port) for _ in range(2)]
        for _r, w in slow:
            w.write(b"GET /f.txt HTTP/1.1\r\nHost: x\r\n")  # never finished
        r3, _w3 = await asyncio.open_connection("127.0.0.1", svc.port)
        assert await asyncio.wait_for(r3.read(100), 5) == b""  # over the per-client cap
        for r, _w in slow:
            assert await asyncio.wait_for(r.read(100), 5) == b""  # cut by the deadline
        r4, w4 = await asyncio.open_connection("127.0.0.1", svc.port)
        w4.write(b"GET /f.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await asyncio.wait_for(r4.read(), 5)).endswith(b"hello")
        reasons = " ".join(getattr(e, "reason", "") for e in events)
        assert "http.max_per_client" in reasons and "http.header_timeout" in reasons
    finally:
        await svc.close()
