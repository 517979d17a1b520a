"""XDR (RFC 4506): the encoding under ONC RPC, MOUNT and NFS.

Sans-I/O, aioquic-style ``pull_x`` / ``push_x`` pairs: a :class:`Reader` walks a
received buffer and raises ``ValueError`` the moment the bytes cannot be what
the caller expects (short buffer, length past the end, a string longer than
its protocol allows); a :class:`Writer` appends to a ``bytearray``.

Every item is a multiple of four bytes (RFC 4506 section 3); opaque data and
strings are padded with zeros to the next boundary.
"""

from __future__ import annotations

import struct

_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")

U32_MAX = 0xFFFFFFFF
U64_MAX = 0xFFFFFFFFFFFFFFFF


def pad_len(n: int) -> int:
    """Zero bytes that follow ``n`` bytes of opaque data (RFC 4506 section 4.10)."""
    return (4 - n % 4) % 4


class Reader:
    """Pulls XDR items from ``data`` starting at ``pos``; ValueError on anything malformed."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes | bytearray | memoryview, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def eof(self) -> bool:
        return self.pos >= len(self.data)

    def _need(self, n: int) -> int:
        p = self.pos
        if n < 0 or p + n > len(self.data):
            raise ValueError(f"XDR: need {n} bytes at offset {p}, only {len(self.data) - p} left")
        self.pos = p + n
        return p

    def pull_u32(self) -> int:
        return _U32.unpack_from(self.data, self._need(4))[0]

    def pull_i32(self) -> int:
        return _I32.unpack_from(self.data, self._need(4))[0]

    def pull_u64(self) -> int:
        return _U64.unpack_from(self.data, self._need(8))[0]

    def pull_i64(self) -> int:
        return _I64.unpack_from(self.data, self._need(8))[0]

    def pull_bool(self) -> bool:
        v = self.pull_u32()
        if v > 1:
            raise ValueError(f"XDR: bool must be 0 or 1, got {v}")
        return v == 1

    def pull_enum(self, allowed: frozenset[int] | None = None) -> int:
        v = self.pull_i32()
        if allowed is not None and v not in allowed:
            raise ValueError(f"XDR: enum value {v} not allowed")
        return v

    def pull_fixed(self, n: int) -> bytes:
        """Fixed-length opaque (RFC 4506 section 4.9)."""
        p = self._need(n + pad_len(n))
        return bytes(self.data[p : p + n])

    def pull_opaque(self, max_len: int = U32_MAX) -> bytes:
        """Variable-length opaque (RFC 4506 section 4.10), refusing more than ``max_len``."""
        n = self.pull_u32()
        if n > max_len:
            raise ValueError(f"XDR: opaque of {n} bytes exceeds the limit of {max_len}")
        return self.pull_fixed(n)

    def pull_opaque_view(self, max_len: int = U32_MAX) -> memoryview:
        """Like :meth:`pull_opaque` without a copy (for WRITE data)."""
        n = self.pull_u32()
        if n > max_len:
            raise ValueError(f"XDR: opaque of {n} bytes exceeds the limit of {max_len}")
        p = self._need(n + pad_len(n))
        return memoryview(self.data)[p : p + n]

    def pull_string(self, max_len: int = U32_MAX) -> str:
        """A string; bytes that are not UTF-8 survive as surrogate escapes (file names)."""
        return self.pull_opaque(max_len).decode("utf-8", "surrogateescape")

    def pull_optional(self) -> bool:
        """The discriminant of an XDR optional-data (``*``) item."""
        return self.pull_bool()


class Writer:
    """Appends XDR items to a bytearray; ``bytes(w)`` or ``w.data`` is the result."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data = bytearray()

    def __bytes__(self) -> bytes:
        return bytes(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def push_u32(self, v: int) -> "Writer":
        self.data += _U32.pack(v & U32_MAX)
        return self

    def push_i32(self, v: int) -> "Writer":
        self.data += _I32.pack(v)
        return self

    def push_u64(self, v: int) -> "Writer":
        self.data += _U64.pack(v & U64_MAX)
        return self

    def push_i64(self, v: int) -> "Writer":
        self.data += _I64.pack(v)
        return self

    def push_bool(self, v: bool) -> "Writer":
        return self.push_u32(1 if v else 0)

    def push_enum(self, v: int) -> "Writer":
        return self.push_i32(v)

    def push_fixed(self, b: bytes | bytearray | memoryview) -> "Writer":
        self.data += b
        self.data += b"\0" * pad_len(len(b))
        return self

    def push_opaque(self, b: bytes | bytearray | memoryview) -> "Writer":
        self.push_u32(len(b))
        return self.push_fixed(b)

    def push_string(self, s: str) -> "Writer":
        return self.push_opaque(s.encode("utf-8", "surrogateescape"))

    def push_raw(self, b: bytes | bytearray | memoryview) -> "Writer":
        """Bytes already in XDR form (a nested encoding)."""
        self.data += b
        return self
