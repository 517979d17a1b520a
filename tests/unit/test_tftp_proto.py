"""TFTP core: codec, negotiation, the read/write state machines, without sockets or sleeping."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pxewizard.proto import tftp
from pxewizard.proto.tftp import (
    Ack,
    Data,
    Error,
    ErrorCode,
    Limits,
    OAck,
    Opcode,
    ReadState,
    ReadTransfer,
    Request,
    TftpProtocolError,
    TransferAborted,
    TransferComplete,
    WriteState,
    WriteTransfer,
    decode,
    encode,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "tftp"


def rrq(name: str = "f", mode: str = "octet", **options: object) -> Request:
    return Request(opcode=Opcode.RRQ, filename=name, mode=mode,
                   options={k: str(v) for k, v in options.items()})


def capture(name: str) -> list[bytes]:
    d = json.loads((DATA / name).read_text())
    return [bytes.fromhex(p["hex"]) for p in d["packets"]]


def drain(t: ReadTransfer | WriteTransfer) -> list[object]:
    out = []
    while (ev := t.next_event()) is not None:
        out.append(ev)
    return out


def blocks(dgrams: list[bytes]) -> list[int]:
    return [decode(d).block for d in dgrams]  # type: ignore[union-attr]


def download(t: ReadTransfer, now: float = 0.0) -> bytes:
    """A perfect lockstep/windowed client: ACK the last block of each batch."""
    got = bytearray()
    dgrams = t.datagrams_to_send()
    while dgrams:
        last = None
        for d in dgrams:
            p = decode(d)
            if isinstance(p, OAck):
                last = 0
            else:
                assert isinstance(p, Data)
                got += p.payload
                last = p.block
        t.receive(encode(Ack(last)), now)
        dgrams = t.datagrams_to_send()
    return bytes(got)


# --- codec -----------------------------------------------------------------------------

names = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)),
                min_size=1, max_size=60)
opt_names = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=10)
opt_values = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)),
                     max_size=10)


@given(op=st.sampled_from([Opcode.RRQ, Opcode.WRQ]), name=names,
       mode=st.sampled_from(["octet", "netascii"]),
       options=st.dictionaries(opt_names, opt_values, max_size=5))
def test_request_round_trip(op: Opcode, name: str, mode: str, options: dict[str, str]) -> None:
    req = Request(opcode=op, filename=name, mode=mode, options=options)
    assert decode(encode(req)) == req


@given(block=st.integers(0, 0xFFFF), payload=st.binary(max_size=1500))
def test_data_ack_round_trip(block: int, payload: bytes) -> None:
    assert decode(encode(Data(block=block, payload=payload))) == Data(block=block,
                                                                       payload=payload)
    assert decode(encode(Ack(block=block))) == Ack(block=block)


@given(code=st.integers(0, 0xFFFF), message=opt_values)
def test_error_round_trip(code: int, message: str) -> None:
    assert decode(encode(Error(code=code, message=message))) == Error(code=code, message=message)


@given(options=st.dictionaries(opt_names, opt_values, max_size=5))
def test_oack_round_trip(options: dict[str, str]) -> None:
    assert decode(encode(OAck(options=options))) == OAck(options=options)


@settings(max_examples=500)
@given(st.binary(max_size=80))
def test_decode_random_bytes_only_raises_valueerror(raw: bytes) -> None:
    try:
        decode(raw)
    except ValueError:
        pass


@pytest.mark.parametrize("raw, words", [
    (b"", "too short"),
    (b"\x00", "too short"),
    (b"\x00\x09abc", "unknown opcode 9"),
    (b"\x00\x01file", "not NUL-terminated"),
    (b"\x00\x01file\x00", "no transfer mode"),
    (b"\x00\x01\x00octet\x00", "empty file name"),
    (b"\x00\x01f\x00octet\x00blksize\x00", "name/value pairs"),
    (b"\x00\x04\x00", "must be 4"),
    (b"\x00\x04\x00\x01\x02", "must be 4"),
    (b"\x00\x03\x00", "without a block number"),
    (b"\x00\x05\x00", "without an error code"),
])
def test_malformed_packets_say_why(raw: bytes, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        decode(raw)


def test_real_edk2_packets_decode() -> None:
    probe, abort, real = capture("ovmfnative-syslinux-client.json")[:3]
    p = decode(probe)
    assert p == rrq("efi64/syslinux.efi", tsize=0, blksize=1468, windowsize=4)
    assert decode(abort) == Error(code=8, message="User aborted the transfer")
    assert decode(real) == rrq("efi64/syslinux.efi", blksize=1468, windowsize=4)
    ipxe = capture("ovmfnative-ipxeefi-client.json")[3]
    assert decode(ipxe) == rrq("boot.ipxe", blksize=1432, tsize=0)


def test_option_names_are_case_insensitive_first_wins() -> None:
    raw = b"\x00\x01f\x00OCTET\x00BlkSize\x001024\x00blksize\x00512\x00"
    assert decode(raw) == rrq("f", blksize=1024)


# --- negotiation -------------------------------------------------------------------------


@pytest.mark.parametrize("asked, limit, granted", [
    (1468, 65464, "1468"),
    (65464, 65464, "65464"),
    (70000, 65464, "65464"),   # above the RFC maximum: clamped, not refused
    (8192, 1468, "1468"),      # the MTU cap from the adapter
    (8, 65464, "8"),
])
def test_blksize_clamped(asked: int, limit: int, granted: str) -> None:
    n = tftp.negotiate(rrq(blksize=asked), Limits(max_blksize=limit), 10)
    assert n.oack == {"blksize": granted}
    assert n.blksize == int(granted)


@pytest.mark.parametrize("options, ignored", [
    ({"blksize": "7"}, "blksize"),
    ({"blksize": "abc"}, "blksize"),
    ({"blksize": "-1"}, "blksize"),
    ({"timeout": "0"}, "timeout"),
    ({"timeout": "256"}, "timeout"),
    ({"windowsize": "0"}, "windowsize"),
    ({"windowsize": "65536"}, "windowsize"),
    ({"tsize": "x"}, "tsize"),
    ({"multicast": ""}, "unknown option"),
])
def test_out_of_range_options_are_left_out(options: dict[str, str], ignored: str) -> None:
    req = Request(opcode=Opcode.RRQ, filename="f", mode="octet", options=options)
    n = tftp.negotiate(req, Limits(), 100)
    assert n.oack == {}
    assert n.blksize == 512 and n.windowsize == 1
    assert ignored in n.ignored[0]


def test_tsize_windowsize_timeout() -> None:
    n = tftp.negotiate(rrq(tsize=0, windowsize=64, timeout=3), Limits(max_windowsize=16), 12345)
    assert n.oack == {"tsize": "12345", "windowsize": "16", "timeout": "3"}
    assert n.windowsize == 16 and n.timeout == 3.0


def test_no_options_no_oack_first_block_at_once() -> None:
    t = ReadTransfer(rrq(), b"x" * 600, Limits(), 0.0)
    dg = t.datagrams_to_send()
    assert [decode(d) for d in dg] == [Data(block=1, payload=b"x" * 512)]


# --- read transfers -------------------------------------------------------------------------


def test_lockstep_download_exact_multiple_ends_with_empty_block() -> None:
    data = os.urandom(1024)
    t = ReadTransfer(rrq(), data, Limits(), 0.0)
    assert t.nblocks == 3
    assert download(t) == data
    assert t.state is ReadState.DONE
    assert drain(t) == [TransferComplete(bytes=1024, blocks=3)]


def test_empty_file_is_one_empty_block() -> None:
    t = ReadTransfer(rrq(), b"", Limits(), 0.0)
    assert [decode(d) for d in t.datagrams_to_send()] == [Data(block=1, payload=b"")]
    t.receive(encode(Ack(1)), 0.0)
    assert t.state is ReadState.DONE


def test_oack_then_ack0_starts_data() -> None:
    t = ReadTransfer(rrq(blksize=1468, tsize=0), b"a" * 3000, Limits(), 0.0)
    assert [decode(d) for d in t.datagrams_to_send()] == [
        OAck(options={"blksize": "1468", "tsize": "3000"})]
    assert t.state is ReadState.OACK_SENT
    t.receive(encode(Ack(0)), 0.1)
    assert blocks(t.datagrams_to_send()) == [1]
    assert t.state is ReadState.SENDING


def test_rollover_past_65535_blocks() -> None:
    # blksize 8 keeps this small: 70000 blocks wrap the 16-bit counter once.
    data = os.urandom(8 * 70000 + 3)
    t = ReadTransfer(rrq(blksize=8), data, Limits(), 0.0)
    seen = []
    dgrams = t.datagrams_to_send()
    got = bytearray()
    t.receive(encode(Ack(0)), 0.0)
    dgrams = t.datagrams_to_send()
    while dgrams:
        p = decode(dgrams[0])
        seen.append(p.block)  # type: ignore[union-attr]
        got += p.payload  # type: ignore[union-attr]
        t.receive(encode(Ack(p.block)), 0.0)  # type: ignore[union-attr]
        dgrams = t.datagrams_to_send()
    assert bytes(got) == data
    assert seen[65534:65538] == [65535, 0, 1, 2]
    assert t.nblocks == 70001 and t.state is ReadState.DONE


def test_windowsize_sends_a_window_per_ack() -> None:
    data = os.urandom(512 * 20 + 5)
    t = ReadTransfer(rrq(windowsize=8), data, Limits(max_windowsize=16), 0.0)
    t.datagrams_to_send()  # OACK
    t.receive(encode(Ack(0)), 0.0)
    assert blocks(t.datagrams_to_send()) == list(range(1, 9))
    t.receive(encode(Ack(8)), 0.0)
    assert blocks(t.datagrams_to_send()) == list(range(9, 17))
    t.receive(encode(Ack(16)), 0.0)
    assert blocks(t.datagrams_to_send()) == [17, 18, 19, 20, 21]
    t.receive(encode(Ack(21)), 0.0)
    assert t.state is ReadState.DONE
    t2 = ReadTransfer(rrq(windowsize=8), data, Limits(max_windowsize=16), 0.0)
    assert download(t2) == data


def test_windowsize_partial_ack_resends_from_the_gap() -> None:
    # RFC 7440 section 4: the client ACKs the last block it got in order.
    t = ReadTransfer(rrq(windowsize=4), os.urandom(512 * 10), Limits(), 0.0)
    t.datagrams_to_send()
    t.receive(encode(Ack(0)), 0.0)
    assert blocks(t.datagrams_to_send()) == [1, 2, 3, 4]
    t.receive(encode(Ack(2)), 0.0)  # 3 was lost
    assert blocks(t.datagrams_to_send()) == [3, 4, 5, 6]


def test_duplicate_ack_sends_nothing() -> None:
    """No Sorcerer's Apprentice (RFC 1123 4.2.3.1): duplicates never trigger a send."""
    t = ReadTransfer(rrq(), os.urandom(512 * 5), Limits(), 0.0)
    assert blocks(t.datagrams_to_send()) == [1]
    t.receive(encode(Ack(1)), 0.0)
    assert blocks(t.datagrams_to_send()) == [2]
    for _ in range(3):
        t.receive(encode(Ack(1)), 0.0)
        assert t.datagrams_to_send() == []
    t.receive(encode(Ack(0)), 0.0)   # stale
    t.receive(encode(Ack(40)), 0.0)  # from the future: ignored
    assert t.datagrams_to_send() == []
    t.receive(encode(Ack(2)), 0.0)
    assert blocks(t.datagrams_to_send()) == [3]


