"""NBD server protocol, sans-I/O: handshake and transmission as a state machine.

Bytes from the client go in with :meth:`NbdConnection.receive_data`; what to
do comes out of :meth:`NbdConnection.next_event`, one output at a time, in
order:

* :class:`Send` -- bytes to write to the client (greeting, option replies,
  reply headers of refused or empty requests);
* :class:`Read` -- a read the adapter serves: write ``Read.header`` followed
  by ``length`` bytes of the export from ``offset`` (pread or sendfile; the
  bytes never pass through this module). The header is a simple reply, or
  one structured ``OFFSET_DATA`` chunk once the client negotiated
  ``NBD_OPT_STRUCTURED_REPLY``;
* :class:`ExportSelected`, :class:`Refused`, :class:`Closed` -- facts for the
  adapter's events; after :class:`Closed` the connection is done.

Malformed input (bad magic, impossible lengths, unknown export on
``NBD_OPT_EXPORT_NAME``) raises :class:`NbdProtocolError` from
``next_event``; outputs returned before it stay valid. The adapter catches it
in one place and closes the connection.

The rules come from the NBD protocol document (``doc/proto.md`` in the NBD
project), cited below by section name. Exports are read-only: writes, trims
and write-zeroes get ``EPERM``; the fixed newstyle handshake is served on the
main port, the oldstyle one (old SystemRescueCd's ``netboot=nbd://ip:port``)
on its own port.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto
from typing import ClassVar

# --- constants (proto.md, "Values") ---------------------------------------------------

NBDMAGIC = b"NBDMAGIC"
IHAVEOPT = 0x49484156454F5054
OLDSTYLE_MAGIC = 0x00420281861253
OPT_REPLY_MAGIC = 0x0003E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF

# structured reply chunks (proto.md "Structured reply chunk message")
REPLY_FLAG_DONE = 1 << 0
REPLY_TYPE_NONE = 0
REPLY_TYPE_OFFSET_DATA = 1
REPLY_TYPE_ERROR = (1 << 15) + 1

# handshake flags (server) and client flags
FLAG_FIXED_NEWSTYLE = 1 << 0
FLAG_NO_ZEROES = 1 << 1
FLAG_C_FIXED_NEWSTYLE = 1 << 0
FLAG_C_NO_ZEROES = 1 << 1

# transmission flags
FLAG_HAS_FLAGS = 1 << 0
FLAG_READ_ONLY = 1 << 1
FLAG_SEND_FLUSH = 1 << 2
FLAG_SEND_FUA = 1 << 3
FLAG_ROTATIONAL = 1 << 4
FLAG_SEND_TRIM = 1 << 5
FLAG_SEND_WRITE_ZEROES = 1 << 6
FLAG_SEND_DF = 1 << 7
FLAG_CAN_MULTI_CONN = 1 << 8

TRANSMISSION_FLAGS = FLAG_HAS_FLAGS | FLAG_READ_ONLY | FLAG_SEND_FLUSH | FLAG_CAN_MULTI_CONN
"""Read-only; FLUSH is accepted (a no-op); several connections see the same data
("multi-conn" is safe without writes), which lets nbdcopy read in parallel."""

# options
OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_LIST = 3
OPT_PEEK_EXPORT = 4
OPT_STARTTLS = 5
OPT_INFO = 6
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8
OPT_LIST_META_CONTEXT = 9
OPT_SET_META_CONTEXT = 10
OPT_EXTENDED_HEADERS = 11

OPT_NAMES = {OPT_EXPORT_NAME: "EXPORT_NAME", OPT_ABORT: "ABORT", OPT_LIST: "LIST",
             OPT_PEEK_EXPORT: "PEEK_EXPORT", OPT_STARTTLS: "STARTTLS", OPT_INFO: "INFO",
             OPT_GO: "GO", OPT_STRUCTURED_REPLY: "STRUCTURED_REPLY",
             OPT_LIST_META_CONTEXT: "LIST_META_CONTEXT",
             OPT_SET_META_CONTEXT: "SET_META_CONTEXT", OPT_EXTENDED_HEADERS: "EXTENDED_HEADERS"}

# option reply types
REP_ACK = 1
REP_SERVER = 2
REP_INFO = 3
_ERR = 1 << 31
REP_ERR_UNSUP = _ERR + 1
REP_ERR_POLICY = _ERR + 2
REP_ERR_INVALID = _ERR + 3
REP_ERR_PLATFORM = _ERR + 4
REP_ERR_TLS_REQD = _ERR + 5
REP_ERR_UNKNOWN = _ERR + 6
REP_ERR_SHUTDOWN = _ERR + 7
REP_ERR_BLOCK_SIZE_REQD = _ERR + 8
REP_ERR_TOO_BIG = _ERR + 9

# info types (NBD_OPT_INFO / NBD_OPT_GO)
INFO_EXPORT = 0
INFO_NAME = 1
INFO_DESCRIPTION = 2
INFO_BLOCK_SIZE = 3

# commands
CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4
CMD_CACHE = 5
CMD_WRITE_ZEROES = 6
CMD_BLOCK_STATUS = 7
CMD_RESIZE = 8
CMD_NAMES = {CMD_READ: "READ", CMD_WRITE: "WRITE", CMD_DISC: "DISC", CMD_FLUSH: "FLUSH",
             CMD_TRIM: "TRIM", CMD_CACHE: "CACHE", CMD_WRITE_ZEROES: "WRITE_ZEROES",
             CMD_BLOCK_STATUS: "BLOCK_STATUS", CMD_RESIZE: "RESIZE"}

# errors (proto.md, "Error values": Linux errno numbers)
EPERM = 1
EIO = 5
ENOMEM = 12
EINVAL = 22
ENOSPC = 28
EOVERFLOW = 75
ENOTSUP = 95

MAX_REQUEST = 32 * 1024 * 1024
"""Largest read served, and largest write payload swallowed before refusing it
(proto.md "Block size constraints": 32 MiB is the conventional maximum)."""
MAX_OPTION = 16 * 1024
"""Longest option payload accepted; names are at most 4096 bytes (proto.md)."""
PREFERRED_BLOCK = 4096

_OPT_HDR = struct.Struct(">QII")
_OPT_REPLY = struct.Struct(">QIII")
_REQUEST = struct.Struct(">IHHQQI")
_REPLY = struct.Struct(">IIQ")
_CHUNK = struct.Struct(">IHHQI")


class NbdProtocolError(ValueError):
    """The client broke the protocol; the connection must be closed."""


# --- outputs ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Bytes to write to the client."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Read:
    """Serve a read: send ``header``, then ``length`` export bytes from ``offset``."""

    handle: int
    offset: int
    length: int
    header: bytes


@dataclass(frozen=True, slots=True)
class ExportSelected:
    """The client entered transmission on an export (handshake over)."""

    name: str
    size: int
    style: str
    """``newstyle`` or ``oldstyle``."""
    option: str
    """How it was chosen: ``GO``, ``EXPORT_NAME`` or ``oldstyle``."""


@dataclass(frozen=True, slots=True)
class Refused:
    """A request or option the server answered with an error (for the log)."""

    what: str
    """``WRITE``, ``TRIM``, ``OPT 42``, ``INFO``..."""
    error: int
    """errno (transmission) or NBD_REP_ERR_* (handshake)."""
    reason: str


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection is over (after the preceding outputs are written)."""

    reason: str


