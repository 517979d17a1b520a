"""Events, the bus and the JSONL log."""

from __future__ import annotations

import asyncio
import inspect
import re
import typing
import dataclasses
import threading
from pathlib import Path

import pytest

from pxewizard.insight.eventfmt import one_line
from pxewizard.events import (DhcpExchange, Event, EventBus, JsonlLog, LogLine, TransferDone,
                              event_types, from_dict, read_jsonl)


def test_kind_and_frozen() -> None:
    ev = TransferDone(service="tftp", path="pxelinux.0", sent=10, seconds=0.5, client="m")
    assert ev.kind == "transfer_done"
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.sent = 3  # type: ignore[misc]
    assert from_dict(ev.to_dict()) == ev


def _sample(cls: type[Event]) -> Event:
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in ("ts", "client") or f.default is not dataclasses.MISSING \
                or f.default_factory is not dataclasses.MISSING:
            continue
        t = hints[f.name]
        values[f.name] = 1 if t in (int, float) else (False if t is bool else "x")
    return cls(**values)


def test_every_event_field_documented_and_formatted() -> None:
    import pxewizard.events.types as mod

    src = inspect.getsource(mod)
    for cls in event_types().values():
        for f in dataclasses.fields(cls):
            # a docstring line follows each field declaration
            assert re.search(rf"\n    {f.name}: [^\n]*\n(    [^\n]*\n)*?    \"\"\"", src), f.name
        assert one_line(_sample(cls))


def test_bus_isolates_broken_subscribers() -> None:
    bus = EventBus()
    got: list[Event] = []
    bus.subscribe(lambda e: 1 / 0)
    unsub = bus.subscribe(got.append)
    bus.publish(LogLine(service="t", level="info", message="a"))
    unsub()
    bus.publish(LogLine(service="t", level="info", message="b"))
    assert [e.message for e in got] == ["a"]  # type: ignore[attr-defined]


async def test_publish_threadsafe_batches() -> None:
    bus = EventBus()
    bus.bind_loop(asyncio.get_running_loop())
    q, _ = bus.queue()

    def worker() -> None:
        for i in range(500):
            bus.publish_threadsafe(LogLine(service="t", level="info", message=str(i)))

    th = threading.Thread(target=worker)
    th.start()
    th.join()
    got = [await asyncio.wait_for(q.get(), 2) for _ in range(500)]
    assert [e.message for e in got] == [str(i) for i in range(500)]  # type: ignore[attr-defined]


def test_jsonl_log_round_trip_and_full_disk(tmp_path: Path) -> None:
    bus = EventBus()
    log = JsonlLog(tmp_path / "ev.jsonl", bus)
    bus.subscribe(log)
    warnings: list[Event] = []
    bus.subscribe(lambda e: warnings.append(e) if isinstance(e, LogLine) else None)
    ev = DhcpExchange(service="dhcp", mac="aa:bb:cc:dd:ee:ff", xid=1, msg_in="DISCOVER",
                      msg_out="OFFER", client="aa:bb:cc:dd:ee:ff")
    bus.publish(ev)
    assert from_dict(read_jsonl(tmp_path / "ev.jsonl")[0]) == ev
    log.close()
    if Path("/dev/full").exists():
        full = JsonlLog(Path("/dev/full"), bus)
        full._fh = open("/dev/full", "wb")  # noqa: SIM115
        full(ev)
        full(ev)
        assert full.lost == 2
        assert any("cannot write the event log" in w.message for w in warnings)  # type: ignore


def test_jsonl_line_is_json_dumps_of_to_dict_byte_for_byte() -> None:
    """The fast encoder (msgspec, straight from the dataclass) writes what json.dumps of
    to_dict wrote, for every event class, and text outside printable ASCII (controls, DEL,
    C1, a lone surrogate from a file name) is escaped the same way."""
    import json

    from pxewizard.events import TransferStarted, jsonl_line

    def old(ev: Event) -> bytes:
        return json.dumps(ev.to_dict(), separators=(",", ":")).encode()

    for cls in event_types().values():
        ev = _sample(cls)
        assert jsonl_line(ev) == old(ev), cls
    for text in ("plain", 'quote" back\\slash', "tab\tnl\n\x1b[2J", "del\x7f", "c1\x9b",
                 "é ünï", "\u202e", "\udcff", ""):
        for ev in (LogLine(service="x", level="info", message=text, client=text,
                           ts=1733461234.123456),
                   TransferStarted(service="tftp", path=text, size=2**40,
                                   options={"blksize": "1468", text: text}),
                   DhcpExchange(service="dhcp", mac=text, xid=2**32 - 1, msg_in="DISCOVER",
                                msg_out="-", arch=None, reason=text, ts=0.1)):
            line = jsonl_line(ev)
            assert line == old(ev), (text, line)
            assert all(0x20 <= b < 0x7f for b in line)


