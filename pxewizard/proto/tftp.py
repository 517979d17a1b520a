"""TFTP, sans-I/O: the packet codec, option negotiation and the transfer state machines.

Nothing here opens a socket, reads a clock or touches a file: packets and
``now`` go in; datagrams to send, the next timer deadline and events come out
(the shape of aioquic's connection). The adapter in
:mod:`pxewizard.servers.tftp` owns sockets, files and time.

Rules come from RFC 1350 (the protocol), RFC 2347 (option extension),
RFC 2348 (blksize), RFC 2349 (timeout, tsize) and RFC 7440 (windowsize).

Hot path: a :class:`ReadTransfer` is driven packet by packet by the adapter's
readiness loop, so its per-ACK path (:meth:`ReadTransfer.on_ack` and
:meth:`ReadTransfer.build`) allocates nothing but what slicing a memoryview
costs. The generic API (:meth:`ReadTransfer.receive`,
:meth:`ReadTransfer.datagrams_to_send`) is built on the same two methods.
"""

from __future__ import annotations

import struct
from typing import Any, TypeAlias

Buffer: TypeAlias = "bytes | bytearray | memoryview"
BlockSource: TypeAlias = "bytes | bytearray | memoryview | Any"
"""What a read transfer serves: bytes-like, or a sized object with
``framed(index, count, blksize) -> (view, blocks)`` (the adapter's file reader, which lays
blocks out with room for their headers: see :meth:`ReadTransfer.frames`) and
``ahead(index, count, blksize)`` (read those blocks now if they are not in memory:
:meth:`ReadTransfer.ahead`)."""
from dataclasses import dataclass, field
from enum import Enum, IntEnum

# --- constants -------------------------------------------------------------------------


class Opcode(IntEnum):
    """RFC 1350 section 5, RFC 2347 (OACK)."""

    RRQ = 1
    WRQ = 2
    DATA = 3
    ACK = 4
    ERROR = 5
    OACK = 6


class ErrorCode(IntEnum):
    """RFC 1350 appendix, RFC 2347 (8)."""

    NOT_DEFINED = 0
    FILE_NOT_FOUND = 1
    ACCESS_VIOLATION = 2
    DISK_FULL = 3
    ILLEGAL_OPERATION = 4
    UNKNOWN_TID = 5
    FILE_EXISTS = 6
    NO_SUCH_USER = 7
    OPTION_REFUSED = 8


DEFAULT_BLKSIZE = 512
"""RFC 1350: blocks are 512 bytes unless blksize is negotiated."""
MIN_BLKSIZE = 8
MAX_BLKSIZE = 65464
"""RFC 2348 section 2: valid blksize values are 8 through 65464."""
IP_UDP_TFTP_OVERHEAD = 32
"""IPv4 header (20) + UDP header (8) + TFTP DATA header (4): MTU minus this is the largest
blksize that is not fragmented."""
MAX_WINDOWSIZE = 65535
"""RFC 7440 section 3: 1 through 65535."""
MIN_TIMEOUT, MAX_TIMEOUT = 1, 255
"""RFC 2349 section 2: timeout is 1 through 255 seconds."""
MODES = ("netascii", "octet")
"""Transfer modes served; ``mail`` (RFC 1350) is obsolete and refused."""

_HDR = struct.Struct("!HH")
_pack_hdr_into = _HDR.pack_into


# --- packets -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """RRQ or WRQ (RFC 1350 section 5, options RFC 2347 section 2)."""

    opcode: Opcode
    filename: str
    mode: str
    """Lower-cased transfer mode."""
    options: dict[str, str] = field(default_factory=dict)
    """Options as sent, names lower-cased, first occurrence kept, in the client's order."""


@dataclass(frozen=True, slots=True)
class Data:
    block: int
    """16-bit block number as on the wire."""
    payload: bytes


@dataclass(frozen=True, slots=True)
class Ack:
    block: int


