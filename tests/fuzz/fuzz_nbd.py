#!/usr/bin/env python3
"""Fuzz the NBD handshake and transmission core: ``python3 tests/fuzz/fuzz_nbd.py``.

One input is a client byte stream: a header byte picks fixed newstyle or
oldstyle and how the stream is cut into ``receive_data`` calls (TCP delivers
any split), the rest is the stream. Outputs are pulled with ``next_event``
after every chunk, then the client closes (``b""``).

Expected: :class:`NbdProtocolError` (a ``ValueError``: the adapter closes the
connection). Invariants checked:

* a :class:`Read` stays inside the selected export and is at most 32 MiB
  (the adapter hands it to sendfile without another check);
* nothing is served before an export is selected; after :class:`Closed`
  nothing more comes out;
* every option reply carries the option reply magic, every reply header the
  simple reply magic (proto.md "Option reply" / "Simple reply message").
"""

from __future__ import annotations

import struct
import sys

from _common import check, instrumented, main

with instrumented():
    from pxewizard.proto.nbd import (CMD_DISC, CMD_READ, CMD_WRITE, IHAVEOPT, MAX_REQUEST,
                                     OPT_GO, OPT_LIST, REQUEST_MAGIC, Closed, ExportSelected,
                                     NbdConnection, NbdProtocolError, Read, Send, State)

EXPORTS = {"archiso": 700 * 1024 * 1024, "small": 4096, "": 0}


def one_input(data: bytes) -> None:
    if not data:
        return
    head, stream = data[0], data[1:]
    oldstyle = bool(head & 1)
    cut = 1 + (head >> 1)  # chunk size 1..128 bytes
    conn = NbdConnection(EXPORTS, oldstyle=oldstyle, default="archiso")
    outs = list(conn.initiate())
    closed = False
    pos = 0
    while True:
        chunk = stream[pos:pos + cut]
        pos += len(chunk)
        conn.receive_data(chunk)  # b"" at the end: the client closed
        try:
            while (ev := conn.next_event()) is not None:
                outs.append(ev)
        except NbdProtocolError:
            check(conn.state is State.CLOSED, "protocol error but the connection is open")
            break
        if not chunk:
            break
    exported = None
    for ev in outs:
        check(not closed, f"{ev!r} after Closed")
        if isinstance(ev, ExportSelected):
            exported = ev
            check(ev.name in EXPORTS and ev.size == EXPORTS[ev.name], f"bad export {ev!r}")
        elif isinstance(ev, Read):
            check(exported is not None, "read served before an export was selected")
            assert exported is not None
            check(0 < ev.length <= MAX_REQUEST, f"read of {ev.length} bytes")
            check(ev.offset + ev.length <= exported.size,
                  f"read {ev.offset}+{ev.length} past the export's {exported.size} bytes")
        elif isinstance(ev, Send):
            check(len(ev.data) > 0, "empty send")
        elif isinstance(ev, Closed):
            closed = True


def _opt(opt: int, body: bytes = b"") -> bytes:
    return struct.pack(">QII", IHAVEOPT, opt, len(body)) + body


def _req(cmd: int, handle: int, offset: int, length: int, payload: bytes = b"") -> bytes:
    return struct.pack(">IHHQQI", REQUEST_MAGIC, 0, cmd, handle, offset, length) + payload


def seeds() -> list[bytes]:
    go = struct.pack(">I", 7) + b"archiso" + struct.pack(">HHH", 2, 1, 3)
    reads = (_req(CMD_READ, 1, 0, 512) + _req(CMD_READ, 2, 1 << 20, 65536)
             + _req(CMD_WRITE, 3, 0, 4, b"abcd") + _req(CMD_DISC, 4, 0, 0))
    nbdinfo = struct.pack(">I", 3) + _opt(OPT_LIST) + _opt(OPT_GO, go) + reads
    qemu = struct.pack(">I", 1) + _opt(8) + _opt(1, b"archiso") + reads
    return [bytes((h,)) + s for s in (nbdinfo, qemu) for h in (0x00, 0x0e, 0xfe)] + \
        [bytes((1,)) + reads]


if __name__ == "__main__":
    main(one_input, seeds())
    sys.exit(0)