def test_decode_line_reads_back_what_from_dict_reads() -> None:
    """The fast decoder (msgspec, straight into the class a line names) gives the event
    written, for every event class, and what from_dict(json.loads(line)) gives for odd text, lines written by
    json.dumps, older lines missing a field with a default, and a value of the wrong type."""
    import json

    import pytest

    from pxewizard.events import DhcpExchange, decode_line, jsonl_line

    for cls in event_types().values():
        ev = _sample(cls)
        line = jsonl_line(ev)
        assert decode_line(line) == ev, cls  # tuples come back as tuples, not lists
    for text in ("plain", "tab\tnl\n\x1b[2J", "c1\x9b", "é ünï", "\udcff"):
        ev = DhcpExchange(service="dhcp", mac=text, xid=7, msg_in="DISCOVER", msg_out="-",
                          reason=text, ts=0.5)
        line = jsonl_line(ev)
        assert decode_line(line) == from_dict(json.loads(line)), text
    older = b'{"kind":"dhcp_exchange","ts":1.0,"service":"dhcp","mac":"m","xid":1,' \
            b'"msg_in":"DISCOVER","msg_out":"-"}'
    assert decode_line(older) == from_dict(json.loads(older))
    odd = older.replace(b'"xid":1', b'"xid":"1"')  # a type from_dict lets through
    assert decode_line(odd) == from_dict(json.loads(odd))
    for bad in (b"not json", b'{"kind":"dhcp_exchange"}', b"[1]"):
        with pytest.raises((ValueError, TypeError, AttributeError)):
            decode_line(bad)


def test_refusals_of_every_kind_are_rate_limited_with_a_summary() -> None:
    from pxewizard.events import DhcpExchange, EventBus, PacketDropped, RefusalLimit, TransferDone

    bus = EventBus(RefusalLimit(rate=5, burst=20))
    got: list = []
    bus.subscribe(got.append)
    for i in range(10_000):
        bus.publish(PacketDropped(service="dhcp", peer="10.0.0.9:68", reason=f"bad {i}"))
        bus.publish(DhcpExchange(service="dhcp", mac="02:00:00:00:00:01", xid=i, msg_in="REQUEST",
                                 msg_out="-", reason="no record"))
    bus.publish(TransferDone(service="tftp", path="a", sent=1, seconds=0.1))  # never held
    bus.publish(PacketDropped(service="nbd", peer="10.0.0.9:1", reason="other service"))
    kinds = [e.kind for e in got]
    assert len(got) < 60, kinds
    assert kinds.count("transfer_done") == 1
    sup = [e for e in got if e.kind == "events_suppressed"]
    assert {(e.service, e.of_kind) for e in sup} == {("dhcp", "packet_dropped"),
                                                     ("dhcp", "dhcp_exchange")}
    assert sum(e.count for e in sup) > 19_000 and "bad 9999" in {e.latest for e in sup}
    # answers are never held back
    for i in range(500):
        bus.publish(DhcpExchange(service="dhcp", mac="02:00:00:00:00:02", xid=i,
                                 msg_in="DISCOVER", msg_out="OFFER"))
    assert sum(1 for e in got if getattr(e, "msg_out", "") == "OFFER") == 500


def test_every_renderer_escapes_control_characters() -> None:
    from pxewizard.insight.diagnose import Finding, Severity, format_finding
    from pxewizard.insight.eventfmt import describe, one_line
    from pxewizard.events import TransferFailed, TransferStarted
    from pxewizard.safetext import escape_controls
    from pxewizard.screens.live.format import log_row, request_row
    from pxewizard.insight.timeline import TimelineBuilder, format_timeline

    evil = "pxelinux.cfg/x\nforged 12:00:00 line\x1b[2J\x1b]0;title\x07\u202e\udcff"
    assert escape_controls(evil) == ("pxelinux.cfg/x\\nforged 12:00:00 line\\x1b[2J\\x1b]0;"
                                     "title\\x07\\u202e\\xff")
    evs = [TransferStarted(service="tftp", path=evil, client="10.0.0.9", peer="10.0.0.9:1"),
           TransferFailed(service="tftp", path=evil, reason="file not found", code=1,
                          client="10.0.0.9", peer="10.0.0.9:1")]
    b = TimelineBuilder()
    b.feed_many(evs)
    texts = [one_line(e) for e in evs] + [describe(e) for e in evs]
    texts += [request_row(e).plain for e in evs] + [log_row(e).plain for e in evs]
    for tl in b.snapshot(now=evs[-1].ts + 1).clients:
        texts += format_timeline(tl)
    texts += format_finding(Finding(severity=Severity.error, rule="x", client="10.0.0.9",
                                    title=f"missing {evil}", cause=evil, fix="-",
                                    evidence=tuple(evs)))
    for t in texts:
        assert t.isprintable(), repr(t)
    assert any("\\x1b[2J" in t for t in texts)
def test_a_silent_dhcp_answer_reads_as_words() -> None:
    from pxewizard.insight.eventfmt import describe
    from pxewizard.events import DhcpExchange
    from pxewizard.screens.live.format import request_row

    ev = DhcpExchange(client="52:54:00:00:00:01", service="proxydhcp", mac="52:54:00:00:00:01",
                      xid=1, msg_in="DISCOVER", msg_out="-",
                      reason="not a PXE client (vendor class 'none')")
    text = describe(ev)
    assert "DISCOVER, not answered (not a PXE client" in text and "->" not in text
    assert "DISCOVER, not answered" in request_row(ev).plain
    ok = DhcpExchange(client="m", service="dhcp", mac="m", xid=1, msg_in="DISCOVER",
                      msg_out="OFFER")
    assert "DISCOVER -> OFFER" in describe(ok) and "DISCOVER->OFFER" in request_row(ok).plain
