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
