"""DHCP codec: real client packets (tests/data/dhcp, from QEMU firmware captures),
overloaded fields, RFC 3396 long options, iPXE's two user-class forms, and
malformed input that must raise ValueError and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pxewizard.proto.dhcp import (MsgType, Packet, decode, decode_suboptions, encode_option,
                                  encode_suboptions, parse_user_class)

DATA = Path(__file__).resolve().parents[1] / "data" / "dhcp"
MAC = "52:54:00:99:00:10"


def vector(name: str) -> bytes:
    return bytes.fromhex((DATA / f"{name}.hex").read_text().strip())


ALL = sorted(p.stem for p in DATA.glob("*.hex"))


@pytest.mark.parametrize("name", ALL)
def test_every_captured_packet_decodes_and_roundtrips(name: str) -> None:
    raw = vector(name)
    p = decode(raw)
    assert p.op == 1 and p.mac == MAC
    assert p.msg_name == name.rsplit("-", 1)[1].upper()
    again = decode(p.encode())
    assert again.options == p.options and again.xid == p.xid and again.flags == p.flags


def test_seabios_ipxe_rom_discover() -> None:
    p = decode(vector("pxe-bios-ipxerom-f1-discover"))
    assert p.msg_type == MsgType.DISCOVER
    assert p.arch == 0
    assert p.vendor_class == "PXEClient:Arch:00000:UNDI:002001"
    assert p.options[77] == b"iPXE"  # raw, no RFC 3004 length prefix
    assert p.user_classes == [b"iPXE"] and p.is_ipxe
    assert 175 in p.options
    assert p.max_size == 1472
    assert p.options[97] == b"\x00" + bytes(16)
    assert not p.broadcast


def test_ovmf_native_pxe_discover() -> None:
    p = decode(vector("pxe-uefi-ovmfnative-syslinux-f1-discover"))
    assert p.arch == 7 and not p.is_ipxe and p.broadcast
    assert set(p.options) >= {53, 57, 55, 97, 94, 93, 60}
    assert 61 not in p.options and 77 not in p.options


def test_syslinux_efi_second_dhcp_has_no_arch() -> None:
    p = decode(vector("pxe-uefi-ovmfnative-syslinux-f6-discover"))
    assert p.arch is None and p.vendor_class == ""


def test_ovmf_request_selecting() -> None:
    p = decode(vector("pxe-uefi-ovmfnative-syslinux-f2-request"))
    assert p.msg_type == MsgType.REQUEST
    assert p.server_id == 0x0A630001 and p.requested_ip == 0x0A630073


def _with_options(opts: bytes, sname: bytes = b"", file: bytes = b"") -> bytes:
    head = bytearray(236)
    head[0], head[1], head[2] = 1, 1, 6
    head[28:34] = bytes.fromhex("525400990010")
    head[44:44 + len(sname)] = sname
    head[108:108 + len(file)] = file
    return bytes(head) + b"\x63\x82\x53\x63" + opts


def test_overloaded_file_and_sname() -> None:
    raw = _with_options(b"\x35\x01\x01\x34\x01\x03\x0c\x02ab\xff",
                        sname=b"\x0c\x02cd\x3c\x03PXE\xff", file=b"\x5d\x02\x00\x07\xff")
    p = decode(raw)
    assert p.arch == 7
    assert p.hostname == "abcd"  # RFC 3396: options field, then file, then sname
    assert p.vendor_class == "PXE"
    assert p.file == b"" and p.sname == b""


def test_overload_loop_is_refused() -> None:
    raw = _with_options(b"\x35\x01\x01\x34\x01\x01\xff", file=b"\x34\x01\x03\xff")
    with pytest.raises(ValueError, match="option loop"):
        decode(raw)


def test_long_option_is_split_and_joined() -> None:
    long = bytes(range(256)) * 2
    assert encode_option(43, long)[:2] == b"\x2b\xff"
    p = Packet(options={53: b"\x01", 43: long})
    assert decode(p.encode()).options[43] == long


def test_options_past_576_bytes_overflow_into_empty_file_and_sname() -> None:
    # A client without option 57 accepts 576-byte datagrams: 312 bytes of options.
    opts = {53: b"\x05", 54: bytes(4), 1: bytes(4), 3: bytes(4), 6: bytes(8),
            15: b"x" * 200, 17: b"r" * 90, 12: b"h" * 60, 66: b"s" * 40}
    raw = Packet(op=2, options=opts).encode(max_size=576)
    assert len(raw) <= 576 - 28
    p = decode(raw)
    assert p.options[52] == b"\x03"  # file and sname both carry options
    assert {c: p.options[c] for c in opts} == opts
    assert p.file == b"" and p.sname == b""


def test_overflow_never_overwrites_a_boot_file_and_drops_what_still_does_not_fit() -> None:
    opts = {53: b"\x05", 15: b"x" * 250, 17: b"r" * 100, 12: b"h" * 60}
    raw = Packet(op=2, file=b"pxelinux.0", options=opts).encode(max_size=576)
    p = decode(raw)
    assert p.file == b"pxelinux.0"
    assert p.options[52] == b"\x02"  # only sname was free
    assert p.options[15] == opts[15] and p.options[12] == opts[12]
    assert 17 not in p.options  # fits nowhere: left out, the packet stays valid
    assert len(raw) <= 576 - 28


@pytest.mark.parametrize("raw,why", [
    (b"", "truncated"),
    (bytes(235), "truncated"),
    (_with_options(b"")[:-4] + b"abcd", "magic cookie"),
    (_with_options(b"\x35\x01\x01\x3c\x10abc"), "claims 16 bytes"),
    (_with_options(b"\x35\x01\x01\x3c"), "no length"),
    (_with_options(b"\x35\x02\x01\x01\xff"), "message type"),
    (_with_options(b"\x34\x01\x09\xff"), "overload"),
    (b"\x07" + bytes(300), "op 7"),
])
def test_malformed(raw: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        decode(raw)


def test_bad_option_values_raise_valueerror_on_access() -> None:
    p = decode(_with_options(b"\x35\x01\x03\x32\x03abc\x5d\x03abc\x06\x05abcde\xff"))
    for access in (lambda: p.requested_ip, lambda: p.arch, lambda: p.ip_list(6)):
        with pytest.raises(ValueError):
            access()


def test_user_class_both_forms() -> None:
    assert parse_user_class(b"iPXE") == [b"iPXE"]
    assert parse_user_class(b"\x04iPXE\x03abc") == [b"iPXE", b"abc"]
    assert parse_user_class(b"\x09iPXE") == [b"\x09iPXE"]  # not a list: taken whole
    assert parse_user_class(b"") == []


def test_pxe_suboptions() -> None:
    enc = encode_suboptions({6: b"\x08", 71: b"\x80\x00\x00\x00"})
    assert enc == b"\x06\x01\x08\x47\x04\x80\x00\x00\x00\xff"
    assert decode_suboptions(enc, "43") == {6: b"\x08", 71: b"\x80\x00\x00\x00"}
    with pytest.raises(ValueError):
        decode_suboptions(b"\x06\x05\x08", "43")


def test_relay_agent_info() -> None:
    p = decode(_with_options(b"\x35\x01\x01\x52\x08\x01\x02ab\x02\x02cd\xff"))
    assert p.relay_agent == {1: b"ab", 2: b"cd"}


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=700))
def test_random_bytes_only_valueerror(data: bytes) -> None:
    try:
        p = decode(data)
    except ValueError:
        return
    p.encode()


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(ALL), st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)),
                                      max_size=8))
def test_mutated_real_packets_only_valueerror(name: str, muts: list[tuple[int, int]]) -> None:
    b = bytearray(vector(name))
    for i, v in muts:
        if i < len(b):
            b[i] = v
    try:
        decode(bytes(b))
    except ValueError:
        pass
