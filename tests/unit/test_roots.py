"""Issue 23: one NFS root tree for many clients (nfs.root_mode), command lines and exports."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pxewizard.boot.initramfs import overlay_support
from pxewizard.boot.media import find_media
from pxewizard.boot.roots import client_root, prepare_client_roots
from pxewizard.boot.tree import build_boot, nfs_exports
from pxewizard.errors import PlanError
from tests.data.boot import fixtures as fx
from tests.unit.test_menus import fake_loaders, make_plan

pytestmark = pytest.mark.unit

A, B = "52:54:00:00:00:0a", "52:54:00:00:00:0b"
OVERLAYROOT = fx.INITRAMFS_TOOLS_NFS + ["scripts/init-bottom/", "scripts/init-bottom/overlayroot"]
DRACUT_OVERLAY = fx.DRACUT_NFS + ["var/lib/dracut/hooks/pre-pivot/10-mount-overlayfs.sh",
                                  "var/lib/dracut/hooks/pre-mount/01-prepare-overlayfs.sh"]
DRACUT_OVERLAY_OLD = fx.DRACUT_NFS + ["var/lib/dracut/hooks/mount/01-mount-overlayfs.sh"]


def _plan(root: Path, tmp: Path, mode: str, **nfs: object):
    plan = make_plan(root, "nfs", nfs={"enabled": True, "root_mode": mode, **nfs})
    return plan.model_copy(update={"state_dir": tmp / "state"})


def _line(boot, name: str = "pxelinux.cfg/default") -> str:
    return next(ln.strip() for ln in boot.menus[name].splitlines()
                if ln.strip().startswith("APPEND"))


@pytest.mark.parametrize("names,have", [
    (OVERLAYROOT, "overlayroot"), (DRACUT_OVERLAY, "dracut-overlayfs"),
    (DRACUT_OVERLAY_OLD, "dracut-overlayfs-block"), (fx.INITRAMFS_TOOLS_NFS, "")])
def test_overlay_support_read_from_the_initramfs(tmp_path: Path, names, have) -> None:
    assert overlay_support(names) == have
    [m] = find_media(fx.make_nfsroot(tmp_path / "root", names))
    assert m.overlay == have


def test_shared_rw_is_unchanged(tmp_path: Path) -> None:
    root = fx.make_nfsroot(tmp_path / "root", fx.INITRAMFS_TOOLS_NFS)
    boot = build_boot(_plan(root, tmp_path, "shared-rw"), loaders=fake_loaders(tmp_path / "l"))
    assert _line(boot) == (f"APPEND root=/dev/nfs nfsroot=10.99.0.1:{root.resolve()},vers=3,"
                           "nolock ip=dhcp rw setkmap=us")


@pytest.mark.parametrize("names,expected", [
    (OVERLAYROOT, ("root=/dev/nfs nfsroot=10.99.0.1:{p},vers=3,nolock ip=dhcp ro "
                   "overlayroot=tmpfs")),
    (DRACUT_OVERLAY, ("root=nfs:10.99.0.1:{p}:vers=3,nolock ro ip=dhcp "
                      "rd.live.overlay.overlayfs=1")),
])
def test_ro_overlay_line_and_read_only_export(tmp_path: Path, names, expected) -> None:
    root = fx.make_nfsroot(tmp_path / "root", names, kver="5.14.0-362.el9.x86_64")
    plan = _plan(root, tmp_path, "ro-overlay")
    boot = build_boot(plan, loaders=fake_loaders(tmp_path / "l"))
    assert _line(boot) == "APPEND " + expected.format(p=root.resolve()) + " setkmap=us"
    assert not any("root_mode" in w for w in boot.warnings), boot.warnings
    [e] = nfs_exports(plan)
    assert (e.path, e.rw, e.squash.value) == (root.resolve(), False, "no_root_squash")


def test_ro_overlay_forces_a_rw_export_read_only(tmp_path: Path) -> None:
    root = fx.make_nfsroot(tmp_path / "root", OVERLAYROOT)
    plan = _plan(root, tmp_path, "ro-overlay",
                 exports=[{"path": str(root), "rw": True, "squash": "root_squash"}])
    [e] = nfs_exports(plan)
    assert (e.rw, e.squash.value) == (False, "root_squash")
    boot = build_boot(plan, loaders=fake_loaders(tmp_path / "l"))
    assert any("says rw, and nfs.root_mode ro-overlay serves it read-only" in w
               for w in boot.warnings), boot.warnings


@pytest.mark.parametrize("names,says", [
    (fx.INITRAMFS_TOOLS_NFS, "apt-get install overlayroot"),
    (fx.DRACUT_NFS, "dracut --add overlayfs --force"),
    (DRACUT_OVERLAY_OLD, "hooks only the mount stage"),
])
def test_ro_overlay_says_when_the_initramfs_cannot(tmp_path: Path, names, says) -> None:
    root = fx.make_nfsroot(tmp_path / "root", names)
    boot = build_boot(_plan(root, tmp_path, "ro-overlay"), loaders=fake_loaders(tmp_path / "l"))
    notes = [w for w in boot.warnings if "nfs.root_mode" in w]
    assert notes and says in notes[0], boot.warnings


def test_per_client_needs_clients(tmp_path: Path) -> None:
    root = fx.make_nfsroot(tmp_path / "root", OVERLAYROOT)
    with pytest.raises(PlanError, match="nfs.clients"):
        make_plan(root, "nfs", nfs={"enabled": True, "root_mode": "per-client"})
    plan = make_plan(root, "nfs", nfs={"enabled": True, "root_mode": "per-client"},
                     dhcp={"reservations": [{"mac": "52-54-00-00-00-0A"}]})
    assert plan.nfs_clients == [A]
    plan = make_plan(root, "nfs", nfs={"enabled": True, "root_mode": "per-client",
                                       "clients": ["52:54:00:00:00:0B"]})
    assert plan.nfs_clients == [B]


def test_per_client_menus_exports_and_copies(tmp_path: Path) -> None:
    root = fx.make_nfsroot(tmp_path / "root", OVERLAYROOT)
    fx.put(root, "etc/hostname", data=b"template\n")
    os.symlink("hostname", root / "etc/link")
    plan = _plan(root, tmp_path, "per-client", clients=[A, B])
    boot = build_boot(plan, loaders=fake_loaders(tmp_path / "l"))
    ra, rb = client_root(plan, A), client_root(plan, B)
    assert ra == (tmp_path / "state/roots/52-54-00-00-00-0a").resolve()
    # unlisted MACs: the shared tree, read-only, RAM overlay
    assert "ro overlayroot=tmpfs" in _line(boot)
    for prefix in ("", "efi64/"):
        line = _line(boot, f"{prefix}pxelinux.cfg/01-52-54-00-00-00-0a")
        assert f"nfsroot=10.99.0.1:{ra},vers=3,nolock ip=dhcp rw setkmap=us" in line
        assert "overlayroot" not in line
        assert str(rb) in _line(boot, f"{prefix}pxelinux.cfg/01-52-54-00-00-00-0b")
    script = boot.menus["boot.ipxe"]
    assert f"iseq ${{netX/mac}} {A} && set pxw-args root=/dev/nfs nfsroot=10.99.0.1:{ra}," \
        in script
    assert "initrd=initrd.img-6.1.0-13-amd64 ${pxw-args} BOOTIF=" in script
    assert script.count(":nfsroot-6-1-0-13-amd64\n") == 1
    exports = nfs_exports(plan)
    assert [(e.path, e.rw) for e in exports] == [(root.resolve(), False), (ra, True), (rb, True)]
    said: list[str] = []
    made = prepare_client_roots(plan, said.append)
    assert len(made) == 2 and A in made[0]
    assert len(said) == 2 and "copying" in said[0]
    assert (ra / "etc/hostname").read_text() == "template\n"
    assert os.readlink(ra / "etc/link") == "hostname"
    (ra / "etc/hostname").write_text("a\n")
    assert prepare_client_roots(plan) == []  # made once, never overwritten
    assert (ra / "etc/hostname").read_text() == "a\n"
    assert not list((tmp_path / "state/roots").glob("*.partial"))


def test_export_lists_client_roots_and_how_to_make_them(tmp_path: Path) -> None:
    from pxewizard.commands.export import render_nfs_exports

    root = fx.make_nfsroot(tmp_path / "root", OVERLAYROOT)
    plan = _plan(root, tmp_path, "per-client", clients=[A])
    text = render_nfs_exports(plan, nfs_exports(plan))
    ra = client_root(plan, A)
    assert f"{root.resolve()} 10.99.0.0/24(ro,no_subtree_check,insecure,no_root_squash)" in text
    assert f"{ra} 10.99.0.0/24(rw,no_subtree_check,insecure,no_root_squash)" in text
    assert f"# {ra} does not exist yet: cp -a --reflink=auto {root}" in text


def test_per_client_roots_keep_the_capabilities_of_rw_exports(tmp_path: Path) -> None:
    from pxewizard.serve import kept_capabilities

    root = fx.make_nfsroot(tmp_path / "root", OVERLAYROOT)
    keep = kept_capabilities(_plan(root, tmp_path, "per-client", clients=[A]))
    assert {"CAP_SETUID", "CAP_DAC_OVERRIDE", "CAP_CHOWN"} <= set(keep)
    keep = kept_capabilities(_plan(root, tmp_path, "ro-overlay"))
    assert "CAP_SETUID" not in keep and "CAP_DAC_OVERRIDE" not in keep
