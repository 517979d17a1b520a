"""The RPC adapter on loopback sockets: pipelined calls, garbage, connection cap, idle reaping.

Only 127.0.0.1 with ephemeral ports; no root needed.
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest

from pxewizard.events import EventBus
from pxewizard.proto import nfs3 as n3
from pxewizard.proto.rpc import (
    AuthFlavor,
    RecordReader,
    encode_auth_sys,
    encode_call,
    frame,
    parse_reply,
)
from pxewizard.proto.xdr import Writer
from pxewizard.servers.base import tcp_listener, udp_socket
from pxewizard.servers.nfs import transport as tr
from tests.support.nfs_client import read_args
from pxewizard.servers.nfs.handles import Export, Resolver
from pxewizard.servers.nfs.mountd import MountProgram
from pxewizard.servers.nfs.nfsd import NfsProgram

ROOT = (AuthFlavor.AUTH_SYS, encode_auth_sys(0, 0))


async def start(tmp_path: Path):
    (tmp_path / "f").write_bytes(bytes(range(256)) * 1024)
    e = Export.from_config(SimpleNamespace(path=tmp_path, rw=False, squash="no_root_squash",
                                           anonuid=65534, anongid=65534))
    bus = EventBus()
    events: list = []
    bus.subscribe(events.append)
    res = Resolver([e])
    ep = tr.RpcEndpoint("nfs", [NfsProgram([e], res, bus), MountProgram([e], res, bus)], bus,
                        sessions=True)
    tcp = tcp_listener("127.0.0.1", 0)
    port = tcp.getsockname()[1]
    await ep.start("127.0.0.1", port, tcp, udp_socket("127.0.0.1", port))
    return ep, port, e, events


async def call(reader, writer, rr, xid: int, prog: int, proc: int, args: bytes = b""):
    writer.write(frame(encode_call(xid, prog, 3, proc, args, cred=ROOT)))
    await writer.drain()
    while True:
        recs = rr.feed(await asyncio.wait_for(reader.read(1 << 20), 5))
        if recs:
            return parse_reply(recs[0])


async def test_pipelined_reads_and_garbage_closes_only_that_connection(tmp_path):
    ep, port, e, events = await start(tmp_path)
    try:
        r1, w1 = await asyncio.open_connection("127.0.0.1", port)
        rr = RecordReader()
        rep = await call(r1, w1, rr, 1, 100005, 1, bytes(Writer().push_string(e.path)))
        rep.body.pull_u32()
        root = rep.body.pull_opaque(64)
        rep = await call(r1, w1, rr, 2, n3.NFS_PROG, n3.Proc.LOOKUP,
                         bytes(Writer().push_opaque(root).push_string("f")))
        assert rep.body.pull_u32() == 0
        fh = rep.body.pull_opaque(64)
        # ten READs in one write: ten replies, matched by xid
        w1.write(b"".join(frame(encode_call(100 + i, n3.NFS_PROG, 3, n3.Proc.READ,
                                            read_args(fh, i * 4096, 4096), cred=ROOT))
                        for i in range(10)))
        got: dict[int, bytes] = {}
        while len(got) < 10:
            for rec in rr.feed(await asyncio.wait_for(r1.read(1 << 20), 5)):
                rep = parse_reply(rec)
                assert rep.body.pull_u32() == 0
                n3.pull_post_op_attr(rep.body)
                rep.body.pull_u32(), rep.body.pull_bool()
                got[rep.xid] = rep.body.pull_opaque()
        assert got == {100 + i: (bytes(range(256)) * 16) for i in range(10)}
        # a second client sends garbage: it is cut off, the first goes on
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        w2.write(struct.pack(">I", 0xFFFFFFF0) + b"junk")
        assert await asyncio.wait_for(r2.read(100), 5) == b""
        r3, w3 = await asyncio.open_connection("127.0.0.1", port)
        w3.write(frame(struct.pack(">II", 7, 1) + bytes(32)))  # a REPLY is not a call
        assert await asyncio.wait_for(r3.read(100), 5) == b""
        rep = await call(r1, w1, rr, 3, n3.NFS_PROG, 0)
        assert rep.accepted and rep.stat == 0
        assert sum(ev.kind == "packet_dropped" for ev in events) == 2
        closed = [ev for ev in events if ev.kind == "session_closed"]
        assert {ev.reason for ev in closed} >= {"garbage from the client (record too large)",
                                                 "garbage from the client (not an RPC call)"}
        w1.close()
    finally:
        await ep.close()


async def test_connection_cap_drops_the_oldest_idle_and_idle_reaping(tmp_path):
    ep, port, e, events = await start(tmp_path)
    ep.max_connections = 2
    try:
        conns = []
        for _ in range(3):
            conns.append(await asyncio.open_connection("127.0.0.1", port))
            await asyncio.sleep(0.05)
        # the oldest idle one made room for the third (as knfsd)
        assert await asyncio.wait_for(conns[0][0].read(10), 5) == b""
        assert any("oldest idle connection dropped" in getattr(ev, "reason", "")
                   for ev in events)
        await asyncio.sleep(0.05)
        assert len(ep.connections) == 2
        loop = asyncio.get_running_loop()
        assert ep.reap(loop.time()) == 0  # not idle yet
        assert ep.reap(loop.time() + tr.IDLE_TIMEOUT + 1) == 2
        for r, _ in conns[1:]:
            assert await asyncio.wait_for(r.read(10), 5) == b""
        assert sum(ev.kind == "session_closed" and ev.reason.startswith("idle")
                   for ev in events) == 2
        assert sum(ev.kind == "session_closed" and "oldest idle" in ev.reason
                   for ev in events) == 1
    finally:
        await ep.close()


@pytest.mark.parametrize("payload", [b"", b"\x00" * 3, b"\xff" * 100])
async def test_udp_garbage_is_dropped_silently(tmp_path, payload):
    ep, port, e, events = await start(tmp_path)
    try:
        loop = asyncio.get_running_loop()
        got: asyncio.Queue = asyncio.Queue()

        class P(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                got.put_nowait(data)

        t, _ = await loop.create_datagram_endpoint(P, remote_addr=("127.0.0.1", port))
        t.sendto(payload)
        t.sendto(encode_call(9, n3.NFS_PROG, 3, 0))
        rep = parse_reply(await asyncio.wait_for(got.get(), 5))  # only the NULL is answered
        assert rep.xid == 9 and got.empty()
        t.close()
    finally:
        await ep.close()


async def test_nfsv4_call_gets_prog_mismatch_and_one_event(tmp_path):
    """An NFSv4 client's NULL call: PROG_MISMATCH 3..3 and an RpcVersionRefused event, once
    for its retries (rate-limited per client, program and version)."""
    from pxewizard.events import RpcVersionRefused

    ep, port, e, events = await start(tmp_path)
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        rr = RecordReader()
        for xid in (1, 2, 3):
            w.write(frame(encode_call(xid, n3.NFS_PROG, 4, 0, b"", cred=ROOT)))
            await w.drain()
            recs: list = []
            while not recs:
                recs = rr.feed(await asyncio.wait_for(r.read(1 << 20), 5))
            rep = parse_reply(recs[0])
            assert rep.accepted and rep.stat == 2            # PROG_MISMATCH
            assert (rep.body.pull_u32(), rep.body.pull_u32()) == (3, 3)
        w.close()
    finally:
        await ep.close()
    refused = [ev for ev in events if isinstance(ev, RpcVersionRefused)]
    assert len(refused) == 1
    assert (refused[0].program, refused[0].version, refused[0].low, refused[0].high) == (
        100003, 4, 3, 3)
    assert refused[0].client == "127.0.0.1" and refused[0].service == "nfs"
