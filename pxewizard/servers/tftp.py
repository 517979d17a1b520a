"""TFTP server adapter: epoll readiness loops in their own threads, no asyncio in the hot path.

Why not asyncio's datagram endpoints: an early prototype built on them (not kept) spent
its time in callback dispatch, a 256 KiB buffer per 4-byte ACK and a timer object per
ACK, and lost to dnsmasq by 40% (``bench/tftp.py`` measures this server against
dnsmasq). Here instead:

- an ``epoll`` loop over the listening socket and the transfer sockets, in a
  thread of its own (more workers are possible, but measured slower: see
  :class:`TftpEngine`); optionally (PXW_TFTP_PROCS) transfer processes run the
  same loop for a share of the reads, so a second core can work
  (:class:`_Helper`: the engine keeps every decision and hands over the socket
  and the open file; off by default, it measured no better here);
  events reach the asyncio bus in batches through
  :meth:`EventBus.publish_threadsafe`;
- each transfer has its own connected UDP socket on a new ephemeral port (the
  server's TID, RFC 1350 section 4), so the kernel filters foreign TIDs;
- ACKs are read with ``recv_into`` into one preallocated buffer and recognised
  from their 4 bytes; a file is read 64 KiB at a time with one ``preadv`` that
  scatters its blocks into slots of ``blksize + 4`` bytes of a buffer kept per
  transfer (:class:`ChunkedFile`; the next chunk is read as soon as a window is
  sent, while the client takes it), the core writes each header in front of its
  block, and the slot is sent as it is: no copy in between (a generated file's
  packets are built with ``pack_into`` in one preallocated buffer). Not
  ``mmap``: a file truncated or a medium failing under a mapping raises
  SIGBUS and kills the process (an operator who ``cp``s a new kernel over the
  old one mid-boot would stop the server); ``preadv`` returns short or EIO,
  and only that transfer ends, with a reason;
- a window (RFC 7440) leaves in few ``send()``s: the packets lie back to back
  in the slots and the kernel cuts them apart (UDP GSO, ``UDP_SEGMENT``); this cut
  the system time of a windowsize-8 transfer by 2.5x;
- no timer per packet: each transfer records when it last made progress and
  one scan every 100 ms retransmits, gives up and reports progress;
- the loop threads run at a raised priority (root only), so one thread serving
  many clients is not outweighed by them (tftpd-hpa forks one process per
  client and gets one share each);
- a lone transfer busy-polls its socket for a moment after each packet when,
  and only while, that measures faster (:class:`SpinChooser`): on an idle VM the
  wake-up from a halted CPU dominates a lockstep round trip, under load the
  spinning would take the CPU the client needs.

Protocol decisions all live in :mod:`pxewizard.proto.tftp`; this module only
moves bytes, opens files and turns outcomes into events.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import pwd
import secrets
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..events import (
    BlksizeGranted,
    EventBus,
    FailCause,
    LogLine,
    PacketDropped,
    ServiceStarted,
    ServiceStopped,
    TransferDone,
    TransferFailed,
    TransferProgress,
    TransferStarted,
)
from ..files import AccessDenied, FileTree, NotFound, TreeError, normalize, open_dir_beneath
from ..proto import tftp as proto
from ..proto.tftp import (
    ErrorCode,
    Limits,
    Negotiated,
    Opcode,
    ReadState,
    ReadTransfer,
    TransferAborted,
    TransferComplete,
    WriteTransfer,
)
from .. import privileges
from ..privileges import follow as follow_privileges
from .base import udp_socket

SERVICE = "tftp"
SCAN_INTERVAL = 0.1
"""Seconds between scans for timeouts and progress reports."""
PROGRESS_INTERVAL = 0.5
"""At most two progress events per second per transfer."""
SPIN_WINDOW = float(os.environ.get("PXW_TFTP_SPIN", "0.0002"))
"""How long a lone transfer polls its socket without sleeping before it blocks (seconds),
when :class:`SpinChooser` measured that faster; PXW_TFTP_SPIN=0 turns spinning off."""
SOLO = os.environ.get("PXW_TFTP_SOLO", "1") != "0"
"""While a worker has a single transfer, wait in that socket's recv() instead of epoll."""
SOLO_CHECK = 0.01
"""How long a single transfer's recv() may keep new requests waiting (seconds)."""
GSO = os.environ.get("PXW_TFTP_GSO", "1") != "0"
"""Send a window in one segmented send() (UDP GSO); PXW_TFTP_GSO=0: one send() per block
(benchmarks compare the two)."""
MSG_DONTWAIT = socket.MSG_DONTWAIT
DROP_EVENTS_PER_SECOND = 2000
"""PacketDropped events per second and worker before drops are only counted (a flood)."""
CHUNK = 64 << 10
"""Bytes read from a file at a time (one preadv; a window at least), one buffer per
transfer. Small on purpose: the read of the next chunk happens right after a window (or
block) is sent, while the client takes it (:meth:`ChunkedFile.ahead`), and 64 KiB (about
13 us on the 2-core VM) fits in that time where 1 MiB (about 215 us, a whole round trip at
blksize 8192) stalled the transfer once a chunk. Measured in A/B runs of two servers
taking turns (atftp and curl clients, 64 MiB, medians of 15; 20 x 16 MiB and 100 x 4 MiB
with curl, medians of 7), 1 MiB against 64 KiB, MB/s: windowsize 8 at blksize 8192
369 / 406, at 1468 210 / 232; lockstep at 8192 184 / 195, at 1468 50 / 51; 20 clients 105 /
107, 100 clients 86 / 90. It also caps a transfer's buffer at about 70 KiB (1.2 MiB
before)."""
NETASCII_MAX = 1 << 20
"""netascii is for text (converted in memory, so each transfer holds it whole); larger
files are refused with the advice to use octet."""
MAX_TRANSFERS = 50
"""Default of ``tftp.max_transfers``: dnsmasq's ``tftp-max`` default."""
MAX_PER_CLIENT = 10
"""Default of ``tftp.max_per_client`` (dnsmasq and tftpd-hpa have none; a PXE ROM or a
boot loader fetches one file at a time, so 10 leaves room for retries and iPXE)."""
MAX_LIFETIME = 1800.0
"""Default of ``tftp.max_transfer_seconds``: a transfer still running after this is ended
(a 100 MiB initrd takes about 100 s even in 512-byte lockstep)."""
MAX_STALL = 120.0
"""Default of ``tftp.max_stall_seconds``: a transfer with no progress for this long is
ended whatever timeout the client asked (timeout=255 with 5 retries would wait 4.5 h)."""
TOO_MANY = "Too many transfers, try again later"
WRITE_MAX = 4 << 30
"""Largest upload accepted when writes are allowed."""
SOCK_BUF = 1 << 20
LISTEN_BUF = 8 << 20
READ_ONLY_MESSAGE = "write requests are refused; this server is read-only"
_SIOCGIFMTU = 0x8921
_IP_MTU = getattr(socket, "IP_MTU", 14)  # linux/in.h: the route's path MTU of a connected socket
_UDP_SEGMENT = 103  # linux/udp.h, since Linux 4.18
GSO_MAX_BYTES = 65000
"""Bytes per segmented send (the UDP length limit is 65507)."""
GSO_BATCH_BYTES = min(GSO_MAX_BYTES, int(os.environ.get("PXW_TFTP_GSO_BYTES", "6000")))
"""Bytes per segmented send of a window, after its first block sent alone (blksize 1468:
4 blocks a send; 8192: one block a send, no segmentation). A segmented send reaches the
client's socket whole: cut into small sends, the client reads the first blocks while the
later ones are still on their way. Measured on the 2-core VM, atftp client, windowsize 8,
medians of 5 (bench/tftp.py --tests "1468 w8" "8192 w8" --variant ...), MB/s at blksize
1468 / 8192: the whole window in one send 142 / 434, one block a send 142 / 554, first
block alone then 4 a send 172 / 473 (atftpd 133 / 466)."""
GSO_MAX_SEGMENTS = 64
"""UDP_MAX_SEGMENTS of older kernels."""
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux; Python names it from 3.12
PROCS = int(os.environ.get("PXW_TFTP_PROCS", "0"))
"""Transfer processes beside the engine (PXW_TFTP_PROCS=1: one; benchmarks compare with
``--variant``). 0 by default: on the 2-core VM, where the bench's clients share the two
cores, it measured no better (see :class:`_Helper`)."""
SHARE_LOCAL = os.environ.get("PXW_TFTP_LOCAL", "1") != "0"
"""Whether the engine's own process also runs transfers while a transfer process is up
(PXW_TFTP_LOCAL=0: every handed-over kind goes to the transfer processes)."""
HANDOFF_MIN = int(os.environ.get("PXW_TFTP_HANDOFF_MIN", str(128 << 10)))
"""Files smaller than this are served in-process (a config file or a menu is gone in a few
round trips; handing it over would cost more than serving it)."""
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
IOV_MAX = max(1, min(1024, os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names
                     else 1024))
"""Slots filled by one preadv (its iovec limit): 1024 blocks of 512 bytes is 512 KiB."""


def interface_mtu(interface: str | None) -> int | None:
    """The interface's MTU, read in the current network namespace (ioctl, not /sys)."""
    if not interface:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            res = fcntl.ioctl(s.fileno(), _SIOCGIFMTU,
                              struct.pack("16si", interface.encode()[:15], 0))
        except OSError:
            return None
    return struct.unpack("16si", res)[1]


