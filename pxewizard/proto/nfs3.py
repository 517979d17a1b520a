"""NFS version 3 (RFC 1813): procedure arguments in, results out, sans-I/O.

Each procedure's arguments decode into a small dataclass through
:data:`ARG_DECODERS` (a ValueError means GARBAGE_ARGS); results are written
with the ``push_*`` helpers by the adapter in ``servers/nfs/nfsd.py``, which is
the only place that touches files. Attributes come from ``os.stat_result``
values the adapter passes in, so this module still reads no file itself.

Also here: :func:`nfs_mount_options`, the mount option string a Linux client
(kernel command line ``nfsroot=``/``ip=`` setups, mount.nfs, archiso) needs to
reach our fixed ports without asking a portmapper, and :func:`access_bits`,
the owner/group/other permission rule shared by ACCESS and the write checks.
"""

from __future__ import annotations

import os
import stat as st_mod
from dataclasses import dataclass, field
from enum import IntEnum

from .xdr import Reader, Writer

NFS_PROG = 100003
NFS_VERS = 3
NFS3_FHSIZE = 64
NFS3_COOKIEVERFSIZE = 8
NFS3_CREATEVERFSIZE = 8
NFS3_WRITEVERFSIZE = 8
NAME_MAX = 255
PATH_MAX = 4096
MAX_NAME_WIRE = 4096
"""Longest name accepted off the wire; longer than NAME_MAX answers NAMETOOLONG, not garbage."""


class Proc(IntEnum):
    NULL = 0
    GETATTR = 1
    SETATTR = 2
    LOOKUP = 3
    ACCESS = 4
    READLINK = 5
    READ = 6
    WRITE = 7
    CREATE = 8
    MKDIR = 9
    SYMLINK = 10
    MKNOD = 11
    REMOVE = 12
    RMDIR = 13
    RENAME = 14
    LINK = 15
    READDIR = 16
    READDIRPLUS = 17
    FSSTAT = 18
    FSINFO = 19
    PATHCONF = 20
    COMMIT = 21


WRITE_PROCS = frozenset({Proc.SETATTR, Proc.WRITE, Proc.CREATE, Proc.MKDIR, Proc.SYMLINK,
                         Proc.MKNOD, Proc.REMOVE, Proc.RMDIR, Proc.RENAME, Proc.LINK,
                         Proc.COMMIT})
"""Procedures that modify the export: NFS3ERR_ROFS on a read-only export."""


class Stat(IntEnum):
    """RFC 1813 section 2.6 ``nfsstat3``."""

    OK = 0
    PERM = 1
    NOENT = 2
    IO = 5
    NXIO = 6
    ACCES = 13
    EXIST = 17
    XDEV = 18
    NODEV = 19
    NOTDIR = 20
    ISDIR = 21
    INVAL = 22
    FBIG = 27
    NOSPC = 28
    ROFS = 30
    MLINK = 31
    NAMETOOLONG = 63
    NOTEMPTY = 66
    DQUOT = 69
    STALE = 70
    REMOTE = 71
    BADHANDLE = 10001
    NOT_SYNC = 10002
    BAD_COOKIE = 10003
    NOTSUPP = 10004
    TOOSMALL = 10005
    SERVERFAULT = 10006
    BADTYPE = 10007
    JUKEBOX = 10008


class NfsError(Exception):
    """An NFS error status to answer with (raised by the adapter's file operations)."""

    def __init__(self, status: Stat, detail: str = "") -> None:
        super().__init__(f"{status.name}: {detail}" if detail else status.name)
        self.status = status
        self.detail = detail


_ERRNO_MAP = {
    1: Stat.PERM, 2: Stat.NOENT, 5: Stat.IO, 6: Stat.NXIO, 13: Stat.ACCES, 17: Stat.EXIST,
    18: Stat.XDEV, 19: Stat.NODEV, 20: Stat.NOTDIR, 21: Stat.ISDIR, 22: Stat.INVAL,
    27: Stat.FBIG, 28: Stat.NOSPC, 30: Stat.ROFS, 31: Stat.MLINK, 36: Stat.NAMETOOLONG,
    39: Stat.NOTEMPTY, 122: Stat.DQUOT, 116: Stat.STALE, 40: Stat.INVAL, 95: Stat.NOTSUPP,
}


