"""HTTP server for iPXE scripts, menus and stage-3 images (aiohttp, low-level server).

Only GET and HEAD of files resolved through the jailed :class:`FileTree`:
generated files are answered from memory, files on disk (or inside an
unmounted ISO, as an extent at an offset) go out with sendfile(2)
in chunks (so progress can be reported and a big image never passes through
Python). Range requests (RFC 9110 section 14) are honoured for one range,
which is what every boot client sends: SystemRescue's archiso probes the
server with ``Range: bytes=0-0`` before it downloads ``airootfs.sfs``.

Every request gives one event pair: ``TransferStarted`` then ``TransferDone``
(status, bytes, seconds), or a single ``TransferFailed`` (status, reason) when
it was refused, plus ``TransferProgress`` a few times per second on long
downloads. aiohttp's access log is off: the events are the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import errno
import logging
import mimetypes
import os
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from ..events import (
    EventBus,
    LogLine,
    ServiceStarted,
    ServiceStopped,
    TransferDone,
    TransferFailed,
    TransferProgress,
    TransferStarted,
)
from ..files import FileRef, FileTree, TreeError
from .base import RefusalLog, tcp_listener
from .pagecache import page_cached

SERVICE = "http"
CHUNK = 16 * 1024 * 1024
"""Bytes per sendfile call: big enough to stay in the kernel, small enough for progress."""
PROGRESS_INTERVAL = 0.25
"""At most this often (seconds) a TransferProgress is published per download."""
HEADER_TIMEOUT = 60.0
"""Default of ``http.header_timeout``: a request's head (request line and headers) must
arrive whole within this many seconds of its first byte, or of the connection (nginx's
client_header_timeout default is 60 s). A slowloris trickling a byte at a time is cut."""
KEEPALIVE_TIMEOUT = 75.0
"""Default of ``http.keepalive_timeout``: an idle kept-alive connection is closed after
this (nginx's keepalive_timeout default is 75 s; aiohttp's low-level server keeps 3630 s)."""
MAX_CONNECTIONS = 512
"""Default of ``http.max_connections``: nginx's worker_connections default."""
MAX_PER_CLIENT = 32
"""Default of ``http.max_per_client`` (nginx has no limit_conn by default; a boot opens
1-2 connections, a browser 6)."""

mimetypes.add_type("text/plain", ".ipxe")
mimetypes.add_type("text/plain", ".cfg")
mimetypes.add_type("text/plain", ".sha512")
mimetypes.add_type("text/plain", ".md5")


class RangeNotSatisfiable(Exception):
    """The Range header is valid but selects no byte of the file (answer 416)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One ``Range`` header -> (first, last) byte positions (inclusive), or None for "whole file".

    RFC 9110 section 14.1.1/14.2: a header the server does not understand, or
    one it chooses not to honour (several ranges), is ignored and the whole
    file is sent with 200; a valid range that starts beyond the end raises
    :class:`RangeNotSatisfiable` (416). Suffix ranges (``bytes=-N``) select the
    last N bytes; open-ended ranges (``bytes=N-``) run to the end.
    """
    if not header:
        return None
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if len(parts) != 1:
        return None  # several ranges: serving the whole file is allowed (section 14.2)
    first_s, dash, last_s = parts[0].partition("-")
    if not dash:
        return None
    first_s, last_s = first_s.strip(), last_s.strip()
    if (first_s and not first_s.isdigit()) or (last_s and not last_s.isdigit()) \
            or not (first_s + last_s).isascii():  # DIGIT is ASCII (RFC 5234); '²'.isdigit()
        return None
    # Bounded: a position of more than MAX_DIGITS digits is past any file (int() of
    # thousands of digits is slow and past 4300 raises), so it is clamped, not converted.
    if not first_s:  # suffix range
        if not last_s:
            return None
        n = _position(last_s, size)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(f"bytes=-{n} of a {size}-byte file")
        return max(0, size - n), size - 1
    first = _position(first_s, size)
    last = _position(last_s, size) if last_s else size - 1
    if last_s and last < first:
        return None  # invalid: ignored (section 14.1.1)
    if first >= size:
        raise RangeNotSatisfiable(f"bytes={first}- of a {size}-byte file")
    return first, min(last, size - 1)


MAX_DIGITS = 19
"""Digits of a byte position read (2**63 has 19): nothing we serve is larger."""