Output = Send | Read | ExportSelected | Refused | Closed


def reply_header(handle: int, error: int = 0) -> bytes:
    """A simple reply (proto.md "Simple reply message")."""
    return _REPLY.pack(SIMPLE_REPLY_MAGIC, error, handle)


def chunk(handle: int, rtype: int, payload: bytes = b"", *, length: int | None = None,
          done: bool = True) -> bytes:
    """A structured reply chunk header plus ``payload``; ``length`` counts data sent after it."""
    n = len(payload) if length is None else length
    return _CHUNK.pack(STRUCTURED_REPLY_MAGIC, REPLY_FLAG_DONE if done else 0, rtype, handle,
                       n) + payload


def error_chunk(handle: int, error: int, message: str = "") -> bytes:
    """NBD_REPLY_TYPE_ERROR: errno plus a message for the client's log."""
    msg = message.encode()[:4096]
    return chunk(handle, REPLY_TYPE_ERROR, struct.pack(">IH", error, len(msg)) + msg)


def option_reply(option: int, reply: int, data: bytes = b"") -> bytes:
    """An option reply (proto.md "Option reply")."""
    return _OPT_REPLY.pack(OPT_REPLY_MAGIC, option, reply, len(data)) + data


# --- the state machine ------------------------------------------------------------------


