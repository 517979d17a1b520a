#!/usr/bin/env python3
"""Fuzz the TFTP codec and transfer state machines: ``python3 tests/fuzz/fuzz_tftp.py``.

One input is a transfer as the server sees it: a header byte (file size,
limits), the request datagram, then client moves, each a kind byte and its
bytes: a raw datagram, an ACK of a given block, an ACK of the newest block
sent (a well-behaved client), a DATA block (uploads), an ERROR, or time
passing (the retransmission timer). The request goes through ``decode`` and
``negotiate`` and builds a :class:`ReadTransfer` (RRQ) or
:class:`WriteTransfer` (WRQ, when the header allows writes).

Expected: ``ValueError`` (malformed or unexpected packet: the adapter drops
it). Not expected: ``TftpProtocolError`` (an impossible transition) or
anything else. Invariants checked:

* ``decode(encode(p)) == p`` for every packet that decodes;
* every datagram the server sends decodes; DATA block ``b`` carries exactly
  bytes ``(b-1)*blksize ...`` of the file (RFC 1350 section 6: full blocks,
  a shorter last one); nothing past the last block is ever sent;
* the OACK only grants what was asked, within the limits (RFC 2347/2348/7440);
* a finished transfer has no timer; a completed read was acknowledged to the
  last block; a write's chunks are contiguous and within its size limit.
"""

from __future__ import annotations

import struct
import sys

from _common import check, instrumented, main, tftp_seeds

with instrumented():
    from pxewizard.proto.tftp import (MAX_BLKSIZE, Ack, Data, Error, Limits, OAck, Opcode,
                                      ReadState, ReadTransfer, Request, TransferComplete,
                                      WriteTransfer, decode, encode)

SIZES = (0, 1, 511, 512, 513, 1468 * 4, 5000, 40000)
FILES = {n: bytes((i * 7 + 3) & 0xFF for i in range(n)) for n in SIZES}
LIMITS = (Limits(), Limits(max_blksize=1468, max_windowsize=4, retries=3),
          Limits(max_blksize=512, max_windowsize=1, timeout=2.0, retries=1),
          Limits(max_windowsize=64))
MAX_UPLOAD = 3000

RAW, ACK, ACK_NEWEST, DATA, ERROR, TICK = range(6)


def moves(data: bytes, i: int) -> list[tuple[int, bytes | int]]:
    out: list[tuple[int, bytes | int]] = []
    while i < len(data) and len(out) < 200:
        kind = data[i] % 6
        i += 1
        if kind in (RAW, DATA):
            n = data[i] if i < len(data) else 0
            if kind == DATA:
                n *= 8  # up to 2 KiB of payload
            out.append((kind, data[i + 1:i + 1 + n]))
            i += 1 + n
        elif kind in (ACK, ERROR):
            out.append((kind, int.from_bytes(data[i:i + 2].ljust(2, b"\0"), "big")))
            i += 2
        else:
            out.append((kind, data[i] if i < len(data) else 0))
            i += 1
    return out


def round_trip(raw: bytes) -> None:
    try:
        pkt = decode(raw)
    except ValueError:
        return
    again = decode(encode(pkt))
    check(again == pkt, f"round trip changed {pkt!r} into {again!r}")


def check_oack(req: Request, oack: dict[str, str], limits: Limits, size: int | None) -> None:
    for name, value in oack.items():
        check(name in req.options, f"OACK grants {name}, never asked")
        if name == "blksize":
            check(8 <= int(value) <= min(MAX_BLKSIZE, limits.max_blksize),
                  f"blksize {value} out of limits")
        if name == "windowsize":
            check(1 <= int(value) <= limits.max_windowsize, f"windowsize {value} > limit")
        if name == "tsize" and size is not None:
            check(int(value) == size, f"tsize {value} is not the file size {size}")


