"""The served tree: jail rules shared by TFTP and HTTP."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pxewizard.files import AccessDenied, FileTree, NotFound, normalize


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "pxelinux.cfg").mkdir(parents=True)
    (r / "pxelinux.0").write_bytes(b"loader")
    (r / "pxelinux.cfg" / "default").write_text("DEFAULT x\n")
    (tmp_path / "secret").write_text("nope")
    os.symlink(tmp_path / "secret", r / "escape")
    os.symlink("pxelinux.0", r / "alias")
    (r / "private").write_text("p")
    os.chmod(r / "private", 0o600)
    return r


@pytest.mark.parametrize("raw,norm", [
    ("/pxelinux.0", "pxelinux.0"), ("\\boot\\x", "boot/x"), ("a//./b", "a/b"), ("a", "a")])
def test_normalize(raw: str, norm: str) -> None:
    assert normalize(raw) == norm


@pytest.mark.parametrize("raw", ["../etc/passwd", "a/../../b", "a\\..\\b", "x\x00y"])
def test_normalize_refuses(raw: str) -> None:
    with pytest.raises(AccessDenied):
        normalize(raw)


def test_lookup_order_and_jail(root: Path) -> None:
    t = FileTree([root])
    assert t.resolve("/pxelinux.0").read() == b"loader"
    assert t.resolve("pxelinux.cfg\\default").size == 10
    assert t.resolve("alias").read() == b"loader"
    t.add_bytes("pxelinux.cfg/default", "generated")
    assert t.resolve("pxelinux.cfg/default").read() == b"generated"
    with pytest.raises(AccessDenied, match="leads out"):
        t.resolve("escape")
    with pytest.raises(AccessDenied, match="global read permissions"):
        t.resolve("private")
    with pytest.raises(NotFound):
        t.resolve("pxelinux.cfg")
    with pytest.raises(NotFound):
        t.resolve("nothing")


def test_mapped_file_and_dir(root: Path, tmp_path: Path) -> None:
    media = tmp_path / "media"
    (media / "x86_64").mkdir(parents=True)
    (media / "x86_64" / "airootfs.sfs").write_bytes(b"sfs")
    t = FileTree()
    t.add_file("boot/vmlinuz", root / "pxelinux.0")
    t.add_dir("sysresccd", media)
    assert t.resolve("boot/vmlinuz").read() == b"loader"
    assert t.resolve("sysresccd/x86_64/airootfs.sfs").size == 3
    with pytest.raises(NotFound):
        t.resolve("sysresccd/none")


def test_case_insensitive(root: Path) -> None:
    t = FileTree([root], case_insensitive=True)
    assert t.resolve("PXELINUX.CFG/Default").read().startswith(b"DEFAULT")
    t.add_bytes("boot.ipxe", "#!ipxe")
    assert t.resolve("BOOT.IPXE").read() == b"#!ipxe"
    assert FileTree([root]).resolve("pxelinux.0")
    with pytest.raises(NotFound):
        FileTree([root]).resolve("PXELINUX.0")


def test_open_fd_rechecks_the_jail_after_a_link_swap(root: Path, tmp_path: Path) -> None:
    """A file checked at lookup, then swapped for a link out of the root before the open."""
    t = FileTree([root])
    (root / "kernel").write_bytes(b"k")
    os.chmod(root / "kernel", 0o644)
    ref = t.resolve("kernel")
    os.unlink(root / "kernel")
    os.symlink(tmp_path / "secret", root / "kernel")
    os.chmod(tmp_path / "secret", 0o644)
    with pytest.raises(AccessDenied, match="swapped"):
        ref.open_fd()
    os.unlink(root / "kernel")
    (root / "kernel").write_bytes(b"k2")
    os.chmod(root / "kernel", 0o600)
    with pytest.raises(AccessDenied, match="global read"):
        ref.open_fd()
    os.chmod(root / "kernel", 0o644)
    fd = ref.open_fd()
    try:
        assert os.read(fd, 10) == b"k2"
    finally:
        os.close(fd)


def test_open_fd_of_an_extent(tmp_path: Path) -> None:
    iso = tmp_path / "x.iso"
    iso.write_bytes(b"A" * 4096 + b"payload" + b"B" * 100)
    os.chmod(iso, 0o644)
    t = FileTree()
    t.add_extent("boot/vmlinuz", iso, 4096, 7)
    ref = t.resolve("boot/vmlinuz")
    assert ref.read() == b"payload" and ref.location() == (iso, 4096)
    fd = ref.open_fd()
    try:
        assert os.pread(fd, 7, ref.offset) == b"payload"
    finally:
        os.close(fd)


def test_a_fifo_is_refused_without_blocking(root: Path) -> None:
    """A FIFO (swapped in, or there from the start) is opened O_NONBLOCK and refused."""
    os.mkfifo(root / "fifo", 0o644)
    with pytest.raises(AccessDenied, match="not a regular file"):
        FileTree([root]).resolve("fifo")


def test_mapped_files_follow_no_link_put_in_their_place(root: Path, tmp_path: Path) -> None:
    """add_file with a jail (an NFS root's kernels): a link swapped in is refused."""
    media = tmp_path / "nfsroot"
    (media / "boot").mkdir(parents=True)
    (media / "boot" / "vmlinuz").write_bytes(b"kernel")
    os.chmod(media / "boot" / "vmlinuz", 0o644)
    t = FileTree()
    t.add_file("boot/vmlinuz", media / "boot" / "vmlinuz", jail=media)
    ref = t.resolve("boot/vmlinuz")
    assert ref.read() == b"kernel"
    os.unlink(media / "boot" / "vmlinuz")
    os.chmod(tmp_path / "secret", 0o644)
    os.symlink(tmp_path / "secret", media / "boot" / "vmlinuz")
    with pytest.raises(AccessDenied, match="link"):
        t.resolve("boot/vmlinuz")
    with pytest.raises(AccessDenied, match="link"):
        ref.read()  # netascii reads go through the same jailed open


def test_without_openat2_links_are_refused_per_component(root: Path, monkeypatch) -> None:
    """Kernels before 5.6: O_NOFOLLOW one component at a time; links are then refused."""
    import pxewizard.files as files

    monkeypatch.setattr(files, "HAVE_OPENAT2", False)
    t = FileTree([root])
    assert t.resolve("pxelinux.cfg/default").read() == b"DEFAULT x\n"
    for name in ("alias", "escape"):
        with pytest.raises(AccessDenied, match="link"):
            t.resolve(name)
