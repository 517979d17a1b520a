"""ONC RPC over TCP and UDP: sockets in, calls dispatched to programs, replies out.

One :class:`RpcEndpoint` per port (portmap 111, mountd, nfsd) serves a set of
programs on both transports. Malformed input is handled here and only here:

- a TCP fragment header announcing more than the record limit, or a record
  that is not an RPC call: PacketDropped, and the connection is closed (the
  stream position can no longer be trusted);
- a UDP datagram that is not a call: PacketDropped, nothing sent;
- a call for a program we do not serve: PROG_UNAVAIL; a version we do not
  serve: PROG_MISMATCH; a procedure: PROC_UNAVAIL; arguments that do not
  decode: GARBAGE_ARGS (RFC 5531 section 9);
- a bug in a procedure: SYSTEM_ERR and an error LogLine; the server lives on.

Calls on one TCP connection run concurrently (clients pipeline READs and
WRITEs) up to :data:`MAX_INFLIGHT`, and only while the reply bytes the
connection holds (replies not yet sent, plus :data:`REPLY_RESERVE` for each call
being served) stay under its cap; past that the calls wait unread in the socket.
All connections together stay under a total cap: when it is reached, the
connection holding the most unsent reply bytes that did not drain since the
last check (a client that never reads) is dropped. When the connection cap is
reached, the oldest idle connection is dropped for the new one, as knfsd does
(``svc_check_conn_limits``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
import zlib
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ...events import (EventBus, LogLine, PacketDropped, RpcVersionRefused, SessionClosed,
                       SessionOpened)
from ...proto.rpc import (
    AcceptStat,
    Call,
    RecordReader,
    RecordTooLarge,
    RpcDenied,
    accepted_header,
    error_reply,
    frame_header,
    parse_call,
    prog_mismatch_reply,
)
from ..base import RefusalLog

MAX_INFLIGHT = 32
"""Calls of one TCP connection being served at once."""
MAX_UDP_INFLIGHT = 256
"""UDP calls being served at once (past that, datagrams are dropped; clients retransmit)."""
MAX_RECORD = 4 * 1024 * 1024
MAX_CONNECTIONS = 220
"""Default of ``nfs.max_connections``, TCP connections per port: knfsd's limit with its
default 8 threads, (8 + 3) x 20. A new one past it drops the oldest idle one, or is
refused when none is idle."""
MAX_REPLY_BYTES = 8 * 1024 * 1024
"""Default of ``nfs.max_reply_bytes``: reply bytes one connection may hold (unsent, or
reserved for calls being served); past it its calls wait unread."""
MAX_TOTAL_REPLY_BYTES = 64 * 1024 * 1024
"""Default of ``nfs.max_total_reply_bytes``: the same, all connections together."""
REPLY_RESERVE = 1024 * 1024 + 256
"""Bytes reserved per call being served: the largest reply (a READ of rtmax, 1 MiB)."""
WRITE_HIGH_WATER = 256 * 1024
"""Transport buffer above which a connection counts as not reading (pause_writing)."""
IDLE_TIMEOUT = 360.0
"""Seconds a TCP connection may sit without a call before it is closed (as knfsd does;
NFS clients reconnect by themselves when they next need the server)."""
"""Largest RPC record accepted over TCP (a 1 MiB WRITE plus headers fits many times)."""
UDP_MAX_REPLY = 65000
DRC_SIZE = 1024
VERSION_EVENT_EVERY = 10.0
"""Seconds between two RpcVersionRefused events for one client, program and version."""
"""Replies of non-idempotent calls remembered for retransmissions."""


Buffer = bytes | bytearray | memoryview
Results = Sequence[Buffer]


@dataclass(frozen=True)
class CallContext:
    """Where a call came from."""

    peer: tuple[str, int]
    proto: str
    """``tcp`` or ``udp``."""
    local: bool
    """The caller is on this machine (loopback or our own address)."""

    @property
    def peer_str(self) -> str:
        return f"{self.peer[0]}:{self.peer[1]}"

    @property
    def max_reply(self) -> int | None:
        return UDP_MAX_REPLY if self.proto == "udp" else None


class RpcProgram(Protocol):
    """A program served by an endpoint."""

    prog: int
    low: int
    high: int

    async def dispatch(self, call: Call, ctx: CallContext) -> Results | None:
        """Results of the call (without the RPC header); None: PROC_UNAVAIL.

        ValueError: the arguments did not decode (GARBAGE_ARGS).
        """
        ...


class RpcEndpoint:
    """The programs behind one port, and the one place where bad input is caught."""

    def __init__(self, service: str, programs: Sequence[RpcProgram], bus: EventBus,
                 own_addresses: Sequence[str] = (), sessions: bool = False, *,
                 max_connections: int = MAX_CONNECTIONS,
                 max_reply_bytes: int = MAX_REPLY_BYTES,
                 max_total_reply_bytes: int = MAX_TOTAL_REPLY_BYTES) -> None:
        self.max_connections = max_connections
        self.max_reply_bytes = max(max_reply_bytes, REPLY_RESERVE)
        self.max_total_reply_bytes = max(max_total_reply_bytes, self.max_reply_bytes)
        self.held = 0
        """Reply bytes held by every connection (sum of their ``held``)."""
        self.service = service
        self.sessions = sessions
        """Publish SessionOpened/Closed per TCP connection (the NFS port: a kernel client
        keeps one connection for its mount's life, and busybox's umount sends no UMNT)."""
        self.bus = bus
        self.programs = {p.prog: p for p in programs}
        self.own = set(own_addresses)
        self.servers: list[asyncio.AbstractServer] = []
        self.udp: list[asyncio.DatagramTransport] = []
        self.connections: set["_RpcTcp"] = set()
        self.udp_inflight = 0
        self.drc: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
        self.refused = RefusalLog(bus, service)
        self.refused_at: dict[tuple[str, int, int], float] = {}

    def refresh(self) -> None:
        """Re-read every connection's unsent bytes (they only shrink unseen), let waiting
        calls go, and when the total cap is still reached drop the worst reader."""
        for c in list(self.connections):
            c.account()
        for c in list(self.connections):
            c.pump()
        self._relieve()
        for c in self.connections:
            c.tick()

    def _relieve(self) -> None:
        if self.held < self.max_total_reply_bytes:
            return
        stuck = [c for c in self.connections if c.buffered() and c.buffered() >= c.last_buf]
        if not stuck:
            return
        worst = max(stuck, key=lambda c: c.buffered())
        self.refused(worst.ctx.peer_str if worst.ctx else "?",
                     f"connection dropped: {self.held} reply bytes held by all connections "
                     f"(nfs.max_total_reply_bytes = {self.max_total_reply_bytes}) and this one "
                     f"holds {worst.buffered()} it does not read", worst.ctx.peer[0]
                     if worst.ctx else "")
        worst.abort("holding replies it does not read while the server is full")

    def make_room(self) -> bool:
        """At the connection cap: drop the oldest idle connection (as knfsd); False when
        every connection is busy."""
        idle = [c for c in self.connections if c.inflight == 0 and not c.queue]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.last_active)
        oldest.abort(f"oldest idle connection dropped for a new one ({self.max_connections} "
                     "open, nfs.max_connections)")
        oldest.gone()
        return True

    def reap(self, now: float) -> int:
        """Close connections idle for IDLE_TIMEOUT with no call in flight; how many closed."""
        n = 0
        for c in list(self.connections):
            if c.inflight == 0 and now - c.last_active > IDLE_TIMEOUT:
                c.abort(f"idle for {IDLE_TIMEOUT:.0f} s")
                n += 1
        return n

    def is_local(self, ip: str) -> bool:
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(ip).is_loopback:
                return True
        return ip in self.own

    def dropped(self, peer: tuple[str, int], reason: str, size: int) -> None:
        self.bus.publish(PacketDropped(service=self.service, peer=f"{peer[0]}:{peer[1]}",
                                       reason=reason, size=size, client=peer[0]))

    def _version_refused(self, peer: tuple[str, int], prog: int, vers: int, low: int,
                         high: int) -> None:
        """Publish the PROG_MISMATCH (an NFSv4 client says so here), once per client,
        program and version every VERSION_EVENT_EVERY seconds (a client retries fast)."""
        now = time.monotonic()
        key = (peer[0], prog, vers)
        if now - self.refused_at.get(key, -VERSION_EVENT_EVERY) < VERSION_EVENT_EVERY:
            return
        if len(self.refused_at) > 4096:
            self.refused_at.clear()
        self.refused_at[key] = now
        self.bus.publish(RpcVersionRefused(service=self.service, peer=f"{peer[0]}:{peer[1]}",
                                           client=peer[0], program=prog, version=vers,
                                           low=low, high=high))

    async def handle(self, record: Buffer, ctx: CallContext) -> list[Buffer] | None:
        """Reply parts for one record, or None when it must be dropped (not a call)."""
        try:
            call = parse_call(record)
        except RpcDenied as denied:
            self.dropped(ctx.peer, f"call denied: {denied.reason}", len(record))
            return [denied.reply]
        except ValueError as exc:
            self.dropped(ctx.peer, f"not an RPC call: {exc}", len(record))
            return None
        prog = self.programs.get(call.prog)
        key = None
        if prog is not None and call.proc in getattr(prog, "nonidempotent", ()):
            # Duplicate request cache: a retransmitted CREATE/REMOVE/RENAME... must get the
            # first answer again, not EXIST/NOENT from doing it twice (knfsd keeps one too).
            key = (ctx.peer[0], call.xid, zlib.crc32(record))
            cached = self.drc.get(key)
            if cached is not None:
                return [cached]
        if prog is None:
            return [error_reply(call.xid, AcceptStat.PROG_UNAVAIL)]
        if not prog.low <= call.vers <= prog.high:
            self._version_refused(ctx.peer, call.prog, call.vers, prog.low, prog.high)
            return [prog_mismatch_reply(call.xid, prog.low, prog.high)]
        try:
            results = await prog.dispatch(call, ctx)
        except ValueError as exc:
            self.dropped(ctx.peer, f"garbage arguments to program {call.prog} procedure "
                                   f"{call.proc}: {exc}", len(record))
            return [error_reply(call.xid, AcceptStat.GARBAGE_ARGS)]
        except Exception as exc:  # a bug must not take the server down
            self.bus.publish(LogLine(service=self.service, level="error",
                                     message=f"internal error in program {call.prog} "
                                             f"procedure {call.proc}: {exc!r}",
                                     client=ctx.peer[0]))
            return [error_reply(call.xid, AcceptStat.SYSTEM_ERR)]
        if results is None:
            return [error_reply(call.xid, AcceptStat.PROC_UNAVAIL)]
        if key is not None:
            reply = accepted_header(call.xid) + b"".join(bytes(r) for r in results)
            self.drc[key] = reply
            if len(self.drc) > DRC_SIZE:
                self.drc.popitem(last=False)
            return [reply]
        return [accepted_header(call.xid), *results]

    async def start(self, address: str, port: int, sock_tcp, sock_udp) -> None:
        loop = asyncio.get_running_loop()
        self.servers.append(await loop.create_server(lambda: _RpcTcp(self), sock=sock_tcp))
        if sock_udp is not None:
            transport, _ = await loop.create_datagram_endpoint(lambda: _RpcUdp(self),
                                                               sock=sock_udp)
            self.udp.append(transport)

    async def close(self) -> None:
        for s in self.servers:
            s.close()
        for c in list(self.connections):
            c.abort()
        for t in self.udp:
            t.close()
        for s in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(s.wait_closed(), 2)
        self.servers.clear()
        self.udp.clear()


class _RpcTcp(asyncio.Protocol):
    def __init__(self, ep: RpcEndpoint) -> None:
        self.ep = ep
        self.reader = RecordReader(MAX_RECORD)
        self.transport: asyncio.Transport | None = None
        self.ctx: CallContext | None = None
        self.inflight = 0
        self.writable = asyncio.Event()
        self.writable.set()
        self.tasks: set[asyncio.Task] = set()
        self.closed = False
        self.sent = 0
        self.last_active = asyncio.get_running_loop().time()
        self.why = ""
        self.queue: deque[bytes] = deque()
        """Records read but not yet dispatched (waiting for reply budget)."""
        self.held = 0
        """This connection's share of ``ep.held``: unsent reply bytes as last read, plus
        REPLY_RESERVE per call being served."""
        self.last_buf = 0
        """Unsent bytes at the previous check (a connection whose count never falls does
        not read)."""

    def buffered(self) -> int:
        t = self.transport
        return t.get_write_buffer_size() if t is not None and not t.is_closing() else 0

    def account(self) -> None:
        """Bring ``held`` (and the endpoint's total) up to date."""
        now = self.buffered() + self.inflight * REPLY_RESERVE if not self.closed else 0
        self.ep.held += now - self.held
        self.held = now

    def tick(self) -> None:
        self.last_buf = self.buffered()

    def gone(self) -> None:
        """Leave the endpoint's books (closed, aborted or refused)."""
        self.closed = True
        self.queue.clear()
        self.ep.held -= self.held
        self.held = 0
        self.ep.connections.discard(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.ctx = CallContext(peer=(peer[0], peer[1]), proto="tcp",
                               local=self.ep.is_local(peer[0]))
        if len(self.ep.connections) >= self.ep.max_connections and not self.ep.make_room():
            self.ep.refused(self.ctx.peer_str, f"{self.ep.max_connections} connections "
                            "already open on this port, none idle (nfs.max_connections): "
                            "refused", peer[0])
            self.closed = True
            transport.abort()  # type: ignore[attr-defined]
            return
        with contextlib.suppress(AttributeError, ValueError):
            transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)  # type: ignore[attr-defined]
        self.ep.connections.add(self)
        if self.ep.sessions:
            self.ep.bus.publish(SessionOpened(service=self.ep.service, peer=self.ctx.peer_str,
                                              detail="tcp connection", client=peer[0]))

    def connection_lost(self, exc: Exception | None) -> None:
        if self not in self.ep.connections and not self.why:
            return  # refused in connection_made
        self.gone()
        self.writable.set()
        if self.ep.sessions and self.ctx is not None:
            if self.why:
                why = self.why
            elif exc is None or isinstance(exc, ConnectionResetError):
                why = "closed by the client"  # libnfs and the kernel often close with a reset
            else:
                why = f"connection lost: {exc}"
            self.ep.bus.publish(SessionClosed(service=self.ep.service, peer=self.ctx.peer_str,
                                              read=self.sent, reason=why,
                                              client=self.ctx.peer[0]))

    def abort(self, why: str = "server stopping") -> None:
        if self.transport is not None:
            self.why = self.why or why
            self.transport.abort()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()
        self.account()
        self.pump()

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None and self.ctx is not None
        if self.closed:
            return
        self.last_active = asyncio.get_running_loop().time()
        try:
            records = self.reader.feed(data)
        except RecordTooLarge as exc:
            self.ep.dropped(self.ctx.peer, f"{exc}; closing the connection", len(data))
            self.closed = True
            self.why = "garbage from the client (record too large)"
            self.transport.abort()
            return
        self.queue.extend(records)
        self.pump()

    def pump(self) -> None:
        """Serve queued calls while this connection and the endpoint have reply budget;
        stop reading the socket while calls wait (they wait in the kernel, not here)."""
        if self.closed or self.transport is None or self.transport.is_closing():
            return
        ep = self.ep
        self.account()
        while self.queue and self.inflight < MAX_INFLIGHT \
                and self.held + REPLY_RESERVE <= ep.max_reply_bytes \
                and ep.held + REPLY_RESERVE <= ep.max_total_reply_bytes:
            rec = self.queue.popleft()
            self.inflight += 1
            self.held += REPLY_RESERVE
            ep.held += REPLY_RESERVE
            t = asyncio.ensure_future(self._serve(rec))
            self.tasks.add(t)
            t.add_done_callback(self.tasks.discard)
        if self.queue and ep.held + REPLY_RESERVE > ep.max_total_reply_bytes:
            ep._relieve()
        self._flow()

    def _flow(self) -> None:
        """Read the socket only while no call waits for budget and few are in flight."""
        if self.closed or self.transport is None or self.transport.is_closing():
            return
        busy = bool(self.queue) or self.inflight >= MAX_INFLIGHT
        if busy and self.transport.is_reading():
            self.transport.pause_reading()
        elif not busy and self.inflight < MAX_INFLIGHT // 2 and not self.transport.is_reading():
            self.transport.resume_reading()

    async def _serve(self, record: bytes) -> None:
        assert self.transport is not None and self.ctx is not None
        try:
            parts = await self.ep.handle(record, self.ctx)
            if self.closed:
                return
            if parts is None:
                self.closed = True
                self.why = "garbage from the client (not an RPC call)"
                self.transport.close()
                return
            await self.writable.wait()
            if self.closed or self.transport.is_closing():
                return
            total = sum(len(p) for p in parts)
            self.sent += total
            if total > 65536:
                # Separate writes: a big READ payload goes to the socket straight from its
                # buffer (writelines would join everything into one more copy first).
                self.transport.write(frame_header(total) + bytes(parts[0]))
                for p in parts[1:]:
                    if p:
                        self.transport.write(p)
            else:
                self.transport.writelines([frame_header(total), *parts])
        finally:
            self.inflight -= 1
            if not self.closed:
                self.pump()


class _RpcUdp(asyncio.DatagramProtocol):
    def __init__(self, ep: RpcEndpoint) -> None:
        self.ep = ep
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.ep.udp_inflight >= MAX_UDP_INFLIGHT:
            return
        self.ep.udp_inflight += 1
        ctx = CallContext(peer=(addr[0], addr[1]), proto="udp", local=self.ep.is_local(addr[0]))
        t = asyncio.ensure_future(self._serve(data, ctx))
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    async def _serve(self, data: bytes, ctx: CallContext) -> None:
        try:
            parts = await self.ep.handle(data, ctx)
            if parts is not None and self.transport is not None \
                    and not self.transport.is_closing():
                self.transport.sendto(b"".join(parts), ctx.peer)
        except OSError:
            pass
        finally:
            self.ep.udp_inflight -= 1
