"""The one bridge from the EventBus to Textual: batched, mergeable messages.

Servers publish thousands of events a second during a boot storm. Posting one
Textual message per event would flood the message queue and redraw per event.
Instead the bridge appends events to a bounded buffer and posts a single
:class:`EventsArrived` message at most every ``interval`` seconds; pending
``EventsArrived`` messages replace each other (``can_replace``, as toolong does),
and the receiver drains the whole buffer at once. Nothing here imports a server
or a widget; servers never see Textual.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from textual.message_pump import MessagePump

    from .events import Event, EventBus


class EventsArrived(Message):
    """Events are waiting in the bridge; the receiver calls :meth:`EventBridge.drain`."""

    def __init__(self, bridge: "EventBridge") -> None:
        super().__init__()
        self.bridge = bridge

    def can_replace(self, message: Message) -> bool:
        # A later notice supersedes an earlier one still queued: one drain takes all.
        return isinstance(message, EventsArrived) and message.bridge is self.bridge


class EventBridge:
    """Subscribes to a bus; posts :class:`EventsArrived` to ``target`` in batches."""

    def __init__(self, bus: "EventBus", target: "MessagePump", *, interval: float = 0.1,
                 capacity: int = 20_000) -> None:
        self.bus = bus
        self.target = target
        self.interval = interval
        self._buffer: deque[Event] = deque(maxlen=capacity)
        self._handle: asyncio.TimerHandle | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.received = 0
        """Events seen since attach (including those that overflowed the buffer)."""
        self.overflowed = 0
        """Events dropped from the buffer because the UI fell behind (counts are kept)."""

    def attach(self) -> "EventBridge":
        self._unsubscribe = self.bus.subscribe(self._on_event)
        return self

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _on_event(self, event: "Event") -> None:
        self.received += 1
        if len(self._buffer) == self._buffer.maxlen:
            self.overflowed += 1
        self._buffer.append(event)
        if self._handle is None:
            loop = asyncio.get_running_loop()
            self._handle = loop.call_later(self.interval, self._notify)

    def _notify(self) -> None:
        self._handle = None
        if self._buffer:
            self.target.post_message(EventsArrived(self))

    def drain(self) -> list["Event"]:
        """Every buffered event, oldest first; the buffer is left empty."""
        out = list(self._buffer)
        self._buffer.clear()
        return out