def test_retransmit_with_back_off_then_give_up() -> None:
    t = ReadTransfer(rrq(windowsize=2), os.urandom(2000), Limits(timeout=1.0, retries=3), 0.0)
    t.datagrams_to_send()
    t.receive(encode(Ack(0)), 10.0)
    assert blocks(t.datagrams_to_send()) == [1, 2]
    assert t.get_timer() == 11.0
    t.handle_timer(10.5)  # too early
    assert t.datagrams_to_send() == []
    t.handle_timer(11.0)
    assert blocks(t.datagrams_to_send()) == [1, 2]  # the whole window again
    assert t.get_timer() == 13.0  # 1 s doubled
    t.handle_timer(13.0)
    assert blocks(t.datagrams_to_send()) == [1, 2]
    assert t.get_timer() == 17.0
    t.handle_timer(17.0)
    assert t.get_timer() == 25.0
    t.handle_timer(25.0)
    assert t.state is ReadState.FAILED
    (ev,) = drain(t)
    assert isinstance(ev, TransferAborted) and "timed out after 3 retries" in ev.reason
    assert t.get_timer() is None


def test_progress_resets_back_off() -> None:
    t = ReadTransfer(rrq(), os.urandom(2000), Limits(timeout=1.0), 0.0)
    t.datagrams_to_send()
    t.handle_timer(1.0)
    assert blocks(t.datagrams_to_send()) == [1]
    t.receive(encode(Ack(1)), 2.5)
    assert t.retry == 0 and t.get_timer() == 3.5