def _position(digits: str, size: int) -> int:
    """A byte position of a Range header; one past ``size`` when longer than MAX_DIGITS."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= MAX_DIGITS else max(size, 10 ** MAX_DIGITS)


def etag_of(ref: FileRef) -> str:
    """A strong validator from mtime and size (as nginx does), stable across restarts."""
    return f'"{int(ref.mtime * 1_000_000):x}-{ref.size:x}"'


def request_path(raw_path: str) -> str:
    """The client's path, percent-decoded once, without the query.

    Decoding happens here exactly once so ``%2e%2e`` and ``%2f`` reach the
    tree's jail as the ``..`` and ``/`` they stand for and are refused there.
    Raises ValueError for bytes that are not UTF-8.
    """
    path = raw_path.split("?", 1)[0].split("#", 1)[0]
    if "://" in path and not path.startswith("/"):  # absolute-form (RFC 9112 section 3.2.2)
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    return unquote_to_bytes(path).decode("utf-8")


def _not_modified(request: web.BaseRequest, ref: FileRef, etag: str) -> bool:
    """If-None-Match wins over If-Modified-Since (RFC 9110 section 13.2.2)."""
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        tags = [t.strip() for t in inm.split(",")]
        return "*" in tags or etag in tags or f"W/{etag}" in tags
    ims = request.headers.get("If-Modified-Since")
    if ims:
        try:
            since = email.utils.parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return False
        return int(ref.mtime) <= since
    return False


def _if_range_ok(request: web.BaseRequest, ref: FileRef, etag: str, last_modified: str) -> bool:
    """If-Range (section 13.1.5): honour Range only while the validator still matches."""
    ir = request.headers.get("If-Range")
    if ir is None:
        return True
    ir = ir.strip()
    if ir.startswith(('"', "W/")):
        return ir == etag
    return ir == last_modified


class _Guard:
    """The caps of one HTTP server: connections in total and per client, the header deadline.

    Connections are counted where they are accepted (our own accept loop, so accepting
    pauses at the total cap instead of accepting and closing in a loop) and uncounted when
    their protocol object sees the connection lost.
    """

    def __init__(self, bus: EventBus, *, max_connections: int, max_per_client: int,
                 header_timeout: float) -> None:
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.header_timeout = header_timeout
        self.per_client: dict[str, int] = {}
        self.total = 0
        self.below_cap = asyncio.Event()
        self.below_cap.set()
        self.refused = RefusalLog(bus, SERVICE)

    def admit(self, ip: str) -> bool:
        if self.per_client.get(ip, 0) >= self.max_per_client:
            return False
        self.per_client[ip] = self.per_client.get(ip, 0) + 1
        self.total += 1
        if self.total >= self.max_connections:
            self.below_cap.clear()
            self.refused("(listener)", f"{self.total} connections open (http.max_connections "
                         f"= {self.max_connections}): accepting paused until one closes")
        return True

    def release(self, ip: str) -> None:
        n = self.per_client.get(ip, 0) - 1
        if n > 0:
            self.per_client[ip] = n
        else:
            self.per_client.pop(ip, None)
        self.total -= 1
        if self.total < self.max_connections:
            self.below_cap.set()


class _GuardedHandler(RequestHandler):
    """aiohttp's connection protocol plus a deadline on each request's head.

    aiohttp has no header timeout, so a client sending its headers a byte a second (a
    slowloris) holds a connection forever. Here the head of each request must be complete
    (the blank line after the headers seen) within ``header_timeout`` of its first byte.
    The deadline is disarmed while a response is sent and re-armed by the next request's
    first byte; the idle time between requests is aiohttp's keepalive_timeout.
    """

    def __init__(self, manager: web.Server, *, guard: _Guard, **kw: Any) -> None:
        super().__init__(manager, **kw)
        self._guard = guard
        self._ip = ""
        self._peer = ""
        self._tail = b""
        self._deadline: asyncio.TimerHandle | None = None
        self._counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        pn = transport.get_extra_info("peername")
        if isinstance(pn, tuple) and len(pn) >= 2:
            self._ip, self._peer = str(pn[0]), f"{pn[0]}:{pn[1]}"
        self._counted = True
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = asyncio.get_running_loop().call_later(
                self._guard.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        self._guard.refused(self._peer, "connection closed: request head not received within "
                            f"{self._guard.header_timeout:.0f} s (http.header_timeout)",
                            self._ip)
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        seen = self._tail + data
        end = seen.rfind(b"\r\n\r\n")
        if end < 0:
            self._arm()  # inside a head (or the first byte of the next one)
        elif end + 4 == len(seen):
            self._disarm()  # the head is complete and nothing of the next one came yet
        else:
            self._disarm()  # pipelined: the next head starts now
            self._arm()
        self._tail = seen[-3:]
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        if self._counted:
            self._counted = False
            self._guard.release(self._ip)
        super().connection_lost(exc)


class _GuardedServer(web.Server):
    def __init__(self, handler: Any, *, guard: _Guard, **kw: Any) -> None:
        super().__init__(handler, **kw)
        self.guard = guard

    def __call__(self) -> RequestHandler:
        return _GuardedHandler(self, guard=self.guard, loop=self._loop, **self._kwargs)


@dataclass
class HttpService:
    """The running HTTP server; ``close()`` stops accepting and ends open connections."""

    name: str
    runner: web.ServerRunner
    bus: EventBus
    address: str
    port: int
    sock: socket.socket | None = None
    acceptor: asyncio.Task | None = None
    guard: _Guard | None = None

    async def close(self) -> None:
        if self.acceptor is not None:
            self.acceptor.cancel()
            with contextlib.suppress(BaseException):
                await self.acceptor
        if self.sock is not None:
            self.sock.close()
        await self.runner.cleanup()
        self.bus.publish(ServiceStopped(service=SERVICE))


async def _accept(sock: socket.socket, server: _GuardedServer, guard: _Guard) -> None:
    """Accept connections ourselves: pause at the total cap, refuse over the per-client cap,
    and turn accept errors (EMFILE) into rate-limited events, never a traceback."""
    loop = asyncio.get_running_loop()
    while True:
        await guard.below_cap.wait()
        try:
            conn, addr = await loop.sock_accept(sock)
        except (ConnectionAbortedError, InterruptedError):
            continue
        except OSError as exc:
            guard.refused("(listener)", f"accept failed: {exc.strerror or exc}; retrying in "
                          "0.5 s")
            await asyncio.sleep(0.5)
            continue
        ip = str(addr[0])
        if not guard.admit(ip):
            conn.close()
            guard.refused(f"{ip}:{addr[1]}", f"connection refused: {guard.max_per_client} "
                          f"connections of {ip} already open (http.max_per_client)", ip)
            continue
        conn.setblocking(False)
        try:
            await loop.connect_accepted_socket(server, conn)
        except OSError:
            conn.close()
            guard.release(ip)


class _Handler:
    """Turns one request into one response and its events; no protocol state between requests."""

    def __init__(self, tree: FileTree, bus: EventBus) -> None:
        self.tree = tree
        self.bus = bus

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        peer_ip, peer = _peer(request)
        raw = request.raw_path
        if request.method not in ("GET", "HEAD"):
            self._fail(peer_ip, peer, raw, 405, f"method {request.method} not allowed "
                       "(this server is read-only: GET and HEAD only)")
            return web.Response(status=405, text="405 method not allowed\n",
                                headers={"Allow": "GET, HEAD"})
        try:
            path = request_path(raw)
            ref = self.tree.resolve(path)
        except UnicodeDecodeError:
            self._fail(peer_ip, peer, raw, 400, "path is not valid UTF-8 after percent-decoding")
            return web.Response(status=400, text="400 bad request\n")
        except TreeError as exc:
            # the full reason (with real paths and the fix) goes to the operator's log; the
            # client gets the status in words without details of this machine's filesystem
            self._fail(peer_ip, peer, raw, exc.status, exc.message)
            word = "file not found" if exc.status == 404 else "forbidden (the server log says why)"
            return web.Response(status=exc.status, text=f"{exc.status} {word}: {raw}\n")
        return await self._send(request, ref, peer_ip, peer)

    def _fail(self, client: str, peer: str, path: str, status: int, reason: str,
              sent: int = 0) -> None:
        self.bus.publish(TransferFailed(service=SERVICE, path=path, reason=reason, code=status,
                                        sent=sent, peer=peer, client=client))

    async def _send(self, request: web.BaseRequest, ref: FileRef, client: str,
                    peer: str) -> web.StreamResponse:
        etag = etag_of(ref)
        last_modified = email.utils.formatdate(ref.mtime, usegmt=True)
        ctype = mimetypes.guess_type(ref.path)[0] or "application/octet-stream"
        headers = {"ETag": etag, "Last-Modified": last_modified, "Accept-Ranges": "bytes",
                   "Content-Type": ctype}
        vpath = "/" + ref.path
        if _not_modified(request, ref, etag):
            self.bus.publish(TransferStarted(service=SERVICE, path=vpath, size=ref.size,
                                             options={"method": request.method,
                                                      "conditional": "yes"},
                                             peer=peer, client=client))
            self.bus.publish(TransferDone(service=SERVICE, path=vpath, sent=0, seconds=0.0,
                                          status=304, peer=peer, client=client))
            return web.Response(status=304, headers={"ETag": etag,
                                                     "Last-Modified": last_modified})
        rng_header = request.headers.get("Range")
        try:
            rng = parse_range(rng_header, ref.size) if _if_range_ok(
                request, ref, etag, last_modified) else None
        except RangeNotSatisfiable as exc:
            self._fail(client, peer, vpath, 416, f"range not satisfiable: {exc}")
            return web.Response(status=416, text="416 range not satisfiable\n",
                                headers={"Content-Range": f"bytes */{ref.size}", **{
                                    k: v for k, v in headers.items() if k != "Content-Type"}})
        fobj = None
        loc = ref.location()  # a file on disk, or a file's extent inside an unmounted ISO
        if loc is not None and request.method != "HEAD":
            try:
                # O_RDONLY, and the jail checked again on what was opened (link races)
                fobj = open(ref.open_fd(), "rb", buffering=0)
            except TreeError as exc:
                self._fail(client, peer, vpath, exc.status, str(exc))
                return web.Response(status=exc.status, text=f"{exc.status} cannot open {vpath}\n")
            except OSError as exc:
                code = 404 if isinstance(exc, FileNotFoundError) else 403
                self._fail(client, peer, vpath, code, f"cannot open {loc[0]}: {exc.strerror}")
                return web.Response(status=code, text=f"{code} cannot open {vpath}\n")
        try:
            return await self._respond(request, ref, fobj, loc[1] if loc else 0, rng, headers,
                                       client, peer, vpath)
        finally:
            if fobj is not None:
                fobj.close()

    async def _respond(self, request: web.BaseRequest, ref: FileRef, fobj: Any, base: int,
                       rng: tuple[int, int] | None, headers: dict[str, str], client: str,
                       peer: str, vpath: str) -> web.StreamResponse:
        rng_header = request.headers.get("Range")
        if rng is None:
            status, first, count = 200, 0, ref.size
        else:
            status, first, count = 206, rng[0], rng[1] - rng[0] + 1
            headers["Content-Range"] = f"bytes {rng[0]}-{rng[1]}/{ref.size}"
        options = {"method": request.method}
        if rng_header and rng is not None:
            options["range"] = rng_header
        self.bus.publish(TransferStarted(service=SERVICE, path=vpath, size=count,
                                         options=options, peer=peer, client=client))
        start = time.monotonic()
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = count
        sent = 0
        progress = [0]  # bytes handed to the kernel so far, also when sendfile fails midway
        try:
            if request.method == "HEAD" or count == 0:
                await resp.prepare(request)
                await resp.write_eof()
            elif ref.data is not None:
                await resp.prepare(request)
                await resp.write(ref.data[first:first + count])
                await resp.write_eof()
                sent = count
            else:
                await self._sendfile(request, resp, fobj, base + first, count, vpath, client,
                                     peer, progress)
                sent = progress[0]
        except asyncio.CancelledError:
            sent = max(sent, progress[0])
            self._fail(client, peer, vpath, status, f"cancelled after {sent} of {count} bytes",
                       sent=sent)
            raise
        except OSError as exc:
            sent = max(sent, progress[0])
            # the client went away (or the file could not be read): the event says so, the
            # connection is dropped, and nothing is raised into aiohttp's stderr logger
            why = ("client closed the connection" if isinstance(exc, ConnectionError)
                   else f"the client stopped answering ({exc.strerror})"  # TCP_USER_TIMEOUT
                   if isinstance(exc, TimeoutError) or exc.errno == errno.EHOSTUNREACH
                   else f"read error on {getattr(fobj, 'name', vpath)}: "
                        f"{exc.strerror or exc}")
            self._fail(client, peer, vpath, status, f"{why} after {sent} of {count} bytes",
                       sent=sent)
            if request.transport is not None:
                request.transport.close()
            return resp
        self.bus.publish(TransferDone(service=SERVICE, path=vpath, sent=sent,
                                      seconds=time.monotonic() - start, status=status,
                                      peer=peer, client=client))
        return resp

    async def _sendfile(self, request: web.BaseRequest, resp: web.StreamResponse, fobj: Any,
                        first: int, count: int, vpath: str, client: str, peer: str,
                        progress: list[int]) -> None:
        """Headers through aiohttp, body with sendfile(2) straight from the page cache."""
        loop = asyncio.get_running_loop()
        sent = 0
        await resp.prepare(request)
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("connection lost before the body")
        last_note = time.monotonic()
        fd = fobj.fileno()
        while sent < count:
            n = min(CHUNK, count - sent)
            if not page_cached(fd, first + sent, n):
                # cold data (a USB stick, a CD): read it in a thread first, so sendfile on
                # the event loop does not stall every other server and the UI on the medium
                await asyncio.to_thread(_warm, fd, first + sent, n)
            await loop.sendfile(transport, fobj, first + sent, n)
            sent += n
            progress[0] = sent
            now = time.monotonic()
            if sent < count and now - last_note >= PROGRESS_INTERVAL:
                last_note = now
                self.bus.publish(TransferProgress(service=SERVICE, path=vpath, sent=sent,
                                                  size=count, peer=peer, client=client))
        await resp.write_eof()


def _warm(fd: int, offset: int, count: int) -> None:
    """Pull a range into the page cache (runs in a worker thread)."""
    buf = memoryview(bytearray(1024 * 1024))
    end = offset + count
    while offset < end:
        n = os.preadv(fd, [buf[:min(len(buf), end - offset)]], offset)
        if n <= 0:
            return
        offset += n


class _BusLogHandler(logging.Handler):
    """aiohttp's own error log (``aiohttp.server``) as LogLine events, never on stderr."""

    def __init__(self, bus: EventBus) -> None:
        super().__init__(logging.WARNING)
        self.bus = bus

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            msg += f": {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        level = "error" if record.levelno >= logging.ERROR else "warning"
        self.bus.publish(LogLine(service=SERVICE, level=level, message=msg))


