"""Issue 23: per-client NFS bytes read/written, published as NfsActivity totals."""

from __future__ import annotations

import pytest

from pxewizard.events import NfsActivity, from_dict
from pxewizard.proto import nfs3 as n3
from pxewizard.proto.nfs3 import Proc
from pxewizard.servers.nfs.accounting import IoCounter
from tests.support.nfs_client import read_args
from tests.unit.test_nfs_proc import Harness, _create, _write, tree  # noqa: F401

pytestmark = pytest.mark.unit


def test_counter_totals_rate_limit_and_forget() -> None:
    c = IoCounter(interval=2.0, limit=2)
    c.add("10.0.0.7", read=100)
    c.add("10.0.0.8", written=5)
    c.add("10.0.0.7", written=7)
    evs = c.tick(10.0)
    assert [(e.client, e.read, e.written) for e in evs] == [("10.0.0.7", 100, 7),
                                                             ("10.0.0.8", 0, 5)]
    c.add("10.0.0.7", read=1)
    assert c.tick(11.0) == []  # within the interval
    assert [(e.client, e.read) for e in c.tick(12.0)] == [("10.0.0.7", 101)]
    assert c.tick(20.0) == []  # nothing changed: nothing said
    c.add("10.0.0.9", read=1)  # a third client: the least recently active goes
    assert set(c.totals) == {"10.0.0.7", "10.0.0.9"}
    ev = c.tick(30.0)[0]
    assert from_dict(ev.to_dict()) == ev


def test_nfsd_counts_reads_and_writes_per_client(tree) -> None:  # noqa: F811
    h = Harness(tree, rw=True, squash="no_root_squash")
    root = h.mnt()
    fh = h.path_fh("file.bin")
    rep = h.call(Proc.READ, read_args(fh, 0, 4096))
    assert rep.body.pull_u32() == 0
    st, wfh = _create(h, root, "new.txt")
    assert st == 0
    assert _write(h, wfh, 0, b"x" * 300, stable=n3.StableHow.FILE_SYNC)[:2] == (0, 300)
    h.nfsd.close()
    [ev] = [e for e in h.events if isinstance(e, NfsActivity)]
    assert (ev.client, ev.read, ev.written, ev.service) == ("10.0.0.7", 4096, 300, "nfs")


def test_activity_in_words() -> None:
    from pxewizard.insight.eventfmt import describe

    line = describe(NfsActivity(client="10.0.0.7", read=5 << 20, written=300))
    assert line == "nfs 10.0.0.7: read 5.0 MiB, written 300 B so far"