def test_oack_is_retransmitted() -> None:
    t = ReadTransfer(rrq(tsize=0), b"abc", Limits(timeout=2.0), 0.0)
    t.datagrams_to_send()
    t.handle_timer(2.0)
    assert [type(decode(d)) for d in t.datagrams_to_send()] == [OAck]


def test_edk2_tsize_probe_is_a_probe_not_a_failure() -> None:
    """OVMF: RRQ tsize+blksize+windowsize, reads the OACK, ERROR 8; then the real RRQ."""
    probe, abort, real = capture("ovmfnative-syslinux-client.json")[:3]
    data = os.urandom(150_000)
    t = ReadTransfer(decode(probe), data, Limits(max_blksize=1468), 0.0)  # type: ignore
    (oack,) = t.datagrams_to_send()
    assert decode(oack) == OAck(options={"tsize": "150000", "blksize": "1468",
                                         "windowsize": "4"})
    t.receive(abort, 0.01)
    assert t.state is ReadState.FAILED and t.get_timer() is None
    (ev,) = drain(t)
    assert isinstance(ev, TransferAborted) and ev.probe and ev.code == 8
    assert "size probe" in ev.reason
    t2 = ReadTransfer(decode(real), data, Limits(max_blksize=1468), 0.0)  # type: ignore
    assert download(t2) == data
    assert drain(t2) == [TransferComplete(bytes=150000, blocks=103)]


