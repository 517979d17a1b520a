"""Exports, stable file handles, and the jail that keeps every handle inside its export.

A handle must survive a server restart (the kernel client keeps using the ones
it holds; a diskless root would die on ESTALE) and must not depend on a path
that a RENAME changes. So, as unfs3 does, a handle names the object by inode
and carries a short trail to find it again without any server-side state:

    version u8 | export id u32 | st_dev u32 | st_ino u64 | depth u8 | trail[depth]

``trail`` holds one hash byte of the inode number of each directory from the
export root (exclusive) down to the object's parent (inclusive), which keeps
handles of different objects distinct. While the server runs, a cache maps
handles to paths; every hit is checked with ``lstat`` (inode and device must
match). A handle the cache does not know (after a restart, or forged) is
resolved in constant time from an inode -> path index of each export, kept
current with every path handed out and rebuilt in a worker thread: at start,
and on a miss at most every :data:`REBUILD_EVERY` seconds. Nothing is ever
scanned on the event loop (30 forged handles a second used to cost a scan
each); while a rebuild runs the answer is JUKEBOX (the client retries), after
it a handle still unknown is STALE.

The jail: a path is only ever built from the export root by appending names
of real directory entries. Wire names containing ``/`` or NUL are refused,
``..`` is taken from the path we hold (clamped at the export root), and no
symlink is followed on the server: LOOKUP returns the link itself, READLINK
returns its text, and the client resolves it in its own namespace, where a
``..`` at our root stays at our root. A handle is only accepted when the inode
its path reaches now is the inode it names, and the walk and the scan only ever
find inodes inside the export, so a forged handle cannot name a file outside
it. Every operation runs in the same event-loop step as that check (READ and
WRITE hand the thread an already opened, fstat-checked descriptor), so another
client cannot swap a directory for a symlink in between.
"""

from __future__ import annotations

import os
import stat
import struct
import threading
import time
import zlib
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from ...proto.nfs3 import NAME_MAX, NFS3_FHSIZE, NfsError, Stat

FH_VERSION = 1
_HDR = struct.Struct(">BIIQB")
MAX_TRAIL = NFS3_FHSIZE - _HDR.size
DEEP = 0xFF
"""``depth`` value of an object deeper than the trail can hold (found by scan only)."""
SCAN_LIMIT = 500_000
"""Directory entries an index rebuild may visit before giving up (bounds its cost)."""
REBUILD_EVERY = 10.0
"""Seconds between index rebuilds caused by unknown handles (a flood costs one per 10 s)."""


def ino_hash(ino: int) -> int:
    """One byte per directory in the trail (Fibonacci hashing spreads sequential inodes)."""
    return ((ino * 0x9E3779B97F4A7C15) >> 56) & 0xFF


def export_id(root: str) -> int:
    return zlib.crc32(root.encode("utf-8", "surrogateescape"))


@dataclass(frozen=True)
class Handle:
    """A decoded handle."""

    export: int
    dev: int
    ino: int
    trail: bytes
    deep: bool = False

    def encode(self) -> bytes:
        depth = DEEP if self.deep else len(self.trail)
        return _HDR.pack(FH_VERSION, self.export, self.dev & 0xFFFFFFFF, self.ino, depth) + \
            (b"" if self.deep else self.trail)

    def child(self, own_is_root: bool, dev: int, ino: int) -> "Handle":
        """The handle of an entry of this directory."""
        if self.deep:
            return Handle(self.export, dev, ino, b"", True)
        trail = self.trail if own_is_root else self.trail + bytes([ino_hash(self.ino)])
        if len(trail) > MAX_TRAIL:
            return Handle(self.export, dev, ino, b"", True)
        return Handle(self.export, dev, ino, trail)


