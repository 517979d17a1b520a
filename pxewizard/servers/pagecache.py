"""Is a file range in the page cache? (so sendfile on the event loop will not wait for a disk)

The HTTP and NBD servers send with sendfile(2) from the event loop. When the
pages are cached that is a memory copy; when they are not (the ISO on a USB
stick or a CD that nobody read yet), sendfile waits for the medium and every
server and the UI on the loop wait with it. These servers ask first and move
cold reads to a thread.

Two probes, cheapest first:

1. preadv2(RWF_NOWAIT) of the first and last byte (~1 us): success proves
   those pages are cached. EAGAIN does not prove the opposite: the kernel also
   answers EAGAIN on a cached page that carries a readahead mark.
2. mincore(2) over a throwaway mapping of the range: the residency of every
   page, without touching the data.

When neither can be asked (no RWF_NOWAIT, a file that cannot be mapped) the
range is taken as cached: the servers then behave as plain sendfile would.
"""

from __future__ import annotations

import ctypes
import mmap
import os

_PROBE = bytearray(1)
_PAGE = mmap.PAGESIZE
_MAP_FAILED = ctypes.c_void_p(-1).value

try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _mmap = _libc.mmap
    _mmap.restype = ctypes.c_void_p
    _mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                      ctypes.c_long]
    _munmap = _libc.munmap
    _munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    _mincore = _libc.mincore
    _mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
except (OSError, AttributeError):  # not Linux/glibc: no residency checks
    _libc = None


def _nowait_hit(fd: int, offset: int, length: int) -> bool | None:
    """True: both ends cached. False: EAGAIN (maybe cold). None: cannot ask."""
    try:
        os.preadv(fd, [_PROBE], offset, os.RWF_NOWAIT)
        if length > 1:
            os.preadv(fd, [_PROBE], offset + length - 1, os.RWF_NOWAIT)
    except BlockingIOError:
        return False
    except (OSError, AttributeError):
        return None
    return True


def resident(fd: int, offset: int, length: int) -> bool | None:
    """mincore(2) over the range: True when every page is cached, None when it cannot tell."""
    if _libc is None or length <= 0:
        return None
    start = offset - offset % _PAGE
    size = offset + length - start
    addr = _mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, start)
    if addr is None or addr == _MAP_FAILED:
        return None
    try:
        pages = (size + _PAGE - 1) // _PAGE
        vec = ctypes.create_string_buffer(pages)
        if _mincore(addr, size, vec) != 0:
            return None
        return b"\x00" not in vec.raw  # one byte per page, bit 0 = resident
    finally:
        _munmap(addr, size)


def page_cached(fd: int, offset: int, length: int) -> bool:
    """Whether reading ``length`` bytes at ``offset`` needs no disk I/O (best effort)."""
    hit = _nowait_hit(fd, offset, length)
    if hit is None:
        return True
    if hit:
        return True
    res = resident(fd, offset, length)
    return True if res is None else res


__all__ = ["page_cached", "resident"]
