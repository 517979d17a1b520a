"""NFS v3 program: every procedure of RFC 1813 over the exports, jailed and squashed.

Each handler resolves its handles (``handles.Resolver``), maps the caller's
credentials through the export's squash option (``auth.squash_ids``), checks
permissions, does the file operation, and returns the results. A handler
raises ``NfsError`` (or lets an ``OSError`` escape) to answer an error status;
:meth:`NfsProgram.dispatch` turns both into the status plus the procedure's
failure body, with attributes left out (RFC 1813 allows that everywhere).

Write procedures on a read-only export answer NFS3ERR_ROFS before any other
check, so a client learns the export is read-only rather than a permission
problem.

WRITE with UNSTABLE goes to the page cache and is answered at once; COMMIT
fsyncs. The write verifier is random per server start (RFC 1813 section
3.3.7): a client that sees it change after a restart sends its uncommitted
writes again.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import errno
import hashlib
import os
import stat
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any

from ...events import EventBus, TransferFailed
from ...privileges import acting_as
from ...proto import nfs3 as n3
from ...proto.nfs3 import NfsError, Proc, Stat
from ...proto.rpc import Call
from ...proto.xdr import Writer, pad_len
from . import auth
from .accounting import IoCounter, ReadMeter
from .auth import Ids
from .fds import FdCache
from .handles import Export, Node, Resolver, check_name, join
from .transport import CallContext, Results

RTMAX = 1024 * 1024
"""Largest READ answered (FSINFO rtmax); Linux and libnfs use up to 1 MiB."""
WTMAX = 1024 * 1024
UDP_RTMAX = 32 * 1024
"""Over UDP a reply must fit one datagram: READ replies are cut to this (a short read)."""
THREAD_IO = 128 * 1024
"""Reads and writes larger than this go to a worker thread; smaller ones run inline."""
FAIL_TAIL = {
    Proc.GETATTR: b"", Proc.SETATTR: bytes(8), Proc.LOOKUP: bytes(4), Proc.ACCESS: bytes(4),
    Proc.READLINK: bytes(4), Proc.READ: bytes(4), Proc.WRITE: bytes(8),
    Proc.CREATE: bytes(8), Proc.MKDIR: bytes(8), Proc.SYMLINK: bytes(8),
    Proc.MKNOD: bytes(8), Proc.REMOVE: bytes(8), Proc.RMDIR: bytes(8),
    Proc.RENAME: bytes(16), Proc.LINK: bytes(12), Proc.READDIR: bytes(4),
    Proc.READDIRPLUS: bytes(4), Proc.FSSTAT: bytes(4), Proc.FSINFO: bytes(4),
    Proc.PATHCONF: bytes(4), Proc.COMMIT: bytes(8),
}
"""The failure body of each procedure with every optional attribute absent."""

_OK = struct.pack(">I", Stat.OK)


def _attr(st: os.stat_result | None) -> n3.Fattr | None:
    return None if st is None else n3.fattr_from_stat(st, st.st_dev)


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


async def read_at(fd: int, count: int, offset: int) -> bytes | memoryview:
    """pread without stalling the event loop on a disk read.

    First try ``preadv2(RWF_NOWAIT)``: it copies what is already in the page
    cache and fails instead of waiting for the disk (how Samba serves hot files
    without a thread hop). Only a miss goes to a worker thread. A short read is
    fine: NFS clients ask again for the rest (RFC 1813 section 3.3.6).
    """
    if _NOWAIT:
        buf = bytearray(count)
        try:
            n = os.preadv(fd, [buf], offset, _NOWAIT)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            n = 0
        if n > 0:
            return memoryview(buf)[:n]
    elif count <= THREAD_IO:
        return os.pread(fd, count, offset)
    return await asyncio.to_thread(os.pread, fd, count, offset)


_NOWAIT = getattr(os, "RWF_NOWAIT", 0)


def cookie_of(name: str) -> int:
    """A READDIR cookie from the entry's name, so it survives entries added or removed.

    1 and 2 are ``.`` and ``..``; a hash keeps resumption right while the
    directory changes between calls (no NFS3ERR_BAD_COOKIE needed).
    """
    h = int.from_bytes(hashlib.blake2b(name.encode("utf-8", "surrogateescape"),
                                       digest_size=8).digest(), "big") >> 1
    return max(h, 3)


REFUSALS = frozenset({Stat.PERM, Stat.ACCES, Stat.ROFS, Stat.STALE, Stat.BADHANDLE,
                      Stat.IO, Stat.SERVERFAULT, Stat.NOSPC, Stat.DQUOT})
"""Errors that refuse the client something (each is an event); NOENT, EXIST, NOTEMPTY...
are ordinary answers a client expects (a LOOKUP for a file that is not there)."""


class NfsProgram:
    prog = n3.NFS_PROG
    low = n3.NFS_VERS
    high = n3.NFS_VERS
    nonidempotent = frozenset({Proc.CREATE, Proc.MKDIR, Proc.SYMLINK, Proc.MKNOD, Proc.REMOVE,
                               Proc.RMDIR, Proc.RENAME, Proc.LINK, Proc.SETATTR})
    """Procedures whose retransmission must be answered from the duplicate request cache."""

    def __init__(self, exports: list[Export], resolver: Resolver, bus: EventBus,
                 clock: Callable[[], float] = time.time) -> None:
        self.exports = exports
        self.resolver = resolver
        self.bus = bus
        self.clock = clock
        self.verf = os.urandom(n3.NFS3_WRITEVERFSIZE)
        """Write verifier: new on every start (RFC 1813 section 3.3.7)."""
        self.fds = FdCache()
        self.meter = ReadMeter()
        self.io = IoCounter()
        """Bytes read/written per client, published as NfsActivity (issue 23)."""
        self._switch: contextlib.ExitStack | None = None
        """Set while a write handler runs: its first _ids() takes the caller's identity."""
        self._acting: Ids | None = None
        self._refused_said: dict[tuple[str, int, int], float] = {}
        self._dirs: OrderedDict[tuple[int, int], tuple[int, int, list[tuple[int, str, int]]]] = \
            OrderedDict()
        self._handlers = {
            Proc.GETATTR: self.getattr, Proc.SETATTR: self.setattr, Proc.LOOKUP: self.lookup,
            Proc.ACCESS: self.access, Proc.READLINK: self.readlink, Proc.READ: self.read,
            Proc.WRITE: self.write, Proc.CREATE: self.create, Proc.MKDIR: self.mkdir,
            Proc.SYMLINK: self.symlink, Proc.MKNOD: self.mknod, Proc.REMOVE: self.remove,
            Proc.RMDIR: self.rmdir, Proc.RENAME: self.rename, Proc.LINK: self.link,
            Proc.READDIR: self.readdir, Proc.READDIRPLUS: self.readdirplus,
            Proc.FSSTAT: self.fsstat, Proc.FSINFO: self.fsinfo, Proc.PATHCONF: self.pathconf,
            Proc.COMMIT: self.commit,
        }

    async def dispatch(self, call: Call, ctx: CallContext) -> Results | None:
        if call.proc == Proc.NULL:
            return [b""]
        try:
            proc = Proc(call.proc)
        except ValueError:
            return None
        args = n3.decode_args(proc, call.args)  # ValueError -> GARBAGE_ARGS
        why = ""
        try:
            if proc in self.nonidempotent:
                return self._as_caller(self._handlers[proc](args, call, ctx))
            return await self._handlers[proc](args, call, ctx)
        except NfsError as exc:
            status, why = exc.status, str(exc)
        except OSError as exc:
            status, why = n3.stat_from_errno(exc.errno), exc.strerror or str(exc)
        if status in REFUSALS:
            self._refused(proc, status, why, ctx)
        return [struct.pack(">I", status) + FAIL_TAIL[proc]]

    def _as_caller(self, coro: Coroutine[Any, Any, Results]) -> Results:
        """Run a namespace-changing handler (it never awaits) to its end, switching to the
        caller's squashed identity at its first :meth:`_ids` on an rw export, so the kernel
        checks what it does with the caller's rights, as knfsd does: a uid-1000 client
        cannot hard-link a root-owned 0600 file (fs.protected_hardlinks) nor write where
        the modes say no, whatever our own checks missed."""
        self._switch = contextlib.ExitStack()
        try:
            coro.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        else:  # it yielded: another request could run under this identity
            coro.close()
            raise NfsError(Stat.SERVERFAULT, "a write handler yielded to the event loop")
        finally:
            switch, self._switch = self._switch, None
            switch.close()
    REFUSED_EVERY = 30.0
    """Seconds between two events for one (client, procedure, status): a client that is
    refused retries, the log needs it once."""

    def _refused(self, proc: Proc, status: int, why: str, ctx: CallContext) -> None:
        now = time.monotonic()
        key = (ctx.peer[0], int(proc), int(status))
        said = self._refused_said
        if now - said.get(key, -self.REFUSED_EVERY) < self.REFUSED_EVERY:
            return
        if len(said) > 4096:
            said.clear()
        said[key] = now
        name = Stat(status).name if status in Stat._value2member_map_ else str(status)
        self.bus.publish(TransferFailed(
            service="nfs", path="", peer=ctx.peer_str, client=ctx.peer[0], code=int(status),
            reason=f"{proc.name} refused: NFS3ERR_{name}" + (f" ({why})" if why else "")))

    # --- helpers --------------------------------------------------------------------------

    def _node(self, fh: bytes) -> Node:
        return self.resolver.resolve(fh)

    def _ids(self, node: Node, call: Call) -> Ids:
        e = node.export
        ids = auth.squash_ids(call.cred, e.squash, e.anonuid, e.anongid)
        switch = self._switch
        # (a server not running as root cannot act as anyone else, nor needs to)
        if switch is not None and e.rw and self._acting is None and os.geteuid() == 0:
            switch.enter_context(acting_as(ids.uid, ids.gid, ids.groups()))
            self._acting = ids
            switch.callback(self._stop_acting)
        return ids

    def _stop_acting(self) -> None:
        self._acting = None

    @staticmethod
    def _writable(node: Node) -> None:
        if not node.export.rw:
            raise NfsError(Stat.ROFS, f"{node.export.path} is exported read-only")

    @staticmethod
    def _dir(node: Node) -> None:
        if not stat.S_ISDIR(node.st.st_mode):
            raise NfsError(Stat.NOTDIR)

    def _child(self, d: Node, name: str) -> tuple[str, os.stat_result | None]:
        check_name(name)
        if name in (".", ".."):
            raise NfsError(Stat.INVAL, "cannot create or remove . or ..")
        rel = join(d.rel, name)
        return rel, _lstat(d.export.abspath(rel))

    def _new_gid(self, d: Node, ids: Ids) -> int:
        """Group of a new object: the directory's when it is setgid (BSD semantics), else ours."""
        return d.st.st_gid if d.st.st_mode & stat.S_ISGID else ids.gid

    def _apply(self, path: str, st: os.stat_result, sa: n3.Sattr, ids: Ids,
               fd: int | None = None) -> None:
        """Apply sattr3 values with the caller's rights (SETATTR and the create procedures)."""
        owner = ids.root or ids.uid == st.st_uid
        is_link = stat.S_ISLNK(st.st_mode)
        if sa.uid is not None or sa.gid is not None:
            uid = -1 if sa.uid is None or sa.uid == st.st_uid else sa.uid
            gid = -1 if sa.gid is None or sa.gid == st.st_gid else sa.gid
            if uid != -1 and not ids.root:
                raise NfsError(Stat.PERM, "only root may give a file away")
            if gid != -1 and not (ids.root or (owner and gid in ids.groups())):
                raise NfsError(Stat.PERM, "not the owner or not a member of that group")
            if uid != -1 or gid != -1:
                os.chown(path, uid, gid, follow_symlinks=False)
        if sa.mode is not None and not is_link:
            if not owner:
                raise NfsError(Stat.PERM, "only the owner may change the mode")
            os.chmod(path, sa.mode & 0o7777)
        if sa.size is not None:
            if stat.S_ISDIR(st.st_mode):
                raise NfsError(Stat.ISDIR)
            if not stat.S_ISREG(st.st_mode):
                raise NfsError(Stat.INVAL, "size of a non-regular file")
            auth.may_write(st, ids)
            if fd is not None:
                os.ftruncate(fd, sa.size)
            else:
                tfd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
                try:
                    os.ftruncate(tfd, sa.size)
                finally:
                    os.close(tfd)
        if sa.atime is not None or sa.mtime is not None:
            if not owner:
                if sa.atime not in (None, "server") or sa.mtime not in (None, "server"):
                    raise NfsError(Stat.PERM, "only the owner may set explicit times")
                auth.may_write(st, ids)
            now = time.time_ns()
            cur = os.lstat(path)

            def ns(t: tuple[int, int] | str | None, old: int) -> int:
                if t is None:
                    return old
                if t == "server":
                    return now
                assert isinstance(t, tuple)
                return t[0] * 1_000_000_000 + t[1]

            os.utime(path, ns=(ns(sa.atime, cur.st_atime_ns), ns(sa.mtime, cur.st_mtime_ns)),
                     follow_symlinks=False)

    def _dir_wcc(self, w: Writer, before: os.stat_result, path: str) -> None:
        n3.push_wcc_data(w, n3.wcc_from_stat(before), _attr(_lstat(path)))

    def _new_node(self, w: Writer, d: Node, rel: str) -> None:
        """post_op_fh3 and post_op_attr of a just-created object."""
        st = os.lstat(d.export.abspath(rel))
        node = self.resolver.node(d.export, rel, st, d)
        n3.push_post_op_fh(w, node.fh)
        n3.push_post_op_attr(w, _attr(st))

    # --- read side ------------------------------------------------------------------------

    async def getattr(self, a: n3.FhArgs, call: Call, ctx: CallContext) -> Results:
        node = self._node(a.fh)
        w = Writer().push_raw(_OK)
        n3.push_fattr(w, _attr(node.st))  # type: ignore[arg-type]
        return [w.data]

    async def lookup(self, a: n3.DirOpArgs, call: Call, ctx: CallContext) -> Results:
        d = self._node(a.dir)
        self._dir(d)
        auth.may_search(d.st, self._ids(d, call))
        rel = join(d.rel, a.name)  # '..' at the export root stays at the root
        if rel == d.rel:
            child = d
        else:
            try:
                st = os.lstat(d.export.abspath(rel))
            except FileNotFoundError:
                raise NfsError(Stat.NOENT) from None
            child = self.resolver.node(d.export, rel, st, d if a.name != ".." else None)
        w = Writer().push_raw(_OK).push_opaque(child.fh)
        n3.push_post_op_attr(w, _attr(child.st))
        n3.push_post_op_attr(w, _attr(d.st))
        return [w.data]

    async def access(self, a: n3.AccessArgs, call: Call, ctx: CallContext) -> Results:
        node = self._node(a.fh)
        mask = auth.access_mask(node.st, self._ids(node, call), node.export.rw) & a.access
        w = Writer().push_raw(_OK)
        n3.push_post_op_attr(w, _attr(node.st))
        w.push_u32(mask)
        return [w.data]

    async def readlink(self, a: n3.FhArgs, call: Call, ctx: CallContext) -> Results:
        node = self._node(a.fh)
        if not stat.S_ISLNK(node.st.st_mode):
            raise NfsError(Stat.INVAL, "not a symlink")
        target = os.readlink(node.path)
        w = Writer().push_raw(_OK)
        n3.push_post_op_attr(w, _attr(node.st))
        w.push_string(target)
        return [w.data]

    async def read(self, a: n3.ReadArgs, call: Call, ctx: CallContext) -> Results:
        node = self._node(a.fh)
        st = node.st
        if stat.S_ISDIR(st.st_mode):
            raise NfsError(Stat.ISDIR)
        if not stat.S_ISREG(st.st_mode):
            raise NfsError(Stat.INVAL, "not a regular file")
        auth.may_read(st, self._ids(node, call))
        count = min(a.count, UDP_RTMAX if ctx.proto == "udp" else RTMAX)
        if a.offset >= st.st_size or count == 0:
            data: bytes | memoryview = b""
        else:
            fd, tok = self.fds.acquire(node.export.root, node.rel, st.st_dev, st.st_ino, False)
            try:
                data = await read_at(fd, count, a.offset)
            finally:
                self.fds.release(tok)
        eof = a.offset + len(data) >= st.st_size
        w = Writer().push_raw(_OK)
        n3.push_post_op_attr(w, _attr(st))
        w.push_u32(len(data)).push_bool(eof).push_u32(len(data))
        if data:
            path = node.export.path.rstrip("/") + "/" + node.rel if node.rel else node.export.path
            self.bus.publish_many(self.meter.on_read(self.clock(), ctx.peer[0], ctx.peer_str,
                                                     path, len(data), st.st_size, eof))
            self.io.add(ctx.peer[0], read=len(data))
        return [w.data, data, bytes(pad_len(len(data)))]

    async def readdir(self, a: n3.ReaddirArgs, call: Call, ctx: CallContext) -> Results:
        return self._readdir(a, call, plus=False, udp=ctx.proto == "udp")

    async def readdirplus(self, a: n3.ReaddirArgs, call: Call, ctx: CallContext) -> Results:
        return self._readdir(a, call, plus=True, udp=ctx.proto == "udp")

    def _listing(self, d: Node) -> list[tuple[int, str, int]]:
        """(cookie, name, inode) of a directory, sorted by cookie; cached while unchanged."""
        key = (d.st.st_dev, d.st.st_ino)
        cached = self._dirs.get(key)
        if cached is not None and cached[0] == d.st.st_mtime_ns and cached[1] == d.st.st_size:
            self._dirs.move_to_end(key)
            return cached[2]
        with os.scandir(d.path) as it:
            entries = sorted((cookie_of(e.name), e.name, e.inode()) for e in it)
        self._dirs[key] = (d.st.st_mtime_ns, d.st.st_size, entries)
        if len(self._dirs) > 64:
            self._dirs.popitem(last=False)
        return entries

    def _readdir(self, a: n3.ReaddirArgs, call: Call, plus: bool, udp: bool = False) -> Results:
        d = self._node(a.dir)
        self._dir(d)
        auth.may_list(d.st, self._ids(d, call))
        entries = self._listing(d)
        parent_rel = join(d.rel, "..")
        head: list[tuple[int, str, int]] = []
        if a.cookie < 1:
            head.append((1, ".", d.st.st_ino))
        if a.cookie < 2:
            pst = d.st if parent_rel == d.rel else _lstat(d.export.abspath(parent_rel))
            head.append((2, "..", pst.st_ino if pst else d.st.st_ino))
        start = 0 if a.cookie < 3 else bisect.bisect_right(entries, (a.cookie, "\U0010ffff"))
        limit = a.maxcount if plus else a.count
        if udp:
            limit = min(limit, UDP_RTMAX)  # the reply must fit one datagram
        used = 4 + 4 + n3.FATTR_SIZE + 8 + 8  # status, dir attrs, cookieverf, list end, eof
        dirused = 0
        w = Writer()
        eof = True
        n = 0
        for cookie, name, ino in [*head, *entries[start:]]:
            bname = name.encode("utf-8", "surrogateescape")
            fh: bytes | None = None
            st: os.stat_result | None = None
            if plus:
                if name == ".":
                    st, fh = d.st, d.fh
                elif name == "..":
                    pst = _lstat(d.export.abspath(parent_rel))
                    if pst is not None:
                        st = pst
                        fh = self.resolver.node(d.export, parent_rel, pst, None).fh
                else:
                    rel = f"{d.rel}/{name}" if d.rel else name
                    st = _lstat(d.export.abspath(rel))
                    if st is not None:
                        fh = self.resolver.node(d.export, rel, st, d).fh
                        ino = st.st_ino
                size = n3.entryplus_size(bname, len(fh or b"")) - (0 if st else n3.FATTR_SIZE) \
                    - (0 if fh else 4)
                dsize = n3.entry_size(bname)
                if used + size > limit or (a.count and dirused + dsize > a.count and n):
                    eof = False
                    break
                dirused += dsize
            else:
                size = n3.entry_size(bname)
                if used + size > limit:
                    eof = False
                    break
            used += size
            n += 1
            w.push_bool(True).push_u64(ino).push_opaque(bname).push_u64(cookie)
            if plus:
                n3.push_post_op_attr(w, _attr(st))
                n3.push_post_op_fh(w, fh)
        if n == 0 and not eof:
            raise NfsError(Stat.TOOSMALL, "the reply limit holds no entry")
        out = Writer().push_raw(_OK)
        n3.push_post_op_attr(out, _attr(d.st))
        out.push_fixed(bytes(8))  # cookieverf: unused, cookies are name hashes
        out.push_raw(w.data)
        out.push_bool(False).push_bool(eof)
        return [out.data]

    async def fsstat(self, a: n3.FhArgs, call: Call, ctx: CallContext) -> Results:
        node = self._node(a.fh)
        vfs = os.statvfs(node.path if stat.S_ISDIR(node.st.st_mode) else node.export.root)
        w = Writer().push_raw(_OK)
        n3.push_post_op_attr(w, _attr(node.st))
        f = vfs.f_frsize
        w.push_u64(vfs.f_blocks * f).push_u64(vfs.f_bfree * f).push_u64(vfs.f_bavail * f)
        w.push_u64(vfs.f_files).push_u64(vfs.f_ffree).push_u64(vfs.f_favail).push_u32(0)
        return [w.data]

    async def fsinfo(self, a: n3.FhArgs, call: Call, ctx: CallContext) -> Results:
        node = self._node(a.fh)
        w = Writer().push_raw(_OK)
        n3.push_post_op_attr(w, _attr(node.st))
        w.push_u32(RTMAX).push_u32(RTMAX).push_u32(4096)
        w.push_u32(WTMAX).push_u32(WTMAX).push_u32(4096)
        w.push_u32(64 * 1024).push_u64(2**63 - 1).push_u32(0).push_u32(1)
        w.push_u32(n3.FSF_LINK | n3.FSF_SYMLINK | n3.FSF_HOMOGENEOUS | n3.FSF_CANSETTIME)
        return [w.data]

    async def pathconf(self, a: n3.FhArgs, call: Call, ctx: CallContext) -> Results:
        node = self._node(a.fh)
        w = Writer().push_raw(_OK)
        n3.push_post_op_attr(w, _attr(node.st))
        w.push_u32(65000).push_u32(n3.NAME_MAX)
        w.push_bool(True).push_bool(True).push_bool(False).push_bool(True)
        return [w.data]

    # --- write side -----------------------------------------------------------------------

    async def setattr(self, a: n3.SetattrArgs, call: Call, ctx: CallContext) -> Results:
        node = self._node(a.fh)
        self._writable(node)
        before = node.st
        if a.guard_ctime is not None and \
                n3.wcc_from_stat(before).ctime != a.guard_ctime:  # type: ignore[union-attr]
            raise NfsError(Stat.NOT_SYNC, "ctime guard does not match")
        self._apply(node.path, before, a.attrs, self._ids(node, call))
        w = Writer().push_raw(_OK)
        self._dir_wcc(w, before, node.path)
        return [w.data]

    async def write(self, a: n3.WriteArgs, call: Call, ctx: CallContext) -> Results:
        node = self._node(a.fh)
        self._writable(node)
        st = node.st
        if stat.S_ISDIR(st.st_mode):
            raise NfsError(Stat.ISDIR)
        if not stat.S_ISREG(st.st_mode):
            raise NfsError(Stat.INVAL, "not a regular file")
        auth.may_write(st, self._ids(node, call))
        data = a.data[: a.count]
        fd, tok = self.fds.acquire(node.export.root, node.rel, st.st_dev, st.st_ino, True)
        try:
            stable = a.stable

            def do() -> tuple[int, os.stat_result]:
                n = os.pwrite(fd, data, a.offset)
                if stable == n3.StableHow.FILE_SYNC:
                    os.fsync(fd)
                elif stable == n3.StableHow.DATA_SYNC:
                    os.fdatasync(fd)
                return n, os.fstat(fd)

            if len(data) > THREAD_IO or stable != n3.StableHow.UNSTABLE:
                n, after = await asyncio.to_thread(do)
            else:
                n, after = do()
        finally:
            self.fds.release(tok)
        self.io.add(ctx.peer[0], written=n)
        w = Writer().push_raw(_OK)
        n3.push_wcc_data(w, n3.wcc_from_stat(st), _attr(after))
        w.push_u32(n).push_u32(stable).push_fixed(self.verf)
        return [w.data]

    async def commit(self, a: n3.CommitArgs, call: Call, ctx: CallContext) -> Results:
        node = self._node(a.fh)
        self._writable(node)
        st = node.st
        if stat.S_ISREG(st.st_mode):
            fd, tok = self.fds.acquire(node.export.root, node.rel, st.st_dev, st.st_ino, True)
            try:
                await asyncio.to_thread(os.fsync, fd)
            finally:
                self.fds.release(tok)
        w = Writer().push_raw(_OK)
        n3.push_wcc_data(w, n3.wcc_from_stat(st), _attr(_lstat(node.path)))
        w.push_fixed(self.verf)
        return [w.data]

    def _dir_for_change(self, fh: bytes, call: Call) -> tuple[Node, Ids]:
        d = self._node(fh)
        self._writable(d)
        self._dir(d)
        ids = self._ids(d, call)
        auth.may_change_dir(d.st, ids)
        return d, ids

    async def create(self, a: n3.CreateArgs, call: Call, ctx: CallContext) -> Results:
        d, ids = self._dir_for_change(a.dir, call)
        rel, old = self._child(d, a.name)
        path = d.export.abspath(rel)
        w = Writer().push_raw(_OK)
        if a.mode is n3.CreateMode.EXCLUSIVE:
            # RFC 1813 section 3.3.8: keep the verifier in the file (atime/mtime seconds, as
            # knfsd does) so a retransmitted CREATE finds "its" file and succeeds.
            va, vm = (v & 0x7FFFFFFF for v in struct.unpack(">II", a.verf))  # as knfsd
            if old is not None:
                if stat.S_ISREG(old.st_mode) and int(old.st_atime) == va \
                        and int(old.st_mtime) == vm:
                    self._new_node(w, d, rel)
                    self._dir_wcc(w, d.st, d.path)
                    return [w.data]
                raise NfsError(Stat.EXIST)
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600)
            try:
                os.fchown(fd, ids.uid, self._new_gid(d, ids))
                os.fchmod(fd, 0o644)
            finally:
                os.close(fd)
            os.utime(path, (va, vm), follow_symlinks=False)
        else:
            if old is not None:
                if a.mode is n3.CreateMode.GUARDED or not stat.S_ISREG(old.st_mode):
                    raise NfsError(Stat.EXIST)
                # UNCHECKED on an existing file: set the attributes (RFC 1813 section 3.3.8).
                self._apply(path, old, n3.Sattr(size=a.attrs.size), ids)
            else:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600)
                try:
                    os.fchown(fd, ids.uid, self._new_gid(d, ids))
                    os.fchmod(fd, 0o644 if a.attrs.mode is None else a.attrs.mode & 0o7777)
                    if a.attrs.size:
                        os.ftruncate(fd, a.attrs.size)
                finally:
                    os.close(fd)
                rest = n3.Sattr(atime=a.attrs.atime, mtime=a.attrs.mtime)
                if not rest.empty():
                    self._apply(path, os.lstat(path), rest, ids)
        self._new_node(w, d, rel)
        self._dir_wcc(w, d.st, d.path)
        return [w.data]

    def _owned(self, path: str, d: Node, ids: Ids, mode: int | None, is_link: bool = False
               ) -> None:
        """Give a new object to the caller, then set its mode (chown first: it clears setgid)."""
        os.chown(path, ids.uid, self._new_gid(d, ids), follow_symlinks=False)
        if mode is not None and not is_link:
            os.chmod(path, mode)

    async def mkdir(self, a: n3.MkdirArgs, call: Call, ctx: CallContext) -> Results:
        d, ids = self._dir_for_change(a.dir, call)
        rel, old = self._child(d, a.name)
        if old is not None:
            raise NfsError(Stat.EXIST)
        path = d.export.abspath(rel)
        os.mkdir(path, 0o700)
        mode = 0o755 if a.attrs.mode is None else a.attrs.mode & 0o7777
        if d.st.st_mode & stat.S_ISGID:
            mode |= stat.S_ISGID
        self._owned(path, d, ids, mode)
        w = Writer().push_raw(_OK)
        self._new_node(w, d, rel)
        self._dir_wcc(w, d.st, d.path)
        return [w.data]

    async def symlink(self, a: n3.SymlinkArgs, call: Call, ctx: CallContext) -> Results:
        d, ids = self._dir_for_change(a.dir, call)
        rel, old = self._child(d, a.name)
        if old is not None:
            raise NfsError(Stat.EXIST)
        if not a.target or "\0" in a.target:
            raise NfsError(Stat.INVAL, "empty symlink target")
        path = d.export.abspath(rel)
        os.symlink(a.target, path)  # stored as text; never followed by this server
        self._owned(path, d, ids, None, is_link=True)
        w = Writer().push_raw(_OK)
        self._new_node(w, d, rel)
        self._dir_wcc(w, d.st, d.path)
        return [w.data]

    async def mknod(self, a: n3.MknodArgs, call: Call, ctx: CallContext) -> Results:
        d, ids = self._dir_for_change(a.dir, call)
        if a.type not in (n3.Ftype.CHR, n3.Ftype.BLK, n3.Ftype.SOCK, n3.Ftype.FIFO):
            raise NfsError(Stat.BADTYPE, "MKNOD makes devices, sockets and FIFOs only")
        if a.type in (n3.Ftype.CHR, n3.Ftype.BLK) and not ids.root:
            raise NfsError(Stat.PERM, "only root may make device nodes")
        rel, old = self._child(d, a.name)
        if old is not None:
            raise NfsError(Stat.EXIST)
        path = d.export.abspath(rel)
        mode = 0o644 if a.attrs.mode is None else a.attrs.mode & 0o7777
        os.mknod(path, n3.FTYPE_TO_FMT[a.type] | 0o600, os.makedev(*a.rdev))
        self._owned(path, d, ids, mode)
        w = Writer().push_raw(_OK)
        self._new_node(w, d, rel)
        self._dir_wcc(w, d.st, d.path)
        return [w.data]

    def _forget(self, d: Node, rel: str, st: os.stat_result) -> None:
        self.fds.drop(st.st_dev, st.st_ino)
        self.resolver.forget(d.handle.child(d.is_root, st.st_dev, st.st_ino).encode())

    async def remove(self, a: n3.DirOpArgs, call: Call, ctx: CallContext) -> Results:
        return self._remove(a, call, dir_wanted=False)

    async def rmdir(self, a: n3.DirOpArgs, call: Call, ctx: CallContext) -> Results:
        return self._remove(a, call, dir_wanted=True)

    def _remove(self, a: n3.DirOpArgs, call: Call, dir_wanted: bool) -> Results:
        d, ids = self._dir_for_change(a.dir, call)
        rel, victim = self._child(d, a.name)
        if victim is None:
            raise NfsError(Stat.NOENT)
        is_dir = stat.S_ISDIR(victim.st_mode)
        if dir_wanted and not is_dir:
            raise NfsError(Stat.NOTDIR)
        if not dir_wanted and is_dir:
            raise NfsError(Stat.ISDIR)
        auth.may_delete(d.st, victim, ids)
        path = d.export.abspath(rel)
        if dir_wanted:
            os.rmdir(path)
        else:
            os.unlink(path)
        self._forget(d, rel, victim)
        w = Writer().push_raw(_OK)
        self._dir_wcc(w, d.st, d.path)
        return [w.data]

    async def rename(self, a: n3.RenameArgs, call: Call, ctx: CallContext) -> Results:
        fd_, ids = self._dir_for_change(a.from_dir, call)
        td, _ = self._dir_for_change(a.to_dir, call)
        if fd_.export.id != td.export.id:
            raise NfsError(Stat.XDEV, "rename across exports")
        src_rel, victim = self._child(fd_, a.from_name)
        dst_rel, target = self._child(td, a.to_name)
        if victim is None:
            raise NfsError(Stat.NOENT)
        auth.may_delete(fd_.st, victim, ids)
        if target is not None:
            auth.may_delete(td.st, target, ids)
        if stat.S_ISDIR(victim.st_mode) and (dst_rel + "/").startswith(src_rel + "/"):
            raise NfsError(Stat.INVAL, "cannot move a directory into itself")
        os.rename(fd_.export.abspath(src_rel), td.export.abspath(dst_rel))
        if target is not None and (target.st_ino, target.st_dev) != (victim.st_ino,
                                                                     victim.st_dev):
            self._forget(td, dst_rel, target)
        # The moved object keeps its handle (inode-based); point the cache at its new place.
        old_fh = fd_.handle.child(fd_.is_root, victim.st_dev, victim.st_ino).encode()
        self.resolver.remember(old_fh, dst_rel)
        self.resolver.node(td.export, dst_rel, victim, td)
        w = Writer().push_raw(_OK)
        self._dir_wcc(w, fd_.st, fd_.path)
        self._dir_wcc(w, td.st, td.path)
        return [w.data]

    async def link(self, a: n3.LinkArgs, call: Call, ctx: CallContext) -> Results:
        src = self._node(a.fh)
        d, ids = self._dir_for_change(a.dir, call)
        if src.export.id != d.export.id:
            raise NfsError(Stat.XDEV, "link across exports")
        if stat.S_ISDIR(src.st.st_mode):
            raise NfsError(Stat.ISDIR, "cannot hard-link a directory")
        rel, old = self._child(d, a.name)
        if old is not None:
            raise NfsError(Stat.EXIST)
        os.link(src.path, d.export.abspath(rel), follow_symlinks=False)
        w = Writer().push_raw(_OK)
        n3.push_post_op_attr(w, _attr(_lstat(src.path)))
        self._dir_wcc(w, d.st, d.path)
        return [w.data]

    def tick(self) -> None:
        """Finish settled read transfers (called a few times a second by the service)."""
        self.bus.publish_many(self.meter.tick(self.clock()))
        self.bus.publish_many(self.io.tick(self.clock()))

    def close(self) -> None:
        self.bus.publish_many(self.io.tick(self.clock(), force=True))  # the last totals
        self.fds.close()