def stat_from_errno(err: int | None) -> Stat:
    """OSError.errno -> nfsstat3 (RFC 1813 section 2.6 keeps the Unix numbers)."""
    return _ERRNO_MAP.get(err or 0, Stat.IO)


class Ftype(IntEnum):
    REG = 1
    DIR = 2
    BLK = 3
    CHR = 4
    LNK = 5
    SOCK = 6
    FIFO = 7


_FMT_TO_FTYPE = {
    st_mod.S_IFREG: Ftype.REG, st_mod.S_IFDIR: Ftype.DIR, st_mod.S_IFBLK: Ftype.BLK,
    st_mod.S_IFCHR: Ftype.CHR, st_mod.S_IFLNK: Ftype.LNK, st_mod.S_IFSOCK: Ftype.SOCK,
    st_mod.S_IFIFO: Ftype.FIFO,
}
FTYPE_TO_FMT = {v: k for k, v in _FMT_TO_FTYPE.items()}


class StableHow(IntEnum):
    UNSTABLE = 0
    DATA_SYNC = 1
    FILE_SYNC = 2


class CreateMode(IntEnum):
    UNCHECKED = 0
    GUARDED = 1
    EXCLUSIVE = 2


class TimeHow(IntEnum):
    DONT_CHANGE = 0
    SET_TO_SERVER_TIME = 1
    SET_TO_CLIENT_TIME = 2


# ACCESS3 bits (RFC 1813 section 3.3.4)
ACCESS_READ = 0x01
ACCESS_LOOKUP = 0x02
ACCESS_MODIFY = 0x04
ACCESS_EXTEND = 0x08
ACCESS_DELETE = 0x10
ACCESS_EXECUTE = 0x20
ACCESS_ALL = 0x3F

# FSINFO properties (RFC 1813 section 3.3.19)
FSF_LINK = 0x01
FSF_SYMLINK = 0x02
FSF_HOMOGENEOUS = 0x08
FSF_CANSETTIME = 0x10


# --- attributes -----------------------------------------------------------------------


@dataclass(frozen=True)
class Fattr:
    """``fattr3`` (RFC 1813 section 2.6)."""

    type: int
    mode: int
    nlink: int
    uid: int
    gid: int
    size: int
    used: int
    rdev: tuple[int, int]
    fsid: int
    fileid: int
    atime: tuple[int, int]
    mtime: tuple[int, int]
    ctime: tuple[int, int]


def _nstime(ns: int) -> tuple[int, int]:
    sec, nsec = divmod(ns, 1_000_000_000)
    return sec & 0xFFFFFFFF, nsec


def fattr_from_stat(st: os.stat_result, fsid: int) -> Fattr:
    """Attributes of an ``os.lstat`` result, as the wire wants them."""
    ftype = _FMT_TO_FTYPE.get(st_mod.S_IFMT(st.st_mode), Ftype.REG)
    rdev = (os.major(st.st_rdev), os.minor(st.st_rdev)) if ftype in (Ftype.BLK, Ftype.CHR) \
        else (0, 0)
    return Fattr(type=ftype, mode=st.st_mode & 0o7777, nlink=st.st_nlink, uid=st.st_uid,
                 gid=st.st_gid, size=st.st_size, used=st.st_blocks * 512, rdev=rdev,
                 fsid=fsid, fileid=st.st_ino, atime=_nstime(st.st_atime_ns),
                 mtime=_nstime(st.st_mtime_ns), ctime=_nstime(st.st_ctime_ns))


def push_fattr(w: Writer, a: Fattr) -> None:
    w.push_u32(a.type).push_u32(a.mode).push_u32(a.nlink).push_u32(a.uid).push_u32(a.gid)
    w.push_u64(a.size).push_u64(a.used).push_u32(a.rdev[0]).push_u32(a.rdev[1])
    w.push_u64(a.fsid).push_u64(a.fileid)
    for t in (a.atime, a.mtime, a.ctime):
        w.push_u32(t[0]).push_u32(t[1])


