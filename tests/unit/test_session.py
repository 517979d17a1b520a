"""The insight session: one pipeline from events to timelines and findings."""

from __future__ import annotations

from pathlib import Path

from pxewizard.events import EventBus, TransferFailed, from_dict, read_jsonl
from pxewizard.insight.diagnose import Severity
from pxewizard.insight.session import InsightSession, diagnose_events

DATA = Path(__file__).resolve().parents[1] / "data" / "timeline"


def _events(name: str) -> list:
    return [from_dict(d) for d in read_jsonl(DATA / f"{name}.jsonl")]


def test_a_session_on_the_bus_sees_what_a_replay_sees() -> None:
    evs = _events("fault-mode-0600")
    bus = EventBus()
    session = InsightSession().attach(bus)
    bus.publish_many(evs)
    now = max(e.ts for e in evs)
    live = session.findings(session.snapshot(now))
    _, replayed = diagnose_events(evs, now=now)
    assert [f.key for f in live] == [f.key for f in replayed]
    assert any(f.rule == "not-world-readable" and f.severity is Severity.error for f in live)
    session.detach()
    bus.publish(TransferFailed(service="tftp", path="x", reason="r", client="10.0.0.9"))
    assert all(tl.client != "10.0.0.9" for tl in session.snapshot(now).clients)


def test_new_findings_are_reported_once() -> None:
    session = InsightSession()
    session.feed_all(_events("fault-stage3-404"))
    first = session.new_findings()
    assert first and session.new_findings() == []


def test_a_broken_event_is_counted_not_raised() -> None:
    session = InsightSession()
    session.feed(object())  # type: ignore[arg-type]
    assert session.damaged == 1


def test_diagnosis_passes_take_a_bounded_share_of_the_time() -> None:
    """new_findings() after a pass that took d seconds waits FINDINGS_COST_RATIO * d: with
    thousands of clients, diagnosis must not starve the servers it shares a thread with."""
    from pxewizard.insight import session as session_mod
    t = [100.0]
    session = InsightSession(clock=lambda: t[0])
    session.feed_all(_events("fault-stage3-404"))
    cost = [0.0]
    real = session.findings

    def slow_findings(snap=None):  # a pass that "took" 50 ms
        cost[0] += 1
        import time as _t
        start = _t.perf_counter()
        out = real(snap)
        while _t.perf_counter() - start < 0.05:
            pass
        return out
    session.findings = slow_findings  # type: ignore[method-assign]
    assert session.new_findings()
    assert cost[0] == 1
    t[0] += 0.5      # < 20 x 50 ms: no pass, however often serve asks
    assert session.new_findings() == [] and cost[0] == 1
    t[0] += 0.6      # past 1 s: the next pass runs
    session.new_findings()
    assert cost[0] == 2
    assert session_mod.FINDINGS_COST_RATIO == 20


def test_a_follower_feeds_the_session_what_the_log_gets_from_its_offset(tmp_path) -> None:
    """serve's insight process reads the JSONL log as it grows: lines of earlier runs
    (before the offset) are not this run's, a half-written line waits for its end, a
    damaged line is counted and skipped."""
    import os

    from pxewizard.events import JsonlLog, jsonl_line
    from pxewizard.insight.follow import LogFollower, new_finding_lines

    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"kind":"log_line","service":"old","level":"error","message":"x"}\n')
    log = JsonlLog(path)
    log.open()
    start = path.stat().st_size
    evs = _events("fault-stage3-404")
    fd = os.open(path, os.O_RDONLY)
    try:
        session = InsightSession()
        follower = LogFollower(fd, start, session)
        lines = [jsonl_line(e) for e in evs]
        with open(path, "ab") as fh:
            fh.write(b"\n".join(lines[:3]) + b"\n" + lines[3][:10])
            fh.flush()
            assert follower.poll() == 3
            fh.write(lines[3][10:] + b"\nnot json\n" + b"\n".join(lines[4:]) + b"\n")
        assert follower.poll() == len(evs) - 3
        assert follower.damaged == 1
        printed = new_finding_lines(session)
        _, replayed = diagnose_events(evs)
        assert printed and all(any(f.title in ln for ln in printed) for f in replayed)
        assert not any("old" in ln for ln in printed)
    finally:
        os.close(fd)
        log.close()


def test_the_insight_process_lets_a_burst_pass_and_reads_after_it() -> None:
    """serve's insight process reads the log at once while it grows at a classroom's pace,
    holds back while it grows like a flood (at most MAX_DEFER seconds since the last read),
    and reads as soon as the flood stops."""
    from pxewizard.insight.follow import BurstPacer

    p = BurstPacer(burst_rate=100_000, max_defer=5.0)
    assert p.due(0.0, 0)            # the first look reads
    p.read(0.0)
    assert p.due(0.2, 2_000)        # 10 kB/s: a classroom, read now
    p.read(0.2)
    t, backlog = 0.2, 0
    held = []
    while t < 8.0:                  # a flood: 1 MB/s
        t += 0.2
        backlog += 200_000
        if p.due(t, backlog):
            held.append(t)
            p.read(t)
            backlog = 0
    assert held and abs(held[0] - 5.2) < 1e-6 and p.deferred > 20  # read once in 5 s
    t += 0.2
    assert not p.due(t, backlog + 200_000)   # still flooding
    t += 0.2
    assert p.due(t, backlog + 200_000)       # nothing new since the last look: read now


def test_a_follower_says_what_it_has_not_read_yet(tmp_path) -> None:
    import os

    from pxewizard.insight.follow import LogFollower

    path = tmp_path / "events.jsonl"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDONLY)
    try:
        follower = LogFollower(fd, 0, InsightSession())
        assert follower.backlog() == 0
        path.write_bytes(b'{"kind":"log_line","service":"x","level":"info","message":"m"}\n')
        assert follower.backlog() == path.stat().st_size
        assert follower.poll() == 1 and follower.backlog() == 0
    finally:
        os.close(fd)


def test_the_insight_process_loop_reads_and_says_the_findings(tmp_path) -> None:
    """follow_forever (serve's insight process) reads what the log holds, says the
    findings, and returns once its parent is gone."""
    import gc
    import os
    import signal

    from pxewizard.events import jsonl_line
    from pxewizard.insight.follow import LogFollower, follow_forever

    path = tmp_path / "events.jsonl"
    evs = _events("fault-stage3-404")
    path.write_bytes(b"\n".join(jsonl_line(e) for e in evs) + b"\n")
    fd = os.open(path, os.O_RDONLY)
    said: list[str] = []
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        follower = LogFollower(fd, 0, InsightSession())
        follow_forever(follower, said.extend, parent=-1, findings_every=0.0)
        _, replayed = diagnose_events(evs)
        assert follower.backlog() == 0
        assert replayed and all(any(f.title in ln for ln in said) for f in replayed)
    finally:
        os.close(fd)
        signal.signal(signal.SIGTERM, handlers[0])
        signal.signal(signal.SIGINT, handlers[1])
        gc.unfreeze()
        gc.enable()
