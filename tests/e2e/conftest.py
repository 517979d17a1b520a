"""e2e fixtures: the guest images (built once per session) and the timing summary."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support.tools import require, require_root

from .guest import GuestImages, build_guest

TIMINGS: list[tuple[str, float, str]] = []
"""(case, seconds from firmware start to the marker, outcome) of every boot this session."""
_STARTED: list[float] = []
"""When the first e2e fixture ran (the e2e wall time starts there)."""


@pytest.fixture(scope="session")
def guest() -> GuestImages:
    """Debian's kernel (apt-get download, unpacked) + our busybox initramfs, cached on disk."""
    _STARTED.append(time.monotonic())
    require_root()
    require("qemu-system-x86_64", "apt-get", "dpkg-deb", "busybox", "nbd-client")
    return build_guest()


@pytest.fixture
def timing() -> Iterator[list[tuple[str, float, str]]]:
    yield TIMINGS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TIMINGS or not _STARTED:
        return
    tr = terminalreporter
    tr.section("e2e boot timings (firmware start -> marker)")
    for case, seconds, outcome in TIMINGS:
        tr.write_line(f"{case:<34} {seconds:7.1f} s  {outcome}")
    total = sum(s for _, s, _ in TIMINGS)
    tr.write_line(f"{'sum of boots':<34} {total:7.1f} s")
    tr.write_line(f"{'e2e wall time (incl. setup)':<34} {time.monotonic() - _STARTED[0]:7.1f} s")
