"""A small blocking ONC RPC client for the tests: checks our own NFS/mount/portmap server.

Not a general NFS client: it sends one call at a time and returns the parsed
reply; the helpers build the arguments of the procedures the checks need.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct

from pxewizard.proto import mount3 as m3
from pxewizard.proto import nfs3 as n3
from pxewizard.proto.rpc import (
    AuthFlavor,
    RecordReader,
    Reply,
    encode_auth_sys,
    encode_call,
    frame,
    parse_reply,
)
from pxewizard.proto.xdr import Writer


class RpcClient:
    def __init__(self, host: str, port: int, proto: str = "tcp", timeout: float = 5.0,
                 uid: int = 0, gid: int = 0, gids: tuple[int, ...] = ()) -> None:
        self.addr = (host, port)
        self.proto = proto
        self.sock = socket.socket(socket.AF_INET,
                                  socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        self.sock.settimeout(timeout)
        self.sock.connect(self.addr)
        self.reader = RecordReader(64 * 1024 * 1024)
        self.xids = itertools.count(struct.unpack(">I", os.urandom(4))[0] & 0x7FFFFFFF)
        self.cred = (AuthFlavor.AUTH_SYS, encode_auth_sys(uid, gid, gids))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RpcClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        if self.proto == "tcp":
            self.sock.sendall(data)
        else:
            self.sock.send(data)

    def recv_record(self) -> bytes:
        if self.proto == "udp":
            return self.sock.recv(70000)
        while True:
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("server closed the connection")
            recs = self.reader.feed(data)
            if recs:
                return recs[0]

    def call(self, prog: int, vers: int, proc: int, args: bytes = b"",
             cred: tuple[int, bytes] | None = None) -> Reply:
        xid = next(self.xids)
        msg = encode_call(xid, prog, vers, proc, args, cred=cred or self.cred)
        self.send_raw(frame(msg) if self.proto == "tcp" else msg)
        while True:
            rep = parse_reply(self.recv_record())
            if rep.xid == xid:
                return rep


def fh_args(fh: bytes) -> bytes:
    return bytes(Writer().push_opaque(fh))


def dirop_args(fh: bytes, name: str) -> bytes:
    return bytes(Writer().push_opaque(fh).push_string(name))


def read_args(fh: bytes, offset: int, count: int) -> bytes:
    return bytes(Writer().push_opaque(fh).push_u64(offset).push_u32(count))


def mount(c: RpcClient, path: str) -> m3.MntResult:
    rep = c.call(m3.MOUNT_PROG, 3, m3.MountProc.MNT, bytes(Writer().push_string(path)))
    assert rep.accepted and rep.stat == 0, rep
    return m3.parse_mnt_result(rep.body)


def lookup(c: RpcClient, dirfh: bytes, name: str) -> tuple[int, bytes]:
    """(nfsstat3, handle or b'')."""
    rep = c.call(n3.NFS_PROG, 3, n3.Proc.LOOKUP, dirop_args(dirfh, name))
    st = rep.body.pull_u32()
    if st != n3.Stat.OK:
        return st, b""
    return st, rep.body.pull_opaque(n3.NFS3_FHSIZE)


def getattr_(c: RpcClient, fh: bytes) -> tuple[int, n3.Fattr | None]:
    rep = c.call(n3.NFS_PROG, 3, n3.Proc.GETATTR, fh_args(fh))
    st = rep.body.pull_u32()
    return st, (n3.pull_fattr(rep.body) if st == 0 else None)


def read(c: RpcClient, fh: bytes, offset: int, count: int) -> tuple[int, bytes, bool]:
    """(nfsstat3, data, eof)."""
    rep = c.call(n3.NFS_PROG, 3, n3.Proc.READ, read_args(fh, offset, count))
    st = rep.body.pull_u32()
    n3.pull_post_op_attr(rep.body)
    if st != 0:
        return st, b"", False
    rep.body.pull_u32()
    eof = rep.body.pull_bool()
    return st, rep.body.pull_opaque(), eof