def test_error_mid_transfer_is_a_failure() -> None:
    t = ReadTransfer(rrq(tsize=0), os.urandom(5000), Limits(), 0.0)
    t.datagrams_to_send()
    t.receive(encode(Ack(0)), 0.0)
    t.receive(encode(Error(code=0, message="disk full")), 0.0)
    (ev,) = drain(t)
    assert isinstance(ev, TransferAborted) and not ev.probe and "disk full" in ev.reason


def test_unexpected_packets_raise_valueerror() -> None:
    t = ReadTransfer(rrq(), b"abc", Limits(), 0.0)
    with pytest.raises(ValueError, match="unexpected Data"):
        t.receive(encode(Data(block=1, payload=b"x")), 0.0)
    with pytest.raises(ValueError):
        t.receive(b"\x00\x04\x00", 0.0)


def test_impossible_transition_raises() -> None:
    t = ReadTransfer(rrq(), b"abc", Limits(), 0.0)
    with pytest.raises(TftpProtocolError):
        t._go(tftp.Input.ACK_OACK)


def test_netascii_conversion() -> None:
    text = b"line one\nline two\r\nbare\rcr\n"
    na = tftp.to_netascii(text)
    assert na == b"line one\r\nline two\r\0\r\nbare\r\0cr\r\n"
    assert tftp.from_netascii(na) == text
    t = ReadTransfer(rrq(mode="netascii"), na, Limits(), 0.0)
    assert download(t) == na


@given(st.binary(max_size=300))
def test_netascii_round_trip(data: bytes) -> None:
    assert tftp.from_netascii(tftp.to_netascii(data)) == data


@settings(max_examples=50, deadline=None)
@given(size=st.integers(0, 5000), blksize=st.integers(8, 600), window=st.integers(1, 9),
       lost=st.sets(st.integers(1, 60), max_size=8))
