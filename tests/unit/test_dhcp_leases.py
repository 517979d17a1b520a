"""The SQLite lease store: bindings survive a reopen, offers do not, a MAC that moves
leaves no stale row, and the file is WAL with synchronous=NORMAL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pxewizard.errors import PxeError
from pxewizard.proto.dhcp import LeaseOp, LeaseState, ip_int
from pxewizard.servers.leases import LeaseStore

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
IP1, IP2 = ip_int("10.99.0.100"), ip_int("10.99.0.101")


def test_bindings_persist_offers_do_not(tmp_path: Path) -> None:
    path = tmp_path / "leases.sqlite"
    s = LeaseStore(path)
    s.apply(LeaseOp(LeaseState.OFFERED, A, IP1, 10.0))
    s.apply(LeaseOp(LeaseState.BOUND, A, IP1, 3700.0, "host-a", 7))
    s.apply(LeaseOp(LeaseState.OFFERED, B, IP2, 10.0))
    s.commit()
    s2 = LeaseStore(path)  # a second reader before close: WAL makes the commit visible
    assert s2.by_mac(A) is not None and s2.by_mac(A).ip == IP1  # type: ignore[union-attr]
    assert s2.by_mac(A).arch == 7 and s2.by_mac(A).hostname == "host-a"  # type: ignore[union-attr]
    assert s2.by_mac(B) is None
    s.close()
    s2.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_move_and_decline_and_release(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    s = LeaseStore(path)
    s.apply(LeaseOp(LeaseState.BOUND, A, IP1, 3700.0))
    s.apply(LeaseOp(LeaseState.DECLINED, A, IP1, 600.0))
    s.apply(LeaseOp(LeaseState.BOUND, A, IP2, 3700.0))
    s.commit()
    s.apply(LeaseOp(LeaseState.RELEASED, A, IP2, 100.0))
    s.close()
    s = LeaseStore(path)
    assert s.by_ip(IP1).state is LeaseState.DECLINED  # type: ignore[union-attr]
    assert s.by_mac(A).ip == IP2 and s.by_mac(A).state is LeaseState.RELEASED  # type: ignore
    s.apply(LeaseOp(LeaseState.BOUND, B, IP2, 5000.0))  # reclaimed by another client
    s.close()
    s = LeaseStore(path)
    assert s.by_mac(A) is None and s.by_mac(B).ip == IP2  # type: ignore[union-attr]
    rows = sqlite3.connect(path).execute("SELECT ip, mac FROM leases ORDER BY ip").fetchall()
    assert rows == [(IP1, A), (IP2, B)]
    s.close()


def test_find_free_prefers_unused_then_oldest_expired(tmp_path: Path) -> None:
    s = LeaseStore(tmp_path / "l.sqlite")
    for i, mac in enumerate((A, B)):
        s.apply(LeaseOp(LeaseState.BOUND, mac, IP1 + i, 100.0 + i))
    assert s.find_free(IP1, IP1 + 2, 50.0, ()) == IP1 + 2
    s.apply(LeaseOp(LeaseState.BOUND, "02:00:00:00:00:0c", IP1 + 2, 500.0))
    assert s.find_free(IP1, IP1 + 2, 50.0, ()) is None
    assert s.find_free(IP1, IP1 + 2, 200.0, ()) == IP1
    assert s.find_free(IP1, IP1 + 2, 200.0, {IP1}) == IP1 + 1
    s.close()


def test_unwritable_lease_file_says_what_to_do(tmp_path: Path) -> None:
    bad = tmp_path / "file"
    bad.write_text("x")
    with pytest.raises(PxeError, match="lease file"):
        LeaseStore(bad / "leases.sqlite")


def _corrupt_an_index_page(path: Path) -> None:
    """Garble one leaf page of the MAC index earlier versions kept: the start-up query (by
    expiry) never reads it (the integrity check runs before the index is dropped)."""
    from pxewizard.servers.leases import SCHEMA

    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.execute("CREATE INDEX leases_mac ON leases(mac)")
    db.executemany("INSERT INTO leases VALUES (?, ?, 'bound', 1e10, '', NULL)",
                   [(i, f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}") for i in range(3000)])
    db.commit()
    db.close()
    data = bytearray(path.read_bytes())
    pages = [n for n in range(3, len(data) // 4096) if data[n * 4096] == 0x0A]  # index leaf
    assert pages
    start = pages[-1] * 4096
    data[start + 200:start + 4000] = b"\xa5" * 3800
    path.write_bytes(bytes(data))


def test_corrupt_lease_file_is_refused_at_start_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "leases.sqlite"
    _corrupt_an_index_page(path)
    with pytest.raises(PxeError) as err:
        LeaseStore(path)
    text = str(err.value)
    assert "is corrupt" in text and f"mv {path} {path}.corrupt" in text
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(PxeError, match="is corrupt"):
        LeaseStore(path)


def test_a_lease_file_of_an_earlier_version_loses_its_mac_index_and_keeps_its_leases(
        tmp_path: Path) -> None:
    from pxewizard.servers.leases import SCHEMA

    path = tmp_path / "leases.sqlite"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.execute("CREATE INDEX leases_mac ON leases(mac)")
    db.execute("INSERT INTO leases VALUES (?, '02:00:00:00:00:01', 'bound', 1e10, 'pc1', 7)",
               (IP1,))
    db.commit()
    db.close()
    s = LeaseStore(path)
    lease = s.by_mac("02:00:00:00:00:01")
    assert lease is not None and lease.ip == IP1 and lease.hostname == "pc1" and lease.arch == 7
    s.apply(LeaseOp(LeaseState.BOUND, "02:00:00:00:00:01", IP1, 2e10, "pc1b"))
    s.commit()
    s.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall() == []
    assert db.execute("SELECT ip, mac, state, expires, hostname FROM leases").fetchall() == [
        (IP1, "02:00:00:00:00:01", "bound", 2e10, "pc1b")]


def test_lease_file_symlink_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_text("precious")
    (tmp_path / "leases.sqlite").symlink_to(target)
    with pytest.raises(PxeError, match="symbolic link"):
        LeaseStore(tmp_path / "leases.sqlite")
    assert target.read_text() == "precious"


def test_full_disk_is_named_enospc() -> None:
    import errno

    from pxewizard.errors import os_error_words

    assert "(ENOSPC)" in os_error_words(OSError(errno.ENOSPC, "No space left on device"))
    db = sqlite3.connect(":memory:")
    db.execute("PRAGMA max_page_count=2")
    with pytest.raises(sqlite3.Error) as err:
        db.execute("CREATE TABLE t (x)")
        db.executemany("INSERT INTO t VALUES (?)", [("x" * 1000,)] * 100)
    assert "ENOSPC" in os_error_words(err.value)
