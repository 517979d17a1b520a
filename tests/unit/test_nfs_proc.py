"""NFS v3 and MOUNT v3 procedures, in memory: encode a call, dispatch it, decode the reply.

Every test goes through RpcEndpoint.handle, the same path the sockets use, so
GARBAGE_ARGS / PROC_UNAVAIL / PROG_UNAVAIL handling is covered too.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from pxewizard.events import EventBus
from pxewizard.proto import mount3 as m3
from pxewizard.proto import nfs3 as n3
from pxewizard.proto.nfs3 import Proc, Stat
from pxewizard.proto.rpc import (
    AcceptStat,
    AuthFlavor,
    Reply,
    encode_auth_sys,
    encode_call,
    parse_reply,
)
from pxewizard.proto.xdr import Reader, Writer
from pxewizard.servers.nfs.client import dirop_args, fh_args, read_args
from pxewizard.servers.nfs.handles import Export, Resolver
from pxewizard.servers.nfs.mountd import MountProgram
from pxewizard.servers.nfs.nfsd import NfsProgram
from pxewizard.servers.nfs.transport import CallContext, RpcEndpoint

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="chown/mknod need root")


class Harness:
    def __init__(self, path: Path, rw: bool = False, squash: str = "root_squash") -> None:
        cfg = SimpleNamespace(path=path, rw=rw, squash=squash, anonuid=65534, anongid=65534)
        self.export = Export.from_config(cfg)
        self.bus = EventBus()
        self.events: list = []
        self.bus.subscribe(self.events.append)
        resolver = Resolver([self.export])
        self.nfsd = NfsProgram([self.export], resolver, self.bus, clock=lambda: 1000.0)
        self.mountd = MountProgram([self.export], resolver, self.bus)
        self.ep = RpcEndpoint("nfs", [self.nfsd, self.mountd], self.bus)
        self.ctx = CallContext(peer=("10.0.0.7", 800), proto="tcp", local=False)
        self.xid = 1000

    def call(self, proc: int, args: bytes = b"", *, prog: int = n3.NFS_PROG, vers: int = 3,
             uid: int | None = 0, gid: int = 0, gids: tuple[int, ...] = (),
             proto: str = "tcp", xid: int | None = None) -> Reply:
        cred = (AuthFlavor.AUTH_NONE, b"") if uid is None else \
            (AuthFlavor.AUTH_SYS, encode_auth_sys(uid, gid, gids))
        self.xid += 1
        rec = encode_call(self.xid if xid is None else xid, prog, vers, proc, args, cred=cred)
        ctx = CallContext(peer=self.ctx.peer, proto=proto, local=False)
        parts = asyncio.run(self.ep.handle(rec, ctx))
        assert parts is not None
        return parse_reply(b"".join(bytes(p) for p in parts))

    def mnt(self, path: str | None = None) -> bytes:
        rep = self.call(m3.MountProc.MNT, bytes(Writer().push_string(path or self.export.path)),
                        prog=m3.MOUNT_PROG)
        res = m3.parse_mnt_result(rep.body)
        assert res.status == 0, res
        return res.fh

    def lookup(self, d: bytes, name: str, **kw) -> tuple[int, bytes]:
        rep = self.call(Proc.LOOKUP, dirop_args(d, name), **kw)
        st = rep.body.pull_u32()
        return st, (rep.body.pull_opaque(64) if st == 0 else b"")

    def path_fh(self, rel: str, **kw) -> bytes:
        fh = self.mnt()
        for part in [p for p in rel.split("/") if p]:
            st, fh = self.lookup(fh, part, **kw)
            assert st == 0, (rel, part, st)
        return fh

    def getattr(self, fh: bytes) -> n3.Fattr:
        rep = self.call(Proc.GETATTR, fh_args(fh))
        assert rep.body.pull_u32() == 0
        return n3.pull_fattr(rep.body)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "export"
    (root / "dir" / "deeper").mkdir(parents=True)
    (root / "file.bin").write_bytes(bytes(range(256)) * 40)  # 10240 bytes
    (root / "dir" / "a.txt").write_text("hello\n")
    (root / "escape").symlink_to("/etc")
    (root / "dir" / "up").symlink_to("../../..")
    for i in range(120):
        (root / "dir" / "deeper" / f"entry-{i:04d}").write_text(str(i))
    (tmp_path / "outside.txt").write_text("secret")
    return root


def status(rep: Reply) -> int:
    assert rep.accepted and rep.stat == 0, rep
    return rep.body.pull_u32()


# --- MOUNT ----------------------------------------------------------------------------------


def test_mount_export_dump_umnt(tree):
    h = Harness(tree)
    rep = h.call(m3.MountProc.EXPORT, prog=m3.MOUNT_PROG)
    assert m3.parse_exports(rep.body) == [(h.export.path, ["*"])]
    fh = h.mnt()
    assert h.getattr(fh).type == n3.Ftype.DIR
    rep = h.call(m3.MountProc.DUMP, prog=m3.MOUNT_PROG)
    assert m3.parse_mountlist(rep.body) == [("10.0.0.7", h.export.path)]
    opened = [e for e in h.events if e.kind == "session_opened"]
    assert opened and opened[0].service == "mountd" and opened[0].target == h.export.path
    h.call(m3.MountProc.UMNT, bytes(Writer().push_string(h.export.path)), prog=m3.MOUNT_PROG)
    assert any(e.kind == "session_closed" for e in h.events)
    assert m3.parse_mountlist(h.call(m3.MountProc.DUMP, prog=m3.MOUNT_PROG).body) == []


def test_mount_subdir_and_refusals(tree):
    h = Harness(tree)
    sub = h.mnt(h.export.path + "/dir")
    assert h.getattr(sub).fileid == os.stat(tree / "dir").st_ino
    for bad, want in ((h.export.path + "/../outside.txt", m3.MountStat.ACCES),
                      ("/nonexistent", m3.MountStat.NOENT),
                      (h.export.path + "/escape", m3.MountStat.NOTDIR),
                      (h.export.path + "/file.bin", m3.MountStat.NOTDIR)):
        rep = h.call(m3.MountProc.MNT, bytes(Writer().push_string(bad)), prog=m3.MOUNT_PROG)
        assert m3.parse_mnt_result(rep.body).status == want, bad
    # every refusal is an event naming the exports that exist, once per host and path
    refused = [e for e in h.events if e.kind == "transfer_failed" and e.service == "mountd"]
    assert [e.path for e in refused] == [h.export.path + "/../outside.txt", "/nonexistent",
                                         h.export.path + "/escape", h.export.path + "/file.bin"]
    assert all(f"exports here: {h.export.path}" in e.reason for e in refused)
    assert refused[1].code == m3.MountStat.NOENT and refused[1].client == "10.0.0.7"
    h.call(m3.MountProc.MNT, bytes(Writer().push_string("/nonexistent")), prog=m3.MOUNT_PROG)
    assert len([e for e in h.events if e.kind == "transfer_failed"]) == 4  # a retry: no flood


def test_refused_mount_is_diagnosed_with_the_exports(tree):
    from pxewizard.diagnose import diagnose_events

    h = Harness(tree)
    rep = h.call(m3.MountProc.MNT, bytes(Writer().push_string("/srv/archiso_nfs_srv")),
                 prog=m3.MOUNT_PROG)
    assert m3.parse_mnt_result(rep.body).status == m3.MountStat.NOENT
    found = [f for f in diagnose_events(h.events)[1] if f.rule == "nfs-mount-refused"]
    assert len(found) == 1 and "/srv/archiso_nfs_srv" in found[0].title
    assert h.export.path in found[0].cause and "archiso_nfs_srv=IP:/export" in found[0].fix


# --- RPC errors -----------------------------------------------------------------------------


def test_rpc_error_replies(tree):
    h = Harness(tree)
    assert h.call(99, prog=n3.NFS_PROG).stat == AcceptStat.PROC_UNAVAIL
    assert h.call(0, prog=100021).stat == AcceptStat.PROG_UNAVAIL
    rep = h.call(0, prog=n3.NFS_PROG, vers=4)
    assert rep.stat == AcceptStat.PROG_MISMATCH
    assert (rep.body.pull_u32(), rep.body.pull_u32()) == (3, 3)
    assert h.call(Proc.GETATTR, b"\0\0").stat == AcceptStat.GARBAGE_ARGS
    assert h.call(Proc.READ, fh_args(b"x" * 65)).stat == AcceptStat.GARBAGE_ARGS
    assert any(e.kind == "packet_dropped" for e in h.events)
    assert h.call(Proc.NULL).stat == AcceptStat.SUCCESS
    rep = h.call(m3.MountProc.MNT, prog=m3.MOUNT_PROG, vers=1)  # v1: use v3
    assert rep.stat == AcceptStat.PROG_MISMATCH


def test_bad_and_foreign_handles(tree):
    h = Harness(tree)
    assert status(h.call(Proc.GETATTR, fh_args(b"\0" * 8))) == Stat.BADHANDLE
    fh = bytearray(h.mnt())
    fh[1] ^= 0xFF  # another export id
    assert status(h.call(Proc.GETATTR, fh_args(bytes(fh)))) == Stat.STALE


# --- reading --------------------------------------------------------------------------------


def test_lookup_read_and_eof(tree):
    h = Harness(tree)
    fh = h.path_fh("file.bin")
    data = b""
    off = 0
    while True:
        rep = h.call(Proc.READ, read_args(fh, off, 4096))
        assert rep.body.pull_u32() == 0
        attrs = n3.pull_post_op_attr(rep.body)
        assert attrs is not None and attrs.size == 10240
        count, eof, chunk = rep.body.pull_u32(), rep.body.pull_bool(), rep.body.pull_opaque()
        assert count == len(chunk)
        data += chunk
        off += count
        if eof:
            break
    assert data == (tree / "file.bin").read_bytes()
    # offsets past the end: an empty read with eof, not an error
    rep = h.call(Proc.READ, read_args(fh, 10**12, 4096))
    assert rep.body.pull_u32() == 0
    n3.pull_post_op_attr(rep.body)
    assert (rep.body.pull_u32(), rep.body.pull_bool()) == (0, True)
    # oversize: cut to rtmax (TCP) / a datagram's worth (UDP)
    rep = h.call(Proc.READ, read_args(fh, 0, 0xFFFFFFFF), proto="udp")
    assert rep.body.pull_u32() == 0
    n3.pull_post_op_attr(rep.body)
    assert rep.body.pull_u32() == 10240
    kinds = [e.kind for e in h.events]
    assert "transfer_started" in kinds and "transfer_progress" in kinds
    done = h.nfsd.meter.tick(2000.0)
    assert done and done[0].kind == "transfer_done" and done[0].path.endswith("/file.bin")


def test_read_a_directory_or_symlink(tree):
    h = Harness(tree)
    assert status(h.call(Proc.READ, read_args(h.mnt(), 0, 10))) == Stat.ISDIR
    assert status(h.call(Proc.READ, read_args(h.path_fh("escape"), 0, 10))) == Stat.INVAL


def test_jail_dotdot_and_symlinks(tree):
    h = Harness(tree)
    root = h.mnt()
    st, up = h.lookup(root, "..")
    assert st == 0 and h.getattr(up).fileid == h.getattr(root).fileid
    st, d = h.lookup(root, "dir")
    st, parent = h.lookup(d, "..")
    assert h.getattr(parent).fileid == h.getattr(root).fileid
    # a symlink is returned as a symlink; LOOKUP through it is not a directory walk
    st, link = h.lookup(root, "escape")
    assert st == 0 and h.getattr(link).type == n3.Ftype.LNK
    rep = h.call(Proc.READLINK, fh_args(link))
    assert rep.body.pull_u32() == 0
    n3.pull_post_op_attr(rep.body)
    assert rep.body.pull_string() == "/etc"
    assert h.lookup(link, "passwd")[0] == Stat.NOTDIR
    assert h.lookup(root, "a/b")[0] == Stat.INVAL
    assert h.lookup(root, "x" * 300)[0] == Stat.NAMETOOLONG
    assert h.lookup(root, "nope")[0] == Stat.NOENT


def _readdir_all(h: Harness, fh: bytes, plus: bool, count: int) -> list[str]:
    names: list[str] = []
    cookie = 0
    while True:
        w = Writer().push_opaque(fh).push_u64(cookie).push_fixed(bytes(8)).push_u32(count)
        if plus:
            w.push_u32(count * 4)
        rep = h.call(Proc.READDIRPLUS if plus else Proc.READDIR, bytes(w))
        assert rep.body.pull_u32() == 0
        n3.pull_post_op_attr(rep.body)
        rep.body.pull_fixed(8)
        got = 0
        while rep.body.pull_bool():
            rep.body.pull_u64()
            names.append(rep.body.pull_string())
            cookie = rep.body.pull_u64()
            got += 1
            if plus:
                a = n3.pull_post_op_attr(rep.body)
                assert a is not None
                assert rep.body.pull_bool()
                rep.body.pull_opaque(64)
        if rep.body.pull_bool():
            return names
        assert got > 0


@pytest.mark.parametrize("plus", [False, True])
def test_readdir_paging(tree, plus):
    h = Harness(tree)
    fh = h.path_fh("dir/deeper")
    names = _readdir_all(h, fh, plus, count=1024)
    assert sorted(names) == sorted([".", ".."] + [f"entry-{i:04d}" for i in range(120)])
    small = Writer().push_opaque(fh).push_u64(0).push_fixed(bytes(8)).push_u32(100)
    assert status(h.call(Proc.READDIR, bytes(small))) == Stat.TOOSMALL


def test_access_fsinfo_fsstat_pathconf(tree):
    h = Harness(tree)
    root = h.mnt()
    rep = h.call(Proc.ACCESS, bytes(Writer().push_opaque(root).push_u32(n3.ACCESS_ALL)))
    assert rep.body.pull_u32() == 0
    n3.pull_post_op_attr(rep.body)
    got = rep.body.pull_u32()
    assert got & n3.ACCESS_READ and got & n3.ACCESS_LOOKUP
    assert not got & (n3.ACCESS_MODIFY | n3.ACCESS_EXTEND | n3.ACCESS_DELETE)  # read-only
    for proc in (Proc.FSINFO, Proc.FSSTAT, Proc.PATHCONF):
        assert status(h.call(proc, fh_args(root))) == 0


# --- writing ------------------------------------------------------------------------------


def _create(h: Harness, d: bytes, name: str, mode: int = 0, sattr: n3.Sattr | None = None,
            verf: bytes = b"", uid: int = 0, gid: int = 0) -> tuple[int, bytes]:
    w = Writer().push_opaque(d).push_string(name).push_u32(mode)
    if mode == n3.CreateMode.EXCLUSIVE:
        w.push_fixed(verf)
    else:
        n3.push_sattr(w, sattr or n3.Sattr(mode=0o640))
    rep = h.call(Proc.CREATE, bytes(w), uid=uid, gid=gid)
    st = rep.body.pull_u32()
    if st != 0:
        return st, b""
    assert rep.body.pull_bool()
    return st, rep.body.pull_opaque(64)


def _write(h: Harness, fh: bytes, off: int, data: bytes, stable: int = 0, uid: int = 0
           ) -> tuple[int, int, bytes]:
    w = Writer().push_opaque(fh).push_u64(off).push_u32(len(data)).push_u32(stable)
    w.push_opaque(data)
    rep = h.call(Proc.WRITE, bytes(w), uid=uid)
    st = rep.body.pull_u32()
    n3.pull_wcc_data(rep.body)
    if st != 0:
        return st, 0, b""
    count = rep.body.pull_u32()
    rep.body.pull_u32()
    return st, count, rep.body.pull_fixed(8)


def test_read_only_export_answers_rofs(tree):
    h = Harness(tree, rw=False)
    root = h.mnt()
    fh = h.path_fh("file.bin")
    assert _create(h, root, "new")[0] == Stat.ROFS
    assert _write(h, fh, 0, b"x")[0] == Stat.ROFS
    for proc, args in ((Proc.REMOVE, dirop_args(root, "file.bin")),
                       (Proc.RMDIR, dirop_args(root, "dir")),
                       (Proc.COMMIT, bytes(Writer().push_opaque(fh).push_u64(0).push_u32(0))),
                       (Proc.MKDIR, dirop_args(root, "d") + bytes(24))):
        assert status(h.call(proc, args)) == Stat.ROFS, proc
    assert (tree / "file.bin").stat().st_size == 10240
    # each refusal is an event, once per client, procedure and status (a retry adds none)
    _write(h, fh, 0, b"x")
    refused = [e for e in h.events if e.kind == "transfer_failed" and e.service == "nfs"]
    assert sorted(e.reason.split(" ")[0] for e in refused) == \
        ["COMMIT", "CREATE", "MKDIR", "REMOVE", "RMDIR", "WRITE"]
    assert all("NFS3ERR_ROFS" in e.reason and "read-only" in e.reason for e in refused)


@needs_root
def test_rw_create_write_commit_and_owners(tree):
    h = Harness(tree, rw=True, squash="no_root_squash")
    root = h.mnt()
    os.chmod(tree, 0o777)
    st, fh = _create(h, root, "u1000.txt", sattr=n3.Sattr(mode=0o640), uid=1000, gid=1000)
    assert st == 0
    s = os.lstat(tree / "u1000.txt")
    assert (s.st_uid, s.st_gid, stat.S_IMODE(s.st_mode)) == (1000, 1000, 0o640)
    st, n, verf = _write(h, fh, 0, b"abc" * 1000, stable=n3.StableHow.UNSTABLE, uid=1000)
    assert (st, n) == (0, 3000) and verf == h.nfsd.verf
    st, n, _ = _write(h, fh, 3000, b"Z", stable=n3.StableHow.FILE_SYNC, uid=1000)
    assert (st, n) == (0, 1)
    rep = h.call(Proc.COMMIT, bytes(Writer().push_opaque(fh).push_u64(0).push_u32(0)), uid=1000)
    assert rep.body.pull_u32() == 0
    n3.pull_wcc_data(rep.body)
    assert rep.body.pull_fixed(8) == h.nfsd.verf
    assert (tree / "u1000.txt").read_bytes() == b"abc" * 1000 + b"Z"
    # another user may not write a 0640 file it does not own
    assert _write(h, fh, 0, b"x", uid=1001)[0] == Stat.ACCES
    # a new server instance has a new write verifier (clients resend uncommitted data)
    assert Harness(tree, rw=True).nfsd.verf != h.nfsd.verf


@needs_root
def test_create_modes(tree):
    h = Harness(tree, rw=True, squash="no_root_squash")
    root = h.mnt()
    assert _create(h, root, "g", mode=n3.CreateMode.GUARDED)[0] == 0
    assert _create(h, root, "g", mode=n3.CreateMode.GUARDED)[0] == Stat.EXIST
    (tree / "g").write_text("content")
    st, _ = _create(h, root, "g", mode=n3.CreateMode.UNCHECKED, sattr=n3.Sattr(size=0))
    assert st == 0 and (tree / "g").read_text() == ""
    verf = b"\x01\x02\x03\x04\x05\x06\x07\x08"
    st, fh1 = _create(h, root, "x", mode=n3.CreateMode.EXCLUSIVE, verf=verf)
    assert st == 0
    st, fh2 = _create(h, root, "x", mode=n3.CreateMode.EXCLUSIVE, verf=verf)  # retransmission
    assert st == 0 and fh1 == fh2
    assert _create(h, root, "x", mode=n3.CreateMode.EXCLUSIVE, verf=b"\xff" * 8)[0] == Stat.EXIST
    assert _create(h, root, "..")[0] == Stat.INVAL


@needs_root
def test_mkdir_symlink_mknod_link_rename_remove(tree):
    h = Harness(tree, rw=True, squash="no_root_squash")
    root = h.mnt()
    sattr = Writer()
    n3.push_sattr(sattr, n3.Sattr(mode=0o750))
    assert status(h.call(Proc.MKDIR, dirop_args(root, "newdir") + bytes(sattr))) == 0
    assert stat.S_IMODE(os.lstat(tree / "newdir").st_mode) == 0o750
    w = Writer().push_opaque(root).push_string("ln")
    n3.push_sattr(w, n3.Sattr())
    w.push_string("../../../../etc/shadow")
    assert status(h.call(Proc.SYMLINK, bytes(w))) == 0
    assert os.readlink(tree / "ln") == "../../../../etc/shadow"
    w = Writer().push_opaque(root).push_string("null").push_u32(n3.Ftype.CHR)
    n3.push_sattr(w, n3.Sattr(mode=0o666))
    w.push_u32(1).push_u32(3)
    assert status(h.call(Proc.MKNOD, bytes(w))) == 0
    s = os.lstat(tree / "null")
    assert stat.S_ISCHR(s.st_mode) and os.major(s.st_rdev) == 1 and os.minor(s.st_rdev) == 3
    assert status(h.call(Proc.MKNOD, bytes(w), uid=1000)) == Stat.ACCES  # dir not writable
    fh = h.path_fh("file.bin")
    assert status(h.call(Proc.LINK, fh_args(fh) + dirop_args(root, "hard"))) == 0
    assert os.lstat(tree / "hard").st_ino == os.lstat(tree / "file.bin").st_ino
    st, d = h.lookup(root, "newdir")
    args = dirop_args(root, "file.bin") + dirop_args(d, "moved.bin")
    assert status(h.call(Proc.RENAME, args)) == 0
    assert (tree / "newdir" / "moved.bin").exists()
    # the old handle still names the moved file (handles are inode-based)
    assert h.getattr(fh).size == 10240
    assert status(h.call(Proc.RMDIR, dirop_args(root, "newdir"))) == Stat.NOTEMPTY
    assert status(h.call(Proc.REMOVE, dirop_args(d, "moved.bin"))) == 0
    assert status(h.call(Proc.RMDIR, dirop_args(root, "newdir"))) == 0
    assert status(h.call(Proc.REMOVE, dirop_args(root, "dir"))) == Stat.ISDIR
    assert status(h.call(Proc.GETATTR, fh_args(d))) == Stat.STALE


@needs_root
@pytest.mark.parametrize("squash,uid,want_uid", [
    ("root_squash", 0, 65534), ("root_squash", 1000, 1000), ("all_squash", 1000, 65534),
    ("no_root_squash", 0, 0)])
def test_squash_sets_owner_of_new_files(tree, squash, uid, want_uid):
    os.chmod(tree, 0o777)
    h = Harness(tree, rw=True, squash=squash)
    st, _ = _create(h, h.mnt(), "f", uid=uid, gid=uid)
    assert st == 0
    s = os.lstat(tree / "f")
    assert (s.st_uid, s.st_gid) == (want_uid, want_uid)


@needs_root
def test_auth_none_is_anonymous_and_setattr_rules(tree):
    os.chmod(tree, 0o777)
    h = Harness(tree, rw=True, squash="no_root_squash")
    root = h.mnt()
    st, fh = _create(h, root, "anon", uid=None)  # type: ignore[arg-type]
    assert st == 0 and os.lstat(tree / "anon").st_uid == 65534
    w = Writer().push_opaque(fh)
    n3.push_sattr(w, n3.Sattr(mode=0o600))
    w.push_bool(False)
    assert status(h.call(Proc.SETATTR, bytes(w), uid=1000)) == Stat.PERM
    assert status(h.call(Proc.SETATTR, bytes(w), uid=0)) == 0
    w = Writer().push_opaque(fh)
    n3.push_sattr(w, n3.Sattr(uid=1234))
    w.push_bool(True).push_u32(1).push_u32(2)  # wrong ctime guard
    assert status(h.call(Proc.SETATTR, bytes(w))) == Stat.NOT_SYNC


def test_unit_nfs_mount_options():
    assert n3.nfs_mount_options("10.0.0.1", 2049, 20048) == \
        "vers=3,nolock,tcp,port=2049,mountport=20048,mountproto=tcp,addr=10.0.0.1"


def test_reader_helpers_are_symmetric():
    w = Writer()
    s = n3.Sattr(mode=0o755, uid=1, gid=2, size=3, atime="server", mtime=(4, 5))
    n3.push_sattr(w, s)
    assert n3.pull_sattr(Reader(bytes(w))) == s


@pytest.fixture(scope="module")
def fuzz_harness(tmp_path_factory) -> Harness:
    root = tmp_path_factory.mktemp("fuzz") / "export"
    (root / "d").mkdir(parents=True)
    (root / "f").write_text("x" * 100)
    return Harness(root, rw=False)


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as hst  # noqa: E402


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(proc=hst.integers(0, 23), body=hst.binary(max_size=120), with_root=hst.booleans())
def test_fuzzed_arguments_get_a_reply_never_a_crash(fuzz_harness, proc, body, with_root):
    """Random argument bytes (optionally after a valid root handle) to every procedure."""
    h = fuzz_harness
    args = (bytes(Writer().push_opaque(h.mnt())) + body) if with_root else body
    rep = h.call(proc, args)
    assert rep.accepted
    assert rep.stat in (AcceptStat.SUCCESS, AcceptStat.GARBAGE_ARGS, AcceptStat.PROC_UNAVAIL)
    if rep.stat == AcceptStat.SUCCESS and proc:
        st = rep.body.pull_u32()
        assert st == 0 or st in {s.value for s in Stat}
    assert sorted(os.listdir(h.export.root)) == ["d", "f"]  # read-only: nothing changed


@pytest.fixture(scope="module")
def fuzz_rw(tmp_path_factory) -> Harness:
    root = tmp_path_factory.mktemp("fuzzrw") / "export"
    (root / "d").mkdir(parents=True)
    (root / "f").write_text("x" * 100)
    return Harness(root, rw=True, squash="no_root_squash")


NAMES = hst.sampled_from(["f", "d", "new", "..", ".", "d/x", ""])


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(proc=hst.integers(1, 21), name=NAMES, name2=NAMES, tail=hst.binary(max_size=60),
       uid=hst.sampled_from([0, 1000]))
def test_fuzzed_writes_on_a_rw_export_never_crash(fuzz_rw, proc, name, name2, tail, uid):
    """Plausible-looking arguments (a real handle and names, then random bytes) to every
    procedure of a rw export: an NFS status or GARBAGE_ARGS, never SYSTEM_ERR."""
    h = fuzz_rw
    root = h.mnt()
    w = Writer().push_opaque(root).push_string(name).push_opaque(root).push_string(name2)
    rep = h.call(proc, bytes(w) + tail, uid=uid, gid=uid)
    assert rep.accepted and rep.stat in (AcceptStat.SUCCESS, AcceptStat.GARBAGE_ARGS), rep
    assert not any(e.kind == "log_line" and e.level == "error" for e in h.events)
    assert os.path.isdir(h.export.root)


@needs_root
def test_retransmitted_remove_gets_the_first_answer(tree):
    """The duplicate request cache: the same xid again is answered, not redone (NOENT)."""
    h = Harness(tree, rw=True, squash="no_root_squash")
    root = h.mnt()
    (tree / "gone.txt").write_text("x")
    first = h.call(Proc.REMOVE, dirop_args(root, "gone.txt"), xid=7)
    again = h.call(Proc.REMOVE, dirop_args(root, "gone.txt"), xid=7)  # a retransmission
    assert status(first) == 0 and status(again) == 0
    h.ctx = CallContext(peer=("10.0.0.8", 800), proto="tcp", local=False)
    assert status(h.call(Proc.REMOVE, dirop_args(root, "gone.txt"), xid=7)) == Stat.NOENT


def test_readdirplus_over_udp_fits_a_datagram(tree):
    h = Harness(tree)
    fh = h.path_fh("dir/deeper")
    w = Writer().push_opaque(fh).push_u64(0).push_fixed(bytes(8)).push_u32(1 << 20)
    w.push_u32(1 << 20)
    rep = h.call(Proc.READDIRPLUS, bytes(w), proto="udp")
    assert status(rep) == 0 and len(rep.body.data) < 65000
