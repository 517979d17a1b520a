"""Read-only NBD server: the asyncio adapter around :mod:`pxewizard.proto.nbd`.

One task per connection reads requests and feeds the protocol core; a second
task writes the replies, so a client may pipeline as many requests as it
likes. Read data goes from the export file to the socket with sendfile(2)
right after the reply header (a 16-byte simple reply or a structured
OFFSET_DATA chunk header, sent with MSG_MORE so both leave in the same segment): the image never passes through Python. Exports are opened
O_RDONLY once and shared by every connection (sendfile takes explicit
offsets, so no file position is shared).

The newstyle handshake listens on ``port`` (10809, what SystemRescue's
``archiso_nbd_srv`` uses); the oldstyle one, for old SystemRescueCd's
``netboot=nbd://ip:port``, on ``oldstyle_port`` and always serves the first
export.

Events: ``SessionOpened`` when a client enters transmission (export, handshake
style), ``TransferProgress`` at most once a second while it reads, and on
close ``TransferDone`` (bytes, seconds) when it read anything plus
``SessionClosed`` with the bytes read and why. A protocol violation is a
``PacketDropped`` and a closed connection, never a dead server.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PxeError
from ..events import (
    EventBus,
    LogLine,
    PacketDropped,
    ServiceStarted,
    ServiceStopped,
    SessionClosed,
    SessionOpened,
    TransferDone,
    TransferFailed,
    TransferProgress,
)
from ..files import AccessDenied, NotFound, open_beneath
from ..proto.nbd import (
    REP_ERR_UNKNOWN,
    Closed,
    ExportSelected,
    NbdConnection,
    NbdProtocolError,
    Read,
    Refused,
    Send,
    State,
)
from .base import RefusalLog, tcp_listener
from .pagecache import page_cached

SERVICE = "nbd"
PROGRESS_INTERVAL = 1.0
"""Seconds between TransferProgress events of one session."""
HANDSHAKE_TIMEOUT = 30.0
"""Seconds a client may take from connecting to choosing an export."""
FLUSH_TIMEOUT = 10.0
"""Seconds the replies already queued may take to go out once the client is done."""
RECV_SIZE = 256 * 1024
QUEUE_DEPTH = 256
"""Replies queued per connection before the reader stops reading (backpressure)."""
_MSG_MORE = getattr(socket, "MSG_MORE", 0)
_NO_SENDFILE = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}
PREAD_SIZE = 1024 * 1024
"""Bytes per pread when sendfile is not available."""
MAX_CONNECTIONS = 64
"""Default of ``nbd.max_connections`` (nbd-server's max_connections default is 0,
unlimited; 64 diskless clients is far more than one rescue laptop serves)."""
MAX_PER_CLIENT = 8
"""Default of ``nbd.max_per_client`` (a kernel or nbd-client opens 1-4 connections)."""
IDLE_TIMEOUT = 0.0
"""Default of ``nbd.idle_timeout``: 0, off, as nbd-server's ``timeout``: a kernel client
with its root on NBD sends nothing while idle and does not reconnect, so cutting it would
kill the client. Dead peers are still cut by TCP keepalive and TCP_USER_TIMEOUT."""


@dataclass
class Export:
    """An export file, opened read-only for the whole life of the server."""

    name: str
    path: Path
    fd: int
    size: int
    sendfile: bool = True
    """False once sendfile(2) failed as unsupported on this file: then pread + send."""
    offset: int = 0
    """Where the export starts in the file (a file inside an .iso, see :class:`FileRange`)."""


@dataclass(frozen=True)
class FileRange:
    """``size`` bytes at ``offset`` of ``path``, exported as a whole disk: a file inside an
    unmounted .iso (old SystemRescueCd's ``sysrcd.dat``), as HTTP and TFTP serve it."""

    path: Path
    offset: int
    size: int
    inner: str = ""
    """The file's path inside ``path``, for messages and exported configurations."""


def _reopen(export: Export) -> int:
    """A new open file description of the export (same file even if its path was replaced)."""
    try:
        return os.open(f"/proc/self/fd/{export.fd}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return os.dup(export.fd)


def open_export(name: str, path: Path | FileRange) -> Export:
    """Open ``path`` O_RDONLY and size it (regular file or block device), or a PxeError.

    A :class:`FileRange` exports that range of its file (which must hold all of it).
    Opened the way every served file is (:func:`pxewizard.files.open_beneath`): the
    Plan's path is resolved once, then opened with no link followed and O_NONBLOCK, so a
    FIFO in its place cannot hang the start."""
    if isinstance(path, FileRange):
        rng = path
        export = open_export(name, rng.path)
        if rng.offset < 0 or rng.size < 0 or rng.offset + rng.size > export.size:
            os.close(export.fd)
            raise PxeError(f"NBD export {name!r}: {rng.inner or 'the range'} at bytes "
                           f"{rng.offset}-{rng.offset + rng.size} runs past the end of "
                           f"{rng.path} ({export.size} bytes)",
                           "the image is truncated: download it again")
        export.offset, export.size = rng.offset, rng.size
        return export
    real = Path(os.path.realpath(path))
    try:
        fd = open_beneath(real.parent, real.name)
    except NotFound as exc:
        if os.path.isdir(real):
            raise PxeError(f"NBD export {name!r}: {path} is a directory; NBD exports a file "
                           "(an ISO or disk image) or a block device",
                           "point the export at the image file, or use NFS for a directory"
                           ) from None
        raise PxeError(f"NBD export {name!r}: {path} does not exist ({exc})",
                       "fix the export's path in the plan (nbd.exports)") from None
    except AccessDenied as exc:
        if getattr(exc, "errno", None) in (errno.EACCES, errno.EPERM):
            raise PxeError(f"NBD export {name!r}: {path} is not readable",
                           "run pxewizard as root or make the file readable") from None
        raise PxeError(f"NBD export {name!r}: {path} is not a regular file or block device "
                       f"({exc})", "point the export at an image file") from None
    st = os.fstat(fd)
    size = os.lseek(fd, 0, os.SEEK_END) if stat.S_ISBLK(st.st_mode) else st.st_size
    return Export(name=name, path=Path(path), fd=fd, size=size)


class _Session:
    """One client connection: a reader feeding the protocol core, a writer sending replies."""

    def __init__(self, server: NbdService, sock: socket.socket, peer: tuple[str, int],
                 oldstyle: bool) -> None:
        self.server = server
        self.sock = sock
        self.client = peer[0]
        self.peer = f"{peer[0]}:{peer[1]}"
        self.conn = NbdConnection({n: e.size for n, e in server.exports.items()},
                                  oldstyle=oldstyle)
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Send | Read | Closed | None] = asyncio.Queue(QUEUE_DEPTH)
        self.export: Export | None = None
        self.base = 0
        """Where the chosen export starts in its file (requests are relative to it)."""
        self.fd = -1
        """This session's own descriptor of the export: its own readahead state, so clients
        reading different places do not spoil each other's sequential readahead."""
        self.read = 0
        self.opened_at = time.monotonic()
        self.last_note = self.opened_at
        self.reason = ""
        self.refused: set[str] = set()
        self.writer_gone = False

    # --- the two tasks ---------------------------------------------------------------

    async def run(self) -> None:
        bus = self.server.bus
        writer = asyncio.create_task(self._writer())
        try:
            for out in self.conn.initiate():
                await self._handle(out)
            idle = self.server.idle_timeout
            while self.conn.state is not State.CLOSED:
                if self.conn.state is State.TRANSMISSION and not idle:
                    data = await self.loop.sock_recv(self.sock, RECV_SIZE)
                elif self.conn.state is State.TRANSMISSION:
                    try:
                        data = await asyncio.wait_for(self.loop.sock_recv(self.sock, RECV_SIZE),
                                                      idle)
                    except TimeoutError:
                        self.reason = f"idle for {idle:.0f} s (nbd.idle_timeout)"
                        self.server.refused(self.peer, f"session closed: {self.reason}",
                                            self.client)
                        break
                else:  # a client that never finishes the handshake must not pin a session
                    try:
                        data = await asyncio.wait_for(self.loop.sock_recv(self.sock, RECV_SIZE),
                                                      HANDSHAKE_TIMEOUT)
                    except TimeoutError:
                        self.reason = f"handshake not finished within {HANDSHAKE_TIMEOUT:.0f} s"
                        break
                self.conn.receive_data(data)
                while (out := self.conn.next_event()) is not None:
                    await self._handle(out)
                if not data:
                    break
        except NbdProtocolError as exc:
            self.reason = f"protocol error: {exc}"
            bus.publish(PacketDropped(service=SERVICE, peer=self.peer, reason=str(exc),
                                      client=self.client))
        except (ConnectionError, OSError) as exc:
            self.reason = self.reason or f"connection error: {exc.strerror or exc}"
        except asyncio.CancelledError:
            self.reason = "server stopping"
            writer.cancel()
            raise
        finally:
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)
            if not writer.done() and self.reason != "server stopping":
                try:  # let the replies already queued go out (after DISC, after an error)
                    await asyncio.wait_for(asyncio.shield(writer), FLUSH_TIMEOUT)
                except Exception:  # timed out or broke: nothing more can be sent
                    writer.cancel()
            self._closed()

    async def _handle(self, out: object) -> None:
        if isinstance(out, (Send, Read)):
            if self.writer_gone:  # nobody left to send replies: stop reading requests
                raise ConnectionResetError("the reply stream broke")
            if isinstance(out, Read) and not page_cached(self.fd, self.base + out.offset,
                                                         out.length):
                # start reading from the medium now, while earlier replies go out, so the
                # writer finds the pages cached (only for cold data: the hint costs ~50 us)
                with contextlib.suppress(OSError):
                    os.posix_fadvise(self.fd, self.base + out.offset, out.length,
                                     os.POSIX_FADV_WILLNEED)
            await self.queue.put(out)
        elif isinstance(out, ExportSelected):
            self.export = self.server.exports[out.name]
            self.base = self.export.offset
            self.fd = _reopen(self.export)
            self.server.bus.publish(SessionOpened(
                service=SERVICE, peer=self.peer, client=self.client, target=out.name,
                detail=f"{out.style} ({out.option}), read-only, {out.size} bytes"))
        elif isinstance(out, Refused):
            if out.what.startswith("OPT_") and out.error != REP_ERR_UNKNOWN:
                # clients probe optional features (STRUCTURED_REPLY, meta contexts...) and
                # fall back: normal negotiation, not a failure worth the operator's attention
                return
            if out.what not in self.refused:  # once per kind per session: no log floods
                self.refused.add(out.what)
                self.server.bus.publish(TransferFailed(
                    service=SERVICE, path=self.export.name if self.export else "",
                    reason=f"{out.what} refused: {out.reason}", code=out.error,
                    peer=self.peer, client=self.client))
        elif isinstance(out, Closed):
            self.reason = out.reason
            await self.queue.put(out)

    async def _writer(self) -> None:
        """Send replies in order; a Read goes out as header (MSG_MORE) + sendfile."""
        try:
            while True:
                item = await self.queue.get()
                if item is None or isinstance(item, Closed):
                    break
                if isinstance(item, Send):
                    await self._send(item.data, 0)
                    continue
                assert self.export is not None
                await self._send(item.header, _MSG_MORE)
                await self._sendfile(self.fd, self.base + item.offset, item.length)
                self.read += item.length
                now = time.monotonic()
                if now - self.last_note >= PROGRESS_INTERVAL:
                    self.last_note = now
                    self.server.bus.publish(TransferProgress(
                        service=SERVICE, path=self.export.name, sent=self.read,
                        size=self.export.size, peer=self.peer, client=self.client))
        except (ConnectionError, OSError) as exc:
            self.reason = self.reason or f"connection error: {exc.strerror or exc}"
        finally:
            # unblock the reader (it may wait on a full queue or on the socket)
            self.writer_gone = True
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            while not self.queue.empty():
                self.queue.get_nowait()

    async def _writable(self) -> None:
        fut = self.loop.create_future()
        fd = self.sock.fileno()
        self.loop.add_writer(fd, lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            self.loop.remove_writer(fd)

    async def _send(self, data: bytes, flags: int) -> None:
        view = memoryview(data)
        while view:
            try:
                n = self.sock.send(view, flags)
            except BlockingIOError:
                await self._writable()
                continue
            view = view[n:]

    async def _sendfile(self, fd: int, offset: int, count: int) -> None:
        out = self.sock.fileno()
        assert self.export is not None
        while count:
            if not self.export.sendfile:
                data = os.pread(fd, min(count, PREAD_SIZE), offset)
                if not data:
                    raise OSError(f"export ended early at offset {offset}")
                await self._send(data, _MSG_MORE if len(data) < count else 0)
                offset += len(data)
                count -= len(data)
                continue
            try:
                if page_cached(fd, offset, count):
                    n = os.sendfile(out, fd, offset, count)
                else:  # the medium must be read (USB stick, CD): not on the event loop
                    n = await asyncio.to_thread(os.sendfile, out, fd, offset, count)
            except BlockingIOError:
                await self._writable()
                continue
            except OSError as exc:
                if isinstance(exc, ConnectionError) or exc.errno not in _NO_SENDFILE:
                    raise
                # a filesystem without sendfile (some FUSE mounts): pread + send from now on
                self.export.sendfile = False
                self.server.bus.publish(LogLine(
                    service=SERVICE, level="info",
                    message=f"{self.export.path}: sendfile not supported here "
                            f"({exc.strerror}); reading with pread instead"))
                continue
            if n == 0:  # the export shrank under us: the stream cannot be repaired
                raise OSError(f"export ended early at offset {offset}")
            offset += n
            count -= n

    def _closed(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        bus = self.server.bus
        secs = time.monotonic() - self.opened_at
        name = self.export.name if self.export else ""
        if self.read:
            bus.publish(TransferDone(service=SERVICE, path=name, sent=self.read, seconds=secs,
                                     peer=self.peer, client=self.client))
        bus.publish(SessionClosed(service=SERVICE, peer=self.peer, client=self.client,
                                  target=name, read=self.read,
                                  reason=self.reason or "connection closed"))


@dataclass
class NbdService:
    """The running NBD server (newstyle port, optional oldstyle port)."""

    name: str
    bus: EventBus
    exports: dict[str, Export]
    listeners: list[tuple[socket.socket, bool]]
    tasks: set[asyncio.Task] = field(default_factory=set)
    ports: dict[str, int] = field(default_factory=dict)
    """``newstyle`` / ``oldstyle`` -> bound port."""
    max_connections: int = MAX_CONNECTIONS
    max_per_client: int = MAX_PER_CLIENT
    idle_timeout: float = IDLE_TIMEOUT
    per_client: dict[str, int] = field(default_factory=dict)
    refused: RefusalLog = field(init=False)
    _below_cap: asyncio.Event = field(init=False)

    def __post_init__(self) -> None:
        self.refused = RefusalLog(self.bus, SERVICE)
        self._below_cap = asyncio.Event()
        self._below_cap.set()

    def connections(self) -> int:
        return sum(self.per_client.values())

    def start(self) -> None:
        for lsock, oldstyle in self.listeners:
            self._spawn(self._accept(lsock, oldstyle))

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _accept(self, lsock: socket.socket, oldstyle: bool) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # at the cap, stop accepting (the kernel's backlog holds the next ones) until a
            # session ends, instead of accepting and closing in a loop
            await self._below_cap.wait()
            try:
                sock, addr = await loop.sock_accept(lsock)
            except (ConnectionAbortedError, InterruptedError):
                continue
            except OSError as exc:  # EMFILE and friends: say so (rate-limited), breathe
                self.refused("(listener)", f"accept failed: {exc.strerror or exc}")
                await asyncio.sleep(0.5)
                continue
            ip = addr[0]
            if self.per_client.get(ip, 0) >= self.max_per_client:
                sock.close()
                self.refused(f"{ip}:{addr[1]}", f"connection refused: {self.max_per_client} "
                             f"sessions of {ip} already open (nbd.max_per_client)", ip)
                continue
            self.per_client[ip] = self.per_client.get(ip, 0) + 1
            if self.connections() >= self.max_connections:
                self._below_cap.clear()
                self.refused("(listener)", f"{self.max_connections} sessions open "
                             "(nbd.max_connections): accepting paused until one ends")
            sock.setblocking(False)
            task = self._spawn(_Session(self, sock, addr, oldstyle).run())
            task.add_done_callback(lambda _t, ip=ip: self._ended(ip))

    def _ended(self, ip: str) -> None:
        n = self.per_client.get(ip, 0) - 1
        if n > 0:
            self.per_client[ip] = n
        else:
            self.per_client.pop(ip, None)
        if self.connections() < self.max_connections:
            self._below_cap.set()

    async def close(self) -> None:
        for lsock, _ in self.listeners:
            with contextlib.suppress(OSError):
                lsock.close()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        for e in self.exports.values():
            with contextlib.suppress(OSError):
                os.close(e.fd)
        self.bus.publish(ServiceStopped(service=SERVICE))


async def start_nbd(*, bus: EventBus, address: str, port: int, oldstyle_port: int | None,
                    exports: dict[str, Path | FileRange], interface: str | None,
                    max_connections: int = MAX_CONNECTIONS,
                    max_per_client: int = MAX_PER_CLIENT,
                    idle_timeout: float = IDLE_TIMEOUT) -> NbdService:
    """Export ``exports`` (name -> file, block device or range of a file) read-only over NBD.

    The newstyle handshake listens on ``address:port``; when ``oldstyle_port``
    is set, the oldstyle handshake listens there and serves the first export.
    Raises PxeError (missing export, port in use naming the holder, ...)
    before anything is started.
    """
    if not exports:
        raise PxeError("the NBD server has nothing to export",
                       "add an export to the plan (nbd.exports) or pick another transport")
    opened: dict[str, Export] = {}
    listeners: list[tuple[socket.socket, bool]] = []
    try:
        for name, path in exports.items():
            opened[name] = open_export(name, path if isinstance(path, FileRange)
                                       else Path(path))
        listeners.append((tcp_listener(address, port, interface=interface), False))
        if oldstyle_port is not None:
            listeners.append((tcp_listener(address, oldstyle_port, interface=interface), True))
    except BaseException:
        for e in opened.values():
            os.close(e.fd)
        for s, _ in listeners:
            s.close()
        raise
    svc = NbdService(name=SERVICE, bus=bus, exports=opened, listeners=listeners,
                     max_connections=max_connections, max_per_client=max_per_client,
                     idle_timeout=idle_timeout)
    for lsock, oldstyle in listeners:
        host, bound = lsock.getsockname()[:2]
        svc.ports["oldstyle" if oldstyle else "newstyle"] = bound
        bus.publish(ServiceStarted(service=SERVICE, address=host, port=bound, proto="tcp"))
    svc.start()
    return svc


__all__ = ["Export", "FileRange", "NbdService", "open_export", "start_nbd"]