def decode_handle(fh: bytes) -> Handle:
    """Parse a handle from the wire; NfsError(BADHANDLE) if it is not one of ours."""
    if len(fh) < _HDR.size:
        raise NfsError(Stat.BADHANDLE, f"handle of {len(fh)} bytes")
    ver, exp, dev, ino, depth = _HDR.unpack_from(fh)
    if ver != FH_VERSION:
        raise NfsError(Stat.BADHANDLE, f"handle version {ver}")
    rest = fh[_HDR.size:]
    if depth == DEEP:
        if rest:
            raise NfsError(Stat.BADHANDLE, "trailing bytes")
        return Handle(exp, dev, ino, b"", True)
    if len(rest) != depth:
        raise NfsError(Stat.BADHANDLE, f"trail of {len(rest)} bytes, depth {depth}")
    return Handle(exp, dev, ino, rest)


@dataclass
class Export:
    """One exported directory, resolved once at start."""

    path: str
    """The path clients mount (``server:/path``), absolute and normalised."""
    root: str
    """The directory on disk (symlinks resolved)."""
    rw: bool = False
    squash: str = "root_squash"
    anonuid: int = 65534
    anongid: int = 65534
    id: int = 0
    dev: int = 0
    ino: int = 0
    index: dict[int, str] = field(default_factory=dict, repr=False)
    """inode -> relative path: rebuilt in a thread, kept current with every path handed out."""
    built_at: float | None = field(default=None, repr=False)
    """When the last index rebuild finished (monotonic); None: none finished yet."""
    building: bool = field(default=False, repr=False)

    @classmethod
    def from_config(cls, obj: object) -> "Export":
        """Build from a pxewizard.plan.NfsExport (or anything with the same attributes)."""
        path = os.path.normpath(os.path.abspath(str(getattr(obj, "path"))))
        root = os.path.realpath(path)
        st = os.stat(root)
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(root)
        squash = getattr(obj, "squash", "root_squash")
        return cls(path=path, root=root, rw=bool(getattr(obj, "rw", False)),
                   squash=str(getattr(squash, "value", squash)),
                   anonuid=int(getattr(obj, "anonuid", 65534)),
                   anongid=int(getattr(obj, "anongid", 65534)),
                   id=export_id(root), dev=st.st_dev, ino=st.st_ino)

    def root_handle(self) -> Handle:
        return Handle(self.id, self.dev, self.ino, b"")

    def abspath(self, rel: str) -> str:
        return self.root if not rel else self.root.rstrip("/") + "/" + rel


def check_name(name: str) -> None:
    """A single path component from the wire; raises NfsError for anything else."""
    if not name or "/" in name or "\0" in name:
        raise NfsError(Stat.INVAL if name else Stat.NOENT, f"bad name {name!r}")
    if len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
        raise NfsError(Stat.NAMETOOLONG, name[:40])


def join(rel: str, name: str) -> str:
    """Child path inside the export; ``.`` and ``..`` never leave the export root."""
    if name == ".":
        return rel
    if name == "..":
        return rel.rpartition("/")[0] if "/" in rel else ""
    check_name(name)
    return f"{rel}/{name}" if rel else name


@dataclass
class Node:
    """A resolved handle: where it lives now and what it is."""

    export: Export
    rel: str
    handle: Handle
    st: os.stat_result

    @property
    def path(self) -> str:
        return self.export.abspath(self.rel)

    @property
    def is_root(self) -> bool:
        return self.rel == ""

    @property
    def fh(self) -> bytes:
        return self.handle.encode()


