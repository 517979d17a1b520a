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
import os
import signal
import time
from collections.abc import Callable

from ..events import decode_line
from .diagnose import format_finding
from .session import InsightSession

POLL_EVERY = 0.2
"""Seconds between two reads of the log (the log itself is written at most 0.2 s late)."""
MAX_READ = 4 << 20
"""Bytes read from the log at a time."""


class LogFollower:
    """Feeds an :class:`InsightSession` the events appended to a log from ``offset`` on."""

    def __init__(self, fd: int, offset: int, session: InsightSession) -> None:
        self.fd = fd
        self.offset = offset
        self.session = session
        self._rest = b""
        self.damaged = 0
        """Lines that were not an event (counted, skipped)."""

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
    while True:
        follower.poll()
        now = time.monotonic()
        if stopping or now >= next_findings:
            lines = new_finding_lines(follower.session)
            if lines:
                say(lines)
            next_findings = now + findings_every
        if stopping or os.getppid() != parent:
            return
        with contextlib.suppress(InterruptedError):
            time.sleep(POLL_EVERY)
