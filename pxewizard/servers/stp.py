"""Listen for spanning-tree BPDUs on the PXE interface (a packet socket; the codec is
:mod:`pxewizard.proto.stp`) and publish what is seen as ``BpduSeen`` events.

Passive: nothing is sent. One event when a bridge is first seen, then again only
when its timers change or once a minute (BPDUs come every hello time, 2 s).
Without CAP_NET_RAW, or on an interface that is gone, it simply does not start:
the diagnosis then knows nothing of STP, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

from ..events import BpduSeen, EventBus, LogLine
from ..proto.stp import parse_frame

ETH_P_802_2 = 0x0004
"""Linux: 802.3 frames with an LLC header (where BPDUs come)."""
REPEAT_EVERY = 60.0
"""Seconds between two events for the same unchanged bridge."""


class StpListener:
    """The packet socket and its reader; ``close()`` stops it."""

    def __init__(self, sock: socket.socket, interface: str, bus: EventBus) -> None:
        self.sock = sock
        self.interface = interface
        self.bus = bus
        self.name = "stp"
        self._seen: dict[str, tuple[float, tuple[object, ...]]] = {}
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        for _ in range(32):
            try:
                frame = self.sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.frame(frame, time.monotonic())

    def frame(self, frame: bytes, now: float) -> None:
        b = parse_frame(frame)
        if b is None:
            return
        state = (b.protocol, b.root_id, b.forward_delay, b.hello)
        prev = self._seen.get(b.bridge_id)
        if prev is not None and prev[1] == state and now - prev[0] < REPEAT_EVERY:
            return
        if len(self._seen) > 256:
            self._seen.clear()
        self._seen[b.bridge_id] = (now, state)
        self.bus.publish(BpduSeen(interface=self.interface, bridge_id=b.bridge_id,
                                  root_id=b.root_id, protocol=b.protocol,
                                  forward_delay=b.forward_delay, hello=b.hello))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()


async def start_stp_listener(*, interface: str, bus: EventBus) -> StpListener | None:
    """The listener on ``interface``, or None where a packet socket cannot be had."""
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_802_2))
    except (OSError, AttributeError):
        return None
    try:
        sock.bind((interface, ETH_P_802_2))   # Python swaps the bind protocol itself
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        bus.publish(LogLine(service="stp", level="debug",
                            message=f"not listening for spanning-tree BPDUs on {interface}: "
                                    f"{exc.strerror or exc}"))
        return None
    return StpListener(sock, interface, bus)


__all__ = ["StpListener", "start_stp_listener"]