def pull_fattr(r: Reader) -> Fattr:
    t, mode, nlink, uid, gid = (r.pull_u32() for _ in range(5))
    size, used = r.pull_u64(), r.pull_u64()
    rdev = (r.pull_u32(), r.pull_u32())
    fsid, fileid = r.pull_u64(), r.pull_u64()
    times = [(r.pull_u32(), r.pull_u32()) for _ in range(3)]
    return Fattr(t, mode, nlink, uid, gid, size, used, rdev, fsid, fileid, *times)


FATTR_SIZE = 84


def push_post_op_attr(w: Writer, a: Fattr | None) -> None:
    if a is None:
        w.push_bool(False)
    else:
        w.push_bool(True)
        push_fattr(w, a)


def pull_post_op_attr(r: Reader) -> Fattr | None:
    return pull_fattr(r) if r.pull_bool() else None


@dataclass(frozen=True)
class WccAttr:
    """``wcc_attr``: what the client needs to tell whether its cache is still right."""

    size: int
    mtime: tuple[int, int]
    ctime: tuple[int, int]


def wcc_from_stat(st: os.stat_result | None) -> WccAttr | None:
    if st is None:
        return None
    return WccAttr(st.st_size, _nstime(st.st_mtime_ns), _nstime(st.st_ctime_ns))


def push_wcc_data(w: Writer, before: WccAttr | None, after: Fattr | None) -> None:
    """``wcc_data`` (RFC 1813 section 2.6): pre_op_attr then post_op_attr."""
    if before is None:
        w.push_bool(False)
    else:
        w.push_bool(True).push_u64(before.size)
        w.push_u32(before.mtime[0]).push_u32(before.mtime[1])
        w.push_u32(before.ctime[0]).push_u32(before.ctime[1])
    push_post_op_attr(w, after)


def pull_wcc_data(r: Reader) -> Fattr | None:
    if r.pull_bool():
        r.pull_u64()
        for _ in range(4):
            r.pull_u32()
    return pull_post_op_attr(r)


def push_post_op_fh(w: Writer, fh: bytes | None) -> None:
    if fh is None:
        w.push_bool(False)
    else:
        w.push_bool(True).push_opaque(fh)


@dataclass(frozen=True)
class Sattr:
    """``sattr3``: None means "do not change"; times: None, "server" or (sec, nsec)."""

    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    atime: tuple[int, int] | str | None = None
    mtime: tuple[int, int] | str | None = None

    def empty(self) -> bool:
        return self == Sattr()


def _pull_settime(r: Reader) -> tuple[int, int] | str | None:
    how = r.pull_u32()
    if how == TimeHow.DONT_CHANGE:
        return None
    if how == TimeHow.SET_TO_SERVER_TIME:
        return "server"
    if how == TimeHow.SET_TO_CLIENT_TIME:
        return (r.pull_u32(), r.pull_u32())
    raise ValueError(f"time_how {how}")


def pull_sattr(r: Reader) -> Sattr:
    mode = r.pull_u32() if r.pull_bool() else None
    uid = r.pull_u32() if r.pull_bool() else None
    gid = r.pull_u32() if r.pull_bool() else None
    size = r.pull_u64() if r.pull_bool() else None
    return Sattr(mode=mode, uid=uid, gid=gid, size=size, atime=_pull_settime(r),
                 mtime=_pull_settime(r))


def push_sattr(w: Writer, s: Sattr) -> None:
    for v in (s.mode, s.uid, s.gid):
        w.push_bool(v is not None)
        if v is not None:
            w.push_u32(v)
    w.push_bool(s.size is not None)
    if s.size is not None:
        w.push_u64(s.size)
    for t in (s.atime, s.mtime):
        if t is None:
            w.push_u32(TimeHow.DONT_CHANGE)
        elif t == "server":
            w.push_u32(TimeHow.SET_TO_SERVER_TIME)
        else:
            assert isinstance(t, tuple)
            w.push_u32(TimeHow.SET_TO_CLIENT_TIME).push_u32(t[0]).push_u32(t[1])


# --- arguments --------------------------------------------------------------------------


def pull_fh(r: Reader) -> bytes:
    return r.pull_opaque(NFS3_FHSIZE)


def pull_name(r: Reader) -> str:
    return r.pull_string(MAX_NAME_WIRE)


