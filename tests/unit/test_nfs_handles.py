"""File handles that survive restarts and renames, the export jail, and squash mapping."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pxewizard.proto.nfs3 import NFS3_FHSIZE, NfsError, Stat, access_bits
from pxewizard.proto.rpc import AuthFlavor, Credentials
from pxewizard.servers.nfs.auth import Ids, access_mask, may_delete, squash_ids
from pxewizard.servers.nfs.handles import MAX_TRAIL, Export, Handle, Resolver, decode_handle, join


def export_of(path: Path) -> Export:
    return Export.from_config(SimpleNamespace(path=path, rw=True, squash="root_squash",
                                              anonuid=65534, anongid=65534))


def walk_handle(res: Resolver, e: Export, rel: str) -> bytes:
    """The handle a client gets by LOOKUPs from the root."""
    node = res.node(e, "", os.lstat(e.root), None)
    for part in [p for p in rel.split("/") if p]:
        r = f"{node.rel}/{part}" if node.rel else part
        node = res.node(e, r, os.lstat(e.abspath(r)), node)
    return node.fh


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1),
       st.binary(max_size=MAX_TRAIL), st.booleans())
def test_handle_round_trip(exp, dev, ino, trail, deep):
    h = Handle(exp, dev, ino, b"" if deep else trail, deep)
    fh = h.encode()
    assert len(fh) <= NFS3_FHSIZE
    assert decode_handle(fh) == h


@given(st.binary(max_size=80))
def test_garbage_handles_are_badhandle_never_a_crash(fh):
    try:
        decode_handle(fh)
    except NfsError as exc:
        assert exc.status == Stat.BADHANDLE


def test_handles_survive_a_restart(tmp_path):
    deep = "/".join(f"d{i}" for i in range(60))  # deeper than the trail holds
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "b" / "c" / "f.txt").write_text("x")
    (tmp_path / deep).mkdir(parents=True)
    (tmp_path / deep / "g").write_text("y")
    e = export_of(tmp_path)
    first = Resolver([e], background=False)
    handles = {rel: walk_handle(first, e, rel) for rel in ("", "a", "a/b/c", "a/b/c/f.txt",
                                                          deep + "/g")}
    assert len(set(handles.values())) == len(handles)
    assert decode_handle(handles[deep + "/g"]).deep
    # a new server: no cache, the same handles resolve to the same objects
    e2 = export_of(tmp_path)
    again = Resolver([e2], background=False)
    for rel, fh in handles.items():
        assert again.resolve(fh).rel == rel
        # and the same walk produces the identical bytes
        assert walk_handle(Resolver([export_of(tmp_path)], background=False), e2, rel) == fh


def test_handle_follows_a_moved_directory_after_restart(tmp_path):
    (tmp_path / "x" / "y").mkdir(parents=True)
    (tmp_path / "x" / "y" / "f").write_text("z")
    (tmp_path / "other").mkdir()
    e = export_of(tmp_path)
    fh = walk_handle(Resolver([e], background=False), e, "x/y/f")
    os.rename(tmp_path / "x" / "y", tmp_path / "other" / "y2")
    assert Resolver([export_of(tmp_path)], background=False).resolve(fh).rel == "other/y2/f"
    os.unlink(tmp_path / "other" / "y2" / "f")
    with pytest.raises(NfsError) as exc:
        Resolver([export_of(tmp_path)], background=False).resolve(fh)
    assert exc.value.status == Stat.STALE


def test_jail_join():
    assert join("", "..") == ""
    assert join("", ".") == ""
    assert join("a/b", "..") == "a"
    assert join("a", "..") == ""
    assert join("a", "b") == "a/b"
    for bad in ("a/b", "", "x\0y"):
        with pytest.raises(NfsError):
            join("", bad)
    with pytest.raises(NfsError) as exc:
        join("", "n" * 256)
    assert exc.value.status == Stat.NAMETOOLONG


def test_a_symlinked_export_is_served_from_its_target(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    e = export_of(tmp_path / "link")
    assert e.path.endswith("/link") and e.root.endswith("/real")


SYS = AuthFlavor.AUTH_SYS


@pytest.mark.parametrize("squash,uid,gid,gids,want", [
    ("root_squash", 0, 0, (0, 5), (65534, 65534, {65534, 5})),
    ("root_squash", 1000, 100, (0,), (1000, 100, {65534})),
    ("root_squash", 1000, 100, (), (1000, 100, set())),
    ("all_squash", 1000, 100, (5,), (65534, 65534, set())),
    ("no_root_squash", 0, 0, (3,), (0, 0, {3})),
])
def test_squash_mapping(squash, uid, gid, gids, want):
    cred = Credentials(flavor=SYS, uid=uid, gid=gid, gids=gids)
    ids = squash_ids(cred, squash, 65534, 65534)
    assert (ids.uid, ids.gid, set(ids.gids)) == want


def test_auth_none_is_anonymous_whatever_the_squash():
    for squash in ("root_squash", "all_squash", "no_root_squash"):
        ids = squash_ids(Credentials(), squash, 99, 98)
        assert (ids.uid, ids.gid) == (99, 98)


def test_access_bits_and_mask():
    assert access_bits(0o640, 10, 20, 10, frozenset()) == 6
    assert access_bits(0o640, 10, 20, 11, frozenset({20})) == 4
    assert access_bits(0o640, 10, 20, 11, frozenset()) == 0
    assert access_bits(0o600, 10, 20, 0, frozenset()) == 6  # root: rw, no x without any x bit
    assert access_bits(0o700, 10, 20, 0, frozenset()) == 7
    st = os.stat_result((0o40755, 1, 1, 2, 10, 20, 0, 0, 0, 0))
    assert access_mask(st, Ids(10, 20, frozenset()), rw=False) == 0x01 | 0x02
    assert access_mask(st, Ids(10, 20, frozenset()), rw=True) == 0x01 | 0x02 | 0x04 | 0x08 | 0x10
    assert access_mask(st, Ids(11, 21, frozenset()), rw=True) == 0x01 | 0x02


def test_sticky_directory_rule():
    d = os.stat_result((0o41777, 1, 1, 2, 0, 0, 0, 0, 0, 0))
    victim = os.stat_result((0o100644, 2, 1, 1, 10, 10, 0, 0, 0, 0))
    may_delete(d, victim, Ids(10, 10, frozenset()))
    with pytest.raises(NfsError):
        may_delete(d, victim, Ids(11, 11, frozenset()))


def test_unknown_handles_never_scan_in_the_caller(tmp_path, monkeypatch):
    """A forged handle is answered from the index: JUKEBOX while a rebuild runs in a thread,
    STALE after it, and a flood of them rebuilds at most once per REBUILD_EVERY."""
    import threading

    from pxewizard.servers.nfs import handles as hm

    for i in range(50):
        (tmp_path / f"f{i}").write_text("x")
    e = export_of(tmp_path)
    builds: list[str] = []
    real = hm.build_index

    def counting(export):
        builds.append(threading.current_thread().name)
        return real(export)

    monkeypatch.setattr(hm, "build_index", counting)
    res = Resolver([e])  # the first index is built in a thread
    deadline = __import__("time").monotonic() + 5
    while e.building and __import__("time").monotonic() < deadline:
        __import__("time").sleep(0.01)
    assert builds == ["nfs-index"]
    fh = walk_handle(Resolver([export_of(tmp_path)], background=False), e, "f7")
    assert res.resolve(fh).rel == "f7"  # not in this resolver's cache: found by the index
    forged = Handle(e.id, e.dev & 0xFFFFFFFF, 2**40 + 1, b"").encode()
    for _ in range(30):
        with pytest.raises(NfsError) as exc:
            res.resolve(forged)
        assert exc.value.status in (Stat.STALE, Stat.JUKEBOX)
    assert all(name == "nfs-index" for name in builds) and len(builds) <= 2