class Resolver:
    """Handle -> Node with a bounded cache, the trail walk and a last-resort scan."""

    def __init__(self, exports: list[Export], cache_size: int = 100_000, *,
                 background: bool = True) -> None:
        self.exports = {e.id: e for e in exports}
        self.cache_size = cache_size
        self._cache: OrderedDict[bytes, str] = OrderedDict()
        self.background = background
        """Rebuild indexes in a thread (the server); False: at once, in the caller (tests)."""
        if background:
            for e in exports:
                self._rebuild(e)

    def remember(self, fh: bytes, rel: str) -> None:
        c = self._cache
        c[fh] = rel
        c.move_to_end(fh)
        if len(c) > self.cache_size:
            c.popitem(last=False)

    def forget(self, fh: bytes) -> None:
        self._cache.pop(fh, None)

    def node(self, export: Export, rel: str, st: os.stat_result, parent: Node | None) -> Node:
        """The Node of a path just found under ``parent`` (or the root when rel is empty)."""
        if rel == "":
            h = export.root_handle()
        elif parent is not None and parent.rel == rel.rpartition("/")[0]:
            h = parent.handle.child(parent.is_root, st.st_dev, st.st_ino)
        else:
            h = self._handle_for(export, rel, st)
        n = Node(export, rel, h, st)
        self.remember(h.encode(), rel)
        export.index[st.st_ino] = rel
        return n

    def _handle_for(self, export: Export, rel: str, st: os.stat_result) -> Handle:
        """A handle for a path reached other than from its parent (``..``, MNT of a subdir)."""
        h = export.root_handle()
        parts = rel.split("/")
        cur = ""
        for i, part in enumerate(parts):
            cur = f"{cur}/{part}" if cur else part
            s = st if i == len(parts) - 1 else os.lstat(export.abspath(cur))
            h = h.child(i == 0, s.st_dev, s.st_ino)
        return h

    def resolve(self, fh: bytes) -> Node:
        """The Node a handle names now; NfsError(BADHANDLE / STALE) otherwise."""
        h = decode_handle(fh)
        export = self.exports.get(h.export)
        if export is None:
            raise NfsError(Stat.STALE, "no such export (the export list changed?)")
        rel = self._cache.get(fh)
        if rel is not None:
            st = self._check(export, rel, h)
            if st is not None:
                return Node(export, rel, h, st)
            self.forget(fh)
        if h.ino == export.ino and h.dev == (export.dev & 0xFFFFFFFF) and not h.trail:
            st = os.lstat(export.root)
            if st.st_ino == export.ino:
                return Node(export, "", h, st)
        found = self._indexed(export, h)
        st = self._check(export, found, h)
        if st is None:
            raise NfsError(Stat.STALE, f"inode {h.ino} changed under {export.path}")
        self.remember(fh, found)
        return Node(export, found, h, st)

    @staticmethod
    def _check(export: Export, rel: str, h: Handle) -> os.stat_result | None:
        try:
            st = os.lstat(export.abspath(rel))
        except OSError:
            return None
        if st.st_ino != h.ino or (st.st_dev & 0xFFFFFFFF) != h.dev:
            return None
        return st

    def _indexed(self, export: Export, h: Handle) -> str:
        """The path of an unknown handle from the export's index (constant time), or
        NfsError: JUKEBOX while a rebuild runs (the client retries), else STALE."""
        rel = export.index.get(h.ino)
        if rel is not None and self._check(export, rel, h) is not None:
            return rel
        if export.building:
            raise NfsError(Stat.JUKEBOX, "the handle index is being rebuilt; try again")
        if export.built_at is None or time.monotonic() - export.built_at >= REBUILD_EVERY:
            self._rebuild(export)
            if export.building:
                raise NfsError(Stat.JUKEBOX, "the handle index is being rebuilt; try again")
            rel = export.index.get(h.ino)
            if rel is not None and self._check(export, rel, h) is not None:
                return rel
        raise NfsError(Stat.STALE, f"inode {h.ino} is gone from {export.path}")

    def _rebuild(self, export: Export) -> None:
        """Index the export (breadth-first, bounded), in a thread unless ``background`` is
        off; the new index replaces the old one in one assignment."""
        export.building = True

        def build() -> None:
            try:
                export.index = build_index(export)
            finally:
                export.built_at = time.monotonic()
                export.building = False

        if self.background:
            threading.Thread(target=build, name="nfs-index", daemon=True).start()
        else:
            build()


def build_index(export: Export) -> dict[int, str]:
    """inode -> relative path of every entry of the export (at most SCAN_LIMIT entries)."""
    index: dict[int, str] = {}
    queue = deque([""])
    seen = 0
    while queue and seen < SCAN_LIMIT:
        cur = queue.popleft()
        try:
            it = os.scandir(export.abspath(cur))
        except OSError:
            continue
        with it:
            for e in it:
                seen += 1
                r = f"{cur}/{e.name}" if cur else e.name
                index[e.inode()] = r
                if e.is_dir(follow_symlinks=False):
                    queue.append(r)
    return index
