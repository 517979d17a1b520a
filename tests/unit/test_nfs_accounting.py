"""Read accounting for the live view: started once, throttled progress, done when settled."""

from __future__ import annotations

from pxewizard.servers.nfs.accounting import ReadMeter


def test_throttled_per_client_and_done_after_eof():
    m = ReadMeter(interval=0.5, settle=1.0, idle=10.0)
    evs = []
    t = 100.0
    for i in range(100):  # 100 reads in 0.99 s
        evs += m.on_read(t + i * 0.01, "10.0.0.5", "10.0.0.5:800", "/srv/img", 1000, 100_000,
                         eof=i == 99)
    kinds = [e.kind for e in evs]
    assert kinds.count("transfer_started") == 1
    assert 1 <= kinds.count("transfer_progress") <= 3
    assert m.tick(t + 1.5) == []  # still settling
    done = m.tick(t + 2.1)
    assert len(done) == 1 and done[0].sent == 100_000 and done[0].client == "10.0.0.5"
    assert m.active() == 0


def test_idle_transfer_finishes_and_clients_are_separate():
    m = ReadMeter(interval=0.5, settle=1.0, idle=10.0)
    a = m.on_read(0.0, "10.0.0.5", "p", "/f", 10, 1000, eof=False)
    b = m.on_read(0.0, "10.0.0.6", "p", "/f", 10, 1000, eof=False)
    assert [e.kind for e in a] == [e.kind for e in b] == ["transfer_started", "transfer_progress"]
    assert m.tick(5.0) == []
    assert len(m.tick(10.5)) == 2