@dataclass(frozen=True, slots=True)
class Error:
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class OAck:
    options: dict[str, str]


Packet = Request | Data | Ack | Error | OAck


def _strings(body: bytes, what: str) -> list[bytes]:
    """NUL-terminated strings (RFC 1350 section 5): the body must end with NUL."""
    if not body.endswith(b"\0"):
        raise ValueError(f"{what} is not NUL-terminated (truncated packet?)")
    return body[:-1].split(b"\0")


def _text(raw: bytes, what: str) -> str:
    # RFC 1350 says netascii; real clients send UTF-8 file names now and then.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _decode_request(op: Opcode, body: bytes) -> Request:
    parts = _strings(body, "request")
    if len(parts) < 2:
        raise ValueError("request has no transfer mode (truncated packet?)")
    if len(parts) % 2:
        raise ValueError("request options are not name/value pairs")
    filename = _text(parts[0], "file name")
    if not filename:
        raise ValueError("request has an empty file name")
    mode = _text(parts[1], "mode").lower()
    options: dict[str, str] = {}
    for i in range(2, len(parts), 2):
        name = _text(parts[i], "option name").lower()
        if not name:
            raise ValueError("request has an option with an empty name")
        options.setdefault(name, _text(parts[i + 1], "option value"))
    return Request(opcode=op, filename=filename, mode=mode, options=options)


def _decode_oack(body: bytes) -> OAck:
    if not body:
        return OAck(options={})
    parts = _strings(body, "OACK")
    if len(parts) % 2:
        raise ValueError("OACK options are not name/value pairs")
    return OAck(options={_text(parts[i], "").lower(): _text(parts[i + 1], "")
                         for i in range(0, len(parts), 2)})


def decode(data: Buffer) -> Packet:
    """Bytes -> packet; raises ValueError with the reason in words when malformed."""
    data = bytes(data)
    if len(data) < 2:
        raise ValueError(f"packet of {len(data)} bytes is too short for an opcode")
    code = (data[0] << 8) | data[1]
    try:
        op = Opcode(code)
    except ValueError:
        raise ValueError(f"unknown opcode {code}") from None
    body = data[2:]
    if op in (Opcode.RRQ, Opcode.WRQ):
        return _decode_request(op, body)
    if op is Opcode.DATA:
        if len(body) < 2:
            raise ValueError("DATA packet without a block number")
        return Data(block=(body[0] << 8) | body[1], payload=body[2:])
    if op is Opcode.ACK:
        if len(body) != 2:
            raise ValueError(f"ACK packet of {len(data)} bytes (must be 4)")
        return Ack(block=(body[0] << 8) | body[1])
    if op is Opcode.ERROR:
        if len(body) < 2:
            raise ValueError("ERROR packet without an error code")
        msg = body[2:]
        # Some clients omit the final NUL; accept the text anyway.
        return Error(code=(body[0] << 8) | body[1],
                     message=_text(msg.split(b"\0", 1)[0], "error message"))
    return _decode_oack(body)


def _opts(options: dict[str, str]) -> bytes:
    return b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in options.items())


def encode(packet: Packet) -> bytes:
    """Packet -> bytes."""
    match packet:
        case Request():
            return (_HDR.pack(packet.opcode, 0)[:2] + packet.filename.encode() + b"\0"
                    + packet.mode.encode() + b"\0" + _opts(packet.options))
        case Data():
            return _HDR.pack(Opcode.DATA, packet.block & 0xFFFF) + bytes(packet.payload)
        case Ack():
            return _HDR.pack(Opcode.ACK, packet.block & 0xFFFF)
        case Error():
            return (_HDR.pack(Opcode.ERROR, packet.code)
                    + packet.message.encode("utf-8", "replace") + b"\0")
        case OAck():
            return _HDR.pack(Opcode.OACK, 0)[:2] + _opts(packet.options)
    raise TypeError(f"not a TFTP packet: {packet!r}")


def error_packet(code: int, message: str) -> bytes:
    return encode(Error(code=code, message=message))


