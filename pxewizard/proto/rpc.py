"""ONC RPC version 2 (RFC 5531): call and reply records, credentials, TCP record marking.

Sans-I/O. :func:`parse_call` turns one record (a UDP datagram, or a
reassembled TCP record) into a :class:`Call`; the reply builders return the
bytes to send. :class:`RecordReader` reassembles TCP record-marked fragments
(RFC 5531 section 11) and refuses records larger than its limit, so a stream
of garbage costs a bounded amount of memory before the adapter closes the
connection.

Errors: a record that is not a parseable call raises ``ValueError`` (the
adapter drops it: there is no trustworthy xid to answer). A call whose RPC
version or credentials are wrong raises :class:`RpcDenied`, which carries the
xid and the MSG_DENIED reply to send (RFC 5531 section 9).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

from .xdr import Reader, Writer

RPC_VERSION = 2


class MsgType(IntEnum):
    CALL = 0
    REPLY = 1


class ReplyStat(IntEnum):
    MSG_ACCEPTED = 0
    MSG_DENIED = 1


class AcceptStat(IntEnum):
    """RFC 5531 section 9, ``accept_stat``."""

    SUCCESS = 0
    PROG_UNAVAIL = 1
    PROG_MISMATCH = 2
    PROC_UNAVAIL = 3
    GARBAGE_ARGS = 4
    SYSTEM_ERR = 5


class RejectStat(IntEnum):
    RPC_MISMATCH = 0
    AUTH_ERROR = 1


class AuthStat(IntEnum):
    AUTH_OK = 0
    AUTH_BADCRED = 1
    AUTH_REJECTEDCRED = 2
    AUTH_BADVERF = 3
    AUTH_REJECTEDVERF = 4
    AUTH_TOOWEAK = 5


class AuthFlavor(IntEnum):
    AUTH_NONE = 0
    AUTH_SYS = 1
    AUTH_SHORT = 2
    AUTH_DH = 3
    RPCSEC_GSS = 6


MAX_AUTH_BYTES = 400
"""RFC 5531 section 8.2: opaque_auth bodies are at most 400 bytes."""
MAX_MACHINE_NAME = 255
"""RFC 5531 appendix A: authsys_parms.machinename<255>."""
MAX_GIDS = 16
"""RFC 5531 appendix A: authsys_parms.gids<16>."""


@dataclass(frozen=True)
class Credentials:
    """Who the caller says it is. AUTH_NONE callers have uid/gid None (squashed to anon)."""

    flavor: int = AuthFlavor.AUTH_NONE
    """AUTH_NONE or AUTH_SYS."""
    uid: int | None = None
    """AUTH_SYS uid."""
    gid: int | None = None
    """AUTH_SYS primary gid."""
    gids: tuple[int, ...] = ()
    """AUTH_SYS supplementary gids."""
    machine: str = ""
    """AUTH_SYS machine name."""
    stamp: int = 0
    """AUTH_SYS stamp."""

    def describe(self) -> str:
        if self.flavor == AuthFlavor.AUTH_SYS:
            return f"AUTH_SYS uid={self.uid} gid={self.gid} host={self.machine or '-'}"
        return "AUTH_NONE"


AUTH_NONE_CRED = Credentials()


@dataclass
class Call:
    """A parsed RPC call: header fields plus a reader positioned at the procedure arguments."""

    xid: int
    prog: int
    vers: int
    proc: int
    cred: Credentials
    args: Reader = field(repr=False)


class RpcDenied(Exception):
    """A call we must answer with MSG_DENIED (bad RPC version, unusable credentials)."""

    def __init__(self, xid: int, reply: bytes, reason: str) -> None:
        super().__init__(reason)
        self.xid = xid
        self.reply = reply
        self.reason = reason


def _parse_auth_sys(body: bytes) -> Credentials:
    """authsys_parms (RFC 5531 appendix A)."""
    r = Reader(body)
    stamp = r.pull_u32()
    machine = r.pull_string(MAX_MACHINE_NAME)
    uid = r.pull_u32()
    gid = r.pull_u32()
    n = r.pull_u32()
    if n > MAX_GIDS:
        raise ValueError(f"AUTH_SYS: {n} gids, at most {MAX_GIDS} allowed")
    gids = tuple(r.pull_u32() for _ in range(n))
    if not r.eof():
        raise ValueError("AUTH_SYS: trailing bytes in the credential")
    return Credentials(flavor=AuthFlavor.AUTH_SYS, uid=uid, gid=gid, gids=gids,
                       machine=machine, stamp=stamp)


def parse_call(record: bytes | bytearray | memoryview) -> Call:
    """Parse one call record (RFC 5531 section 9).

    ValueError: not a call, or its header is cut short (drop it).
    RpcDenied: a call with the wrong RPC version or credentials we cannot use (answer it).
    """
    r = Reader(record)
    xid = r.pull_u32()
    mtype = r.pull_u32()
    if mtype != MsgType.CALL:
        raise ValueError(f"RPC: message type {mtype} is not a call")
    rpcvers = r.pull_u32()
    prog = r.pull_u32()
    vers = r.pull_u32()
    proc = r.pull_u32()
    flavor = r.pull_u32()
    body = r.pull_opaque(MAX_AUTH_BYTES)
    r.pull_u32()  # verifier flavor: AUTH_NONE expected, anything is tolerated
    r.pull_opaque(MAX_AUTH_BYTES)
    if rpcvers != RPC_VERSION:
        raise RpcDenied(xid, rpc_mismatch_reply(xid), f"RPC version {rpcvers}, not 2")
    if flavor == AuthFlavor.AUTH_NONE:
        cred = AUTH_NONE_CRED
    elif flavor == AuthFlavor.AUTH_SYS:
        try:
            cred = _parse_auth_sys(body)
        except ValueError as exc:
            raise RpcDenied(xid, auth_error_reply(xid, AuthStat.AUTH_BADCRED),
                            f"bad AUTH_SYS credential: {exc}") from None
    else:
        # RFC 5531 section 9: a flavor we do not support is AUTH_REJECTEDCRED / TOOWEAK.
        raise RpcDenied(xid, auth_error_reply(xid, AuthStat.AUTH_TOOWEAK),
                        f"authentication flavor {flavor} not supported (AUTH_SYS or AUTH_NONE)")
    return Call(xid=xid, prog=prog, vers=vers, proc=proc, cred=cred, args=r)


# --- replies ---------------------------------------------------------------------------

_ACCEPTED_HDR = struct.Struct(">IIIIII")  # xid, REPLY, MSG_ACCEPTED, verf flavor, verf len, stat


def accepted_header(xid: int, stat: int = AcceptStat.SUCCESS) -> bytes:
    """Start of an accepted reply with a null verifier; the results follow."""
    return _ACCEPTED_HDR.pack(xid, MsgType.REPLY, ReplyStat.MSG_ACCEPTED,
                              AuthFlavor.AUTH_NONE, 0, stat)


def success_reply(xid: int, results: bytes | bytearray = b"") -> bytes:
    return accepted_header(xid) + bytes(results)


def error_reply(xid: int, stat: AcceptStat) -> bytes:
    """PROG_UNAVAIL, PROC_UNAVAIL, GARBAGE_ARGS or SYSTEM_ERR: no results follow."""
    return accepted_header(xid, stat)


def prog_mismatch_reply(xid: int, low: int, high: int) -> bytes:
    return accepted_header(xid, AcceptStat.PROG_MISMATCH) + struct.pack(">II", low, high)


def rpc_mismatch_reply(xid: int) -> bytes:
    return struct.pack(">IIIIII", xid, MsgType.REPLY, ReplyStat.MSG_DENIED,
                       RejectStat.RPC_MISMATCH, RPC_VERSION, RPC_VERSION)


def auth_error_reply(xid: int, stat: AuthStat) -> bytes:
    return struct.pack(">IIIII", xid, MsgType.REPLY, ReplyStat.MSG_DENIED,
                       RejectStat.AUTH_ERROR, stat)


# --- the client side (portmap registration, tests) ------------------------------------


def encode_auth_sys(uid: int, gid: int, gids: tuple[int, ...] = (), machine: str = "pxewizard",
                    stamp: int = 0) -> bytes:
    w = Writer()
    w.push_u32(stamp).push_string(machine).push_u32(uid).push_u32(gid).push_u32(len(gids))
    for g in gids:
        w.push_u32(g)
    return bytes(w)


def encode_call(xid: int, prog: int, vers: int, proc: int, args: bytes = b"", *,
                cred: tuple[int, bytes] = (AuthFlavor.AUTH_NONE, b""),
                rpcvers: int = RPC_VERSION) -> bytes:
    """A call record body (without TCP record marking)."""
    w = Writer()
    w.push_u32(xid).push_u32(MsgType.CALL).push_u32(rpcvers).push_u32(prog).push_u32(vers)
    w.push_u32(proc).push_u32(cred[0]).push_opaque(cred[1])
    w.push_u32(AuthFlavor.AUTH_NONE).push_opaque(b"")
    w.push_raw(args)
    return bytes(w)


@dataclass
class Reply:
    """A parsed reply (client side)."""

    xid: int
    accepted: bool
    stat: int
    """accept_stat when accepted, else reject_stat."""
    body: Reader = field(repr=False)


def parse_reply(record: bytes) -> Reply:
    r = Reader(record)
    xid = r.pull_u32()
    if r.pull_u32() != MsgType.REPLY:
        raise ValueError("RPC: not a reply")
    rstat = r.pull_u32()
    if rstat == ReplyStat.MSG_ACCEPTED:
        r.pull_u32()
        r.pull_opaque(MAX_AUTH_BYTES)
        return Reply(xid=xid, accepted=True, stat=r.pull_u32(), body=r)
    if rstat == ReplyStat.MSG_DENIED:
        return Reply(xid=xid, accepted=False, stat=r.pull_u32(), body=r)
    raise ValueError(f"RPC: reply_stat {rstat}")


# --- TCP record marking (RFC 5531 section 11) ------------------------------------------

LAST_FRAGMENT = 0x80000000


def frame(record: bytes | bytearray) -> bytes:
    """One record as a single last fragment."""
    return struct.pack(">I", LAST_FRAGMENT | len(record)) + bytes(record)


def frame_header(length: int) -> bytes:
    """The 4-byte marker of a one-fragment record of ``length`` bytes (for writev-style sends)."""
    return struct.pack(">I", LAST_FRAGMENT | length)


class RecordTooLarge(ValueError):
    """A fragment header announces more than the limit (garbage, or an abusive client)."""


class RecordReader:
    """Reassembles record-marked fragments from a TCP byte stream.

    ``feed(data)`` returns the complete records found so far. A record (the sum
    of its fragments) longer than ``max_record``, or cut into more than
    ``max_fragments`` pieces (a stream of 1-byte fragments must not cost a
    Python object each), raises :class:`RecordTooLarge` before its bytes are
    buffered; the connection must then be closed, since the stream position can
    no longer be trusted.
    """

    def __init__(self, max_record: int = 2 * 1024 * 1024, max_fragments: int = 1024) -> None:
        self.max_record = max_record
        self.max_fragments = max_fragments
        self._buf = bytearray()
        self._record = bytearray()
        self._nfrag = 0

    def buffered(self) -> int:
        return len(self._buf) + len(self._record)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= 4:
            (hdr,) = struct.unpack_from(">I", buf, pos)
            n = hdr & 0x7FFFFFFF
            if len(self._record) + n > self.max_record:
                raise RecordTooLarge(f"RPC record of {len(self._record) + n}+ bytes exceeds the "
                                     f"limit of {self.max_record}")
            if self._nfrag >= self.max_fragments:
                raise RecordTooLarge(f"RPC record in more than {self.max_fragments} fragments")
            if len(buf) - pos - 4 < n:
                break
            if hdr & LAST_FRAGMENT and not self._record:
                out.append(bytes(buf[pos + 4 : pos + 4 + n]))  # the usual case: one fragment
            else:
                self._record += buf[pos + 4 : pos + 4 + n]
                self._nfrag += 1
                if hdr & LAST_FRAGMENT:
                    out.append(bytes(self._record))
                    self._record = bytearray()
                    self._nfrag = 0
            pos += 4 + n
        if pos:
            del buf[:pos]
        return out
