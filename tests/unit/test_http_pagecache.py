"""Page-cache probes used by the HTTP and NBD servers before sendfile on the event loop."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pxewizard.servers.pagecache import page_cached, resident


def test_warm_and_cold(tmp_path: Path) -> None:
    f = tmp_path / "img"
    f.write_bytes(os.urandom(4 << 20))
    fd = os.open(f, os.O_RDONLY)
    try:
        os.pread(fd, 4 << 20, 0)
        assert page_cached(fd, 0, 4 << 20) and page_cached(fd, 12345, 1)
        assert resident(fd, 4096 + 17, 100000) is True
        os.fdatasync(fd)
        end = (4 << 20) - 1
        for _ in range(5):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # this file's pages only
            # the probe reads both ends first: one of them must be gone. DONTNEED leaves
            # the pages still in another CPU's LRU batch (the test may have moved while
            # reading, on a busy machine); a second call after a moment gets them
            if not (resident(fd, 0, 1) and resident(fd, end, 1)):
                break
            time.sleep(0.05)
        else:
            pytest.skip("the kernel kept the pages cached")
        assert not page_cached(fd, 0, 4 << 20)
        os.pread(fd, 8192, 1 << 20)  # warm two pages only
        assert page_cached(fd, 1 << 20, 8192)
        assert not page_cached(fd, 0, 4 << 20)
    finally:
        os.close(fd)


def test_unmappable_is_taken_as_cached() -> None:
    r, w = os.pipe()
    try:
        assert resident(r, 0, 4096) is None and page_cached(r, 0, 4096)
    finally:
        os.close(r)
        os.close(w)
