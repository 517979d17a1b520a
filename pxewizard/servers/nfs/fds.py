"""A small cache of open file descriptors for READ/WRITE/COMMIT, keyed by inode.

Opening a file per READ would double the system calls of the hot path. Each
descriptor is opened the way every served file is (:func:`pxewizard.files.open_beneath`:
jailed to the export by the kernel, no symlink followed on the way, ``O_NONBLOCK``, a
regular file) and checked with ``fstat`` against the handle's inode. A descriptor
in use by a thread is never closed under it: eviction waits for the last user.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass

from ...files import NotFound, TreeError, open_beneath
from ...proto.nfs3 import NfsError, Stat


@dataclass
class _Fd:
    fd: int
    refs: int = 0
    dead: bool = False


class FdCache:
    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._fds: OrderedDict[tuple[int, int, bool], _Fd] = OrderedDict()

    def acquire(self, root: str, rel: str, dev: int, ino: int,
                write: bool) -> tuple[int, object]:
        """An open descriptor for ``rel`` inside the export ``root`` (checked to be inode
        ``ino``) and a token to release."""
        key = (dev, ino, write)
        e = self._fds.get(key)
        if e is None:
            try:
                fd = open_beneath(root, rel, flags=os.O_RDWR if write else os.O_RDONLY,
                                  block_ok=False)
            except TreeError as exc:
                raise NfsError(Stat.STALE if isinstance(exc, NotFound) else Stat.ACCES,
                               str(exc)) from None
            st = os.fstat(fd)
            if st.st_ino != ino or st.st_dev != dev:
                os.close(fd)
                raise NfsError(Stat.STALE, "file replaced while opening")
            e = self._fds[key] = _Fd(fd)
            self._evict()
        else:
            self._fds.move_to_end(key)
        e.refs += 1
        return e.fd, e

    def release(self, token: object) -> None:
        assert isinstance(token, _Fd)
        token.refs -= 1
        if token.dead and token.refs == 0:
            os.close(token.fd)

    def _evict(self) -> None:
        while len(self._fds) > self.size:
            _, e = self._fds.popitem(last=False)
            self._kill(e)

    def _kill(self, e: _Fd) -> None:
        e.dead = True
        if e.refs == 0:
            os.close(e.fd)

    def drop(self, dev: int, ino: int) -> None:
        """Forget an inode's descriptors (after REMOVE/RENAME over it)."""
        for w in (False, True):
            e = self._fds.pop((dev, ino, w), None)
            if e is not None:
                self._kill(e)

    def fds_for(self, dev: int, ino: int) -> list[int]:
        return [e.fd for (d, i, _), e in self._fds.items() if (d, i) == (dev, ino)]

    def close(self) -> None:
        for e in self._fds.values():
            self._kill(e)
        self._fds.clear()
