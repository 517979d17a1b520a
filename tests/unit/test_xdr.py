"""XDR codec (RFC 4506): round trips and refusal of malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pxewizard.proto.xdr import Reader, Writer, pad_len


@given(st.lists(st.tuples(st.sampled_from(["u32", "i32", "u64", "i64", "bool", "opaque",
                                           "string", "fixed"]), st.data()), max_size=20))
def test_round_trip_sequences(items):
    w = Writer()
    expected = []
    for kind, data in items:
        if kind == "u32":
            v = data.draw(st.integers(0, 2**32 - 1))
            w.push_u32(v)
        elif kind == "i32":
            v = data.draw(st.integers(-(2**31), 2**31 - 1))
            w.push_i32(v)
        elif kind == "u64":
            v = data.draw(st.integers(0, 2**64 - 1))
            w.push_u64(v)
        elif kind == "i64":
            v = data.draw(st.integers(-(2**63), 2**63 - 1))
            w.push_i64(v)
        elif kind == "bool":
            v = data.draw(st.booleans())
            w.push_bool(v)
        elif kind == "opaque":
            v = data.draw(st.binary(max_size=70))
            w.push_opaque(v)
        elif kind == "fixed":
            v = data.draw(st.binary(min_size=8, max_size=8))
            w.push_fixed(v)
        else:
            v = data.draw(st.text(max_size=40))
            w.push_string(v)
        expected.append((kind, v))
    buf = bytes(w)
    assert len(buf) % 4 == 0
    r = Reader(buf)
    for kind, v in expected:
        got = {"u32": r.pull_u32, "i32": r.pull_i32, "u64": r.pull_u64, "i64": r.pull_i64,
               "bool": r.pull_bool, "opaque": r.pull_opaque, "string": r.pull_string,
               "fixed": lambda: r.pull_fixed(8)}[kind]()
        assert got == v
    assert r.eof()


@given(st.binary(max_size=64))
def test_opaque_is_padded_with_zeros(b):
    out = bytes(Writer().push_opaque(b))
    assert len(out) == 4 + len(b) + pad_len(len(b))
    assert out[4 + len(b):] == b"\0" * pad_len(len(b))


@given(st.binary(max_size=200))
def test_reader_never_fails_other_than_valueerror(data):
    r = Reader(data)
    try:
        while True:
            r.pull_opaque(100)
    except ValueError:
        pass


def test_truncated_and_oversize_are_refused():
    with pytest.raises(ValueError):
        Reader(b"\0\0\0").pull_u32()
    with pytest.raises(ValueError):  # length beyond the buffer
        Reader(b"\0\0\0\x10abcd").pull_opaque()
    with pytest.raises(ValueError):  # over the protocol's limit
        Reader(bytes(Writer().push_opaque(b"x" * 65))).pull_opaque(64)
    with pytest.raises(ValueError):
        Reader(b"\0\0\0\x02").pull_bool()


def test_non_utf8_names_survive():
    name = b"caf\xe9".decode("utf-8", "surrogateescape")
    buf = bytes(Writer().push_string(name))
    assert buf[4:8] == b"caf\xe9"
    assert Reader(buf).pull_string() == name