def _peer(request: web.BaseRequest) -> tuple[str, str]:
    transport = request.transport
    pn = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(pn, tuple) and len(pn) >= 2:
        return str(pn[0]), f"{pn[0]}:{pn[1]}"
    return "", ""


async def start_http(*, tree: FileTree, bus: EventBus, address: str, port: int,
                     interface: str | None, max_connections: int = MAX_CONNECTIONS,
                     max_per_client: int = MAX_PER_CLIENT,
                     header_timeout: float = HEADER_TIMEOUT,
                     keepalive_timeout: float = KEEPALIVE_TIMEOUT) -> HttpService:
    """Serve ``tree`` over HTTP on ``address:port`` (bound to ``interface``).

    Raises PortInUse (naming the holder) or NeedsRoot from the bind, before
    anything is started.
    """
    sock = tcp_listener(address, port, interface=interface)
    log = logging.getLogger("aiohttp.server")
    for old in [h for h in log.handlers if isinstance(h, _BusLogHandler)]:
        log.removeHandler(old)  # the latest server's bus gets aiohttp's complaints
    log.addHandler(_BusLogHandler(bus))
    log.propagate = False
    guard = _Guard(bus, max_connections=max_connections, max_per_client=max_per_client,
                   header_timeout=header_timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server = _GuardedServer(_Handler(tree, bus), guard=guard, access_log=None,
                                keepalive_timeout=keepalive_timeout)
        runner = web.ServerRunner(server, access_log=None)
        await runner.setup()
    except BaseException:
        sock.close()
        raise
    acceptor = asyncio.get_running_loop().create_task(_accept(sock, server, guard))
    bound = sock.getsockname()
    bus.publish(ServiceStarted(service=SERVICE, address=bound[0], port=bound[1], proto="tcp"))
    return HttpService(name=SERVICE, runner=runner, bus=bus, address=bound[0], port=bound[1],
                       sock=sock, acceptor=acceptor, guard=guard)


__all__ = ["HttpService", "RangeNotSatisfiable", "etag_of", "parse_range", "request_path",
           "start_http"]