def test_any_loss_pattern_still_delivers_the_file(size: int, blksize: int, window: int,
                                                  lost: set[int]) -> None:
    """A client that ACKs the last in-order block; some DATA packets are lost once."""
    data = os.urandom(size)
    t = ReadTransfer(rrq(blksize=blksize, windowsize=window), data, Limits(max_windowsize=16), 0.0)
    now, expected, got, dropped = 0.0, 1, bytearray(), set()
    dgrams = t.datagrams_to_send()
    t.receive(encode(Ack(0)), now)
    for _ in range(10000):
        dgrams = t.datagrams_to_send()
        if not dgrams:
            if t.finished:
                break
            now = t.get_timer()  # type: ignore[assignment]
            t.handle_timer(now)
            continue
        acked = None
        for d in dgrams:
            p = decode(d)
            assert isinstance(p, Data)
            n = p.block
            if n in lost and n not in dropped and len(got) // blksize + 1 == n:
                dropped.add(n)
                continue
            if n == (expected & 0xFFFF):
                got += p.payload
                expected += 1
                acked = n
                if len(p.payload) < blksize:
                    break
        if acked is not None:
            t.receive(encode(Ack(acked)), now)
    assert bytes(got) == data
    assert t.state is ReadState.DONE


# --- writes ---------------------------------------------------------------------------------


def wrq(**options: object) -> Request:
    return Request(opcode=Opcode.WRQ, filename="up.bin", mode="octet",
                   options={k: str(v) for k, v in options.items()})


def test_write_transfer_lockstep_and_duplicates() -> None:
    w = WriteTransfer(wrq(blksize=16, tsize=40), Limits(), 0.0)
    assert decode(w.datagrams_to_send()[0]) == OAck(options={"blksize": "16", "tsize": "40"})
    payload = os.urandom(40)
    w.receive(encode(Data(block=1, payload=payload[:16])), 0.0)
    assert blocks(w.datagrams_to_send()) == [1]
    w.receive(encode(Data(block=1, payload=payload[:16])), 0.0)  # duplicate
    assert blocks(w.datagrams_to_send()) == [1]
    w.receive(encode(Data(block=2, payload=payload[16:32])), 0.0)
    w.receive(encode(Data(block=3, payload=payload[32:])), 0.0)
    assert blocks(w.datagrams_to_send()) == [2, 3]
    assert w.state is WriteState.DONE
    chunks = w.take_chunks()
    assert b"".join(c for _, c in chunks) == payload
    assert [o for o, _ in chunks] == [0, 16, 32]
    assert drain(w) == [TransferComplete(bytes=40, blocks=3)]


def test_write_transfer_without_options_acks_block_0_and_refuses_windowsize() -> None:
    w = WriteTransfer(wrq(), Limits(), 0.0)
    assert decode(w.datagrams_to_send()[0]) == Ack(block=0)
    w2 = WriteTransfer(wrq(windowsize=8), Limits(), 0.0)
    assert decode(w2.datagrams_to_send()[0]) == Ack(block=0)
    assert "windowsize" in w2.negotiated.ignored[0]


def test_write_transfer_times_out() -> None:
    w = WriteTransfer(wrq(), Limits(timeout=1.0, retries=1), 0.0)
    w.datagrams_to_send()
    w.handle_timer(1.0)
    assert decode(w.datagrams_to_send()[0]) == Ack(block=0)
    w.handle_timer(3.0)
    assert w.state is WriteState.FAILED
    (ev,) = drain(w)
    assert "timed out" in ev.reason  # type: ignore[union-attr]


def test_write_transfer_refuses_oversized_data() -> None:
    w = WriteTransfer(wrq(), Limits(), 0.0, max_bytes=600)
    with pytest.raises(ValueError, match="exceeds blksize"):
        w.receive(encode(Data(block=1, payload=b"x" * 513)), 0.0)
    w.receive(encode(Data(block=1, payload=b"x" * 512)), 0.0)
    w.receive(encode(Data(block=2, payload=b"x" * 512)), 0.0)
    assert w.state is WriteState.FAILED
    assert decode(w.datagrams_to_send()[-1]).code == ErrorCode.DISK_FULL  # type: ignore