# --- netascii (RFC 1350 appendix, RFC 764) ------------------------------------------------


def to_netascii(data: bytes) -> bytes:
    """Local text -> netascii: LF becomes CR LF, a bare CR becomes CR NUL."""
    return data.replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")


def from_netascii(data: bytes) -> bytes:
    """Netascii -> local text (inverse of :func:`to_netascii`)."""
    return data.replace(b"\r\n", b"\n").replace(b"\r\0", b"\r")


# --- option negotiation (RFC 2347, 2348, 2349, 7440) --------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    """What the server grants at most; the adapter derives max_blksize from the MTU."""

    max_blksize: int = MAX_BLKSIZE
    max_windowsize: int = 16
    timeout: float = 1.0
    retries: int = 5


@dataclass(frozen=True, slots=True)
class Negotiated:
    """Outcome of option negotiation."""

    blksize: int = DEFAULT_BLKSIZE
    windowsize: int = 1
    timeout: float = 1.0
    oack: dict[str, str] = field(default_factory=dict)
    """Options acknowledged, in the client's order (empty: no OACK, RFC 1350 behaviour)."""
    ignored: tuple[str, ...] = ()
    """Options left out of the OACK, each with the reason in words."""


def _int(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) < 12 else None


SAFE_PATH_BLKSIZE = 1468
"""Blocks of a 1500-byte Ethernet path (1500 - 32)."""


def fitting_blksize(failed: int, path_mtu: int | None = None) -> int:
    """A block size for a client whose blocks of ``failed`` bytes were lost on the way.

    ``path_mtu``: what the route says (IP_MTU, learnt from ICMP), when smaller than the
    lost packets. Without it: blocks of an Ethernet path when the lost ones were bigger,
    else 512 (fits any IPv4 path: 576 bytes must get through).
    """
    if path_mtu is not None and path_mtu - IP_UDP_TFTP_OVERHEAD < failed:
        return max(DEFAULT_BLKSIZE, path_mtu - IP_UDP_TFTP_OVERHEAD)
    if failed > SAFE_PATH_BLKSIZE:
        return SAFE_PATH_BLKSIZE
    return DEFAULT_BLKSIZE


def negotiate(request: Request, limits: Limits, size: int | None) -> Negotiated:
    """Choose blksize/windowsize/timeout and the OACK for a request.

    RFC 2347 section 3: the server leaves out of the OACK any option it does not
    support or whose value it refuses; the client then uses the default. We
    never answer ERROR 8 ourselves: a lenient OACK boots more firmware.
    ``size`` is the file size for an RRQ (tsize, RFC 2349 section 4), None for a WRQ
    (the client's tsize is echoed).
    """
    blksize, windowsize, timeout = DEFAULT_BLKSIZE, 1, limits.timeout
    oack: dict[str, str] = {}
    ignored: list[str] = []
    for name, value in request.options.items():
        n = _int(value)
        if name == "blksize":
            if n is None or n < MIN_BLKSIZE:
                ignored.append(f"blksize={value!r} (valid: {MIN_BLKSIZE}..{MAX_BLKSIZE})")
                continue
            # RFC 2348 section 2: the server may answer a smaller value; above 65464 is
            # clamped rather than refused, as tftpd-hpa does.
            blksize = max(MIN_BLKSIZE, min(n, MAX_BLKSIZE, limits.max_blksize))
            oack[name] = str(blksize)
        elif name == "tsize":
            if n is None:
                ignored.append(f"tsize={value!r} (not a number)")
                continue
            if request.opcode is Opcode.RRQ:
                if size is None:
                    ignored.append("tsize (size unknown)")
                    continue
                oack[name] = str(size)
            else:
                oack[name] = str(n)
        elif name == "timeout":
            if n is None or not MIN_TIMEOUT <= n <= MAX_TIMEOUT:
                ignored.append(f"timeout={value!r} (valid: {MIN_TIMEOUT}..{MAX_TIMEOUT})")
                continue
            timeout = float(n)
            oack[name] = str(n)
        elif name == "windowsize":
            if n is None or not 1 <= n <= MAX_WINDOWSIZE:
                ignored.append(f"windowsize={value!r} (valid: 1..{MAX_WINDOWSIZE})")
                continue
            if request.opcode is Opcode.WRQ:
                ignored.append("windowsize (not offered for writes)")
                continue
            windowsize = max(1, min(n, limits.max_windowsize))
            oack[name] = str(windowsize)
        else:
            ignored.append(f"{name} (unknown option)")
    return Negotiated(blksize=blksize, windowsize=windowsize, timeout=timeout, oack=oack,
                      ignored=tuple(ignored))


