"""Shared fixtures: namespaces that are always removed, and tier markers from folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.netns import NetPair, net_pair
from tests.support.tools import require_root

TIERS = ("unit", "net", "e2e", "ui")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier from its folder (tests/net/... -> net)."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture
def netpair() -> Iterator[NetPair]:
    """Server namespace (pxe0 10.99.0.1/24) <-veth-> client namespace (eth0, no address)."""
    require_root()
    with net_pair() as pair:
        yield pair


@pytest.fixture(autouse=True)
def _no_host_memtest(monkeypatch: pytest.MonkeyPatch) -> None:
    """Menus built in-process must not depend on whether this machine has memtest86+
    installed (boot.host_memtest); tests of that feature set the directories themselves."""
    import pxewizard.boot.media as media

    monkeypatch.setattr(media, "HOST_MEMTEST_DIRS", ())