class State(Enum):
    AWAIT_CLIENT_FLAGS = auto()
    OPTIONS = auto()
    TRANSMISSION = auto()
    CLOSED = auto()


class Trigger(Enum):
    CLIENT_FLAGS = auto()
    EXPORT_CHOSEN = auto()
    ABORT = auto()
    DISCONNECT = auto()
    PROTOCOL_ERROR = auto()


# Rules: every legal (state, trigger) pair; anything else is a local bug.
TRANSITIONS: dict[tuple[State, Trigger], State] = {
    (State.AWAIT_CLIENT_FLAGS, Trigger.CLIENT_FLAGS): State.OPTIONS,
    (State.AWAIT_CLIENT_FLAGS, Trigger.PROTOCOL_ERROR): State.CLOSED,
    (State.OPTIONS, Trigger.EXPORT_CHOSEN): State.TRANSMISSION,
    (State.OPTIONS, Trigger.ABORT): State.CLOSED,
    (State.OPTIONS, Trigger.PROTOCOL_ERROR): State.CLOSED,
    (State.TRANSMISSION, Trigger.DISCONNECT): State.CLOSED,
    (State.TRANSMISSION, Trigger.PROTOCOL_ERROR): State.CLOSED,
}


class NbdConnection:
    """One client connection to a read-only NBD server.

    ``exports`` maps export names to sizes in bytes. An empty export name
    selects ``default`` (the first export unless given): ``qemu-img
    nbd://host`` and nbd-client without ``-N`` ask for "". The oldstyle
    handshake has no names and always serves ``default``.
    """

    def __init__(self, exports: dict[str, int], *, oldstyle: bool = False,
                 default: str | None = None, descriptions: dict[str, str] | None = None) -> None:
        if not exports:
            raise ValueError("an NBD server needs at least one export")
        self.exports = dict(exports)
        self.default = default if default is not None else next(iter(self.exports))
        if self.default not in self.exports:
            raise ValueError(f"default export {self.default!r} is not among the exports")
        self.descriptions = descriptions or {}
        self.oldstyle = oldstyle
        self.state = State.TRANSMISSION if oldstyle else State.AWAIT_CLIENT_FLAGS
        self.export: str | None = self.default if oldstyle else None
        self.size = self.exports[self.default] if oldstyle else 0
        self.no_zeroes = False
        self.structured = False
        """True once NBD_OPT_STRUCTURED_REPLY was acknowledged: replies are chunks."""
        self._buf = bytearray()
        self._skip = 0
        """Bytes of a refused WRITE's payload still to come: dropped as they arrive, never
        buffered (8 clients x 32 MiB writes would otherwise sit in memory)."""
        self._pending: deque[Output] = deque()

    # --- rules -------------------------------------------------------------------

    def _fire(self, trigger: Trigger) -> None:
        new = TRANSITIONS.get((self.state, trigger))
        if new is None:
            raise RuntimeError(f"NBD: {trigger.name} is impossible in state {self.state.name}")
        self.state = new

    def _error(self, reason: str) -> NbdProtocolError:
        if self.state is not State.CLOSED:
            self._fire(Trigger.PROTOCOL_ERROR)
        self._buf.clear()
        return NbdProtocolError(reason)

    # --- I/O-free interface ------------------------------------------------------

    def initiate(self) -> list[Output]:
        """What the server says first (proto.md "Oldstyle negotiation" / "Newstyle negotiation")."""
        if self.oldstyle:
            greeting = (NBDMAGIC + struct.pack(">QQI", OLDSTYLE_MAGIC, self.size,
                                               TRANSMISSION_FLAGS) + bytes(124))
            return [Send(greeting), ExportSelected(self.default, self.size, "oldstyle",
                                                   "oldstyle")]
        return [Send(NBDMAGIC + struct.pack(">QH", IHAVEOPT,
                                            FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES))]

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the client; ``b""`` means the client closed its side."""
        if self.state is State.CLOSED:
            return
        if not data:
            self._pending.append(Closed("client closed the connection"))
            self._buf.clear()
            self.state = State.CLOSED
            return
        if self._skip:
            n = min(self._skip, len(data))
            self._skip -= n
            data = data[n:]
        self._buf += data

    def next_event(self) -> Output | None:
        """The next output, or None when more bytes are needed. Raises NbdProtocolError."""
        while not self._pending:
            if self.state is State.CLOSED or not self._step():
                break
        return self._pending.popleft() if self._pending else None

    def outputs(self) -> list[Output]:
        """Every output available now (convenience for tests)."""
        out = []
        while (ev := self.next_event()) is not None:
            out.append(ev)
        return out

    # --- parsing -------------------------------------------------------------------

    def _step(self) -> bool:
        """Consume one unit (client flags, an option or a request); False if incomplete."""
        if self.state is State.TRANSMISSION:
            return self._request()
        if self.state is State.OPTIONS:
            return self._option()
        return self._client_flags()

    def _client_flags(self) -> bool:
        if len(self._buf) < 4:
            return False
        (flags,) = struct.unpack_from(">I", self._buf)
        del self._buf[:4]
        if flags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES):
            # proto.md "Newstyle negotiation": unknown client flags -> MUST close
            raise self._error(f"client flags {flags:#x} have bits this server does not know")
        self.no_zeroes = bool(flags & FLAG_C_NO_ZEROES)
        self._fire(Trigger.CLIENT_FLAGS)
        return True

    def _option(self) -> bool:
        if len(self._buf) < _OPT_HDR.size:
            return False
        magic, opt, length = _OPT_HDR.unpack_from(self._buf)
        if magic != IHAVEOPT:
            raise self._error(f"option magic {magic:#x} is not IHAVEOPT")
        if length > MAX_OPTION:
            raise self._error(f"option {opt} carries {length} bytes (at most {MAX_OPTION})")
        if len(self._buf) < _OPT_HDR.size + length:
            return False
        data = bytes(self._buf[_OPT_HDR.size:_OPT_HDR.size + length])
        del self._buf[:_OPT_HDR.size + length]
        handler = self._OPTIONS.get(opt)
        if handler is None:
            name = OPT_NAMES.get(opt, str(opt))
            self._refuse_opt(opt, REP_ERR_UNSUP, f"option {name} is not supported")
        else:
            handler(self, opt, data)
        return True

    def _refuse_opt(self, opt: int, err: int, reason: str) -> None:
        self._pending.append(Send(option_reply(opt, err, reason.encode())))
        self._pending.append(Refused(f"OPT_{OPT_NAMES.get(opt, opt)}", err, reason))

    def _lookup(self, name: str) -> str | None:
        if name == "":
            return self.default
        return name if name in self.exports else None

    @staticmethod
    def _decode_name(raw: bytes) -> str | None:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return None

    @staticmethod
    def _name_words(raw: bytes) -> str:
        """An export name as the operator reads it: "nosuch", not b'nosuch'."""
        text = raw[:64].decode("utf-8", "backslashreplace")
        return f'"{text}"' + ("..." if len(raw) > 64 else "")

    def _opt_export_name(self, opt: int, data: bytes) -> None:
        # proto.md NBD_OPT_EXPORT_NAME: no error reply exists; an unknown name closes
        name = self._decode_name(data)
        export = self._lookup(name) if name is not None else None
        if export is None:
            raise self._error(f"no export named {self._name_words(data)} (NBD_OPT_EXPORT_NAME "
                              f"cannot be refused politely); exports: {', '.join(self.exports)}")
        self._enter(export, "EXPORT_NAME")
        reply = struct.pack(">QH", self.size, TRANSMISSION_FLAGS)
        if not self.no_zeroes:
            reply += bytes(124)
        self._pending.append(Send(reply))
        self._pending.append(ExportSelected(export, self.size, "newstyle", "EXPORT_NAME"))

    def _opt_abort(self, opt: int, data: bytes) -> None:
        self._pending.append(Send(option_reply(opt, REP_ACK)))
        self._pending.append(Closed("client ended the handshake (NBD_OPT_ABORT: it only "
                                   "listed exports or probed)"))
        self._fire(Trigger.ABORT)

    def _opt_list(self, opt: int, data: bytes) -> None:
        if data:
            self._refuse_opt(opt, REP_ERR_INVALID, "NBD_OPT_LIST carries no data")
            return
        out = bytearray()
        for name in self.exports:
            raw = name.encode()
            out += option_reply(opt, REP_SERVER, struct.pack(">I", len(raw)) + raw
                                + self.descriptions.get(name, "").encode())
        out += option_reply(opt, REP_ACK)
        self._pending.append(Send(bytes(out)))

    def _opt_structured_reply(self, opt: int, data: bytes) -> None:
        # proto.md NBD_OPT_STRUCTURED_REPLY: no data; from now on every reply is chunked
        if data:
            return self._refuse_opt(opt, REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY carries "
                                    "no data")
        self.structured = True
        self._pending.append(Send(option_reply(opt, REP_ACK)))

    def _opt_info_go(self, opt: int, data: bytes) -> None:
        # proto.md NBD_OPT_INFO / NBD_OPT_GO: name length, name, request count, requests
        if len(data) < 6:
            return self._refuse_opt(opt, REP_ERR_INVALID, "option data too short")
        (nlen,) = struct.unpack_from(">I", data)
        if 4 + nlen + 2 > len(data):
            return self._refuse_opt(opt, REP_ERR_INVALID, "export name longer than the option")
        (nreq,) = struct.unpack_from(">H", data, 4 + nlen)
        if len(data) != 4 + nlen + 2 + 2 * nreq:
            return self._refuse_opt(opt, REP_ERR_INVALID, "option length does not match "
                                    "its information requests")
        requests = set(struct.unpack_from(f">{nreq}H", data, 6 + nlen))
        name = self._decode_name(data[4:4 + nlen])
        export = self._lookup(name) if name is not None else None
        if export is None:
            return self._refuse_opt(opt, REP_ERR_UNKNOWN,
                                    f"no export named {self._name_words(data[4:4 + nlen])}; "
                                    "exports: "
                                    f"{', '.join(self.exports)}")
        size = self.exports[export]
        out = bytearray(option_reply(opt, REP_INFO, struct.pack(">HQH", INFO_EXPORT, size,
                                                                TRANSMISSION_FLAGS)))
        if INFO_NAME in requests:
            out += option_reply(opt, REP_INFO, struct.pack(">H", INFO_NAME) + export.encode())
        if INFO_DESCRIPTION in requests and export in self.descriptions:
            out += option_reply(opt, REP_INFO, struct.pack(">H", INFO_DESCRIPTION)
                                + self.descriptions[export].encode())
        if INFO_BLOCK_SIZE in requests:
            out += option_reply(opt, REP_INFO, struct.pack(">HIII", INFO_BLOCK_SIZE, 1,
                                                           PREFERRED_BLOCK, MAX_REQUEST))
        out += option_reply(opt, REP_ACK)
        self._pending.append(Send(bytes(out)))
        if opt == OPT_GO:
            self._enter(export, "GO")
            self._pending.append(ExportSelected(export, size, "newstyle", "GO"))

    _OPTIONS: ClassVar[dict[int, Callable[[NbdConnection, int, bytes], None]]] = {
        OPT_EXPORT_NAME: _opt_export_name, OPT_ABORT: _opt_abort, OPT_LIST: _opt_list,
        OPT_INFO: _opt_info_go, OPT_GO: _opt_info_go, OPT_STRUCTURED_REPLY: _opt_structured_reply,
    }
    """Dispatch table; every other option (STARTTLS, meta contexts, extended headers...)
    answers NBD_REP_ERR_UNSUP, and the client goes on without it."""

    def _enter(self, export: str, how: str) -> None:
        self.export = export
        self.size = self.exports[export]
        self._fire(Trigger.EXPORT_CHOSEN)

    def _request(self) -> bool:
        buf = self._buf
        if len(buf) < _REQUEST.size:
            return False
        magic, _flags, cmd, handle, offset, length = _REQUEST.unpack_from(buf)
        if magic != REQUEST_MAGIC:
            raise self._error(f"request magic {magic:#x} is not NBD_REQUEST_MAGIC")
        if cmd == CMD_READ:
            del buf[:_REQUEST.size]
            if length > MAX_REQUEST:
                self._refuse(handle, "READ", EINVAL, f"read of {length} bytes is larger than "
                             f"{MAX_REQUEST}")
            elif offset + length > self.size:
                self._refuse(handle, "READ", EINVAL, f"read of {length} bytes at {offset} "
                             f"goes past the end of the export ({self.size} bytes)")
            elif length == 0:
                self._pending.append(Send(self._ok(handle)))
            elif self.structured:  # one OFFSET_DATA chunk, DONE (so DF holds trivially)
                self._pending.append(Read(handle, offset, length, chunk(
                    handle, REPLY_TYPE_OFFSET_DATA, struct.pack(">Q", offset),
                    length=8 + length)))
            else:
                self._pending.append(Read(handle, offset, length, reply_header(handle, 0)))
            return True
        if cmd == CMD_WRITE:
            # the payload follows the header: refuse at once and drop the payload as it
            # arrives (what is buffered now, the rest in receive_data), to stay in step
            if length > MAX_REQUEST:
                raise self._error(f"write of {length} bytes is larger than {MAX_REQUEST}")
            del buf[:_REQUEST.size]
            here = min(length, len(buf))
            del buf[:here]
            self._skip = length - here
            self._refuse(handle, "WRITE", EPERM, "the export is read-only")
            return True
        del buf[:_REQUEST.size]
        if cmd == CMD_DISC:
            self._fire(Trigger.DISCONNECT)
            buf.clear()
            self._pending.append(Closed("client disconnected (NBD_CMD_DISC)"))
        elif cmd == CMD_FLUSH:
            self._pending.append(Send(self._ok(handle)))  # nothing is ever dirty
        elif cmd in (CMD_TRIM, CMD_WRITE_ZEROES):
            self._refuse(handle, CMD_NAMES[cmd], EPERM, "the export is read-only")
        else:
            name = CMD_NAMES.get(cmd, f"command {cmd}")
            self._refuse(handle, name, EINVAL, f"{name} was not negotiated")
        return True

    def _ok(self, handle: int) -> bytes:
        return chunk(handle, REPLY_TYPE_NONE) if self.structured else reply_header(handle, 0)

    def _refuse(self, handle: int, what: str, err: int, reason: str) -> None:
        self._pending.append(Send(error_chunk(handle, err, reason) if self.structured
                                  else reply_header(handle, err)))
        self._pending.append(Refused(what, err, reason))


__all__ = [
    "TRANSITIONS",
    "Closed",
    "ExportSelected",
    "NbdConnection",
    "NbdProtocolError",
    "Output",
    "Read",
    "Refused",
    "Send",
    "State",
    "Trigger",
    "chunk",
    "error_chunk",
    "option_reply",
    "reply_header",
]