def _big_rcvbuf(sock: socket.socket, size: int) -> None:
    """A receive buffer that absorbs a burst (many clients booting at once, a flood).

    SO_RCVBUFFORCE passes net.core.rmem_max when we are root; else the capped SO_RCVBUF.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, size)
    except OSError:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


ENGINE_RR = int(os.environ.get("PXW_TFTP_RR", "0"))
"""SCHED_RR priority of the loop threads (0: none, the nice value below); see
:func:`_raise_priority`."""
ENGINE_NICE = int(os.environ.get("PXW_TFTP_NICE", "-10"))
"""Nice value of the engine thread (PXW_TFTP_NICE overrides it; 0 leaves it alone)."""


def _raise_priority() -> None:
    """Give the engine thread the CPU weight of several processes.

    One thread serves every transfer, where tftpd-hpa forks a process per
    client: under load the scheduler would hand 20 clients 20 shares and our
    server one. A lower nice value (root only; silently skipped otherwise)
    evens that out and keeps a woken client from preempting the loop between
    its send and its next poll.

    Where the kernel groups tasks by session (autogroup, Debian's default), a nice
    value weighs only against the threads of the same session, so a client in
    another session (the bench's curl clients) still preempts the loop. PXW_TFTP_RR=N
    runs the loop threads SCHED_RR at priority N instead, an experiment for the bench:
    measured in the same runs (20 x 16 MiB / 100 x 4 MiB, MB/s), medians of 3:
    71 / 62, 77 / 64, 78 / 65 against 56 / 45, 71 / 46, 75 / 71 with nice -10; medians
    of 5: 73 / 65 against 79 / 63, at 11-12 CPU s/GB against 8.5-9. Not a clear gain,
    and a real-time thread on the operator's machine is the operator's decision: not
    the default.
    """
    if ENGINE_RR:
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setscheduler(threading.get_native_id(), os.SCHED_RR,
                                  os.sched_param(ENGINE_RR))
            return
    if ENGINE_NICE == 0:
        return
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), ENGINE_NICE)


def _enable_gso(sock: socket.socket, blksize: int) -> int:
    """Turn on UDP segmentation offload for a windowed transfer; packets per send (0: off).

    With it GSO_BATCH_BYTES of a window (RFC 7440) leave in one send() instead of one
    per block: the kernel cuts the buffer every blksize + 4 bytes into datagrams, and
    each piece is a complete DATA packet because we lay them out that way. Blocks too
    large for two in a batch go one a send, without it.
    """
    seg = blksize + 4
    per = min(GSO_BATCH_BYTES // seg, GSO_MAX_SEGMENTS)
    if per < 2:
        return 0
    try:
        sock.setsockopt(socket.SOL_UDP, _UDP_SEGMENT, seg)
    except OSError:
        return 0
    return per


class SpinChooser:
    """Decides by measuring whether a lone transfer busy-polls or sleeps in recv().

    Measured on the 2-core VM with curl at blksize 1468, lockstep: on an idle
    machine sleeping costs the wake-up of a halted CPU on every round trip
    (about 60 us a packet, the C servers too) where spinning takes 23 us; with
    both cores busy, or while the scheduler still keeps the client on the
    server's CPU (the first few hundred packets of a transfer), the spinning
    thread takes the CPU the client needs (45-90 us against 16 us sleeping).
    Neither choice is right everywhere, so the loop measures: PROBE packets
    sleeping, spinning, sleeping, spinning (interleaved, so a drifting client
    weighs on both), then the faster mode for ``keep`` packets (spinning must
    win by MARGIN: sleeping costs no CPU), and again. A mode that keeps winning
    is kept twice as long each time, up to KEEP_MAX.

    The spinning probes themselves cost CPU: when ``busy()`` says other work
    already wants every core (:func:`machine_busy`), the probes are skipped and
    the transfer sleeps. Measured with two CPU hogs beside (bench/tftp.py
    ``--load 2``): server CPU per GB 12.7 s with the probes, 9.1 s never
    spinning, at blksize 1468.
    """

    PROBE = 128
    KEEP = 1024
    KEEP_MAX = 16384
    MARGIN = 0.9

    __slots__ = ("enabled", "spin", "left", "phase", "started", "times", "keep", "chosen",
                 "busy")

    def __init__(self, enabled: bool, busy: Callable[[], bool] | None = None) -> None:
        self.enabled = enabled
        self.busy = busy
        self.times = [0.0, 0.0]  # seconds spent in the sleeping / spinning probes
        self.reset()

    def reset(self) -> None:
        """A new lone transfer: measure afresh (after PROBE packets of warm-up)."""
        self.spin = False
        self.left = self.PROBE
        self.phase = -1  # -1: warm-up, 0..3: probes (even: sleeping), 4: keeping the winner
        self.started = 0.0
        self.times[0] = self.times[1] = 0.0
        self.keep = self.KEEP
        self.chosen: bool | None = None

    def tick(self, now: float, blocks: int = 1) -> None:
        """One packet arrived on the lone transfer, acknowledging ``blocks`` blocks (a
        window's ACK counts its windowsize): warm-up, probes and keeps are counted in
        blocks, so a windowed transfer is not spent probing. Counted in ACKs, a 64 MiB
        download at windowsize 8 and blksize 8192 (1,024 ACKs) spent 640 of them in the
        warm-up and the probes, half of those in the slower mode; counted in blocks,
        measured (bench/tftp.py --tests "1468 w8" "8192 w8" --variant ..., medians of 7):
        1468 150.8 -> 166.1 MB/s, 8192 392.1 -> 483.6."""
        self.left -= blocks
        if self.left > 0:
            return
        if not self.enabled:
            self.left = self.KEEP_MAX
            return
        phase = self.phase
        if 0 <= phase < 4:
            self.times[phase & 1] += now - self.started
        self.started = now
        if phase in (-1, 4) and self.busy is not None and self.busy():
            # about to probe, but the cores are taken: sleep, and look again later
            self.keep = min(self.keep * 2, self.KEEP_MAX) if self.chosen is False else self.KEEP
            self.spin = self.chosen = False
            self.phase, self.left = 4, self.keep
            return
        if phase < 3:
            self.phase, self.spin, self.left = phase + 1, bool((phase + 1) & 1), self.PROBE
            return
        if phase == 3:
            spin = self.times[1] < self.times[0] * self.MARGIN
            if spin == self.chosen:
                self.keep = min(self.keep * 2, self.KEEP_MAX)
            else:
                self.keep = self.KEEP
            self.spin = self.chosen = spin
            self.phase, self.left = 4, self.keep
            return
        self.times[0] = self.times[1] = 0.0
        self.phase, self.spin, self.left = 0, False, self.PROBE


def machine_busy(read: Callable[[], str] | None = None) -> bool:
    """Whether other work wants every CPU now: the threads runnable at this moment (the
    kernel's count, the fourth field of /proc/loadavg, which counts this thread) are more
    than the CPUs, in each of three looks (a lone transfer's thread and its client are
    two of them: an idle 2-core machine is not busy).

    Not the load average: that one lags by minutes. Measured: after bench/tftp.py's 100
    concurrent clients it still read 30 on an idle machine, and the next lone transfers
    went without spinning (1468 lockstep 24 MB/s against 42-50)."""
    def runnable() -> int:
        text = read() if read is not None else Path("/proc/loadavg").read_text()
        return int(text.split()[3].split("/")[0])
    try:
        return min(runnable() for _ in range(3)) > (os.cpu_count() or 1)
    except (OSError, ValueError, IndexError):
        return False


class FileChanged(OSError):
    """The file shrank (or failed) while it was being served."""


class ChunkedFile:
    """A file read in chunks with ``preadv``, laid out as DATA packets.

    Each block of the file lands 4 bytes after the start of a slot of ``blksize + 4``
    bytes (one ``preadv`` scatters a chunk of blocks into the slots), so a packet is a
    slice of this buffer once the core has written its 4-byte header in front: nothing
    is copied between the read and the ``send()``, and consecutive packets lie back to
    back for one segmented (UDP GSO) send of a window. A view returned by
    :meth:`framed` is valid until the next call.
    """

    __slots__ = ("fd", "size", "buf", "mv", "name", "base", "chunk", "bs", "slot",
                 "first", "end", "iov")

    def __init__(self, fd: int, size: int, name: str, chunk: int = CHUNK,
                 base: int = 0) -> None:
        self.fd = fd
        self.base = base  # where the file starts in fd (a file inside an unmounted .iso)
        self.size = size
        self.name = name
        self.chunk = max(1, chunk)
        self.buf = bytearray(0)  # allocated by the first read
        self.mv = memoryview(self.buf)
        self.bs = self.slot = 0
        self.first = self.end = 0
        """Blocks (0-based) in the buffer: ``first`` to ``end``, exclusive."""
        self.iov: list[memoryview] = []
        """The data part of each slot of the buffer (what ``preadv`` fills). Kept with the
        buffer: built per read it cost 0.15 us a block (about 10% of a block's Python
        time); kept, about 14% on top of the buffer (714 views at blksize 1468)."""

    def __len__(self) -> int:
        return self.size

    def framed(self, index: int, count: int, bs: int) -> tuple[memoryview, int]:
        """Up to ``count`` blocks of ``bs`` bytes from block ``index`` (0-based), each
        after 4 bytes of room for its header, ``bs + 4`` bytes apart: (view, blocks in
        it). Fewer than ``count`` when the chunk in memory ends first (at least one)."""
        if index >= self.end or index < self.first or bs != self.bs:
            self._load(index, bs, count)
        got = self.end - index
        if got > count:
            got = count
        slot = self.slot
        start = (index - self.first) * slot
        last = index + got - 1  # the final block of the file may be short, or empty
        tail = self.size - last * bs
        return self.mv[start:start + (got - 1) * slot + 4 + (bs if tail > bs else tail)], got

    def ahead(self, index: int, count: int, bs: int) -> None:
        """Read blocks ``index`` to ``index + count`` (0-based, within the file) now unless
        the buffer holds them all: called after a window is sent, for the next one, so the
        read overlaps the client's work instead of following its ACK (see :data:`CHUNK`)."""
        last = min(index + count, self.size // bs + 1)
        if index < last and (last > self.end or index < self.first or bs != self.bs):
            self._load(index, bs, count)

    def _load(self, index: int, bs: int, count: int = 1) -> None:
        """Read from block ``index``: a chunk, or ``count`` blocks (a window) if more."""
        slot = bs + 4
        per = max(1, min(IOV_MAX, max(self.chunk // bs, count)))
        nblocks = self.size // bs + 1
        per = min(per, nblocks - index)
        if bs != self.bs or len(self.buf) < per * slot:
            self.bs, self.slot = bs, slot
            self.buf = bytearray(per * slot)
            self.mv = mv = memoryview(self.buf)
            self.iov = [mv[i * slot + 4:(i + 1) * slot] for i in range(per)]
        self.first = self.end = index  # nothing valid while reading
        off = index * bs
        want = min(per * bs, self.size - off)
        try:
            n = os.preadv(self.fd, self.iov[:per], self.base + off) if want > 0 else 0
        except OSError as exc:  # a failing medium: EIO
            raise FileChanged(exc.errno or errno.EIO,
                              f"{self.name}: read error: {exc.strerror}") from None
        if n < want:
            raise FileChanged(errno.EIO, f"{self.name} became shorter while being sent "
                              f"(expected {self.size} bytes, it ends at {off + n})")
        self.end = index + per

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


def _exists_in(dirfd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def nak_message(exc: TreeError) -> str:
    """What the client is told: tftpd-hpa's words, without our real paths.

    The operator gets the full reason and fix in the TransferFailed event.
    """
    text = str(exc)
    if isinstance(exc, NotFound):
        return "File not found"
    if "global read permissions" in text:
        return "File must have global read permissions"
    return "Access violation"


class _Transfer:
    """Adapter-side record of one transfer: socket, mapping, timing."""

    __slots__ = ("sock", "fd", "send", "core", "peer", "client", "path", "size", "started",
                 "mm", "reported_at", "reported_bytes", "writer", "wfd", "tmp", "final",
                 "key", "gso", "worker", "closed", "admitted", "pfd", "retire", "mtu_flagged",
                 "remote")

    def __init__(self, sock: socket.socket, core: ReadTransfer | WriteTransfer, peer: str,
                 client: str, path: str, size: int | None, now: float) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.send = sock.send
        self.core = core
        self.peer = peer
        self.client = client
        self.path = path
        self.size = size
        self.started = now
        self.mm: ChunkedFile | None = None
        self.reported_at = now
        self.reported_bytes = 0
        self.writer = isinstance(core, WriteTransfer)
        self.wfd = -1
        self.tmp: str | None = None
        """Name of the upload's temporary file in the directory ``pfd``."""
        self.final: str | None = None
        self.pfd = -1
        """O_PATH descriptor of the upload's directory (every name is used relative to it)."""
        self.key: tuple[str, int, str] = ("", 0, "")
        self.gso = 0
        """Packets per segmented send (UDP GSO), 0 when off."""
        self.worker: _Worker | None = None
        self.closed = False
        self.admitted = False
        """Counted in the engine's caps (released on close)."""
        self.retire = ""
        """Set (to the new request's peer) when the client asked for this file again: the
        owning worker ends the transfer at its next scan."""
        self.mtu_flagged = False
        """Its lost big blocks already led to a BlksizeGranted."""
        self.remote: _Helper | None = None
        """The transfer process that runs it (its socket and file were handed over; this
        record keeps the admission, the key and the names until that process says closed)."""


class TftpEngine:
    """The workers, the listening socket and what they share.

    Profiling 20 concurrent lockstep clients showed ~80% of the loop's time in
    the kernel (send() waking the client, context switches), with the GIL
    released, so transfers can be spread over several worker threads whose
    system calls then run in parallel. Measured on the 2-core VM (20 x 16 MiB,
    alternating runs): 1 worker 80-92 MB/s, 2 workers 58-101, 4 workers 53-86,
    tftpd-hpa 65-95: the GIL hand-offs between workers (each a futex wake-up
    and a context switch) cost more than the parallel system calls gain, so
    the default is one worker. Worker 0 reads the listening socket and places
    each new transfer on the least busy worker, or hands it to a transfer
    process (:class:`_Helper`: a second process has a GIL of its own).
    """

    def __init__(self, *, listen: socket.socket, tree: FileTree, bus: EventBus, address: str,
                 interface: str | None, limits: Limits, allow_write: bool,
                 write_root: Path | None, workers: int = 1, max_transfers: int = MAX_TRANSFERS,
                 max_per_client: int = MAX_PER_CLIENT, max_lifetime: float = MAX_LIFETIME,
                 max_stall: float = MAX_STALL, procs: int | None = None) -> None:
        self.max_transfers = max_transfers
        self.max_per_client = max_per_client
        self.max_lifetime = max_lifetime
        self.max_stall = max_stall
        self.per_client: dict[str, int] = {}
        """Transfers running per client address (any worker changes it: under ``lock``)."""
        self.lock = threading.Lock()
        self.listen = listen
        self.tree = tree
        self.bus = bus
        self.address = address
        self.interface = interface
        self.limits = limits
        self.allow_write = allow_write
        self.write_root = Path(write_root).resolve() if write_root is not None else None
        self.active_keys: set[tuple[str, int, str]] = set()
        self.granted: dict[str, int] = {}
        """Client address -> block size that fits its path, learnt from lost big blocks
        (read by every worker, written by the one that saw the loss)."""
        self.by_file: dict[tuple[str, str], _Transfer] = {}
        """The latest read transfer of each (client address, file): a new request for the
        same file from the same client retires the older one (the client abandoned it)."""
        n = max(1, min(workers, os.cpu_count() or 1))
        if os.environ.get("PXW_TFTP_WORKERS"):  # benchmarks compare
            n = max(1, int(os.environ["PXW_TFTP_WORKERS"]))
        self.workers = [_Worker(self, i) for i in range(n)]
        self.helpers = [_Helper(i + 1) for i in range(max(0, procs if procs is not None
                                                               else PROCS))]
        """Transfer processes (started and read by worker 0)."""

    def start(self) -> None:
        for w in self.workers:
            w._thread.start()

    def stop(self) -> None:
        """Ask every worker to end and wait for them (call from a worker thread)."""
        for w in self.workers:
            w._stopping = True
            with contextlib.suppress(OSError):
                os.write(w._wake_w, b"x")
        for w in self.workers:
            w._thread.join(10)

    def alive(self) -> bool:
        return any(w._thread.is_alive() for w in self.workers)

    def running(self) -> int:
        """Transfers in progress, all workers together."""
        return sum(len(w.transfers) for w in self.workers)

    def admit(self, client: str) -> str | None:
        """Count a new transfer of ``client`` in, or say in words which cap refuses it."""
        with self.lock:
            total = sum(self.per_client.values())
            if total >= self.max_transfers:
                return (f"{total} transfers already running (tftp.max_transfers = "
                        f"{self.max_transfers})")
            mine = self.per_client.get(client, 0)
            if mine >= self.max_per_client:
                return (f"{mine} transfers of {client} already running "
                        f"(tftp.max_per_client = {self.max_per_client})")
            self.per_client[client] = mine + 1
        return None

    def release(self, client: str) -> None:
        with self.lock:
            n = self.per_client.get(client, 0) - 1
            if n > 0:
                self.per_client[client] = n
            else:
                self.per_client.pop(client, None)

    def place(self) -> _Worker:
        """The worker with the fewest transfers (worker 0 on a tie)."""
        return min(self.workers, key=lambda w: len(w.transfers))

    def pick_helper(self) -> _Helper | None:
        """The ready transfer process with the fewest transfers, when it has no more than
        this process (a tie goes to the helper: this process also reads requests and
        publishes the events); None: serve it here."""
        best: _Helper | None = None
        for h in self.helpers:
            if h.ready and (best is None or len(h.transfers) < len(best.transfers)):
                best = h
        if best is None or (SHARE_LOCAL and len(best.transfers) > self.running()):
            return None
        return best


class _Worker:
    """One readiness loop in its own thread; talks to the world only by events."""

    def __init__(self, engine: TftpEngine, index: int) -> None:
        self.engine = engine
        self.index = index
        self.listen = engine.listen if index == 0 else None
        self.tree = engine.tree
        self.bus = engine.bus
        self.address = engine.address
        self.interface = engine.interface
        self.limits = engine.limits
        self.allow_write = engine.allow_write
        self.write_root = engine.write_root
        self.active_keys = engine.active_keys
        self.by_file = engine.by_file
        self.transfers: dict[int, _Transfer] = {}
        self.ep = select.epoll()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"tftp-{index}", daemon=True)
        self.rbuf = bytearray(65536 + 64)
        self.sbuf = bytearray(proto.MAX_BLKSIZE + 4)
        self.smv = memoryview(self.sbuf)
        self.crashed: BaseException | None = None
        self._drop_window = 0.0
        self._drops_logged = 0
        self._drops_suppressed = 0
        self._drop_last = ""
        self._last: _Transfer | None = None
        """The transfer the request being handled created (it owns the admission)."""
        self._extra: dict[int, Callable[[float], None]] = {}
        """Other descriptors of the loop (the transfer processes' sockets) and their readers."""

    def adopt(self, t: _Transfer) -> None:
        """Take a transfer set up by worker 0 (any thread may call this)."""
        t.worker = self
        self.transfers[t.fd] = t
        self.ep.register(t.fd, select.EPOLLIN)

    def _dropped(self, ev: PacketDropped) -> None:
        """Publish a PacketDropped, at most DROP_EVENTS_PER_SECOND a second.

        A flood on the LAN must not turn into an event backlog that grows without
        bound on the asyncio side: past the limit, drops are counted and one
        summary event per second says how many there were.
        """
        if self._drops_logged < DROP_EVENTS_PER_SECOND:
            self._drops_logged += 1
            self._emit(ev)
        else:
            self._drops_suppressed += 1
            self._drop_last = ev.reason

    def _drop_summary(self, now: float) -> None:
        if now - self._drop_window < 1.0:
            return
        if self._drops_suppressed:
            self._emit(PacketDropped(
                service=SERVICE, peer="(many)", size=0,
                reason=f"{self._drops_suppressed} more packets dropped in the last second "
                       f"without an event each (more than {DROP_EVENTS_PER_SECOND}/s; "
                       f"latest: {self._drop_last})"))
        self._drop_window = now
        self._drops_logged = self._drops_suppressed = 0

    def _emit(self, ev: object) -> None:
        try:
            self.bus.publish_threadsafe(ev)  # type: ignore[arg-type]
        except RuntimeError:
            pass  # the loop is gone (shutdown)

    # --- the loop ----------------------------------------------------------------

    def _run(self) -> None:
        _raise_priority()
        try:
            self._loop()
        except BaseException as exc:  # pragma: no cover - a bug; say so, do not vanish
            self.crashed = exc
            self._emit(LogLine(service=SERVICE, level="error",
                               message=f"TFTP loop stopped by an internal error: {exc!r}"))
        finally:
            self._cleanup()

    def _loop(self) -> None:
        ep = self.ep
        lfd = -1
        if self.listen is not None:
            lfd = self.listen.fileno()
            ep.register(lfd, select.EPOLLIN)
            for h in self.engine.helpers:
                self._spawn(h)
        ep.register(self._wake_r, select.EPOLLIN)
        transfers = self.transfers
        rbuf = self.rbuf
        monotonic = time.monotonic
        poll = ep.poll
        packet = self._packet
        now = monotonic()
        next_scan = now + SCAN_INTERVAL
        next_check = now
        spin = SPIN_WINDOW
        chooser = SpinChooser(spin > 0, machine_busy)
        lone: _Transfer | None = None
        window = 1  # the lone transfer's windowsize
        solo = SOLO
        while not self._stopping:
            if solo and now < next_check and len(transfers) == 1:
                # One transfer: wait in its recv() (SO_RCVTIMEO bounds it), not in epoll:
                # one system call less per packet. Every SOLO_CHECK seconds the epoll
                # pass below looks at new requests, the wake-up pipe and the timers.
                for only in transfers.values():
                    break
                if only is not lone:
                    lone = only
                    chooser.reset()
                    window = getattr(only.core, "windowsize", 1)
                try:
                    n = -1
                    if chooser.spin:
                        recv_into, deadline = only.sock.recv_into, now + spin
                        while True:
                            try:
                                n = recv_into(rbuf, 0, MSG_DONTWAIT)
                                break
                            except BlockingIOError:
                                if monotonic() > deadline:
                                    break
                    if n < 0:
                        n = only.sock.recv_into(rbuf)
                except BlockingIOError:
                    now = next_check = monotonic()
                    continue
                except OSError as exc:
                    now = monotonic()
                    self._gone(only, exc, now)
                    continue
                now = monotonic()
                chooser.tick(now, window)
                packet(only, n, now)
                continue
            if lone is not None and len(transfers) != 1:
                lone = None
            if solo and len(transfers) == 1:
                timeout = 0.0
            else:
                timeout = next_scan - now
                if timeout < 0:
                    timeout = 0.0
            events = poll(timeout)
            now = monotonic()
            next_check = now + SOLO_CHECK
            for fd, mask in events:
                t = transfers.get(fd)
                if t is not None:
                    try:
                        n = t.sock.recv_into(rbuf, 0, MSG_DONTWAIT)
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        self._gone(t, exc, now)
                        continue
                    packet(t, n, now)
                elif fd == lfd:
                    self._accept(now)
                elif fd == self._wake_r:
                    with contextlib.suppress(OSError):
                        os.read(self._wake_r, 64)
                else:
                    reader = self._extra.get(fd)
                    if reader is not None:
                        reader(now)
            if now >= next_scan:
                self._scan(now)
                next_scan = now + SCAN_INTERVAL
                follow_privileges()  # capabilities are per thread: take serve's drop

    def _packet(self, t: _Transfer, n: int, now: float) -> None:
        """One datagram of ``n`` bytes in ``self.rbuf`` from a transfer's client.

        The hot path: an ACK during a read is recognised from its 4 bytes and
        answered from preallocated buffers; anything else takes the generic path.
        """
        rbuf = self.rbuf
        core = t.core
        if n == 4 and rbuf[1] == 4 and rbuf[0] == 0 and not t.writer:
            lo, hi = core.on_ack((rbuf[2] << 8) | rbuf[3], now)  # type: ignore[union-attr]
            if hi:
                send = t.send
                first = lo
                try:
                    if core.framed:  # type: ignore[union-attr]
                        # A file: each packet is a slice of the transfer's read buffer
                        # (ChunkedFile), nothing copied; a window's blocks lie back to
                        # back, so after the first (the client starts on it) t.gso of
                        # them leave in one send, cut into datagrams by the kernel.
                        frames = core.frames  # type: ignore[union-attr]
                        if t.gso and hi - lo > 1:
                            send(frames(lo, 1)[0], MSG_DONTWAIT)  # the client starts on it
                            lo += 1
                            per = t.gso
                            while lo < hi:
                                view, got = frames(lo, per if hi - lo > per else hi - lo)
                                send(view, MSG_DONTWAIT)
                                lo += got
                        else:
                            while lo < hi:
                                send(frames(lo, 1)[0], MSG_DONTWAIT)
                                lo += 1
                        # the next window (from hi) not all in the read buffer: read it now,
                        # while the client takes this one (ChunkedFile.ahead)
                        mm = t.mm
                        window = core.windowsize  # type: ignore[union-attr]
                        if mm is not None and hi + window > mm.end + 1:
                            core.ahead(hi)  # type: ignore[union-attr]
                    else:  # generated data (t.gso is 0 for it)
                        build = core.build  # type: ignore[union-attr]
                        sbuf, smv = self.sbuf, self.smv
                        for b in range(lo, hi):
                            send(smv[:build(sbuf, b)], MSG_DONTWAIT)
                except BlockingIOError:
                    pass  # socket buffer full: the timer sends it again
                except OSError as exc:
                    if t.gso and exc.errno in (errno.EIO, errno.EINVAL) \
                            and not isinstance(exc, FileChanged):
                        t.gso = 0  # no segmentation offload on this path after all
                        with contextlib.suppress(OSError):
                            for b in range(first, hi):
                                send(self.smv[:core.build(self.sbuf, b)],  # type: ignore
                                     MSG_DONTWAIT)
                        return
                    self._gone(t, exc, now)
                    return
            if core.state is not ReadState.SENDING:
                self._settle(t, now)
        else:
            self._slow_packet(t, n, now)

    # --- transfer packets off the fast path ---------------------------------------

    def _slow_packet(self, t: _Transfer, n: int, now: float) -> None:
        data = bytes(self.rbuf[:n])
        try:
            t.core.receive(data, now)
        except ValueError as exc:
            self._dropped(PacketDropped(service=SERVICE, peer=t.peer, client=t.client,
                                     reason=f"{exc} (transfer of {t.path})", size=n))
            return
        self._flush(t, now)
        self._settle(t, now)

    def _flush(self, t: _Transfer, now: float) -> None:
        """Send what the core queued (generic path: timers, writes, the first packet)."""
        core = t.core
        try:
            if t.writer:
                wcore: WriteTransfer = core  # type: ignore[assignment]
                for off, chunk in wcore.take_chunks():
                    os.pwrite(t.wfd, chunk, off)
                for dgram in wcore.datagrams_to_send():
                    t.send(dgram, MSG_DONTWAIT)
            else:
                rcore: ReadTransfer = core  # type: ignore[assignment]
                lo, hi = rcore.take_pending()
                smv = memoryview(self.sbuf)
                for b in range(lo, hi):
                    t.send(smv[:rcore.build(self.sbuf, b)], MSG_DONTWAIT)
        except BlockingIOError:
            pass
        except OSError as exc:
            if t.writer and t.wfd >= 0 and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
                self._abort_write(t, exc, now)
            else:
                self._gone(t, exc, now)

    def _settle(self, t: _Transfer, now: float) -> None:
        """Turn the core's events into bus events; close the transfer when it ended."""
        if t.closed:
            return
        ev = t.core.next_event()
        while ev is not None:
            secs = max(now - t.started, 1e-9)
            if isinstance(ev, TransferComplete):
                if t.writer:
                    self._commit_write(t)
                self._emit(TransferDone(service=SERVICE, path=t.path, sent=ev.bytes,
                                        seconds=secs, peer=t.peer, client=t.client))
            elif isinstance(ev, TransferAborted):
                cause = (FailCause.timeout if ev.timed_out else FailCause.refused
                         if ev.too_big else FailCause.client_aborted)
                self._emit(TransferFailed(service=SERVICE, path=t.path, reason=ev.reason,
                                          code=ev.code, sent=ev.bytes, probe=ev.probe,
                                          cause=cause, peer=t.peer, client=t.client))
            ev = t.core.next_event()
        if t.core.finished:
            self._close(t)

    def _gone(self, t: _Transfer, exc: OSError, now: float) -> None:
        if isinstance(exc, FileChanged):
            # Tell the client too, or it would take a short block for the end of the file.
            with contextlib.suppress(OSError):
                t.send(proto.error_packet(ErrorCode.NOT_DEFINED, "File changed or unreadable "
                                          "on the server; try again"), MSG_DONTWAIT)
            reason, cause = f"cannot read the file: {exc.strerror or exc}", FailCause.server_error
        elif exc.errno == errno.ECONNREFUSED:
            reason = "the client's port is closed (it went away or gave up)"
            cause = FailCause.client_gone
        else:
            reason, cause = f"socket error: {exc.strerror or exc}", FailCause.client_gone
        sent = t.core.bytes if t.writer else t.core.bytes_acked  # type: ignore[union-attr]
        self._emit(TransferFailed(service=SERVICE, path=t.path, reason=reason, sent=sent,
                                  cause=cause, peer=t.peer, client=t.client))
        self._close(t)

    def _close(self, t: _Transfer) -> None:
        if t.closed:
            return
        t.closed = True
        w = t.worker or self
        if t.remote is not None:
            t.remote.transfers.pop((t.peer, t.path), None)
        else:
            w.transfers.pop(t.fd, None)
        self.active_keys.discard(t.key)
        if t.admitted:
            t.admitted = False
            self.engine.release(t.client)
        fk = (t.client, t.path)
        if self.by_file.get(fk) is t:
            del self.by_file[fk]
        if t.worker is not None:
            with contextlib.suppress(OSError, ValueError):
                w.ep.unregister(t.fd)
        with contextlib.suppress(OSError):
            t.sock.close()
        if t.mm is not None:
            t.mm.close()
            t.mm = None
        if t.wfd >= 0:
            with contextlib.suppress(OSError):
                os.close(t.wfd)
            t.wfd = -1
            if t.tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(t.tmp, dir_fd=t.pfd)
        if t.pfd >= 0:
            with contextlib.suppress(OSError):
                os.close(t.pfd)
            t.pfd = -1

    def _grant_smaller(self, t: _Transfer) -> None:
        """Block 1 of the negotiated size lost again and again while the OACK got through:
        the path MTU is smaller than our blocks. That client's next requests get a block
        size that fits (no other TFTP server does this; the client would loop)."""
        t.mtu_flagged = True
        asked = t.core.blksize
        path_mtu = None
        with contextlib.suppress(OSError):
            path_mtu = t.sock.getsockopt(socket.IPPROTO_IP, _IP_MTU)
        grant = proto.fitting_blksize(asked, path_mtu)
        self.engine.granted[t.client] = grant
        known = path_mtu if path_mtu and path_mtu < asked + proto.IP_UDP_TFTP_OVERHEAD else 0
        self._emit(BlksizeGranted(path=t.path, asked=asked, granted=grant,
                                  packet=asked + proto.IP_UDP_TFTP_OVERHEAD, path_mtu=known,
                                  peer=t.peer, client=t.client))

    def _retire(self, t: _Transfer) -> None:
        """End a transfer its client abandoned for a new request of the same file.

        Without this, a loader that asks again (iPXE, syslinux after a timeout of its
        own) leaves each old transfer retrying for a minute, and ~50 of them clutter the
        timeline. The client ignores the old port, so no ERROR is sent to it.
        """
        if t.closed:
            return
        sent = t.core.bytes if t.writer else t.core.bytes_acked  # type: ignore[union-attr]
        self._emit(TransferFailed(service=SERVICE, path=t.path, sent=sent, peer=t.peer,
                                  client=t.client, cause=FailCause.superseded,
                                  reason=f"the client asked for {t.path} again from {t.retire}; "
                                         "this older transfer is retired"))
        self._close(t)

    # --- the timer scan ---------------------------------------------------------------

    def _scan(self, now: float) -> None:
        self._drop_summary(now)
        eng = self.engine
        for t in list(self.transfers.values()):
            if t.retire:
                self._retire(t)
                continue
            core = t.core
            too_long = now - t.started > eng.max_lifetime
            stalled = now - core.last_progress > eng.max_stall
            if too_long or stalled:
                why = (f"ended after {eng.max_lifetime:.0f} s (tftp.max_transfer_seconds)"
                       if too_long else f"no progress for {eng.max_stall:.0f} s "
                       "(tftp.max_stall_seconds)")
                with contextlib.suppress(OSError):
                    t.send(proto.error_packet(ErrorCode.NOT_DEFINED, "Transfer timed out"),
                           MSG_DONTWAIT)
                sent = core.bytes if t.writer else core.bytes_acked  # type: ignore[union-attr]
                self._emit(TransferFailed(service=SERVICE, path=t.path, sent=sent, peer=t.peer,
                                          client=t.client, reason=why))
                self._close(t)
                continue
            deadline = core.get_timer()
            if deadline is not None and now >= deadline:
                core.handle_timer(now)
                if not t.writer and not t.mtu_flagged and core.big_blocks_lost:  # type: ignore[union-attr]
                    self._grant_smaller(t)
                self._flush(t, now)
                self._settle(t, now)
                if t.closed:
                    continue
            if now - t.reported_at >= PROGRESS_INTERVAL:
                sent = core.bytes if t.writer else core.bytes_acked  # type: ignore[union-attr]
                if sent != t.reported_bytes:
                    t.reported_at, t.reported_bytes = now, sent
                    self._emit(TransferProgress(service=SERVICE, path=t.path, sent=sent,
                                                size=t.size, peer=t.peer, client=t.client))

    # --- new requests on the listening socket -------------------------------------------

    def _accept(self, now: float) -> None:
        # Drain a burst (floods, many clients at once), but yield to transfers after 64.
        listen = self.listen
        assert listen is not None  # only worker 0 accepts
        for _ in range(64):
            try:
                n, addr = listen.recvfrom_into(self.rbuf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            peer = f"{addr[0]}:{addr[1]}"
            try:
                pkt = proto.decode(self.rbuf[:n])
                if not isinstance(pkt, proto.Request):
                    raise ValueError(f"{type(pkt).__name__} packet sent to the server port "
                                     "instead of a transfer's port")
            except ValueError as exc:
                self._dropped(PacketDropped(service=SERVICE, peer=peer, client=addr[0],
                                         reason=str(exc), size=n))
                continue
            try:
                self._request(pkt, addr, peer, now)
            except Exception as exc:  # one bad request must never stop the server
                self._emit(LogLine(service=SERVICE, level="error",
                                   message=f"request from {peer} for {pkt.filename!r} failed "
                                           f"inside the server: {exc!r}"))

    def _nak(self, addr: tuple[str, int], code: int, message: str) -> None:
        """ERROR from a fresh port (the TID a transfer would have had)."""
        s: socket.socket | None
        try:
            s = udp_socket(self.address, 0, interface=self.interface)
        except Exception:  # out of ports or file descriptors: answer from port 69
            s = self.listen
        if s is None:
            return
        try:
            s.sendto(proto.error_packet(code, message), addr)
        except OSError:
            pass
        finally:
            if s is not self.listen:
                s.close()

    def _refuse(self, addr: tuple[str, int], peer: str, path: str, code: int, nak: str,
                reason: str, cause: FailCause = FailCause.refused) -> None:
        self._nak(addr, code, nak)
        self._emit(TransferFailed(service=SERVICE, path=path, reason=reason, code=code,
                                  cause=cause, peer=peer, client=addr[0]))

    def _transfer_socket(self, addr: tuple[str, int]) -> socket.socket:
        s = udp_socket(self.address, 0, interface=self.interface)
        with contextlib.suppress(OSError):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCK_BUF)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCK_BUF)
        s.connect(addr)
        # Blocking at the OS level with a receive timeout, so a single transfer can wait in
        # recv() itself (see _loop); every other call passes MSG_DONTWAIT.
        s.setblocking(True)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                     struct.pack("ll", 0, int(SOLO_CHECK * 1e6)))
        return s

    def _request(self, req: proto.Request, addr: tuple[str, int], peer: str, now: float) -> None:
        key = (addr[0], addr[1], req.filename)
        if key in self.active_keys:
            # RFC 1350 section 4: a retransmitted request while its transfer runs.
            self._dropped(PacketDropped(service=SERVICE, peer=peer, client=addr[0],
                                     reason=f"repeated request for {req.filename} while its "
                                            "transfer runs"))
            return
        if req.mode not in proto.MODES:
            self._refuse(addr, peer, req.filename, ErrorCode.ILLEGAL_OPERATION,
                         f"Unknown transfer mode {req.mode!r}",
                         f"transfer mode {req.mode!r} is not supported (octet and netascii are)")
            return
        full = self.engine.admit(addr[0])
        if full is not None:
            # From the listening socket (no descriptor spent on a refusal), and one event a
            # flood cannot multiply: PacketDropped is rate-limited with a summary.
            with contextlib.suppress(OSError):
                self.listen.sendto(proto.error_packet(ErrorCode.NOT_DEFINED, TOO_MANY), addr)
            self._dropped(PacketDropped(service=SERVICE, peer=peer, client=addr[0],
                                        reason=f"request for {req.filename} refused with "
                                               f"'{TOO_MANY}': {full}"))
            return
        try:
            self._admitted(req, addr, peer, now, key)
        finally:
            if self._last is None:  # refused or failed before a transfer took the admission
                self.engine.release(addr[0])
            self._last = None

    def _admitted(self, req: proto.Request, addr: tuple[str, int], peer: str, now: float,
                  key: tuple[str, int, str]) -> None:
        if req.opcode is Opcode.WRQ:
            self._write_request(req, addr, peer, now, key)
            return
        try:
            ref = self.tree.resolve(req.filename)
        except TreeError as exc:
            self._refuse(addr, peer, req.filename, exc.code, nak_message(exc), str(exc),
                         exc.cause)
            return
        mm: ChunkedFile | None = None
        try:
            if ref.data is not None:
                data: memoryview | bytes | ChunkedFile = memoryview(ref.data)
            elif req.mode == "netascii":
                if ref.size > NETASCII_MAX:
                    self._refuse(addr, peer, req.filename, ErrorCode.ILLEGAL_OPERATION,
                                 "File too large for netascii mode",
                                 f"{ref.size} bytes asked in netascii mode; use octet")
                    return
                data = ref.read()
            else:
                fd = ref.open_fd()  # checks the jail again on what was opened (link races)
                try:
                    st = os.fstat(fd)
                    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
                        raise AccessDenied(f"{ref.path} is not a regular file")
                    with contextlib.suppress(OSError, AttributeError):
                        os.posix_fadvise(fd, ref.offset, ref.size, os.POSIX_FADV_SEQUENTIAL)
                except BaseException:
                    os.close(fd)
                    raise
                mm = ChunkedFile(fd, ref.size, req.filename, base=ref.offset)
                data = mm
        except TreeError as exc:
            self._refuse(addr, peer, req.filename, exc.code, nak_message(exc), str(exc),
                         exc.cause)
            return
        except PermissionError as exc:
            self._refuse(addr, peer, req.filename, ErrorCode.ACCESS_VIOLATION, "Access violation",
                         f"{req.filename}: cannot open {ref.real}: {exc.strerror}",
                         FailCause.permission)
            return
        except OSError as exc:
            self._refuse(addr, peer, req.filename, ErrorCode.NOT_DEFINED, "Read error",
                         f"{req.filename}: cannot read {ref.real}: {exc.strerror}",
                         FailCause.server_error)
            return
        if req.mode == "netascii":
            assert not isinstance(data, ChunkedFile)  # netascii files are read whole
            data = proto.to_netascii(bytes(data))
        limits = self.limits
        grant = self.engine.granted.get(addr[0])
        if grant is not None and grant < limits.max_blksize:
            limits = dataclasses.replace(limits, max_blksize=grant)
        core = ReadTransfer(req, data, limits, now)
        try:
            sock = self._transfer_socket(addr)
        except Exception as exc:
            if mm is not None:
                mm.close()
            self._emit(TransferFailed(service=SERVICE, path=req.filename, peer=peer,
                                      client=addr[0], reason=f"no socket for the transfer: {exc}",
                                      cause=FailCause.server_error))
            return
        t = _Transfer(sock, core, peer, addr[0], req.filename, core.size, now)
        t.admitted = True
        self._last = t
        t.mm = mm
        # Segmented sends for a file's windows (its packets already lie back to back in
        # ChunkedFile's slots); a generated file (a menu, a few blocks) goes a block a send.
        t.gso = (_enable_gso(sock, core.blksize)
                 if core.windowsize > 1 and GSO and core.framed else 0)
        t.key = key
        self.active_keys.add(key)
        old = self.by_file.get((addr[0], req.filename))
        # Abandoned: its client has let at least one timeout pass unanswered. Busy parallel
        # transfers of one file from one address (benchmarks, NAT) are left alone.
        if old is not None and not old.closed and old.remote is not None:
            old.remote.retire(old, peer)  # that process knows whether it was abandoned
        elif old is not None and not old.closed and getattr(old.core, "retry", 0) >= 1:
            old.retire = peer
            if old.worker is self or old.worker is None:
                self._retire(old)
            else:
                with contextlib.suppress(OSError):
                    os.write(old.worker._wake_w, b"x")
        self.by_file[(addr[0], req.filename)] = t
        opts = dict(core.negotiated.oack)
        if req.mode != "octet":
            opts["mode"] = req.mode
        if core.negotiated.ignored:
            opts["ignored"] = "; ".join(core.negotiated.ignored)
        self._emit(TransferStarted(service=SERVICE, path=req.filename, size=core.size,
                                   options=opts, peer=peer, client=addr[0]))
        if mm is not None and core.size >= HANDOFF_MIN:
            h = self.engine.pick_helper()
            if h is not None and self._hand_off(h, t, req, limits, now):
                return
        # First packet from here, then hand over: an early ACK waits in the socket and the
        # level-triggered epoll of the adopting worker reports it at once.
        self._flush(t, now)
        if not t.closed:
            self.engine.place().adopt(t)

    # --- writes (only when the operator allowed them) --------------------------------------

    def _write_request(self, req: proto.Request, addr: tuple[str, int], peer: str, now: float,
                       key: tuple[str, int, str]) -> None:
        if not self.allow_write or self.write_root is None:
            why = ("writes are off (tftp.allow_write = false)" if not self.allow_write else
                   "writes are on but no tftp.root is set to write into")
            self._refuse(addr, peer, req.filename, ErrorCode.ACCESS_VIOLATION,
                         READ_ONLY_MESSAGE, f"write request refused: {why}")
            return
        pfd = -1
        try:
            vpath = normalize(req.filename)
            if not vpath:
                raise AccessDenied("no file name given")
            parent_rel, _, name = vpath.rpartition("/")
            try:  # the directory, reached the jailed way (no link, never out of write_root)
                pfd = open_dir_beneath(self.write_root, parent_rel)
            except NotFound:
                raise NotFound(f"{vpath}: directory {parent_rel or '.'} does not exist in "
                               f"{self.write_root}") from None
            if _exists_in(pfd, name):
                os.close(pfd)
                self._refuse(addr, peer, req.filename, ErrorCode.FILE_EXISTS,
                             "File already exists",
                             f"write of {vpath} refused: the file exists and is not overwritten")
                return
            tmp_name = f".{name}.pxw-{secrets.token_hex(4)}.part"
            wfd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                          | os.O_CLOEXEC, 0o644, dir_fd=pfd)
        except TreeError as exc:
            if pfd >= 0:
                os.close(pfd)
            self._refuse(addr, peer, req.filename, exc.code, nak_message(exc), str(exc),
                         exc.cause)
            return
        except OSError as exc:
            if pfd >= 0:
                os.close(pfd)
            self._refuse(addr, peer, req.filename, ErrorCode.ACCESS_VIOLATION,
                         "Access violation", f"cannot create {req.filename}: {exc.strerror}",
                         FailCause.server_error)
            return
        core = WriteTransfer(req, self.limits, now, max_bytes=WRITE_MAX)
        try:
            sock = self._transfer_socket(addr)
        except Exception as exc:
            os.close(wfd)
            with contextlib.suppress(OSError):
                os.unlink(tmp_name, dir_fd=pfd)
            os.close(pfd)
            self._emit(TransferFailed(service=SERVICE, path=req.filename, peer=peer,
                                      client=addr[0], reason=f"no socket for the transfer: {exc}",
                                      cause=FailCause.server_error))
            return
        t = _Transfer(sock, core, peer, addr[0], req.filename, None, now)
        t.admitted = True
        self._last = t
        t.wfd, t.tmp, t.final, t.pfd, t.key = wfd, tmp_name, name, pfd, key
        self.active_keys.add(key)
        opts = dict(core.negotiated.oack)
        opts["write"] = "yes"
        self._emit(TransferStarted(service=SERVICE, path=req.filename, options=opts, peer=peer,
                                   client=addr[0]))
        self._flush(t, now)
        if not t.closed:
            self.adopt(t)  # writes stay on worker 0: they touch the disk, rarely run

    def _commit_write(self, t: _Transfer) -> None:
        assert t.tmp is not None and t.final is not None
        try:
            os.fsync(t.wfd)
            # fails if the name appeared meanwhile: never clobber
            os.link(t.tmp, t.final, src_dir_fd=t.pfd, dst_dir_fd=t.pfd)
        except OSError as exc:
            self._emit(LogLine(service=SERVICE, level="error",
                               message=f"upload of {t.path} received but not saved: "
                                       f"{exc.strerror}"))
        # _close removes the temporary name

    def _abort_write(self, t: _Transfer, exc: OSError, now: float) -> None:
        with contextlib.suppress(OSError):
            t.send(proto.error_packet(ErrorCode.DISK_FULL, "Disk full or allocation exceeded"),
                   MSG_DONTWAIT)
        self._emit(TransferFailed(service=SERVICE, path=t.path, code=ErrorCode.DISK_FULL,
                                  reason=f"cannot write the upload: {exc.strerror}",
                                  cause=FailCause.server_error,
                                  sent=t.core.bytes, peer=t.peer,  # type: ignore[union-attr]
                                  client=t.client))
        self._close(t)

    # --- transfer processes (worker 0's side) ------------------------------------------------

    def _spawn(self, h: _Helper) -> None:
        """Start a transfer process; its transfers begin once it said ready."""
        try:
            h.start(self.engine)
        except Exception as exc:
            self._emit(LogLine(service=SERVICE, level="warning",
                               message=f"TFTP transfer process {h.index} could not start "
                                       f"({exc}); its share of the transfers is served "
                                       "in-process"))
            return
        assert h.sock is not None
        fd = h.sock.fileno()
        self._extra[fd] = lambda now: self._from_helper(h, now)
        self.ep.register(fd, select.EPOLLIN)

    def _hand_off(self, h: _Helper, t: _Transfer, req: proto.Request, limits: Limits,
                  now: float) -> bool:
        """Give a read transfer's socket and file to a transfer process (nothing sent yet:
        that process sends the first packet). False: it stays here."""
        core = t.core
        mm = t.mm
        assert isinstance(core, ReadTransfer) and mm is not None and h.sock is not None
        neg = core.negotiated
        msg = {"op": "adopt", "path": t.path, "options": req.options,
               "size": mm.size, "base": mm.base, "started": now, "peer": t.peer,
               "client": t.client, "blksize": neg.blksize, "windowsize": neg.windowsize,
               "timeout": neg.timeout, "oack": neg.oack, "retries": limits.retries,
               "gso": t.gso}
        try:
            h.sock.sendmsg([json.dumps(msg).encode()],
                           [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("ii", t.fd, mm.fd))],
                           MSG_DONTWAIT)
        except OSError:
            return False  # its queue is full or it is gone (the reader sees EOF)
        t.remote = h
        h.transfers[(t.peer, t.path)] = t
        h.handed += 1
        with contextlib.suppress(OSError):
            t.sock.close()  # that process holds its own copies now
        mm.close()
        t.mm = None
        return True

    def _from_helper(self, h: _Helper, now: float) -> None:
        """Read what a transfer process said: events of its transfers, closed, ready."""
        sock = h.sock
        for _ in range(1024):
            if sock is None:
                return
            try:
                data = sock.recv(65536, MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._helper_lost(h, now)
                return
            try:
                msg = json.loads(data)
                op = msg["op"]
                if op == "ev":
                    self._helper_event(h, msg["ev"])
                elif op == "closed":
                    t = h.transfers.get((msg["peer"], msg["path"]))
                    if t is not None:
                        self._close(t)
                elif op == "ready":
                    h.ready = True
                    self._emit(LogLine(service=SERVICE, level="debug",
                                       message=f"TFTP transfer process {h.index} ready "
                                               f"(pid {h.pid}, uid {msg.get('uid')})"))
            except Exception as exc:  # never trust it blindly, never stop for it
                self._emit(LogLine(service=SERVICE, level="error",
                                   message=f"TFTP transfer process {h.index} sent a message "
                                           f"that was not understood: {exc!r}"))

    def _helper_event(self, h: _Helper, d: dict[str, object]) -> None:
        """An event of a transfer process, rebuilt here from its allowed fields; names
        (path, peer, client) come from this process's own record of the transfer."""
        kind = d.get("kind")
        spec = _FORWARDED.get(kind)  # type: ignore[arg-type]
        if spec is None:
            return
        cls, fields = spec
        kw: dict[str, object] = {}
        for name, typ in fields.items():
            v = d.get(name)
            if v is None:
                continue
            if typ is FailCause:
                try:
                    kw[name] = FailCause(str(v))
                except ValueError:
                    kw[name] = FailCause.unknown
            elif typ is float and type(v) in (int, float):
                kw[name] = float(v)  # type: ignore[arg-type]
            elif type(v) is typ:
                kw[name] = v
        t = h.transfers.get((str(d.get("peer")), str(d.get("path"))))
        if cls in (PacketDropped, LogLine):
            kw["service"] = SERVICE
            if cls is PacketDropped:
                kw.setdefault("peer", "")
                kw.setdefault("reason", "")
            else:
                kw.setdefault("level", "error")
                kw.setdefault("message", "")
            self._emit(cls(**kw))
            return
        if t is None:
            return  # not one of its transfers (any more)
        kw.update(path=t.path, peer=t.peer, client=t.client)
        if cls is BlksizeGranted:
            granted = kw.get("granted")
            if isinstance(granted, int):
                self.engine.granted[t.client] = granted
        else:
            kw["service"] = SERVICE
            if cls is TransferProgress:
                kw["size"] = t.size
                sent = kw.get("sent")
                t.reported_bytes = sent if isinstance(sent, int) else t.reported_bytes
        try:
            self._emit(cls(**kw))
        except TypeError:
            pass  # a required field missing: nothing to say

    def _helper_lost(self, h: _Helper, now: float) -> None:
        """The transfer process ended (crashed, killed): its transfers fail with an event,
        new ones are served here."""
        if h.sock is None:
            return
        fd = h.sock.fileno()
        self._extra.pop(fd, None)
        with contextlib.suppress(OSError, ValueError):
            self.ep.unregister(fd)
        with contextlib.suppress(OSError):
            h.sock.close()
        h.sock = None
        was_ready, h.ready = h.ready, False
        status = h.reap(0.5)
        how = f" (exit status {status})" if status is not None else ""
        if not was_ready:
            self._emit(LogLine(service=SERVICE, level="warning",
                               message=f"TFTP transfer process {h.index} could not start"
                                       f"{how}; transfers are served in-process"))
            return
        for t in list(h.transfers.values()):
            self._emit(TransferFailed(
                service=SERVICE, path=t.path, sent=t.reported_bytes, peer=t.peer,
                client=t.client, cause=FailCause.server_error,
                reason=f"the TFTP transfer process (pid {h.pid}) that ran this transfer "
                       f"ended{how}; the client may ask again"))
            self._close(t)
        if not self._stopping:
            self._emit(LogLine(service=SERVICE, level="error",
                               message=f"TFTP transfer process {h.index} (pid {h.pid}) "
                                       f"ended{how}; new transfers are served in-process"))

    def _stop_helper(self, h: _Helper) -> None:
        """Serve stop: read its last words, end it (EOF on its socket), wait for it."""
        if h.sock is not None:
            self._from_helper(h, time.monotonic())
        if h.sock is not None:
            for t in list(h.transfers.values()):
                self._emit(TransferFailed(service=SERVICE, path=t.path, sent=t.reported_bytes,
                                          peer=t.peer, client=t.client,
                                          reason="the server was stopped",
                                          cause=FailCause.stopped))
                self._close(t)
            with contextlib.suppress(OSError, ValueError):
                self.ep.unregister(h.sock.fileno())
            with contextlib.suppress(OSError):
                h.sock.close()
            h.sock = None
        if not h.ready and h.proc is not None:  # still starting: it holds nothing
            with contextlib.suppress(OSError):
                h.proc.kill()
        h.reap(3.0, kill=True)

    # --- shutdown -------------------------------------------------------------------------

    def _cleanup(self) -> None:
        for h in self.engine.helpers if self.listen is not None else ():
            self._stop_helper(h)
        for t in list(self.transfers.values()):
            sent = t.core.bytes if t.writer else t.core.bytes_acked  # type: ignore[union-attr]
            self._emit(TransferFailed(service=SERVICE, path=t.path, sent=sent, peer=t.peer,
                                      client=t.client, reason="the server was stopped",
                                      cause=FailCause.stopped))
            self._close(t)
        with contextlib.suppress(Exception):
            self.ep.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.listen is not None:
            with contextlib.suppress(OSError):
                self.listen.close()


_FORWARDED: dict[str, tuple[type, dict[str, type]]] = {
    "transfer_progress": (TransferProgress, {"sent": int}),
    "transfer_done": (TransferDone, {"sent": int, "seconds": float}),
    "transfer_failed": (TransferFailed, {"reason": str, "cause": FailCause, "code": int,
                                         "sent": int, "probe": bool}),
    "blksize_granted": (BlksizeGranted, {"asked": int, "granted": int, "packet": int,
                                         "path_mtu": int}),
    "packet_dropped": (PacketDropped, {"peer": str, "client": str, "reason": str,
                                       "size": int}),
    "log_line": (LogLine, {"level": str, "message": str}),
}
"""Events a transfer process may report, and the fields taken from it (checked by type;
a transfer's names come from the engine's own record)."""

_FDS_SPACE = socket.CMSG_SPACE(4 * struct.calcsize("i"))
_HELPER_CODE = ("import sys; from pxewizard.servers.tftp import transfer_process; "
                "transfer_process(int(sys.argv[1]), sys.argv[2])")


class _Helper:
    """The engine's end of one transfer process.

    Why a process: the engine is one Python thread (more threads measured slower, see
    :class:`TftpEngine`), so it used one of the 2 cores while tftpd-hpa and atftpd fork
    per client and use both. Worker 0 keeps every decision (request parsing, caps, the
    jailed open, option negotiation, TransferStarted); for a read of a real file it hands
    the connected transfer socket and the open file (SCM_RIGHTS over a SOCK_SEQPACKET
    pair) with the negotiated options to the least busy process, which runs the same
    :class:`_Worker` loop (:class:`_ProcWorker`) and reports back in JSON: the events of
    its transfers (rebuilt here from allowed fields, names from our own record) and
    ``closed``, which releases the admission. The process is started with
    ``sys.executable`` (no fork of a threaded asyncio process), from worker 0's thread
    (PR_SET_PDEATHSIG follows that thread: it dies with the engine), and keeps no
    privileges: uid and gid nobody, no capabilities, no_new_privs (it only gets
    descriptors). If it dies, its transfers end with TransferFailed and new ones are
    served in-process. It ignores SIGINT/SIGTERM/SIGHUP (a Ctrl-C or a SIGTERM to the
    process group would end it before the engine stopped) and stays in the engine's
    session: the kernel's autogroup schedules by session, and a session of its own
    measured no better (20 x 16 MiB: 76 MB/s against 73 in one session, same run).

    Placement (:meth:`TftpEngine.pick_helper`): small files (< HANDOFF_MIN), generated
    files, netascii and writes stay here; a tie goes to the process.

    Measured with ``bench/tftp.py --tests 20 100 --variant ...``, one process
    (PXW_TFTP_PROCS=1) against none in the same runs (the 2-core VM shared with other
    engineers, load 20-60 during the concurrent tests), MB/s, medians of 3:
    20 x 16 MiB 69 / 75 / 73 / 64 / 47 / 62 / 85 against 64 / 63 / 78 / 62 / 56 / 71 / 75;
    100 x 4 MiB 72 / 68 / 65 / 58 / 41 / 42 / 75 against 62 / 80 / 61 / 65 / 45 / 46 / 71;
    medians of 5: 74 / 59 against 79 / 63, at 10-11 CPU s/GB against 8.5-9 (a loop
    with half the transfers batches fewer ACKs per wake-up). One client (medians of
    3): 1468: 67 against 64, 8192: 271 / 255, windowsize 8 at 8192: 423 / 384, at
    1468: 126 / 137. Every transfer in processes (PXW_TFTP_LOCAL=0, 1 or 2 processes)
    measured worse (61-72 against 64-75). No gain, so it is off by default: the
    bench's 20-100 curl clients run on the same 2 cores, so no core is free for a
    second loop, and what decides is the CPU per packet (ours 8.5-10 s/GB, 70% of it
    system time in send(); the C peers 7-9). With the clients on other machines (a
    real classroom) the second core would be free: measure there before turning it on.
    """

    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.pid = 0
        self.ready = False
        self.transfers: dict[tuple[str, str], _Transfer] = {}
        """Its running transfers by (peer, path), the records of this process."""
        self.handed = 0
        """Transfers handed to it so far."""

    def start(self, engine: TftpEngine) -> None:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCK_BUF)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCK_BUF)
            config = json.dumps({"max_lifetime": engine.max_lifetime,
                                 "max_stall": engine.max_stall, "parent": os.getpid(),
                                 "index": self.index})
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _HELPER_CODE, str(b.fileno()), config],
                pass_fds=(b.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=None if os.environ.get("PXW_TFTP_PROC_STDERR") else subprocess.DEVNULL,
                start_new_session=False)  # one scheduling group with the engine
        except BaseException:
            a.close()
            raise
        finally:
            b.close()
        a.setblocking(False)
        self.sock = a
        self.pid = self.proc.pid

    def retire(self, t: _Transfer, peer: str) -> None:
        """A new request for the file: that process retires ``t`` if its client let a
        timeout pass (it knows the retry count)."""
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.send(json.dumps({"op": "retire", "peer": t.peer, "path": t.path,
                                           "by": peer}).encode(), MSG_DONTWAIT)

    def reap(self, timeout: float, kill: bool = False) -> int | None:
        """Its exit status, waiting up to ``timeout`` (then SIGKILL when ``kill``)."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            if not kill:
                return None
            with contextlib.suppress(OSError):
                self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                return self.proc.wait(3.0)
            return None


class _ProcEngine:
    """What a :class:`_Worker` reads of its engine, inside a transfer process (caps,
    requests and policy stay with the real engine)."""

    listen = None
    tree = None
    bus = None
    address = ""
    interface = None
    limits = Limits()
    allow_write = False
    write_root = None

    def __init__(self, max_lifetime: float, max_stall: float) -> None:
        self.max_lifetime = max_lifetime
        self.max_stall = max_stall
        self.active_keys: set[tuple[str, int, str]] = set()
        self.by_file: dict[tuple[str, str], _Transfer] = {}
        self.granted: dict[str, int] = {}

    def release(self, client: str) -> None:
        """Admissions are counted by the engine (it hears ``closed``)."""


class _ProcWorker(_Worker):
    """The loop of a transfer process: :class:`_Worker` with transfers coming from the
    engine over ``ctl`` and events going back to it."""

    def __init__(self, engine: _ProcEngine, ctl: socket.socket) -> None:
        super().__init__(engine, 1)  # type: ignore[arg-type]
        self.ctl = ctl
        self._extra[ctl.fileno()] = self._from_engine
        self.ep.register(ctl.fileno(), select.EPOLLIN)

    def _send(self, msg: dict[str, object]) -> None:
        try:
            self.ctl.send(json.dumps(msg).encode())
        except OSError:
            self._stopping = True  # the engine is gone

    def _emit(self, ev: object) -> None:
        self._send({"op": "ev", "ev": ev.to_dict()})  # type: ignore[attr-defined]

    def _close(self, t: _Transfer) -> None:
        was = t.closed
        super()._close(t)
        if not was:
            self._send({"op": "closed", "peer": t.peer, "path": t.path})

    def _from_engine(self, now: float) -> None:
        for _ in range(256):
            try:
                # (not socket.recv_fds: before Python 3.12 it drops the flags)
                data, anc, _flags, _addr = self.ctl.recvmsg(65536, _FDS_SPACE, MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, anc = b"", []
            fds: list[int] = []
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds += struct.unpack(f"{len(raw) // 4}i", raw[:len(raw) // 4 * 4])
            if not data:
                for fd in fds:
                    os.close(fd)
                self._stopping = True
                return
            try:
                msg = json.loads(data)
                if msg["op"] == "adopt":
                    got, fds = fds, []
                    self._adopt_handed(msg, got, now)
                elif msg["op"] == "retire":
                    for t in self.transfers.values():
                        if t.peer == msg["peer"] and t.path == msg["path"] and \
                                getattr(t.core, "retry", 0) >= 1:
                            t.retire = str(msg["by"])
            except Exception as exc:
                self._emit(LogLine(service=SERVICE, level="error",
                                   message=f"transfer process: a hand-over failed: {exc!r}"))
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _adopt_handed(self, msg: dict, fds: list[int], now: float) -> None:
        """Take a transfer the engine handed over; if it cannot run here, say so (a
        TransferFailed, then ``closed``, so the engine releases its admission)."""
        sock: socket.socket | None = None
        mm: ChunkedFile | None = None
        try:
            if len(fds) != 2:  # MSG_CTRUNC: out of descriptors here
                raise OSError(errno.EMFILE, f"{len(fds)} of 2 descriptors received "
                              "(too many open files)")
            sock = socket.socket(fileno=fds[0])
            mm = ChunkedFile(fds[1], int(msg["size"]), msg["path"], base=int(msg["base"]))
            fds = []
            req = proto.Request(opcode=Opcode.RRQ, filename=msg["path"], mode="octet",
                                options=dict(msg["options"]))
            neg = Negotiated(blksize=int(msg["blksize"]), windowsize=int(msg["windowsize"]),
                             timeout=float(msg["timeout"]), oack=dict(msg["oack"]))
            started = float(msg["started"])  # CLOCK_MONOTONIC: one clock for every process
            core = ReadTransfer(req, mm, Limits(retries=int(msg["retries"])), started,
                                negotiated=neg)
            t = _Transfer(sock, core, msg["peer"], msg["client"], msg["path"], core.size,
                          started)
        except Exception as exc:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            if sock is not None:
                sock.close()
            if mm is not None:
                mm.close()
            peer, path = str(msg.get("peer", "")), str(msg.get("path", ""))
            self._emit(TransferFailed(service=SERVICE, path=path, peer=peer,
                                      client=str(msg.get("client", "")),
                                      cause=FailCause.server_error,
                                      reason=f"the transfer process could not take the "
                                             f"transfer: {exc}"))
            self._send({"op": "closed", "peer": peer, "path": path})
            return
        t.mm = mm
        t.gso = int(msg["gso"])
        self._flush(t, now)  # the first packet: OACK or block 1
        if not t.closed:
            self.adopt(t)


def _drop_to_nobody() -> None:
    """Keep no privileges: uid/gid nobody (when root), no capabilities, no_new_privs."""
    if os.geteuid() == 0:
        try:
            nobody = pwd.getpwnam("nobody")
            uid, gid = nobody.pw_uid, nobody.pw_gid
        except KeyError:
            uid = gid = 65534
        with contextlib.suppress(OSError):
            os.setgroups([])
        with contextlib.suppress(OSError):
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
    with contextlib.suppress(OSError, AttributeError):
        privileges._apply(0)


def transfer_process(fd: int, config: str) -> None:
    """Main of a transfer process (started by :class:`_Helper` with ``sys.executable``)."""
    # The engine decides when it ends (EOF on ctl, or PR_SET_PDEATHSIG): not a Ctrl-C or
    # a SIGTERM sent to the process group, which would end it before the engine had
    # stopped and turn a clean stop into "the transfer process ended" failures.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    cfg = json.loads(config)
    ctl = socket.socket(fileno=fd)
    _raise_priority()  # while still allowed to
    _drop_to_nobody()
    # After the credential change (which clears it): die with the engine's thread.
    with contextlib.suppress(OSError, AttributeError):
        privileges.libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != cfg["parent"]:
        return  # the engine is already gone
    worker = _ProcWorker(_ProcEngine(float(cfg["max_lifetime"]), float(cfg["max_stall"])), ctl)
    worker._send({"op": "ready", "uid": os.getuid()})
    worker._run()


class TftpService:
    """The running TFTP server (a :class:`~pxewizard.servers.base.Service`)."""

    name = SERVICE

    def __init__(self, engine: TftpEngine, bus: EventBus, address: str, port: int) -> None:
        self.engine = engine
        self.bus = bus
        self.address = address
        self.port = port
        self._closed = False

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self.engine.stop)
        # Let the batched events of the engine's last moments reach the bus first.
        await asyncio.sleep(0)
        self.bus.publish(ServiceStopped(service=SERVICE))


async def start_tftp(*, tree: FileTree, bus: EventBus, address: str, port: int = 69,
                     interface: str | None = None, allow_write: bool = False,
                     write_root: Path | None = None, max_blksize: int = proto.MAX_BLKSIZE,
                     windowsize: int = 16, timeout: float = 1.0, retries: int = 5,
                     workers: int = 1, max_transfers: int = MAX_TRANSFERS,
                     max_per_client: int = MAX_PER_CLIENT, max_lifetime: float = MAX_LIFETIME,
                     max_stall: float = MAX_STALL, procs: int | None = None) -> TftpService:
    """Bind (address, port) on ``interface`` and serve ``tree`` until ``close()``.

    ``max_blksize`` is further clamped to the interface MTU minus 32 (IPv4 +
    UDP + TFTP headers), so a granted blksize never fragments. ``procs``: transfer
    processes beside the engine (None: PXW_TFTP_PROCS, default :data:`PROCS`).
    """
    bus.bind_loop(asyncio.get_running_loop())
    mtu = interface_mtu(interface)
    cap = min(max_blksize, proto.MAX_BLKSIZE)
    if mtu is not None:
        cap = min(cap, max(512, mtu - proto.IP_UDP_TFTP_OVERHEAD))
    limits = Limits(max_blksize=cap, max_windowsize=max(1, windowsize), timeout=timeout,
                    retries=retries)
    listen = udp_socket(address, port, interface=interface)
    _big_rcvbuf(listen, LISTEN_BUF)
    actual_port = listen.getsockname()[1]
    engine = TftpEngine(listen=listen, tree=tree, bus=bus, address=address, interface=interface,
                        limits=limits, allow_write=allow_write, write_root=write_root,
                        workers=workers, max_transfers=max_transfers,
                        max_per_client=max_per_client, max_lifetime=max_lifetime,
                        max_stall=max_stall, procs=procs)
    engine.start()
    bus.publish(ServiceStarted(service=SERVICE, address=address, port=actual_port))
    if mtu is not None:
        bus.publish(LogLine(service=SERVICE, level="debug",
                            message=f"blksize granted up to {cap} ({interface} MTU {mtu}), "
                                    f"windowsize up to {limits.max_windowsize}"))
    return TftpService(engine, bus, address, actual_port)
