"""The bus that fans events out to subscribers, and the JSONL event log.

Servers running in their own thread (the TFTP hot loop) hand events to the
bus with :meth:`EventBus.publish_threadsafe`; everything else publishes from
the asyncio loop with :meth:`EventBus.publish`. Refusal and drop events pass a
rate limit (:class:`RefusalLimit`) on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

import msgspec

from ..errors import PxeError, os_error_words
from ..ondisk import open_private
from .types import Event, EventsSuppressed, LogLine, event_class, from_dict

Subscriber = Callable[[Event], None]
_Line = TypeVar("_Line", str, bytes)


_MAY_REFUSE = frozenset({"packet_dropped", "transfer_failed", "dhcp_exchange", "log_line"})


def _refusal(ev: Event) -> str | None:
    """The rate-limit key of a refusal or drop event (None: not one, always delivered)."""
    kind = ev.kind
    if kind not in _MAY_REFUSE:
        return None
    if kind == "packet_dropped" and getattr(ev, "peer", "") == "(many)":
        return None  # already a summary (the TFTP engine counts its own floods)
    if kind in ("packet_dropped", "transfer_failed"):
        return f"{kind}/{getattr(ev, 'service', '')}"
    if kind == "dhcp_exchange" and getattr(ev, "msg_out", "") in ("-", "NAK"):
        return f"{kind}/{getattr(ev, 'service', '')}"
    if kind == "log_line" and getattr(ev, "level", "") in ("warning", "error"):
        return f"{kind}/{getattr(ev, 'service', '')}"
    return None


class RefusalLimit:
    """A token bucket per (kind, service) for refusal and drop events.

    Anyone on the LAN can make every server refuse: 146,872 malformed DHCP datagrams a
    second would be as many log lines. Past ``burst`` events at once and ``rate`` a second,
    such events are counted, and one :class:`EventsSuppressed` a second per key says how
    many were held back and the last one's reason. Answers, transfers and sessions are
    never held back. A real boot refuses a dozen things (pxelinux's config-name misses,
    EDK2's tsize probe), far under the burst.
    """

    def __init__(self, rate: float = 10.0, burst: float = 100.0) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, last time]
        self._held: dict[str, list[Any]] = {}  # key -> [count, first time, latest event]
        self._flush_at: float | None = None

    def admit(self, ev: Event, now: float) -> bool:
        key = _refusal(ev)
        if key is None:
            return True
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = [self.burst, now]
        tokens = min(self.burst, b[0] + (now - b[1]) * self.rate)
        b[1] = now
        if tokens >= 1.0:
            b[0] = tokens - 1.0
            return True
        b[0] = tokens
        held = self._held.get(key)
        if held is None:
            self._held[key] = [1, now, ev]
        else:
            held[0] += 1
            held[2] = ev
        return False

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def summaries(self, now: float) -> list[Event]:
        """One EventsSuppressed per key held back since the last call."""
        out: list[Event] = []
        for key, (count, first, last) in self._held.items():
            why = getattr(last, "reason", "") or getattr(last, "message", "") or \
                getattr(last, "path", "")
            out.append(EventsSuppressed(
                service=getattr(last, "service", ""), of_kind=last.kind, count=count,
                seconds=round(max(now - first, 0.0), 3), latest=str(why)[:200]))
        self._held.clear()
        return out


class EventBus:
    """Fan-out of events to subscribers, on one asyncio loop.

    Subscribers are plain callables run synchronously in :meth:`publish`;
    they must be quick (append to a buffer, put into a queue). An exception
    in one subscriber is swallowed so it cannot take a server down.
    """

    def __init__(self, limit: RefusalLimit | None = None) -> None:
        self._subscribers: list[Subscriber] = []
        self._fanout: tuple[Subscriber, ...] = ()
        """The subscribers as of now, for delivery (a subscriber may unsubscribe while
        an event is delivered)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[Event] = []
        self._lock = threading.Lock()
        self._scheduled = False
        self.limit = limit if limit is not None else RefusalLimit()
        """Rate limit of refusal/drop events (see :class:`RefusalLimit`)."""
        self._summary_timer: asyncio.TimerHandle | None = None

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it."""
        self._subscribers.append(fn)
        self._fanout = tuple(self._subscribers)

        def unsubscribe() -> None:
            if fn in self._subscribers:
                self._subscribers.remove(fn)
                self._fanout = tuple(self._subscribers)

        return unsubscribe

    def queue(self, maxsize: int = 0) -> tuple[asyncio.Queue[Event], Callable[[], None]]:
        """A queue that receives every event from now on, and its unsubscribe function."""
        q: asyncio.Queue[Event] = asyncio.Queue(maxsize)

        def put(ev: Event) -> None:
            try:
                q.put_nowait(ev)
            except asyncio.QueueFull:
                pass

        return q, self.subscribe(put)

    @property
    def has_subscribers(self) -> bool:
        """Whether anyone listens (hot paths skip building events nobody reads)."""
        return bool(self._subscribers)

    def publish(self, event: Event) -> None:
        """Deliver an event to every subscriber (call from the loop's thread); refusals and
        drops past the rate limit are counted and summarised once a second instead."""
        limit = self.limit
        if event.kind in _MAY_REFUSE:
            now = time.monotonic()
            if not limit.admit(event, now):
                self._summary_soon(now)
                return
        if limit.holding and self._summary_timer is None:
            self._summarise()  # no loop to time it: say it before the next event
        self._deliver(event)

    def _deliver(self, event: Event) -> None:
        for fn in self._fanout:
            try:
                fn(event)
            except Exception:  # a broken view must not stop a server
                pass

    def _summary_soon(self, now: float) -> None:
        if self._summary_timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._summary_timer = loop.call_later(1.0, self._summarise)

    def _summarise(self) -> None:
        self._summary_timer = None
        for ev in self.limit.summaries(time.monotonic()):
            self._deliver(ev)

    def publish_many(self, events: Iterable[Event]) -> None:
        for ev in events:
            self.publish(ev)

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the loop that :meth:`publish_threadsafe` hands events to."""
        self._loop = loop

    def publish_threadsafe(self, event: Event) -> None:
        """Queue an event from another thread; delivered in batches on the loop."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("EventBus.bind_loop() was not called")
        with self._lock:
            self._pending.append(event)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # loop closed during shutdown
            pass

    def _drain(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            self._scheduled = False
        self.publish_many(batch)


class LineBatch(Generic[_Line]):
    """Lines collected and handed to ``sink`` in one call: at most ``delay`` seconds late or
    every ``flush_every`` lines, so a flood of events does not cost a system call each.
    Outside an event loop (tools, tests) every line is handed over at once."""

    def __init__(self, sink: Callable[[list[_Line]], None], *, flush_every: int = 512,
                 delay: float = 0.2) -> None:
        self._sink = sink
        self._lines: list[_Line] = []
        self._flush_every = flush_every
        self._delay = delay
        self._timer: asyncio.TimerHandle | None = None

    def add(self, line: _Line) -> None:
        self._lines.append(line)
        if len(self._lines) >= self._flush_every:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(self._delay, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        lines, self._lines = self._lines, []
        if lines:
            self._sink(lines)


_JSON = msgspec.json.Encoder(enc_hook=str)
"""Encodes an event dataclass straight from its fields (values it does not know: ``str()``,
as :meth:`Event.to_dict` does)."""


@functools.cache
def _jsonl_head(cls: type) -> bytes:
    return b'{"kind":' + _JSON.encode(cls.kind) + b","  # type: ignore[attr-defined]


def jsonl_line(event: Event) -> bytes:
    """One event as one JSON object, no newline: ``json.dumps(event.to_dict())`` (compact
    separators, ASCII with ``\\uXXXX`` escapes), byte for byte.

    Encoded by msgspec from the dataclass itself, without the dict: measured 2.4 us a
    DhcpExchange against 25 us for ``json.dumps(event.to_dict())``, and ``serve`` logs four
    events per DHCP DORA (issue 22). msgspec writes UTF-8, so a line holding anything
    outside printable ASCII (a C1 control or a DEL in a file name must not reach a terminal
    that ``cat``s the log) takes the json path, as every line did before.
    """
    try:
        body = _JSON.encode(event)
    except (TypeError, ValueError):  # msgspec.EncodeError is a ValueError
        body = b""
    if len(body) > 2 and body.isascii() and b"\x7f" not in body:
        return _jsonl_head(type(event)) + body[1:]
    return json.dumps(event.to_dict(), separators=(",", ":")).encode()


_HEAD = b'{"kind":"'


_DECODERS: dict[bytes, msgspec.json.Decoder] = {}
"""A decoder per event kind, by the kind's bytes as a line spells it (known kinds only: a
damaged log's made-up kinds are not remembered)."""


def _decoder(kind: bytes) -> msgspec.json.Decoder | None:
    dec = _DECODERS.get(kind)
    if dec is None:
        cls = event_class(kind.decode("ascii", "replace"))
        if cls is None:
            return None
        dec = _DECODERS[kind] = msgspec.json.Decoder(cls)
    return dec


def decode_line(line: bytes) -> Event:
    """One JSONL line back into its event: what ``from_dict(json.loads(line))`` gives.

    A line of :func:`jsonl_line` names its kind first, so msgspec decodes it straight into
    that class (2.5 us a DhcpExchange, against 8 us through a dict); anything else (an
    older log, a line edited by hand, a value of another type) takes the dict path.
    Raises ValueError or TypeError for a line that is no event."""
    if line.startswith(_HEAD):
        end = line.find(b'"', len(_HEAD))
        dec = _decoder(line[len(_HEAD):end]) if end > 0 else None
        if dec is not None:
            try:
                return dec.decode(line)
            except (msgspec.ValidationError, msgspec.DecodeError):
                pass
    return from_dict(json.loads(line))


class JsonlLog:
    """Appends every event as one JSON line; survives a full disk.

    Lines are buffered and written in batches (at most ``flush_every`` lines
    or ``flush_delay`` seconds late, and on :meth:`close`), so a busy server
    does not pay one system call per event. When a write fails (disk full,
    file removed) it says so once through the bus as a warning and keeps
    trying on later batches, so the servers keep serving.
    """

    def __init__(self, path: Path, bus: EventBus | None = None, *, flush_every: int = 512,
                 flush_delay: float = 0.2) -> None:
        self.path = path
        self._bus = bus
        self._fh: IO[bytes] | None = None
        self._failing = False
        self._batch = LineBatch(self._write, flush_every=flush_every, delay=flush_delay)
        self.lost = 0
        """Events that could not be written."""

    def open(self) -> None:
        self.path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        # the log names every client and file: readable by root's group, written by us only;
        # never through a link planted in its directory
        fd = open_private(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640,
                          field="log.jsonl")
        self._fh = open(fd, "ab")

    def __call__(self, event: Event) -> None:
        self._batch.add(jsonl_line(event))

    def flush(self) -> None:
        """Write what is buffered now."""
        self._batch.flush()

    def _write(self, lines: list[str]) -> None:
        try:
            if self._fh is None:
                self.open()
            assert self._fh is not None
            self._fh.write(b"\n".join(lines) + b"\n")
            self._fh.flush()
            if self._failing:
                self._failing = False
                self._warn(f"event log {self.path} is writable again ({self.lost} events lost)")
        except (OSError, PxeError) as exc:
            self.lost += len(lines)
            if self._fh is not None:  # drop what the failed write left in Python's buffer
                with contextlib.suppress(OSError):
                    self._fh.close()
                self._fh = None
            if not self._failing:
                self._failing = True
                self._warn(f"cannot write the event log {self.path}: {os_error_words(exc)}; "
                           "servers keep running, events are not being saved")

    def _warn(self, message: str) -> None:
        if self._bus is not None:
            self._bus.publish(LogLine(service="log", level="warning", message=message))

    def close(self) -> None:
        self.flush()
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    """Read back a JSONL event log (for tests, the timeline and `doctor`)."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return out