@dataclass(frozen=True)
class FhArgs:
    """GETATTR, READLINK, FSSTAT, FSINFO, PATHCONF."""

    fh: bytes


@dataclass(frozen=True)
class DirOpArgs:
    """LOOKUP, REMOVE, RMDIR: ``diropargs3``."""

    dir: bytes
    name: str


@dataclass(frozen=True)
class SetattrArgs:
    fh: bytes
    attrs: Sattr
    guard_ctime: tuple[int, int] | None


@dataclass(frozen=True)
class AccessArgs:
    fh: bytes
    access: int


@dataclass(frozen=True)
class ReadArgs:
    fh: bytes
    offset: int
    count: int


@dataclass(frozen=True)
class WriteArgs:
    fh: bytes
    offset: int
    count: int
    stable: int
    data: memoryview = field(repr=False)


@dataclass(frozen=True)
class CreateArgs:
    dir: bytes
    name: str
    mode: CreateMode
    attrs: Sattr
    verf: bytes = b""


@dataclass(frozen=True)
class MkdirArgs:
    dir: bytes
    name: str
    attrs: Sattr


@dataclass(frozen=True)
class SymlinkArgs:
    dir: bytes
    name: str
    attrs: Sattr
    target: str


@dataclass(frozen=True)
class MknodArgs:
    dir: bytes
    name: str
    type: Ftype
    attrs: Sattr
    rdev: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class RenameArgs:
    from_dir: bytes
    from_name: str
    to_dir: bytes
    to_name: str


@dataclass(frozen=True)
class LinkArgs:
    fh: bytes
    dir: bytes
    name: str


@dataclass(frozen=True)
class ReaddirArgs:
    dir: bytes
    cookie: int
    verf: bytes
    count: int
    maxcount: int = 0
    """READDIRPLUS only; for READDIR ``count`` is the whole limit."""


@dataclass(frozen=True)
class CommitArgs:
    fh: bytes
    offset: int
    count: int


def _fh_args(r: Reader) -> FhArgs:
    return FhArgs(pull_fh(r))


def _dirop(r: Reader) -> DirOpArgs:
    return DirOpArgs(pull_fh(r), pull_name(r))


def _setattr(r: Reader) -> SetattrArgs:
    fh = pull_fh(r)
    attrs = pull_sattr(r)
    guard = (r.pull_u32(), r.pull_u32()) if r.pull_bool() else None
    return SetattrArgs(fh, attrs, guard)


def _access(r: Reader) -> AccessArgs:
    return AccessArgs(pull_fh(r), r.pull_u32())


def _read(r: Reader) -> ReadArgs:
    return ReadArgs(pull_fh(r), r.pull_u64(), r.pull_u32())


def _write(r: Reader, max_data: int = 16 * 1024 * 1024) -> WriteArgs:
    fh = pull_fh(r)
    offset, count = r.pull_u64(), r.pull_u32()
    stable = r.pull_enum(frozenset(StableHow))
    data = r.pull_opaque_view(max_data)
    return WriteArgs(fh, offset, count, stable, data)


def _create(r: Reader) -> CreateArgs:
    d, name = pull_fh(r), pull_name(r)
    mode = CreateMode(r.pull_enum(frozenset(CreateMode)))
    if mode is CreateMode.EXCLUSIVE:
        return CreateArgs(d, name, mode, Sattr(), r.pull_fixed(NFS3_CREATEVERFSIZE))
    return CreateArgs(d, name, mode, pull_sattr(r))


def _mkdir(r: Reader) -> MkdirArgs:
    return MkdirArgs(pull_fh(r), pull_name(r), pull_sattr(r))


def _symlink(r: Reader) -> SymlinkArgs:
    d, name = pull_fh(r), pull_name(r)
    attrs = pull_sattr(r)
    return SymlinkArgs(d, name, attrs, r.pull_string(PATH_MAX))


def _mknod(r: Reader) -> MknodArgs:
    d, name = pull_fh(r), pull_name(r)
    t = Ftype(r.pull_enum(frozenset(Ftype)))
    if t in (Ftype.CHR, Ftype.BLK):
        attrs = pull_sattr(r)
        return MknodArgs(d, name, t, attrs, (r.pull_u32(), r.pull_u32()))
    if t in (Ftype.SOCK, Ftype.FIFO):
        return MknodArgs(d, name, t, pull_sattr(r))
    return MknodArgs(d, name, t, Sattr())


