"""serve's guards against running out of descriptors (issue 17)."""

from __future__ import annotations

import asyncio
import errno
import resource

from pxewizard.events import LogLine
from pxewizard.plan import Plan
from pxewizard.serve import LoopErrors, fds_needed, raise_fd_limit


def test_emfile_storms_become_one_event_a_second() -> None:
    got: list[LogLine] = []
    loop = asyncio.new_event_loop()
    try:
        handler = LoopErrors(got.append)
        exc = OSError(errno.EMFILE, "Too many open files")
        for _ in range(10_000):  # asyncio's accept loop, out of descriptors
            handler(loop, {"message": "socket.accept() out of system resource",
                           "exception": exc})
        assert len(got) == 1 and "out of file descriptors" in got[0].message
        handler(loop, {"message": "Task exception was never retrieved",
                       "exception": ValueError("x")})
        assert len(got) == 2 and "ValueError" in got[1].message
    finally:
        loop.close()


def test_the_fd_limit_is_raised_and_a_short_one_is_reported(monkeypatch) -> None:
    plan = Plan(interface="eth0", server_ip="10.0.0.1")
    limits = {"soft": 1024, "hard": 1 << 20}
    monkeypatch.setattr(resource, "getrlimit", lambda _r: (limits["soft"], limits["hard"]))

    def setrlimit(_r, pair):
        limits["soft"] = pair[0]

    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    got: list[LogLine] = []
    assert raise_fd_limit(plan, got.append) == 16384 and got == []
    limits.update(soft=256, hard=256)  # a hard limit below what the caps may take
    assert raise_fd_limit(plan, got.append) == 256
    assert len(got) == 1 and "tftp.max_transfers" in got[0].message
    assert fds_needed(plan) > 256
