"""One run's insight: events in, per-client timelines and findings out.

An :class:`InsightSession` owns the :class:`~.timeline.TimelineBuilder` and the
:class:`~.diagnose.HostFacts` of one run. It is fed from the event bus (Live and
headless ``serve``) or from a saved log (``doctor --log``, ``replay``); whoever
shows the result (a Textual pane, stdout, a JSON report) only asks it for
snapshots and findings. :func:`host_facts` is the one place that turns a Plan
and what was found on the host into facts for the rules.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from ..events import DhcpServerSeen, Event, EventBus
from .diagnose import Finding, HostFacts, Thresholds, diagnose
from .timeline import Snapshot, TimelineBuilder

if TYPE_CHECKING:
    from ..files import FileTree
    from ..plan import Plan


def host_facts(plan: Plan | None, *, files: Iterable[str] = (), bridge: object | None = None,
               client_ram: int | None = None, ram_needed: int | None = None,
               ports_held: Iterable[tuple[str, int, str, str]] = (),
               plan_problems: Iterable[object] = (),
               firewall: Callable[[], Iterable[str]] | None = None) -> HostFacts:
    """The diagnosis facts for a Plan and what the host checks found (None: no Plan).

    ``plan_problems``: what ``boot.checks.plan_problems`` found; ``firewall``: the host's
    firewall check (rules that drop our ports), run by the rules that need it."""
    if plan is None:
        return HostFacts(bridge=bridge, files=tuple(files), client_ram=client_ram,
                         ram_needed=ram_needed, ports_held=tuple(ports_held),
                         plan_problems=tuple(plan_problems), firewall=firewall)
    return HostFacts(server_ip=str(plan.server_ip), interface=plan.interface,
                     dhcp_mode=str(plan.dhcp.mode.value),
                     transport=str(plan.boot.transport.value), menu_timeout=plan.boot.timeout,
                     bridge=bridge, files=tuple(files), client_ram=client_ram,
                     ram_needed=ram_needed, ports_held=tuple(ports_held),
                     plan_problems=tuple(plan_problems), firewall=firewall,
                     tftp_max_blksize=plan.tftp.max_blksize)


def served_paths(tree: FileTree, limit: int = 20000) -> list[str]:
    """Virtual paths a FileTree serves (generated, mapped, and walked roots), up to ``limit``."""
    out = [p for p, _, _ in tree.entries()]
    for prefix, real in tree.sources():
        for dirpath, dirnames, filenames in os.walk(real):
            rel = os.path.relpath(dirpath, real)
            for name in filenames:
                vp = name if rel == "." else f"{rel}/{name}"
                out.append(f"{prefix.rstrip('/')}/{vp}" if prefix else vp)
                if len(out) >= limit:
                    return out
    return out


FINDINGS_COST_RATIO = 20
"""findings_if_due() (serve, Live) spends at most 1/20 of the time on diagnosis passes."""


class InsightSession:
    """Timelines and findings of one run, from live events or a saved log.

    Feeding never raises: an event the timeline cannot take (a damaged log, a bug) is
    counted in :attr:`damaged` and skipped, so a view never loses the stream over it.
    """

    def __init__(self, facts: HostFacts | None = None,
                 thresholds: Thresholds | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.builder = TimelineBuilder()
        self.facts = facts or HostFacts()
        """What the rules know of the host and the Plan; replace it when more is known."""
        self.thresholds = thresholds
        self.damaged = 0
        """Events that could not be fed."""
        self._clock = clock
        self._snap: Snapshot | None = None
        self._snap_at = 0.0
        self._reported: set[tuple[str, str, str]] = set()
        self._unsubscribe: Callable[[], None] | None = None
        self._findings_due = 0.0

    # --- input -------------------------------------------------------------------------

    def attach(self, bus: EventBus) -> InsightSession:
        """Feed every event published on ``bus`` from now on."""
        self.detach()
        self._unsubscribe = bus.subscribe(self.feed)
        return self

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def feed(self, event: Event) -> None:
        try:
            self.builder.feed(event)
        except Exception:  # the timeline is a view; never lose the stream over it
            self.damaged += 1

    def feed_all(self, events: Iterable[Event]) -> None:
        for ev in events:
            self.feed(ev)

    def restart(self) -> None:
        """Forget the timelines and findings of the servers' previous run (Live's stop and
        start): a problem fixed in between must not stay on screen. Which IP is which MAC
        is kept; the clients still hold their leases (issue 18)."""
        known = dict(self.builder._ip_to_mac)
        self.builder = TimelineBuilder()
        for ip, mac in known.items():
            self.builder.learn(ip, mac)
        self._snap, self._snap_at = None, 0.0
        self._reported.clear()
        self._findings_due = 0.0

    def saw_dhcp_servers(self, seen: Iterable[DhcpServerSeen]) -> None:
        """DHCP servers a probe saw before the log began (host-level, not a client's)."""
        for s in seen:
            self.feed(replace(s, client=""))

    def learn(self, ip: str, mac: str) -> None:
        """Join an IP to a MAC (our leases, the neighbour table)."""
        self.builder.learn(ip, mac)

    def mac_of(self, ip: str) -> str | None:
        return self.builder.mac_of(ip)

    # --- output ------------------------------------------------------------------------

    def snapshot(self, now: float | None = None, *, max_age: float = 0.0) -> Snapshot | None:
        """Timelines at ``now`` (wall clock by default); with ``max_age``, a snapshot at most
        that many seconds old is reused (views refresh often, events come in floods)."""
        t = self._clock()
        if self._snap is not None and max_age > 0 and t - self._snap_at <= max_age:
            return self._snap
        try:
            snap = self.builder.snapshot(time.time() if now is None else now)
        except Exception:  # the timeline is a view; keep showing the last good one
            return self._snap
        self._snap, self._snap_at = snap, t
        return snap

    def findings(self, snap: Snapshot | None = None) -> list[Finding]:
        """Every finding for ``snap`` (default: a fresh snapshot), worst first."""
        snap = snap if snap is not None else self.snapshot()
        if snap is None:
            return []
        return diagnose(snap, self.facts, self.thresholds)

    def findings_if_due(self, snap: Snapshot | None = None) -> list[Finding] | None:
        """:meth:`findings`, or None when the last pass was too recent for its cost.

        A diagnosis looks at every client's timeline: with thousands of clients (a lab
        soaked by a DHCP flood, a long-running server on a big LAN) one pass costs tens of
        milliseconds, on the thread that also runs the servers (Live) or reads the log.
        After a pass that took ``d`` seconds the next one waits at least
        ``FINDINGS_COST_RATIO * d``, so the rules never take more than
        1/FINDINGS_COST_RATIO of a core; a classroom's pass takes well under a
        millisecond and is never held back."""
        now = self._clock()
        if now < self._findings_due:
            return None
        t0 = time.perf_counter()
        out = self.findings(snap)
        self._findings_due = now + FINDINGS_COST_RATIO * (time.perf_counter() - t0)
        return out

    def new_findings(self) -> list[Finding]:
        """Findings not returned by an earlier call (headless ``serve`` prints these);
        an empty list while a pass is not due (:meth:`findings_if_due`)."""
        out = [f for f in self.findings_if_due() or () if f.key not in self._reported]
        self._reported.update(f.key for f in out)
        return out


def diagnose_events(events: Iterable[Event], facts: HostFacts | None = None,
                    now: float | None = None, thresholds: Thresholds | None = None,
                    neighbours: dict[str, str] | None = None) -> tuple[Snapshot, list[Finding]]:
    """Timelines and findings from a list of events (tests, a saved log)."""
    session = InsightSession(facts, thresholds)
    for ip, mac in (neighbours or {}).items():
        session.learn(ip, mac)
    evs = list(events)
    session.feed_all(evs)
    snap = session.snapshot(max((e.ts for e in evs), default=0.0) if now is None else now)
    assert snap is not None
    return snap, session.findings(snap)
