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
        full._fh = open("/dev/full", "w", buffering=1)  # noqa: SIM115
        full(ev)
        full(ev)
        assert full.lost == 2
        assert any("cannot write the event log" in w.message for w in warnings)  # type: ignore
