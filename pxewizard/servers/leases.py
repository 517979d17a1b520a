"""The DHCP lease store: the in-memory table, with SQLite as its durable log.

Lookups never touch SQLite (the decision reads the in-memory
:class:`~pxewizard.proto.dhcp.LeaseTable`); each binding change is queued and
written by :meth:`LeaseStore.commit`, which the server calls once per batch of
packets *before* it sends the replies of that batch, so an ACK is never sent
for a binding that is not in the file.

Durability: WAL with ``synchronous=NORMAL``. A commit is then a ``write()``
into the WAL without fsync: it survives ``kill -9`` of the server (the data is
in the kernel), and only a power cut can lose the last commits, as with
dnsmasq's lease file. Offers are held in memory only: they last seconds.
A lease file from a previous run is reused, so a MAC keeps its address.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ..errors import PxeError
from ..proto.dhcp import LeaseInfo, LeaseOp, LeaseState, LeaseTable

SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    ip INTEGER PRIMARY KEY,      -- one row per address: an address has one holder
    mac TEXT NOT NULL,
    state TEXT NOT NULL,         -- bound, released, declined
    expires REAL NOT NULL,       -- epoch seconds
    hostname TEXT NOT NULL DEFAULT '',
    arch INTEGER                 -- option 93 the client sent last
);
CREATE INDEX IF NOT EXISTS leases_mac ON leases(mac);
"""

_UPSERT = "INSERT OR REPLACE INTO leases (ip, mac, state, expires, hostname, arch) " \
          "VALUES (?, ?, ?, ?, ?, ?)"
_DELETE = "DELETE FROM leases WHERE ip = ? AND mac = ?"


class LeaseStore(LeaseTable):
    """A :class:`LeaseTable` that writes every binding change to an SQLite file."""

    def __init__(self, path: Path | str) -> None:
        super().__init__()
        self.path = Path(path)
        try:
            self.path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            if str(path) != ":memory:" and not self.path.exists():
                # leases name the machines: not for every local user
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o640))
            self._db = sqlite3.connect(str(self.path), isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            rows = self._db.execute(
                "SELECT ip, mac, state, expires, hostname, arch FROM leases "
                "ORDER BY expires").fetchall()
        except (sqlite3.Error, OSError) as exc:
            raise PxeError(f"cannot open the DHCP lease file {self.path}: {exc}",
                           "check that the directory is writable, or set dhcp.lease_file "
                           "to another path (a corrupt file can be moved away)") from None
        self.load(LeaseInfo(mac, ip, LeaseState(state), expires, hostname or "", arch)
                  for ip, mac, state, expires, hostname, arch in rows
                  if state in (LeaseState.BOUND, LeaseState.RELEASED, LeaseState.DECLINED))
        self._pending: list[tuple[str, tuple[object, ...]]] = []

    def apply(self, op: LeaseOp) -> LeaseInfo | None:
        old = self.by_mac(op.mac)
        new = super().apply(op)
        if op.state in (LeaseState.OFFERED, LeaseState.FREE):
            return new  # offers live for seconds: memory only
        if old is not None and old.ip != op.ip and old.state is not LeaseState.OFFERED:
            self._pending.append((_DELETE, (old.ip, old.mac)))
        assert new is not None
        self._pending.append((_UPSERT, (new.ip, new.mac, str(new.state), new.expires,
                                        new.hostname, new.arch)))
        return new

    @property
    def dirty(self) -> bool:
        """Changes are queued that the next :meth:`commit` writes."""
        return bool(self._pending)

    def commit(self) -> None:
        """Write the queued changes in one transaction (call before sending the replies)."""
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        db = self._db
        db.execute("BEGIN")
        try:
            for sql, args in batch:
                db.execute(sql, args)
            db.execute("COMMIT")
        except sqlite3.Error:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self._db.close()