# --- events (data, turned into bus events by the adapter) -------------------------------


@dataclass(frozen=True, slots=True)
class TransferComplete:
    """The last block was acknowledged (read) or written (write)."""

    bytes: int
    blocks: int


@dataclass(frozen=True, slots=True)
class TransferAborted:
    """The transfer ended without completing."""

    reason: str
    code: int = 0
    """TFTP error code: the client's (ERROR received) or ours (sent)."""
    probe: bool = False
    """The client only wanted the OACK (EDK2's tsize probe, ended with ERROR 8)."""
    bytes: int = 0
    timed_out: bool = False
    """The retries ran out waiting for the client (else the client sent ERROR)."""
    too_big: bool = False
    """We refused an upload larger than allowed."""


TransferEvent = TransferComplete | TransferAborted


class TftpProtocolError(Exception):
    """An impossible transition was asked of a transfer (a bug in the caller)."""


# --- the read transfer ----------------------------------------------------------------------


class ReadState(Enum):
    OACK_SENT = "oack_sent"
    """OACK sent, waiting for ACK 0 (RFC 2347 section 3)."""
    SENDING = "sending"
    DONE = "done"
    FAILED = "failed"


class Input(Enum):
    ACK_OACK = "ack 0 of the OACK"
    ACK_PROGRESS = "ack of new blocks"
    ACK_LAST = "ack of the last block"
    ERROR = "error from the client"
    GIVE_UP = "retries exhausted"


# Rules: (state, input) -> next state. Anything absent is an impossible transition.
# Duplicate and stale ACKs are not inputs: they change nothing (no Sorcerer's Apprentice).
READ_TRANSITIONS: dict[tuple[ReadState, Input], ReadState] = {
    (ReadState.OACK_SENT, Input.ACK_OACK): ReadState.SENDING,
    (ReadState.OACK_SENT, Input.ERROR): ReadState.FAILED,
    (ReadState.OACK_SENT, Input.GIVE_UP): ReadState.FAILED,
    (ReadState.SENDING, Input.ACK_PROGRESS): ReadState.SENDING,
    (ReadState.SENDING, Input.ACK_LAST): ReadState.DONE,
    (ReadState.SENDING, Input.ERROR): ReadState.FAILED,
    (ReadState.SENDING, Input.GIVE_UP): ReadState.FAILED,
}

_EMPTY = (0, 0)