def _rename(r: Reader) -> RenameArgs:
    return RenameArgs(pull_fh(r), pull_name(r), pull_fh(r), pull_name(r))


def _link(r: Reader) -> LinkArgs:
    return LinkArgs(pull_fh(r), pull_fh(r), pull_name(r))


def _readdir(r: Reader) -> ReaddirArgs:
    return ReaddirArgs(pull_fh(r), r.pull_u64(), r.pull_fixed(NFS3_COOKIEVERFSIZE), r.pull_u32())


def _readdirplus(r: Reader) -> ReaddirArgs:
    return ReaddirArgs(pull_fh(r), r.pull_u64(), r.pull_fixed(NFS3_COOKIEVERFSIZE),
                       r.pull_u32(), r.pull_u32())


def _commit(r: Reader) -> CommitArgs:
    return CommitArgs(pull_fh(r), r.pull_u64(), r.pull_u32())


ARG_DECODERS = {
    Proc.GETATTR: _fh_args, Proc.SETATTR: _setattr, Proc.LOOKUP: _dirop,
    Proc.ACCESS: _access, Proc.READLINK: _fh_args, Proc.READ: _read, Proc.WRITE: _write,
    Proc.CREATE: _create, Proc.MKDIR: _mkdir, Proc.SYMLINK: _symlink, Proc.MKNOD: _mknod,
    Proc.REMOVE: _dirop, Proc.RMDIR: _dirop, Proc.RENAME: _rename, Proc.LINK: _link,
    Proc.READDIR: _readdir, Proc.READDIRPLUS: _readdirplus, Proc.FSSTAT: _fh_args,
    Proc.FSINFO: _fh_args, Proc.PATHCONF: _fh_args, Proc.COMMIT: _commit,
}
"""Procedure -> argument decoder; every decoder raises ValueError on malformed input."""


def decode_args(proc: int, r: Reader) -> object:
    """Decode a call's arguments; ValueError (-> GARBAGE_ARGS) when they are malformed.

    Trailing bytes are tolerated (some clients pad), a short buffer is not.
    """
    dec = ARG_DECODERS.get(proc)  # type: ignore[call-overload]
    if dec is None:
        raise KeyError(proc)
    return dec(r)


# --- READDIR sizing (RFC 1813 sections 3.3.16, 3.3.17) -----------------------------------


def _xdr_str_len(name: bytes) -> int:
    return 4 + len(name) + (4 - len(name) % 4) % 4


def entry_size(name: bytes) -> int:
    """Bytes of one ``entry3``: value_follows + fileid + name + cookie."""
    return 4 + 8 + _xdr_str_len(name) + 8


def entryplus_size(name: bytes, fh_len: int) -> int:
    """Bytes of one ``entryplus3`` with attributes and a handle."""
    return entry_size(name) + 4 + FATTR_SIZE + 4 + 4 + fh_len + (4 - fh_len % 4) % 4


# --- permissions ------------------------------------------------------------------------


def access_bits(mode: int, owner: int, group: int, uid: int, gids: frozenset[int]) -> int:
    """rwx bits (4/2/1) the caller has on a file by Unix owner/group/other rules; root gets all.

    Root's execute needs at least one x bit, as in the kernel's generic_permission.
    """
    if uid == 0:
        return 0o6 | (1 if mode & 0o111 else 0)
    if uid == owner:
        return (mode >> 6) & 7
    if group in gids:
        return (mode >> 3) & 7
    return mode & 7


def nfs_mount_options(address: str, nfs_port: int = 2049, mount_port: int = 20048,
                      *, proto: str = "tcp") -> str:
    """Options that let a Linux NFS client skip the portmapper and lockd.

    For ``mount -o``, the kernel's ``nfsroot=server:/path,<options>`` and archiso's
    NFS hook. ``nolock``: we run no NLM lock manager (issue 12 says to say so).
    """
    return (f"vers=3,nolock,{proto},port={nfs_port},mountport={mount_port},"
            f"mountproto={proto},addr={address}")
