"""Per-client, per-file read accounting for the live view (no I/O, ``now`` passed in).

NFS has no "transfer": a client reads a file in chunks, out of order, with
readahead running in parallel, and never says when it is done. So a transfer
starts with the first READ of a file by a client, reports progress at most
:attr:`ReadMeter.interval` apart per client, and is done once it was read to
the end and then left alone for :attr:`ReadMeter.settle` seconds (or left
alone for :attr:`ReadMeter.idle` seconds without reaching the end).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...events import Event, NfsActivity, TransferDone, TransferProgress, TransferStarted


@dataclass
class _Reading:
    peer: str
    size: int
    started: float
    last: float
    sent: int = 0
    eof: bool = False


class ReadMeter:
    def __init__(self, service: str = "nfs", interval: float = 0.5, settle: float = 1.0,
                 idle: float = 10.0) -> None:
        self.service = service
        self.interval = interval
        self.settle = settle
        self.idle = idle
        self._files: dict[tuple[str, str], _Reading] = {}
        self._last_progress: dict[str, float] = {}

    def on_read(self, now: float, client: str, peer: str, path: str, nbytes: int, size: int,
                eof: bool) -> list[Event]:
        out: list[Event] = []
        key = (client, path)
        r = self._files.get(key)
        if r is None:
            r = self._files[key] = _Reading(peer=peer, size=size, started=now, last=now)
            out.append(TransferStarted(service=self.service, path=path, size=size, peer=peer,
                                       client=client))
        r.sent += nbytes
        r.last = now
        r.size = size
        r.eof = r.eof or eof
        if now - self._last_progress.get(client, -1e18) >= self.interval:
            self._last_progress[client] = now
            out.append(TransferProgress(service=self.service, path=path, sent=r.sent,
                                        size=size, peer=peer, client=client))
        return out

    def tick(self, now: float) -> list[Event]:
        """Finish the transfers that have settled."""
        out: list[Event] = []
        for key, r in list(self._files.items()):
            quiet = now - r.last
            if (r.eof and quiet >= self.settle) or quiet >= self.idle:
                del self._files[key]
                out.append(TransferDone(service=self.service, path=key[1], sent=r.sent,
                                        seconds=max(0.0, r.last - r.started), peer=r.peer,
                                        client=key[0]))
        if not self._files:
            self._last_progress.clear()
        return out

    def active(self) -> int:
        return len(self._files)


class IoCounter:
    """Bytes read and written per client (IP), as :class:`NfsActivity` totals: :meth:`tick`
    returns one event per client whose totals changed, at most every ``interval`` seconds."""

    def __init__(self, service: str = "nfs", interval: float = 2.0, limit: int = 4096) -> None:
        self.service = service
        self.interval = interval
        self.limit = limit
        """Clients remembered; beyond it the least recently active is forgotten."""
        self.totals: dict[str, list[int]] = {}
        self._dirty: set[str] = set()
        self._last = -1e18

    def add(self, client: str, read: int = 0, written: int = 0) -> None:
        t = self.totals.pop(client, None) or [0, 0]
        t[0] += read
        t[1] += written
        self.totals[client] = t  # most recent last
        self._dirty.add(client)
        if len(self.totals) > self.limit:
            old = next(iter(self.totals))
            del self.totals[old]
            self._dirty.discard(old)

    def tick(self, now: float, force: bool = False) -> list[Event]:
        if not self._dirty or (not force and now - self._last < self.interval):
            return []
        self._last = now
        out: list[Event] = [NfsActivity(service=self.service, client=c, read=self.totals[c][0],
                                        written=self.totals[c][1])
                            for c in sorted(self._dirty)]
        self._dirty.clear()
        return out
