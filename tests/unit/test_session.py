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
