"""The EventBus -> Textual bridge: batched, mergeable, bounded."""

from __future__ import annotations

import asyncio
from typing import Any

from pxewizard.events import EventBus, LogLine
from pxewizard.ui_bridge import EventBridge, EventsArrived


class Target:
    def __init__(self) -> None:
        self.posted: list[Any] = []

    def post_message(self, message: Any) -> bool:
        self.posted.append(message)
        return True


async def test_a_burst_becomes_one_message_and_one_drain() -> None:
    bus, target = EventBus(), Target()
    bridge = EventBridge(bus, target, interval=0.05).attach()  # type: ignore[arg-type]
    for i in range(10_000):
        bus.publish(LogLine(service="t", level="info", message=str(i)))
    assert target.posted == []  # nothing posted per event
    await asyncio.sleep(0.1)
    assert len(target.posted) == 1 and isinstance(target.posted[0], EventsArrived)
    events = bridge.drain()
    assert [e.message for e in events[:2]] == ["0", "1"] and len(events) == 10_000
    assert bridge.drain() == []
    bridge.detach()
    bus.publish(LogLine(service="t", level="info", message="late"))
    await asyncio.sleep(0.1)
    assert len(target.posted) == 1 and bridge.received == 10_000


async def test_pending_notices_replace_each_other() -> None:
    bus, target = EventBus(), Target()
    bridge = EventBridge(bus, target)  # type: ignore[arg-type]
    other = EventBridge(bus, target)  # type: ignore[arg-type]
    a, b = EventsArrived(bridge), EventsArrived(bridge)
    assert a.can_replace(b) and b.can_replace(a)
    assert not a.can_replace(EventsArrived(other))


async def test_a_stalled_view_loses_old_lines_not_memory() -> None:
    bus, target = EventBus(), Target()
    bridge = EventBridge(bus, target, capacity=100).attach()  # type: ignore[arg-type]
    for i in range(1000):
        bus.publish(LogLine(service="t", level="info", message=str(i)))
    events = bridge.drain()
    assert len(events) == 100 and events[-1].message == "999"
    assert bridge.overflowed == 900 and bridge.received == 1000
    bridge.detach()
