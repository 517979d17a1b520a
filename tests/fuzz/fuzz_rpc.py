#!/usr/bin/env python3
"""Fuzz ONC RPC record marking, call parsing, XDR and the portmapper: ``fuzz_rpc.py``.

One input is a TCP byte stream (cut into chunks as the header byte says) fed
to :class:`RecordReader`; each complete record goes through ``parse_call``
and, for portmapper calls, :meth:`PortmapTable.handle`; the record is also
read as a reply (the client side) and walked as a sequence of XDR items
chosen by its own bytes.

Expected: ``ValueError`` (including ``RecordTooLarge``) and :class:`RpcDenied`
(a call answered with MSG_DENIED). Invariants checked:

* the bytes buffered by the record reader never exceed its limit (a stream
  of garbage costs bounded memory, RFC 5531 section 11);
* a denied call's reply parses as a MSG_DENIED reply with the call's xid;
* a portmapper SET/UNSET from a non-local caller never changes the table;
* XDR items pulled, pushed again and pulled again give the same values.
"""

from __future__ import annotations

import sys

from _common import check, instrumented, main

with instrumented():
    from pxewizard.proto import mount3, portmap
    from pxewizard.proto.rpc import (AuthFlavor, RecordReader, RpcDenied, encode_auth_sys,
                                     encode_call, frame, parse_call, parse_reply)
    from pxewizard.proto.xdr import Reader, Writer

LIMIT = 64 * 1024


def xdr_walk(rec: bytes) -> None:
    """Pull items chosen by the record's own bytes; push them back; pull again."""
    r = Reader(rec)
    items: list[tuple[int, object]] = []
    try:
        while not r.eof() and len(items) < 64:
            kind = r.pull_u32() % 6
            val: object
            if kind == 0:
                val = r.pull_u32()
            elif kind == 1:
                val = r.pull_i64()
            elif kind == 2:
                val = r.pull_bool()
            elif kind == 3:
                val = r.pull_opaque(1024)
            elif kind == 4:
                val = r.pull_string(255)
            else:
                val = r.pull_fixed(r.remaining() % 9)
            items.append((kind, val))
    except ValueError:
        pass
    w = Writer()
    for kind, val in items:
        w.push_u32(kind)
        if kind == 0:
            w.push_u32(val)  # type: ignore[arg-type]
        elif kind == 1:
            w.push_i64(val)  # type: ignore[arg-type]
        elif kind == 2:
            w.push_bool(val)  # type: ignore[arg-type]
        elif kind == 3:
            w.push_opaque(val)  # type: ignore[arg-type]
        elif kind == 4:
            w.push_string(val)  # type: ignore[arg-type]
        else:
            w.push_fixed(val)  # type: ignore[arg-type]
    r2 = Reader(bytes(w))
    for kind, val in items:
        check(r2.pull_u32() == kind, "XDR kind changed")
        got = (r2.pull_u32, r2.pull_i64, r2.pull_bool, lambda: r2.pull_opaque(1024),
               lambda: r2.pull_string(255), lambda: r2.pull_fixed(len(val)))[kind]()  # type: ignore[arg-type]
        check(got == val, f"XDR item {kind} {val!r} came back as {got!r}")
    check(r2.eof(), "XDR re-encoding has trailing bytes")


def one_call(rec: bytes, table: portmap.PortmapTable, local: bool) -> None:
    try:
        call = parse_call(rec)
    except RpcDenied as denied:
        rep = parse_reply(denied.reply)
        check(not rep.accepted and rep.xid == denied.xid, "denied reply is not MSG_DENIED")
        return
    except ValueError:
        return
    if call.prog == portmap.PMAP_PROG:
        before = set(table.mappings)
        try:
            table.handle(call.proc, call.args, local=local)
        except ValueError:
            return
        if not local:
            check(table.mappings == before, "a remote caller changed the portmapper table")
    elif call.prog == mount3.MOUNT_PROG and call.proc in (1, 3):
        try:
            path = mount3.pull_dirpath(call.args)
        except ValueError:
            return
        check(len(path.encode("utf-8", "surrogateescape")) <= mount3.MNTPATHLEN, "long path")


def one_input(data: bytes) -> None:
    if not data:
        return
    head, stream = data[0], data[1:]
    cut = 1 + (head >> 1)
    local = bool(head & 1)
    rr = RecordReader(max_record=LIMIT)
    table = portmap.PortmapTable()
    for pos in range(0, len(stream), cut):
        try:
            records = rr.feed(stream[pos:pos + cut])
        except ValueError:
            break
        check(rr.buffered() <= LIMIT + cut + 4, f"{rr.buffered()} bytes buffered")
        for rec in records:
            one_call(rec, table, local)
            try:
                parse_reply(rec)
            except ValueError:
                pass
            xdr_walk(rec)


def seeds() -> list[bytes]:
    sys_cred = (AuthFlavor.AUTH_SYS, encode_auth_sys(0, 0, (1, 2), "client"))
    calls = [
        encode_call(1, portmap.PMAP_PROG, 2, 3, portmap.encode_set_args(100003, 3, 6, 0)),
        encode_call(2, portmap.PMAP_PROG, 2, 1, portmap.encode_set_args(100005, 3, 17, 999)),
        encode_call(3, portmap.PMAP_PROG, 2, 4),
        encode_call(4, mount3.MOUNT_PROG, 3, 1, bytes(Writer().push_string("/srv/x")),
                    cred=sys_cred),
        encode_call(5, 100003, 3, 0, cred=sys_cred),
        encode_call(6, 100003, 3, 0, rpcvers=3),
        encode_call(7, 100003, 3, 0, cred=(AuthFlavor.RPCSEC_GSS, b"abcd")),
    ]
    stream = b"".join(frame(c) for c in calls)
    # one record in two fragments (RFC 5531 section 11)
    c = calls[3]
    split = (len(c[:20]).to_bytes(4, "big") + c[:20]
             + (0x80000000 | len(c[20:])).to_bytes(4, "big") + c[20:])
    return [bytes((h,)) + s for s in (stream, split) for h in (0x00, 0x01, 0x40, 0xff)]


if __name__ == "__main__":
    main(one_input, seeds())
    sys.exit(0)