def drive_read(req: Request, file: bytes, limits: Limits, ms: list) -> None:
    now = 0.0
    t = ReadTransfer(req, file, limits, now)
    check_oack(req, t.negotiated.oack, limits, len(file))
    bs = t.blksize
    newest = 0

    def flush() -> None:
        nonlocal newest
        for dg in t.datagrams_to_send():
            pkt = decode(dg)
            if isinstance(pkt, OAck):
                check(pkt.options == t.negotiated.oack, "OACK differs from the negotiation")
                continue
            check(isinstance(pkt, Data), f"server sent {pkt!r} during a read")
            assert isinstance(pkt, Data)
            # unbounded block number of this 16-bit one, near the acknowledged point
            blk = t.acked + ((pkt.block - t.acked) & 0xFFFF)
            check(1 <= blk <= t.nblocks, f"block {blk} sent, file has {t.nblocks}")
            check(pkt.payload == file[(blk - 1) * bs:blk * bs],
                  f"block {blk} does not carry bytes {(blk - 1) * bs}..")
            newest = max(newest, pkt.block)

    flush()
    for kind, arg in ms:
        if t.finished:
            break
        try:
            if kind == RAW:
                t.receive(arg, now)
            elif kind == ACK:
                t.receive(encode(Ack(arg)), now)
            elif kind == ACK_NEWEST:
                t.receive(encode(Ack(newest)), now)
            elif kind == ERROR:
                t.receive(encode(Error(code=arg & 0xF, message="x")), now)
            elif kind == DATA:
                t.receive(encode(Data(block=1, payload=arg)), now)
            else:
                now += arg / 8
                t.handle_timer(now)
        except ValueError:
            pass
        flush()
    check((t.get_timer() is None) == t.finished, "timer state disagrees with finished")
    events = []
    while (ev := t.next_event()) is not None:
        events.append(ev)
    if t.state is ReadState.DONE:
        check(t.acked == t.nblocks, "DONE before the last block was acknowledged")
        check(any(isinstance(e, TransferComplete) for e in events), "DONE without the event")


def drive_write(req: Request, limits: Limits, ms: list) -> None:
    now = 0.0
    t = WriteTransfer(req, limits, now, max_bytes=MAX_UPLOAD)
    check_oack(req, t.negotiated.oack, limits, None)
    block = 0
    for kind, arg in ms:
        if t.finished:
            break
        try:
            if kind == RAW:
                t.receive(arg, now)
            elif kind == DATA:
                block += 1
                t.receive(encode(Data(block=block & 0xFFFF, payload=arg)), now)
            elif kind == ACK:
                t.receive(encode(Data(block=arg, payload=b"y" * (arg & 0x3FF))), now)
            elif kind == ERROR:
                t.receive(encode(Error(code=arg & 0xF, message="")), now)
            else:
                now += (arg if kind == TICK else 1) / 8
                t.handle_timer(now)
        except ValueError:
            pass
        for dg in t.datagrams_to_send():
            check(isinstance(decode(dg), (Ack, OAck, Error)), "bad datagram from a write")
    pos = 0
    for off, chunk in t.take_chunks():
        check(off == pos, f"chunk at {off}, expected {pos}")
        pos += len(chunk)
    check(t.bytes == pos <= MAX_UPLOAD, f"{t.bytes} bytes accepted (limit {MAX_UPLOAD})")
    check((t.get_timer() is None) == t.finished, "timer state disagrees with finished")


def one_input(data: bytes) -> None:
    if len(data) < 3:
        return
    head = data[0]
    (n,) = struct.unpack_from("!H", data, 1)
    raw = data[3:3 + n]
    round_trip(raw)
    ms = moves(data, 3 + n)
    for kind, arg in ms:
        if kind == RAW:
            round_trip(arg)  # type: ignore[arg-type]
    try:
        req = decode(raw)
    except ValueError:
        return
    if not isinstance(req, Request):
        return
    limits = LIMITS[(head >> 4) & 3]
    if req.opcode is Opcode.WRQ:
        if head & 0x80:
            drive_write(req, limits, ms)
        return
    drive_read(req, FILES[SIZES[head & 7]], limits, ms)


def seeds() -> list[bytes]:
    out = []
    caps = tftp_seeds()
    for raw in caps:
        for head in (0x02, 0x13, 0x25, 0x37):
            body = b"".join(bytes((ACK_NEWEST, 0)) for _ in range(6))
            out.append(bytes((head,)) + struct.pack("!H", len(raw)) + raw + body)
    wrq = encode(Request(Opcode.WRQ, "up.bin", "octet", {"blksize": "512", "tsize": "1200"}))
    out.append(bytes((0x80,)) + struct.pack("!H", len(wrq)) + wrq
               + bytes((DATA, 64)) + b"a" * 512 + bytes((DATA, 10)) + b"b" * 80)
    return out


if __name__ == "__main__":
    main(one_input, seeds())
    sys.exit(0)
