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

import contextlib
import os
import sqlite3
from pathlib import Path

from ..errors import PxeError, os_error_words
from ..ondisk import open_private
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
DROP INDEX IF EXISTS leases_mac;
"""
"""No index but the address: the file is read whole at start and written by address. The
index on ``mac`` earlier versions kept cost every lease write a second B-tree update for a
lookup nothing made (dropped from their files at start)."""

_UPSERT = "INSERT INTO leases (ip, mac, state, expires, hostname, arch) " \
          "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(ip) DO UPDATE SET mac = excluded.mac, " \
          "state = excluded.state, expires = excluded.expires, " \
          "hostname = excluded.hostname, arch = excluded.arch"
"""A binding written over the address's row in place (INSERT OR REPLACE deletes the row and
inserts it again). Both changes measured on a 6,000-lease file: a commit of 8 ACKs' rows
33 us, 21 us now."""
_DELETE = "DELETE FROM leases WHERE ip = ? AND mac = ?"


def _open_own_file(path: Path) -> int:
    """Create or open the lease file (0640: leases name the machines) without following a
    symlink; it must be a regular file of ours."""
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    return open_private(path, os.O_RDWR | os.O_CREAT, 0o640, field="dhcp.lease_file")


def _same_file(fd: int, path: Path) -> None:
    """SQLite opened the path itself: it must still be the file checked above."""
    a, b = os.fstat(fd), os.stat(path)
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino):
        raise PxeError(f"the DHCP lease file {path} was replaced while it was opened",
                       "check who else writes into the state directory, then start again")


def _corrupt(path: Path, detail: str) -> PxeError:
    return PxeError(f"the DHCP lease file {path} is corrupt ({detail}); serving from it would "
                    "withhold ACKs later",
                    f"move it away (`mv {path} {path}.corrupt`) and start again: clients keep "
                    "working (they ask again and get an address), or set dhcp.lease_file")


def _check_integrity(db: sqlite3.Connection, path: Path) -> None:
    """PRAGMA quick_check at start (O(N), seconds for millions of rows; a lease file has at
    most a few thousand): a page corrupt where the start-up query does not read would
    otherwise fail the first commit that touches it, and every ACK after it."""
    rows = db.execute("PRAGMA quick_check(5)").fetchall()
    problems = [r[0] for r in rows if r and r[0] != "ok"]
    if problems:
        raise _corrupt(path, "; ".join(str(p) for p in problems)[:300])


class LeaseStore(LeaseTable):
    """A :class:`LeaseTable` that writes every binding change to an SQLite file."""

    def __init__(self, path: Path | str) -> None:
        super().__init__()
        self.path = Path(path)
        memory = str(path) == ":memory:"
        try:
            fd = None if memory else _open_own_file(self.path)
            try:
                self._db = sqlite3.connect(str(self.path), isolation_level=None,
                                           check_same_thread=False)
                if fd is not None:
                    _same_file(fd, self.path)
            finally:
                if fd is not None:
                    os.close(fd)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            if not memory:
                _check_integrity(self._db, self.path)
            self._db.executescript(SCHEMA)
            rows = self._db.execute(
                "SELECT ip, mac, state, expires, hostname, arch FROM leases "
                "ORDER BY expires").fetchall()
        except PxeError:
            raise
        except sqlite3.DatabaseError as exc:
            raise _corrupt(self.path, os_error_words(exc)) from None
        except (sqlite3.Error, OSError) as exc:
            raise PxeError(f"cannot open the DHCP lease file {self.path}: {os_error_words(exc)}",
                           "check that the directory is writable, or set dhcp.lease_file "
                           "to another path") from None
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
            # SQLite may have rolled back itself (SQLITE_FULL): a second ROLLBACK would raise
            # "no transaction is active" and hide the real cause (ENOSPC)
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self._db.close()
