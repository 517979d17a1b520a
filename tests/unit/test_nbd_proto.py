"""NBD protocol core: handshakes, options, transmission, bad input (no sockets)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pxewizard.proto import nbd
from pxewizard.proto.nbd import (
    Closed,
    ExportSelected,
    NbdConnection,
    NbdProtocolError,
    Read,
    Refused,
    Send,
    State,
)

EXPORTS = {"archiso": 10 * 1024 * 1024, "small": 1000}


def opt(option: int, data: bytes = b"") -> bytes:
    return struct.pack(">QII", nbd.IHAVEOPT, option, len(data)) + data


def go_data(name: str, *infos: int) -> bytes:
    raw = name.encode()
    return struct.pack(">I", len(raw)) + raw + struct.pack(f">H{len(infos)}H", len(infos), *infos)


def req(cmd: int, handle: int = 1, offset: int = 0, length: int = 0, flags: int = 0) -> bytes:
    return struct.pack(">IHHQQI", nbd.REQUEST_MAGIC, flags, cmd, handle, offset, length)


def option_replies(data: bytes) -> list[tuple[int, int, bytes]]:
    """Split server bytes into (option, reply type, payload)."""
    out, i = [], 0
    while i < len(data):
        magic, o, typ, n = struct.unpack_from(">QIII", data, i)
        assert magic == nbd.OPT_REPLY_MAGIC
        out.append((o, typ, data[i + 20:i + 20 + n]))
        i += 20 + n
    return out


def R(handle: int, offset: int, length: int) -> Read:
    """The Read a simple-reply connection emits."""
    return Read(handle, offset, length, nbd.reply_header(handle, 0))


def sent(outs: list) -> bytes:
    return b"".join(o.data for o in outs if isinstance(o, Send))


def roundtrip(conn: NbdConnection, data: bytes) -> list:
    conn.receive_data(data)
    return conn.outputs()


def negotiated(flags: int = nbd.FLAG_C_FIXED_NEWSTYLE | nbd.FLAG_C_NO_ZEROES,
               name: str = "archiso") -> NbdConnection:
    conn = NbdConnection(EXPORTS)
    conn.initiate()
    roundtrip(conn, struct.pack(">I", flags) + opt(nbd.OPT_GO, go_data(name)))
    assert conn.state is State.TRANSMISSION
    return conn


# --- handshake ----------------------------------------------------------------------------


def test_newstyle_greeting() -> None:
    (greet,) = NbdConnection(EXPORTS).initiate()
    assert greet.data == b"NBDMAGIC" + b"IHAVEOPT" + b"\x00\x03"


def test_oldstyle_greeting_serves_first_export() -> None:
    outs = NbdConnection(EXPORTS, oldstyle=True).initiate()
    data = outs[0].data
    assert len(data) == 152 and data[:8] == b"NBDMAGIC"
    magic, size, flags = struct.unpack_from(">QQI", data, 8)
    assert magic == 0x00420281861253 and size == EXPORTS["archiso"]
    assert flags & nbd.FLAG_READ_ONLY and flags & nbd.FLAG_HAS_FLAGS
    assert data[28:] == bytes(124)
    assert outs[1] == ExportSelected("archiso", EXPORTS["archiso"], "oldstyle", "oldstyle")


def test_unknown_client_flags_close() -> None:
    conn = NbdConnection(EXPORTS)
    conn.initiate()
    conn.receive_data(struct.pack(">I", 0x80))
    with pytest.raises(NbdProtocolError):
        conn.next_event()
    assert conn.state is State.CLOSED


def test_list() -> None:
    conn = NbdConnection(EXPORTS)
    outs = roundtrip(conn, struct.pack(">I", 3) + opt(nbd.OPT_LIST))
    reps = option_replies(sent(outs))
    assert [r[1] for r in reps] == [nbd.REP_SERVER, nbd.REP_SERVER, nbd.REP_ACK]
    assert reps[0][2] == struct.pack(">I", 7) + b"archiso"
    assert reps[1][2] == struct.pack(">I", 5) + b"small"
    # LIST with data is invalid but the handshake goes on
    reps = option_replies(sent(roundtrip(conn, opt(nbd.OPT_LIST, b"x"))))
    assert reps[0][1] == nbd.REP_ERR_INVALID and conn.state is State.OPTIONS


def test_info_then_go() -> None:
    conn = NbdConnection(EXPORTS)
    roundtrip(conn, struct.pack(">I", 3))
    outs = roundtrip(conn, opt(nbd.OPT_INFO, go_data("small", nbd.INFO_BLOCK_SIZE,
                                                      nbd.INFO_NAME)))
    reps = option_replies(sent(outs))
    assert reps[0][1] == nbd.REP_INFO
    typ, size, flags = struct.unpack(">HQH", reps[0][2])
    assert (typ, size) == (nbd.INFO_EXPORT, 1000)
    assert flags == nbd.FLAG_HAS_FLAGS | nbd.FLAG_READ_ONLY | nbd.FLAG_SEND_FLUSH | \
        nbd.FLAG_CAN_MULTI_CONN
    infos = {struct.unpack_from(">H", r[2])[0]: r[2][2:] for r in reps if r[1] == nbd.REP_INFO}
    assert infos[nbd.INFO_NAME] == b"small"
    assert struct.unpack(">III", infos[nbd.INFO_BLOCK_SIZE]) == (1, 4096, 32 << 20)
    assert reps[-1][1] == nbd.REP_ACK and conn.state is State.OPTIONS
    outs = roundtrip(conn, opt(nbd.OPT_GO, go_data("")))  # "" = the default export
    assert ExportSelected("archiso", EXPORTS["archiso"], "newstyle", "GO") in outs
    assert conn.state is State.TRANSMISSION


def test_go_unknown_export_is_refused_politely() -> None:
    conn = NbdConnection(EXPORTS)
    outs = roundtrip(conn, struct.pack(">I", 1) + opt(nbd.OPT_GO, go_data("nope")))
    reps = option_replies(sent(outs))
    assert reps == [(nbd.OPT_GO, nbd.REP_ERR_UNKNOWN, reps[0][2])]
    assert b"archiso" in reps[0][2]  # the message names the exports
    assert b'no export named "nope";' in reps[0][2]  # in words, not a bytes repr (b'nope')
    assert any(isinstance(o, Refused) for o in outs) and conn.state is State.OPTIONS


@pytest.mark.parametrize("data", [b"", b"\x00\x00\x00\x09abc\x00\x00",
                                  go_data("archiso") + b"\x00", go_data("archiso", 1)[:-1]])
def test_go_malformed_is_invalid(data: bytes) -> None:
    conn = NbdConnection(EXPORTS)
    reps = option_replies(sent(roundtrip(conn, struct.pack(">I", 1) + opt(nbd.OPT_GO, data))))
    assert reps[0][1] == nbd.REP_ERR_INVALID and conn.state is State.OPTIONS


@pytest.mark.parametrize("no_zeroes,tail", [(True, 0), (False, 124)])
def test_export_name(no_zeroes: bool, tail: int) -> None:
    conn = NbdConnection(EXPORTS)
    flags = nbd.FLAG_C_FIXED_NEWSTYLE | (nbd.FLAG_C_NO_ZEROES if no_zeroes else 0)
    outs = roundtrip(conn, struct.pack(">I", flags) + opt(nbd.OPT_EXPORT_NAME, b"small"))
    data = sent(outs)
    assert len(data) == 10 + tail
    assert struct.unpack_from(">QH", data) == (1000, nbd.TRANSMISSION_FLAGS)
    assert conn.state is State.TRANSMISSION and conn.export == "small"


def test_export_name_unknown_closes() -> None:
    conn = NbdConnection(EXPORTS)
    conn.receive_data(struct.pack(">I", 1) + opt(nbd.OPT_EXPORT_NAME, b"nope"))
    with pytest.raises(NbdProtocolError, match='no export named "nope"'):
        conn.outputs()
    assert conn.state is State.CLOSED


def test_abort_acks_and_closes() -> None:
    conn = NbdConnection(EXPORTS)
    outs = roundtrip(conn, struct.pack(">I", 1) + opt(nbd.OPT_ABORT))
    assert option_replies(sent(outs)) == [(nbd.OPT_ABORT, nbd.REP_ACK, b"")]
    assert isinstance(outs[-1], Closed) and conn.state is State.CLOSED


@pytest.mark.parametrize("option", [nbd.OPT_STARTTLS, nbd.OPT_EXTENDED_HEADERS,
                                    nbd.OPT_SET_META_CONTEXT, 4242])
def test_unsupported_options(option: int) -> None:
    conn = NbdConnection(EXPORTS)
    outs = roundtrip(conn, struct.pack(">I", 1) + opt(option, b"abc"))
    assert option_replies(sent(outs))[0][:2] == (option, nbd.REP_ERR_UNSUP)
    assert conn.state is State.OPTIONS


def test_bad_option_magic_and_huge_option_close() -> None:
    for data in (struct.pack(">QII", 0x1234, 1, 0), struct.pack(">QII", nbd.IHAVEOPT, 1, 1 << 30)):
        conn = NbdConnection(EXPORTS)
        conn.receive_data(struct.pack(">I", 1) + data)
        with pytest.raises(NbdProtocolError):
            conn.outputs()


# --- transmission -----------------------------------------------------------------------


def test_reads_pipelined_and_split_anywhere() -> None:
    stream = b"".join(req(nbd.CMD_READ, handle=h, offset=h * 4096, length=4096)
                      for h in range(50))
    whole = roundtrip(negotiated(), stream)
    assert whole == [R(h, h * 4096, 4096) for h in range(50)]
    conn = negotiated()
    bytewise = []
    for i in range(len(stream)):
        bytewise += roundtrip(conn, stream[i:i + 1])
    assert bytewise == whole


def header_of(outs: list) -> tuple[int, int, int]:
    return struct.unpack(">IIQ", sent(outs)[:16])


@pytest.mark.parametrize("request_,error", [
    (req(nbd.CMD_READ, 7, EXPORTS["archiso"] - 10, 11), nbd.EINVAL),   # past the end
    (req(nbd.CMD_READ, 7, 1 << 62, 4096), nbd.EINVAL),                 # far past the end
    (req(nbd.CMD_READ, 7, 0, (32 << 20) + 1), nbd.EINVAL),            # oversize
    (req(nbd.CMD_TRIM, 7, 0, 4096), nbd.EPERM),
    (req(nbd.CMD_WRITE_ZEROES, 7, 0, 4096), nbd.EPERM),
    (req(nbd.CMD_CACHE, 7, 0, 4096), nbd.EINVAL),
    (req(nbd.CMD_BLOCK_STATUS, 7, 0, 4096), nbd.EINVAL),
    (req(99, 7, 0, 0), nbd.EINVAL),
    (req(nbd.CMD_FLUSH, 7), 0),
    (req(nbd.CMD_READ, 7, 0, 0), 0),
])
def test_request_errors(request_: bytes, error: int) -> None:
    conn = negotiated()
    outs = roundtrip(conn, request_)
    assert header_of(outs) == (nbd.SIMPLE_REPLY_MAGIC, error, 7)
    assert conn.state is State.TRANSMISSION
    # the connection keeps serving
    assert roundtrip(conn, req(nbd.CMD_READ, 8, 0, 512)) == [R(8, 0, 512)]


def test_write_payload_is_dropped_unbuffered_and_eperm_at_once() -> None:
    conn = negotiated()
    payload = b"\xAA" * 4096
    outs = roundtrip(conn, req(nbd.CMD_WRITE, 3, 0, 4096) + payload[:100])
    assert header_of(outs) == (nbd.SIMPLE_REPLY_MAGIC, nbd.EPERM, 3)  # refused at once
    assert Refused("WRITE", nbd.EPERM, "the export is read-only") in outs
    assert len(conn._buf) == 0  # the payload is not kept
    conn.receive_data(payload[100:2000])
    assert len(conn._buf) == 0
    outs = roundtrip(conn, payload[2000:] + req(nbd.CMD_READ, 4, 0, 10))
    assert outs == [R(4, 0, 10)]  # still in step


def test_huge_write_closes() -> None:
    conn = negotiated()
    conn.receive_data(req(nbd.CMD_WRITE, 3, 0, 1 << 30))
    with pytest.raises(NbdProtocolError):
        conn.outputs()


def test_disc_closes_and_ignores_the_rest() -> None:
    conn = negotiated()
    outs = roundtrip(conn, req(nbd.CMD_DISC) + req(nbd.CMD_READ, 2, 0, 10))
    assert len(outs) == 1 and isinstance(outs[0], Closed)
    assert conn.state is State.CLOSED and roundtrip(conn, req(nbd.CMD_READ)) == []


def test_bad_request_magic_closes() -> None:
    conn = negotiated()
    conn.receive_data(b"\x00" * 28)
    with pytest.raises(NbdProtocolError, match="magic"):
        conn.outputs()


def test_eof_closes() -> None:
    conn = negotiated()
    assert isinstance(roundtrip(conn, b"")[0], Closed)


def test_oldstyle_transmission_directly() -> None:
    conn = NbdConnection(EXPORTS, oldstyle=True)
    conn.initiate()
    assert roundtrip(conn, req(nbd.CMD_READ, 1, 0, 100)) == [R(1, 0, 100)]


def test_transition_table_rejects_impossible() -> None:
    conn = NbdConnection(EXPORTS)
    with pytest.raises(RuntimeError):
        conn._fire(nbd.Trigger.DISCONNECT)
    assert (State.CLOSED, nbd.Trigger.PROTOCOL_ERROR) not in nbd.TRANSITIONS


# --- structured replies (proto.md "Structured replies") ----------------------------------------


def structured() -> NbdConnection:
    conn = NbdConnection(EXPORTS)
    conn.initiate()
    outs = roundtrip(conn, struct.pack(">I", 3) + opt(nbd.OPT_STRUCTURED_REPLY))
    assert option_replies(sent(outs)) == [(nbd.OPT_STRUCTURED_REPLY, nbd.REP_ACK, b"")]
    roundtrip(conn, opt(nbd.OPT_GO, go_data("archiso")))
    assert conn.structured and conn.state is State.TRANSMISSION
    return conn


def chunks(data: bytes) -> list[tuple[int, int, int, bytes]]:
    out, i = [], 0
    while i < len(data):
        magic, flags, typ, handle, n = struct.unpack_from(">IHHQI", data, i)
        assert magic == nbd.STRUCTURED_REPLY_MAGIC
        out.append((flags, typ, handle, data[i + 20:i + 20 + n]))
        i += 20 + n
    return out


def test_structured_read_is_one_offset_data_chunk() -> None:
    conn = structured()
    (rd,) = roundtrip(conn, req(nbd.CMD_READ, 5, 8192, 4096))
    assert (rd.handle, rd.offset, rd.length) == (5, 8192, 4096)
    magic, flags, typ, handle, n = struct.unpack_from(">IHHQI", rd.header)
    assert (magic, flags, typ, handle, n) == (nbd.STRUCTURED_REPLY_MAGIC, nbd.REPLY_FLAG_DONE,
                                              nbd.REPLY_TYPE_OFFSET_DATA, 5, 8 + 4096)
    assert rd.header[20:] == struct.pack(">Q", 8192)  # then the data follows


def test_structured_errors_and_acks() -> None:
    conn = structured()
    outs = roundtrip(conn, req(nbd.CMD_WRITE, 1, 0, 8, flags=0) + b"12345678"
                     + req(nbd.CMD_READ, 2, EXPORTS["archiso"], 1) + req(nbd.CMD_FLUSH, 3))
    got = chunks(sent(outs))
    assert [(c[0], c[1], c[2]) for c in got] == [
        (nbd.REPLY_FLAG_DONE, nbd.REPLY_TYPE_ERROR, 1),
        (nbd.REPLY_FLAG_DONE, nbd.REPLY_TYPE_ERROR, 2),
        (nbd.REPLY_FLAG_DONE, nbd.REPLY_TYPE_NONE, 3)]
    err, mlen = struct.unpack_from(">IH", got[0][3])
    assert err == nbd.EPERM and got[0][3][6:6 + mlen] == b"the export is read-only"
    assert struct.unpack_from(">I", got[1][3])[0] == nbd.EINVAL


def test_structured_reply_with_data_is_invalid() -> None:
    conn = NbdConnection(EXPORTS)
    outs = roundtrip(conn, struct.pack(">I", 1) + opt(nbd.OPT_STRUCTURED_REPLY, b"x"))
    assert option_replies(sent(outs))[0][1] == nbd.REP_ERR_INVALID and not conn.structured


# --- fuzz: random bytes only ever produce outputs or NbdProtocolError ------------------------


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=12),
       st.sampled_from(["new", "go", "old", "structured"]))
def test_random_input_never_crashes(chunks: list[bytes], start: str) -> None:
    if start == "old":
        conn = NbdConnection(EXPORTS, oldstyle=True)
        conn.initiate()
    elif start == "go":
        conn = negotiated()
    elif start == "structured":
        conn = structured()
    else:
        conn = NbdConnection(EXPORTS)
        conn.initiate()
    try:
        for c in chunks:
            conn.receive_data(c)
            for o in conn.outputs():
                assert isinstance(o, (Send, Read, ExportSelected, Refused, Closed))
                if isinstance(o, Read):
                    assert 0 < o.length <= nbd.MAX_REQUEST
                    assert o.offset + o.length <= conn.size
    except NbdProtocolError:
        assert conn.state is State.CLOSED
