"""Timelines and findings fed from the JSONL event log as it grows.

Headless ``serve`` runs :func:`follow_forever` in a process of its own, forked once the
servers run (issue 22): the servers' process then only encodes each event into its log
line, and decoding, the per-client timelines, the diagnosis rules and the printing of
findings take the other core. Measured with ``bench/dhcp.py`` (5,000 MACs, DORA through
``pxewizard serve``), the timelines and rules cost the DHCP server's thread about as much
as the DHCP server itself; here they cost it nothing, and a slow pass over thousands of
clients can no longer delay a reply.

The log is the truth either way: what the follower did not see (a full disk) is missing
from the log too, and ``doctor --log`` reads the same lines.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import time
from collections.abc import Callable

from ..events import decode_line
from .diagnose import format_finding
from .session import InsightSession

POLL_EVERY = 0.2
"""Seconds between two looks at the log (the log itself is written at most 0.2 s late)."""
MAX_READ = 4 << 20
"""Bytes read from the log at a time."""
BURST_BYTES_PER_SECOND = 256 << 10
"""Log growth past which the servers are in a burst and reading waits (see BurstPacer):
about 700 lines a second; a classroom booting at once writes a tenth of that, a DHCP
flood of 10,000 DORA/s about 12 MB a second."""
MAX_DEFER = 5.0
"""Seconds a burst may hold reading back: findings are at most this late."""


class LogFollower:
    """Feeds an :class:`InsightSession` the events appended to a log from ``offset`` on."""

    def __init__(self, fd: int, offset: int, session: InsightSession) -> None:
        self.fd = fd
        self.offset = offset
        self.session = session
        self._rest = b""
        self.damaged = 0
        """Lines that were not an event (counted, skipped)."""

    def backlog(self) -> int:
        """Bytes appended to the log that :meth:`poll` has not read yet."""
        try:
            return max(0, os.fstat(self.fd).st_size - self.offset)
        except OSError:
            return 0

    def poll(self) -> int:
        """Read what was appended since the last call; returns the events fed."""
        fed = 0
        while True:
            try:
                data = os.pread(self.fd, MAX_READ, self.offset)
            except OSError:
                return fed
            if not data:
                return fed
            self.offset += len(data)
            *lines, self._rest = (self._rest + data).split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                try:
                    ev = decode_line(line)
                except (ValueError, TypeError):
                    self.damaged += 1
                    continue
                self.session.feed(ev)
                fed += 1
            if len(data) < MAX_READ:
                return fed


def new_finding_lines(session: InsightSession) -> list[str]:
    """The findings not printed yet, as lines (cause and fix; no evidence)."""
    return [line for f in session.new_findings()
            for line in format_finding(f, with_evidence=False)]


class BurstPacer:
    """Whether the insight process reads the log now, or lets a burst pass first.

    Reading costs CPU the servers want during a burst (a rack powered on at once, a DHCP
    flood), and on a small machine any busy CPU slows them: on the 2-CPU bench VM a busy
    loop at nice 19 took the bare DHCP server from 17,000 to 9,100 DORA/s. So while the
    log grows faster than ``burst_rate`` bytes a second the reading waits, at most
    ``max_defer`` seconds since the last read: the same work is done, after the burst
    or in one go every ``max_defer`` seconds of a long one; the findings come that much
    later, never lost (the log holds every line)."""

    def __init__(self, *, burst_rate: float = BURST_BYTES_PER_SECOND,
                 max_defer: float = MAX_DEFER) -> None:
        self.burst_rate = burst_rate
        self.max_defer = max_defer
        self._seen: tuple[float, int] | None = None
        self._read_at: float | None = None
        self.deferred = 0
        """Looks that let a burst pass instead of reading."""

    def due(self, now: float, backlog: int) -> bool:
        """Read now? ``backlog``: bytes appended and not read yet (growing in a burst)."""
        seen, self._seen = self._seen, (now, backlog)
        if seen is None or self._read_at is None or backlog <= seen[1]:
            return True   # the first look, or nothing new since the last: read
        rate = (backlog - seen[1]) / max(now - seen[0], 1e-3)
        if rate < self.burst_rate or now - self._read_at >= self.max_defer:
            return True
        self.deferred += 1
        return False

    def read(self, now: float) -> None:
        """The log was read up to its end at ``now``."""
        self._read_at = now
        self._seen = (now, 0)


def settle_garbage() -> None:
    """Collect what the last read left, then freeze the survivors.

    The timelines keep most of what a read builds (events, steps), and Python's collector
    would scan all of it again and again as it grows: with collection on, 2 of the 10 us a
    DHCP log line cost went there. Collected here once per read (the young generations
    only: the objects of this read) and frozen, nothing is scanned twice; what dies later
    is still freed by its reference count (the timelines hold no cycles)."""
    gc.collect(1)
    gc.freeze()


def follow_forever(follower: LogFollower, say: Callable[[list[str]], None], *,
                   parent: int, findings_every: float) -> None:
    """The insight process: follow the log, print new findings every ``findings_every``
    seconds, until SIGTERM (one last read and print first) or the parent is gone.
    Ctrl-C reaches the whole process group: the parent decides when this one stops."""
    stopping = False

    def stop(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    next_findings = time.monotonic() + findings_every
    gc.disable()  # collected once per read instead: see settle_garbage
    pacer = BurstPacer()
    while True:
        now = time.monotonic()
        holding = not stopping and not pacer.due(now, follower.backlog())
        if not holding:
            follower.poll()
            settle_garbage()
            now = time.monotonic()
            pacer.read(now)
        # a pass over timelines that a burst holds back finds nothing new: it waits too
        if stopping or (now >= next_findings and not holding):
            lines = new_finding_lines(follower.session)
            if lines:
                say(lines)
            next_findings = now + findings_every
        if stopping or os.getppid() != parent:
            return
        with contextlib.suppress(InterruptedError):
            time.sleep(POLL_EVERY)
