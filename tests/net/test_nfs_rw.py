"""NFS v3 read-write exports (issue 12), checked with libnfs: nfs-cp, and libnfs's own
calls (mkdir, creat, rename, link, symlink, mknod, unlink, rmdir) through ctypes.

Owners and modes are checked on the server's disk; squash options as in
exports(5); a read-only export refuses all of it with NFS3ERR_ROFS; a server
restart keeps file handles valid and changes the write verifier.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.net.test_nfs import CLIENT, SERVER, nfs_plan, serve_nfs
from tests.support.netns import NetPair, net_pair
from tests.support.serving import Served
from tests.support.tools import require, require_root

REPO = Path(__file__).resolve().parents[2]

# libnfs (the C library nfs-ls/nfs-cat/nfs-cp are built on), driven through ctypes.
LIBNFS_OPS = r'''
import ctypes, json, sys
L = ctypes.CDLL("libnfs.so.13")
P, S, I = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
L.nfs_init_context.restype = P
L.nfs_get_error.restype = S
L.nfs_get_error.argtypes = [P]
L.nfs_mount.argtypes = [P, S, S]
L.nfs_set_uid.argtypes = L.nfs_set_gid.argtypes = [P, I]
for f in ("nfs_mkdir", "nfs_rmdir", "nfs_unlink"):
    getattr(L, f).argtypes = [P, S]
for f in ("nfs_rename", "nfs_symlink", "nfs_link"):
    getattr(L, f).argtypes = [P, S, S]
L.nfs_creat.argtypes = [P, S, I, ctypes.POINTER(P)]
L.nfs_write.argtypes = [P, P, ctypes.c_uint64, S]
L.nfs_close.argtypes = [P, P]
L.nfs_mknod.argtypes = [P, S, I, I]
L.nfs_chmod.argtypes = [P, S, I]
L.nfs_readlink.argtypes = [P, S, S, I]
class St(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in (
        "dev", "ino", "mode", "nlink", "uid", "gid", "rdev", "size", "blksize", "blocks",
        "atime", "mtime", "ctime", "atime_nsec", "mtime_nsec", "ctime_nsec", "used")]
L.nfs_lstat64.argtypes = [P, S, ctypes.POINTER(St)]
server, export, uid, gid, ops = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), \
    json.loads(sys.argv[5])
nfs = L.nfs_init_context()
L.nfs_set_uid(nfs, uid)
L.nfs_set_gid(nfs, gid)
if L.nfs_mount(nfs, server.encode(), export.encode()):
    print(json.dumps([{"op": "mount", "rc": -1, "err": L.nfs_get_error(nfs).decode()}]))
    sys.exit(0)
out = []
for op, *a in ops:
    res = {"op": op}
    b = [x.encode() if isinstance(x, str) else x for x in a]
    if op == "creat":
        fh = P()
        rc = L.nfs_creat(nfs, b[0], a[1], ctypes.byref(fh))
        if rc == 0:
            res["written"] = L.nfs_write(nfs, fh, len(b[2]), b[2])
            L.nfs_close(nfs, fh)
    elif op == "readlink":
        buf = ctypes.create_string_buffer(4096)
        rc = L.nfs_readlink(nfs, b[0], buf, 4096)
        res["target"] = buf.value.decode()
    elif op == "stat":
        st = St()
        rc = L.nfs_lstat64(nfs, b[0], ctypes.byref(st))
        res.update(mode=st.mode, uid=st.uid, gid=st.gid, size=st.size)
    else:
        rc = getattr(L, "nfs_" + op)(nfs, *b)
    res["rc"] = rc
    if rc < 0:
        res["err"] = L.nfs_get_error(nfs).decode()
    out.append(res)
print(json.dumps(out))
'''


class RwEnv:
    def __init__(self, pair: NetPair, tmp: Path) -> None:
        self.pair, self.tmp = pair, tmp
        self.stack = contextlib.ExitStack()
        self.served: Served | None = None
        self.plan = nfs_plan(tmp, [
            {"path": str(tmp / "rw"), "rw": True, "squash": "no_root_squash"},
            {"path": str(tmp / "rwsq"), "rw": True},
            {"path": str(tmp / "rwall"), "rw": True, "squash": "all_squash",
             "anonuid": 4242, "anongid": 4343},
            {"path": str(tmp / "ro")},
        ])

    def start(self) -> None:
        self.served = self.stack.enter_context(serve_nfs(self.pair.server, self.plan))

    def restart(self) -> None:
        self.stack.close()
        self.stack = contextlib.ExitStack()
        self.start()

    def ops(self, export: str, ops: list, uid: int = 0, gid: int = 0) -> list[dict]:
        r = self.pair.client.run(sys.executable, "-c", LIBNFS_OPS, SERVER, str(self.tmp / export),
                                 str(uid), str(gid), json.dumps(ops), check=False)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def py(self, script: str, *args: str) -> dict:
        r = self.pair.client.run(sys.executable, "-c", script, *args, check=False,
                                 env=dict(os.environ, PYTHONPATH=str(REPO)))
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)


@pytest.fixture(scope="module")
def rw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RwEnv]:
    require_root()
    require("nfs-cp", "nfs-ls", "/usr/lib/x86_64-linux-gnu/libnfs.so.13")
    tmp = tmp_path_factory.mktemp("nfsrw")
    for name in ("rw", "rwsq", "rwall", "ro"):
        (tmp / name).mkdir()
        os.chmod(tmp / name, 0o777)
    (tmp / "rw" / "home").mkdir()
    os.chown(tmp / "rw" / "home", 1000, 1000)
    (tmp / "ro" / "keep.txt").write_text("keep")
    (tmp / "ro" / "dir").mkdir()
    with net_pair() as pair:
        pair.client_address(CLIENT)
        env = RwEnv(pair, tmp)
        env.start()
        try:
            yield env
        finally:
            env.stack.close()


def ok(results: list[dict]) -> None:
    bad = [r for r in results if r["rc"] < 0]
    assert not bad, bad


def test_nfs_cp_to_and_from(rw: RwEnv, tmp_path: Path):
    data = os.urandom(5 * 1024 * 1024 + 3)
    local = tmp_path / "up.bin"
    local.write_bytes(data)
    r = rw.pair.client.run("nfs-cp", str(local), f"nfs://{SERVER}{rw.tmp}/rw/up.bin",
                           check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert hashlib.sha256((rw.tmp / "rw" / "up.bin").read_bytes()).digest() == \
        hashlib.sha256(data).digest()
    back = tmp_path / "back.bin"
    r = rw.pair.client.run("nfs-cp", f"nfs://{SERVER}{rw.tmp}/rw/up.bin", str(back), check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert back.read_bytes() == data
    # nfs-cp creates GUARDED (O_EXCL): an existing file is not overwritten
    r = rw.pair.client.run("nfs-cp", str(local), f"nfs://{SERVER}{rw.tmp}/rw/up.bin",
                           check=False)
    assert r.returncode != 0 and "NFS3ERR_EXIST" in r.stdout + r.stderr


def test_create_rename_link_delete_as_root(rw: RwEnv):
    ok(rw.ops("rw", [
        ["mkdir", "/tree"], ["mkdir", "/tree/sub"],
        ["creat", "/tree/a.txt", 0o640, "alpha"],
        ["rename", "/tree/a.txt", "/tree/sub/b.txt"],
        ["link", "/tree/sub/b.txt", "/tree/hard.txt"],
        ["symlink", "../../../etc/passwd", "/tree/ln"],
        ["mknod", "/tree/null", stat.S_IFCHR | 0o666, (1 << 8) | 3],
        ["chmod", "/tree/sub", 0o750],
    ]))
    t = rw.tmp / "rw" / "tree"
    b = os.lstat(t / "sub" / "b.txt")
    assert (b.st_uid, b.st_gid, stat.S_IMODE(b.st_mode), b.st_nlink) == (0, 0, 0o640, 2)
    assert (t / "sub" / "b.txt").read_text() == "alpha"
    assert os.readlink(t / "ln") == "../../../etc/passwd"
    n = os.lstat(t / "null")
    assert stat.S_ISCHR(n.st_mode) and (os.major(n.st_rdev), os.minor(n.st_rdev)) == (1, 3)
    assert stat.S_IMODE(os.lstat(t / "sub").st_mode) == 0o750
    res = rw.ops("rw", [["readlink", "/tree/ln"], ["rmdir", "/tree/sub"]])
    assert res[0]["target"] == "../../../etc/passwd"
    assert res[1]["rc"] < 0 and "NOTEMPTY" in res[1]["err"]
    ok(rw.ops("rw", [["unlink", "/tree/sub/b.txt"], ["unlink", "/tree/hard.txt"],
                     ["unlink", "/tree/ln"], ["unlink", "/tree/null"], ["rmdir", "/tree/sub"],
                     ["rmdir", "/tree"]]))
    assert not t.exists()


def test_user_owns_what_it_creates_and_others_are_refused(rw: RwEnv):
    ok(rw.ops("rw", [["mkdir", "/home/docs"], ["creat", "/home/docs/u.txt", 0o600, "mine"]],
              uid=1000, gid=1000))
    d = os.lstat(rw.tmp / "rw" / "home" / "docs")
    f = os.lstat(rw.tmp / "rw" / "home" / "docs" / "u.txt")
    assert (d.st_uid, d.st_gid, f.st_uid, f.st_gid) == (1000, 1000, 1000, 1000)
    assert stat.S_IMODE(f.st_mode) == 0o600
    res = rw.ops("rw", [["creat", "/home/docs/other.txt", 0o644, "x"],
                        ["unlink", "/home/docs/u.txt"], ["stat", "/home/docs/u.txt"]],
                 uid=1001, gid=1001)
    assert res[0]["rc"] < 0 and "NFS3ERR_ACCES" in res[0]["err"]
    assert res[1]["rc"] < 0 and "NFS3ERR_ACCES" in res[1]["err"]
    assert res[2]["rc"] == 0 and res[2]["uid"] == 1000


def test_caller_cannot_hard_link_a_root_owned_private_file(rw: RwEnv):
    """Issue 17: the write ran with the server's identity, so a uid-1000 client could
    hard-link a root-owned 0600 file into a directory it owns (knfsd refuses: the kernel's
    fs.protected_hardlinks check runs with the caller's fsuid). Now each namespace change
    runs with the caller's fsuid/fsgid/groups."""
    secret = rw.tmp / "rw" / "secret.key"
    secret.write_text("root only")
    secret.chmod(0o600)
    res = rw.ops("rw", [["link", "/secret.key", "/home/stolen.key"]], uid=1000, gid=1000)
    assert res[0]["rc"] < 0 and ("NFS3ERR_PERM" in res[0]["err"]
                                 or "NFS3ERR_ACCES" in res[0]["err"]), res
    assert not (rw.tmp / "rw" / "home" / "stolen.key").exists()
    assert os.lstat(secret).st_nlink == 1
    # the owner of a file may still link it (same rule as knfsd)
    ok(rw.ops("rw", [["creat", "/home/mine.txt", 0o600, "m"],
                     ["link", "/home/mine.txt", "/home/mine2.txt"]], uid=1000, gid=1000))
    # and root (no_root_squash) may link anything, as on knfsd
    ok(rw.ops("rw", [["link", "/secret.key", "/secret2.key"]]))
    assert os.lstat(secret).st_nlink == 2


@pytest.mark.parametrize("export,uid,want", [
    ("rwsq", 0, (65534, 65534)),      # root_squash: root becomes nobody
    ("rwsq", 1000, (1000, 1000)),     # ... other users keep their ids
    ("rwall", 1000, (4242, 4343)),    # all_squash: everyone becomes anonuid/anongid
    ("rw", 0, (0, 0)),                # no_root_squash
])
def test_squash(rw: RwEnv, export: str, uid: int, want: tuple[int, int]):
    name = f"/sq-{export}-{uid}.txt"
    ok(rw.ops(export, [["creat", name, 0o644, "s"]], uid=uid, gid=uid))
    s = os.lstat(rw.tmp / export / name.lstrip("/"))
    assert (s.st_uid, s.st_gid) == want


def test_read_only_export_refuses_every_write(rw: RwEnv):
    res = rw.ops("ro", [["creat", "/new.txt", 0o644, "x"], ["mkdir", "/d2"],
                        ["unlink", "/keep.txt"], ["rmdir", "/dir"],
                        ["rename", "/keep.txt", "/moved.txt"], ["symlink", "x", "/ln"],
                        ["link", "/keep.txt", "/hard"], ["chmod", "/keep.txt", 0o600]])
    for r in res:
        assert r["rc"] < 0 and "NFS3ERR_ROFS" in r["err"], r
    assert sorted(os.listdir(rw.tmp / "ro")) == ["dir", "keep.txt"]


HANDLES = r'''
import json, sys
from pxewizard.proto import nfs3 as n3
from pxewizard.proto.xdr import Writer
from pxewizard.servers.nfs.client import RpcClient, getattr_, lookup, mount, read
host, export, mode, state = sys.argv[1:5]
out = {}
if mode == "save":
    with RpcClient(host, 20048) as mc:
        root = mount(mc, export).fh
    with RpcClient(host, 2049) as c:
        fh = root
        for part in ("deep", "er", "file.txt"):
            fh = lookup(c, fh, part)[1]
        w = Writer().push_opaque(fh).push_u64(0).push_u32(3).push_u32(0).push_opaque(b"new")
        rep = c.call(n3.NFS_PROG, 3, n3.Proc.WRITE, bytes(w))
        assert rep.body.pull_u32() == 0
        n3.pull_wcc_data(rep.body); rep.body.pull_u32(); rep.body.pull_u32()
        out = {"root": root.hex(), "file": fh.hex(), "verf": rep.body.pull_fixed(8).hex()}
    open(state, "w").write(json.dumps(out))
else:
    saved = json.load(open(state))
    with RpcClient(host, 2049) as c:
        fh = bytes.fromhex(saved["file"])
        st, data, eof = read(c, fh, 0, 100)
        root_ok = getattr_(c, bytes.fromhex(saved["root"]))[0]
        w = Writer().push_opaque(b"").push_u64(0).push_u32(0)
        rep = c.call(n3.NFS_PROG, 3, n3.Proc.COMMIT,
                     bytes(Writer().push_opaque(fh).push_u64(0).push_u32(0)))
        assert rep.body.pull_u32() == 0
        n3.pull_wcc_data(rep.body)
        out = {"read": st, "data": data.decode(), "root": root_ok,
               "verf_changed": rep.body.pull_fixed(8).hex() != saved["verf"]}
print(json.dumps(out))
'''


def test_restart_keeps_handles_valid(rw: RwEnv):
    """The last test of the module: it restarts the server."""
    deep = rw.tmp / "rw" / "deep" / "er"
    deep.mkdir(parents=True)
    (deep / "file.txt").write_text("old content")
    state = str(rw.tmp / "handles.json")
    rw.py(HANDLES, SERVER, str(rw.tmp / "rw"), "save", state)
    rw.restart()
    out = rw.py(HANDLES, SERVER, str(rw.tmp / "rw"), "check", state)
    assert out == {"read": 0, "data": "new content", "root": 0, "verf_changed": True}


def test_rw_nfs_server_keeps_identity_caps_only(rw: RwEnv):
    """An rw export with no_root_squash keeps what knfsd's root would use, nothing more."""
    from pxewizard.privileges import CAPS, thread_status

    assert rw.served is not None
    for st in thread_status(rw.served.proc.pid).values():
        eff = int(st["CapEff"], 16)
        assert eff >> CAPS["CAP_SETUID"] & 1 and eff >> CAPS["CAP_SETGID"] & 1
        assert not eff >> CAPS["CAP_SYS_ADMIN"] & 1 and not eff >> CAPS["CAP_NET_RAW"] & 1
        assert int(st["CapBnd"], 16) == int(st["CapPrm"], 16) and st["NoNewPrivs"].strip() == "1"