class ReadTransfer:
    """One RRQ being served.

    Blocks are numbered by an unbounded counter (1 = first DATA block) and sent
    ``& 0xFFFF``, so files of more than 65535 blocks roll over to 0 as
    tftpd-hpa, iPXE and curl expect. "Block" 0 stands for the OACK. A file of
    N bytes is ``N // blksize + 1`` blocks: the last one is shorter than
    blksize, possibly empty (RFC 1350 section 6).

    Windowsize (RFC 7440 section 4): up to ``windowsize`` blocks are in flight;
    an ACK acknowledges every block up to it and the window moves on from
    there. An ACK for a block already acknowledged (a duplicate) triggers
    nothing: retransmission happens only on the timer, which is how the
    Sorcerer's Apprentice syndrome (RFC 1123 section 4.2.3.1) is avoided.

    Timer: when nothing was acknowledged for ``timeout * 2**retry`` seconds,
    the window is sent again from the first unacknowledged block; after
    ``retries`` such retransmissions the transfer fails.
    """

    __slots__ = ("state", "blksize", "windowsize", "timeout", "retries", "size", "nblocks",
                 "acked", "sent_hi", "retry", "last_progress", "_data", "_oack_bytes",
                 "_tx_lo", "_tx_hi", "_events", "_tsize_asked", "negotiated", "framed")

    def __init__(self, request: Request, data: BlockSource, limits: Limits, now: float,
                 negotiated: Negotiated | None = None) -> None:
        """``data`` is the file's bytes (bytes, a memoryview, or any sized object whose
        slices are bytes-like, such as the adapter's chunked reader), already converted
        to netascii when the request's mode says so. ``negotiated``: the outcome of a
        negotiation already made for this request (a transfer continued by another
        process), else :func:`negotiate` runs here."""
        # Bytes (viewed, never copied) or the adapter's file reader (framed()).
        self._data = memoryview(data) if isinstance(data, (bytes, bytearray)) else data
        self.framed = hasattr(self._data, "framed")
        """Whether :meth:`frames` builds packets in the data's own buffer."""
        self.size = len(self._data)
        neg = negotiated if negotiated is not None else negotiate(request, limits, self.size)
        self.negotiated = neg
        self.blksize = neg.blksize
        self.windowsize = neg.windowsize
        self.timeout = neg.timeout
        self.retries = limits.retries
        self.nblocks = self.size // self.blksize + 1
        self.acked = 0
        """Highest block acknowledged (unbounded)."""
        self.sent_hi = 0
        """Highest block sent (unbounded)."""
        self.retry = 0
        self.last_progress = now
        self._events: list[TransferEvent] = []
        self._tsize_asked = "tsize" in request.options
        if neg.oack:
            self.state = ReadState.OACK_SENT
            self._oack_bytes = encode(OAck(options=neg.oack))
            self._tx_lo, self._tx_hi = 0, 1
        else:
            self.state = ReadState.SENDING
            self._oack_bytes = b""
            self._tx_lo, self._tx_hi = 1, 1 + min(self.windowsize, self.nblocks)
            self.sent_hi = self._tx_hi - 1

    # -- transitions ---------------------------------------------------------------

    def _go(self, inp: Input) -> None:
        nxt = READ_TRANSITIONS.get((self.state, inp))
        if nxt is None:
            raise TftpProtocolError(f"read transfer in state {self.state.value} cannot take "
                                    f"{inp.value}")
        self.state = nxt

    # -- hot path --------------------------------------------------------------------

    def on_ack(self, block16: int, now: float) -> tuple[int, int]:
        """An ACK for the 16-bit ``block16`` arrived: the range of blocks to send now.

        Returns ``(first, end)`` (end exclusive, unbounded numbers; (0, 0) for
        nothing). Block 0 is the OACK.
        """
        state = self.state
        if state is ReadState.SENDING:
            acked = self.acked
            delta = (block16 - acked) & 0xFFFF
            if delta == 0 or delta > self.sent_hi - acked:
                return _EMPTY  # duplicate or stale: wait for the timer
            acked += delta
            self.acked = acked
            self.retry = 0
            self.last_progress = now
            if acked >= self.nblocks:
                self.state = ReadState.DONE  # READ_TRANSITIONS[(SENDING, ACK_LAST)]
                self._events.append(TransferComplete(bytes=self.size, blocks=self.nblocks))
                return _EMPTY
            # RFC 7440 section 4: the next window starts right after the acknowledged
            # block. A full-window ACK moves on to new blocks; an ACK inside the window
            # means the client lost what follows it, so that part is sent again.
            hi = acked + self.windowsize
            if hi > self.nblocks:
                hi = self.nblocks
            lo = acked + 1
            if hi > self.sent_hi:
                self.sent_hi = hi
            return (lo, hi + 1)
        if state is ReadState.OACK_SENT:
            if block16 != 0:
                return _EMPTY  # not an answer to the OACK; ignore
            self._go(Input.ACK_OACK)
            self.retry = 0
            self.last_progress = now
            hi = min(self.windowsize, self.nblocks)
            self.sent_hi = hi
            return (1, hi + 1)
        return _EMPTY

    def build(self, buf: bytearray, block: int) -> int:
        """Write the packet for ``block`` (0 = OACK) at the start of ``buf``; return its
        length. (A framed source's packets are sent from its own buffer: :meth:`frames`.)
        """
        if block == 0:
            n = len(self._oack_bytes)
            buf[:n] = self._oack_bytes
            return n
        if self.framed:
            view = self.frames(block, 1)[0]
            n = len(view)
            buf[:n] = view
            return n
        bs = self.blksize
        off = (block - 1) * bs
        end = off + bs
        if end > self.size:
            end = self.size
        n = end - off
        _pack_hdr_into(buf, 0, 3, block & 0xFFFF)
        buf[4:4 + n] = self._data[off:end]
        return n + 4

    def frames(self, block: int, count: int) -> tuple[memoryview, int]:
        """DATA packets for up to ``count`` blocks from ``block`` (>= 1), built in place in
        the data's own buffer (``framed`` sources only): (view, packets in it). The
        packets lie ``blksize + 4`` bytes apart (the last may be shorter); fewer than
        ``count`` when the source's buffer ends first. Valid until the next call."""
        view, got = self._data.framed(block - 1, count, self.blksize)
        if got == 1:
            _pack_hdr_into(view, 0, 3, block & 0xFFFF)
        else:
            step = self.blksize + 4
            for i in range(got):
                _pack_hdr_into(view, i * step, 3, (block + i) & 0xFFFF)
        return view, got

    def ahead(self, block: int) -> None:
        """The next packets will start at ``block`` (the end of what was just sent): a
        framed source reads that window now if its buffer does not hold it, so the read
        happens while the client takes the packets already sent, not between its ACK and
        the next packet. The caller asks only when ``block + windowsize - 1`` is past what
        the source holds (a cheap test it makes itself on every ACK); the source reads
        nothing past the file's last block."""
        self._data.ahead(block - 1, self.windowsize, self.blksize)

    # -- the rest of the sans-I/O interface ----------------------------------------------

    def on_error(self, code: int, message: str) -> None:
        """The client sent ERROR: the transfer is over (RFC 1350 section 7)."""
        if self.state in (ReadState.DONE, ReadState.FAILED):
            return
        probe = (self.state is ReadState.OACK_SENT and self._tsize_asked
                 and code == ErrorCode.OPTION_REFUSED)
        self._go(Input.ERROR)
        if probe:
            reason = (f"size probe: the client read the OACK (tsize={self.size}) and ended "
                      f"the transfer ({message or 'no message'}), as UEFI firmware does "
                      "before the real download")
        else:
            what = ErrorCode(code).name.lower().replace("_", " ") if code in \
                ErrorCode._value2member_map_ else f"code {code}"
            reason = f"client aborted the transfer: {message or 'no message'} ({what})"
        self._events.append(TransferAborted(reason=reason, code=code, probe=probe,
                                            bytes=self.bytes_acked))

    def receive(self, data: Buffer, now: float) -> None:
        """Generic input: one datagram from the client's TID. Raises ValueError if malformed."""
        pkt = decode(data)
        if isinstance(pkt, Ack):
            lo, hi = self.on_ack(pkt.block, now)
            if hi > lo:
                self._queue(lo, hi)
        elif isinstance(pkt, Error):
            self.on_error(pkt.code, pkt.message)
        else:
            raise ValueError(f"unexpected {type(pkt).__name__} packet during a read transfer")

    def _queue(self, lo: int, hi: int) -> None:
        if self._tx_hi > self._tx_lo:
            lo = min(lo, self._tx_lo)
            hi = max(hi, self._tx_hi)
        self._tx_lo, self._tx_hi = lo, hi

    def take_pending(self) -> tuple[int, int]:
        """Blocks queued by the constructor, :meth:`receive` or :meth:`handle_timer`."""
        rng = (self._tx_lo, self._tx_hi)
        self._tx_lo = self._tx_hi = 0
        return rng

    def datagrams_to_send(self) -> list[bytes]:
        """Every queued datagram (the generic, allocating path; tests and slow paths)."""
        lo, hi = self.take_pending()
        buf = bytearray(self.blksize + 4 if self.blksize + 4 > len(self._oack_bytes)
                        else len(self._oack_bytes))
        out = []
        for b in range(lo, hi):
            n = self.build(buf, b)
            out.append(bytes(buf[:n]))
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must run next (None once finished)."""
        if self.state in (ReadState.DONE, ReadState.FAILED):
            return None
        return self.last_progress + self.timeout * (1 << self.retry)

    def handle_timer(self, now: float) -> None:
        """Retransmit with back-off, or give up after ``retries`` retransmissions."""
        deadline = self.get_timer()
        if deadline is None or now < deadline:
            return
        if self.retry >= self.retries:
            self._go(Input.GIVE_UP)
            waited = sum(self.timeout * (1 << i) for i in range(self.retry + 1))
            where = "the OACK" if self.acked == 0 and self._oack_bytes and \
                self.sent_hi == 0 else f"block {self.acked + 1} of {self.nblocks}"
            self._events.append(TransferAborted(
                reason=f"timed out after {self.retries} retries waiting for the ACK of {where} "
                       f"({waited:.0f} s without an answer)",
                code=0, bytes=self.bytes_acked, timed_out=True))
            return
        self.retry += 1
        # Back-off: the next deadline counts from now, doubled per retry.
        self.last_progress = now
        if self.state is ReadState.OACK_SENT:
            self._queue(0, 1)
        else:
            # RFC 7440 section 4: on timeout the whole window is sent again from the
            # first unacknowledged block.
            self._queue(self.acked + 1, self.sent_hi + 1)

    def next_event(self) -> TransferEvent | None:
        return self._events.pop(0) if self._events else None

    @property
    def finished(self) -> bool:
        return self.state in (ReadState.DONE, ReadState.FAILED)

    @property
    def bytes_acked(self) -> int:
        return min(self.acked * self.blksize, self.size)

    @property
    def big_blocks_lost(self) -> bool:
        """The OACK was acknowledged (small packets get through both ways) but block 1, a
        full block of the negotiated size, went out three times without an ACK (twice when
        the client's timeout is 3 s or more, so it is said within seconds): blocks that
        large do not fit the path (its MTU is below blksize + 32)."""
        return (self.state is ReadState.SENDING and bool(self._oack_bytes) and self.acked == 0
                and (self.retry >= 2 or (self.retry >= 1 and self.timeout >= 3))
                and self.blksize > DEFAULT_BLKSIZE and self.size >= self.blksize)


# --- the write transfer (only when the operator allows writes) -----------------------------


class WriteState(Enum):
    RECEIVING = "receiving"
    DONE = "done"
    FAILED = "failed"


WRITE_TRANSITIONS: dict[tuple[WriteState, str], WriteState] = {
    (WriteState.RECEIVING, "data"): WriteState.RECEIVING,
    (WriteState.RECEIVING, "last"): WriteState.DONE,
    (WriteState.RECEIVING, "error"): WriteState.FAILED,
    (WriteState.RECEIVING, "give_up"): WriteState.FAILED,
    (WriteState.RECEIVING, "too_big"): WriteState.FAILED,
}


class WriteTransfer:
    """One WRQ being received, lockstep (no windowsize for writes).

    The adapter writes the chunks that :meth:`take_chunks` returns (offset,
    bytes) to the file. Our first packet is the OACK or ACK 0 (RFC 1350
    section 4, RFC 2347 section 3); each DATA is acknowledged; a DATA shorter
    than blksize ends it. A duplicate DATA is acknowledged again, not written twice.
    """

    def __init__(self, request: Request, limits: Limits, now: float,
                 max_bytes: int = 1 << 32) -> None:
        neg = negotiate(request, limits, None)
        self.negotiated = neg
        self.blksize = neg.blksize
        self.timeout = neg.timeout
        self.retries = limits.retries
        self.netascii = request.mode == "netascii"
        self.max_bytes = max_bytes
        self.state = WriteState.RECEIVING
        self.received = 0
        """Highest block received (unbounded)."""
        self.bytes = 0
        self.retry = 0
        self.last_progress = now
        self._out: list[bytes] = [encode(OAck(options=neg.oack)) if neg.oack else encode(Ack(0))]
        self._last_reply = self._out[0]
        self._chunks: list[tuple[int, bytes]] = []
        self._events: list[TransferEvent] = []

    def _go(self, inp: str) -> None:
        nxt = WRITE_TRANSITIONS.get((self.state, inp))
        if nxt is None:
            raise TftpProtocolError(f"write transfer in state {self.state.value} cannot "
                                    f"take {inp}")
        self.state = nxt

    def receive(self, data: Buffer, now: float) -> None:
        pkt = decode(data)
        if self.state is not WriteState.RECEIVING:
            return
        if isinstance(pkt, Error):
            self._go("error")
            self._events.append(TransferAborted(
                reason=f"client aborted the upload: {pkt.message or 'no message'}",
                code=pkt.code, bytes=self.bytes))
            return
        if not isinstance(pkt, Data):
            raise ValueError(f"unexpected {type(pkt).__name__} packet during a write transfer")
        if len(pkt.payload) > self.blksize:
            raise ValueError(f"DATA of {len(pkt.payload)} bytes exceeds blksize {self.blksize}")
        delta = (pkt.block - self.received) & 0xFFFF
        if delta == 0:
            self._out.append(self._last_reply)  # our ACK was lost: say it again
            return
        if delta != 1:
            return  # out of order (lockstep): ignore
        self.received += 1
        payload = bytes(pkt.payload)
        if self.netascii:
            payload = from_netascii(payload)
        if self.bytes + len(payload) > self.max_bytes:
            self._go("too_big")
            self._out.append(error_packet(ErrorCode.DISK_FULL, "File too large"))
            self._events.append(TransferAborted(
                reason=f"upload larger than {self.max_bytes} bytes refused",
                code=ErrorCode.DISK_FULL, bytes=self.bytes, too_big=True))
            return
        self._chunks.append((self.bytes, payload))
        self.bytes += len(payload)
        self.retry = 0
        self.last_progress = now
        self._last_reply = encode(Ack(self.received))
        self._out.append(self._last_reply)
        if len(pkt.payload) < self.blksize:
            self._go("last")
            self._events.append(TransferComplete(bytes=self.bytes, blocks=self.received))
        else:
            self._go("data")

    def take_chunks(self) -> list[tuple[int, bytes]]:
        chunks, self._chunks = self._chunks, []
        return chunks

    def datagrams_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        if self.state is not WriteState.RECEIVING:
            return None
        return self.last_progress + self.timeout * (1 << self.retry)

    def handle_timer(self, now: float) -> None:
        deadline = self.get_timer()
        if deadline is None or now < deadline:
            return
        if self.retry >= self.retries:
            self._go("give_up")
            self._events.append(TransferAborted(
                reason=f"timed out after {self.retries} retries waiting for DATA block "
                       f"{self.received + 1}", bytes=self.bytes,
                timed_out=True))
            return
        self.retry += 1
        self.last_progress = now
        self._out.append(self._last_reply)

    def next_event(self) -> TransferEvent | None:
        return self._events.pop(0) if self._events else None

    @property
    def finished(self) -> bool:
        return self.state is not WriteState.RECEIVING
