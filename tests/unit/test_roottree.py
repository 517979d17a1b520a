"""Issue 23: doctor's checks of an NFS root tree before anyone boots it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pxewizard.boot.roottree import check_root_tree
from pxewizard.insight.diagnose import Severity
from pxewizard.commands.doctor import run_doctor
from pxewizard.plan import plan_from_dict
from tests.data.boot import fixtures as fx

pytestmark = pytest.mark.unit

WANTS = "etc/systemd/system/multi-user.target.wants"


def clean_tree(root: Path, names: list[str] | None = None) -> Path:
    """A root tree as a careful admin leaves it: every pitfall below avoided."""
    fx.make_nfsroot(root, names or fx.INITRAMFS_TOOLS_NFS)
    fx.put(root, "etc/fstab", data=(
        b"# <file system> <mount point> <type> <options> <dump> <pass>\n"
        b"proc /proc proc defaults 0 0\n"
        b"tmpfs /tmp tmpfs defaults 0 0\n"
        b"UUID=0b1c-77 /data ext4 defaults,nofail 0 2\n"
        b"LABEL=scratch /scratch xfs noauto 0 0\n"
        b"10.99.0.1:/srv/home /home nfs vers=3,nolock 0 0\n"))
    fx.put(root, "etc/hostname", data=b"")
    fx.put(root, "etc/network/interfaces", data=(
        b"auto lo\niface lo inet loopback\nallow-hotplug eth0\niface eth0 inet manual\n"))
    fx.put(root, "usr/sbin/NetworkManager", 10)
    (root / WANTS).mkdir(parents=True, exist_ok=True)
    os.symlink("/lib/systemd/system/NetworkManager.service", root / WANTS /
               "NetworkManager.service")
    fx.put(root, "etc/NetworkManager/conf.d/90-nfsroot.conf",
           data=b"[keyfile]\nunmanaged-devices=interface-name:eth*;interface-name:en*\n")
    os.symlink("/lib/systemd/system/systemd-networkd.service",
               root / WANTS / "systemd-networkd.service")
    fx.put(root, "etc/systemd/network/20-wired.network",
           data=b"[Match]\nName=en*\n\n[Network]\nDHCP=yes\nKeepConfiguration=yes\n")
    fx.put(root, "etc/selinux/config", data=b"SELINUX=disabled\nSELINUXTYPE=targeted\n")
    return root


def rules(root: Path, **kw: object) -> list[str]:
    return [p.rule for p in check_root_tree(root, **kw)]


def test_a_clean_tree_has_nothing(tmp_path: Path) -> None:
    assert check_root_tree(clean_tree(tmp_path / "r")) == []


def test_fstab_local_disks_without_nofail(tmp_path: Path) -> None:
    root = clean_tree(tmp_path / "r")
    with open(root / "etc/fstab", "a") as fh:
        fh.write("UUID=3f2a-11 / ext4 errors=remount-ro 0 1\n"
                 "/dev/nvme0n1p3 none swap sw 0 0\n"
                 "/dev/sdb1 /srv ext4 defaults 0 2\n"
                 "/dev/vda2 /var xfs defaults 0 0\n")
    found = check_root_tree(root)
    assert [p.rule for p in found] == ["fstab-local-disk"] * 4
    assert "UUID=3f2a-11 on /" in found[0].title and "delete line 7" in found[0].fix
    assert "on swap" in found[1].title
    assert "/dev/sdb1 /srv ext4 defaults,nofail" in found[2].fix
    assert all(p.severity == "error" for p in found)


def test_network_manager_managing_the_boot_interface(tmp_path: Path) -> None:
    root = clean_tree(tmp_path / "r")
    (root / "etc/NetworkManager/conf.d/90-nfsroot.conf").unlink()
    [p] = check_root_tree(root)
    assert p.rule == "netmgr-networkmanager"
    assert "unmanaged-devices=interface-name:" in p.fix
    # unmanaged for another interface only: still managing ours
    fx.put(root, "etc/NetworkManager/NetworkManager.conf",
           data=b"[keyfile]\nunmanaged-devices=interface-name:wlan0\n")
    assert rules(root, boot_interface="enp1s0") == ["netmgr-networkmanager"]
    assert rules(root, boot_interface="wlan0") == []
    # installed but not enabled: nothing
    (root / WANTS / "NetworkManager.service").unlink()
    assert rules(root) == []


def test_ifupdown_dhcp_on_the_boot_interface(tmp_path: Path) -> None:
    root = clean_tree(tmp_path / "r")
    fx.put(root, "etc/network/interfaces.d/eth0",
           data=b"auto eth0\niface eth0 inet dhcp\n")
    [p] = check_root_tree(root)
    assert p.rule == "netmgr-ifupdown" and "iface eth0 inet manual" in p.fix
    assert rules(root, boot_interface="enp1s0") == []


def test_networkd_without_keep_configuration(tmp_path: Path) -> None:
    root = clean_tree(tmp_path / "r")
    fx.put(root, "etc/systemd/network/20-wired.network",
           data=b"[Match]\nName=en*\n\n[Network]\nDHCP=yes\n")
    [p] = check_root_tree(root)
    assert p.rule == "netmgr-networkd" and "KeepConfiguration=yes" in p.fix
    assert rules(root, boot_interface="eth0") == []
    (root / WANTS / "systemd-networkd.service").unlink()
    assert rules(root) == []


def test_fixed_hostname(tmp_path: Path) -> None:
    root = clean_tree(tmp_path / "r")
    fx.put(root, "etc/hostname", data=b"ws-template\n")
    [p] = check_root_tree(root)
    assert p.rule == "hostname-fixed" and "'ws-template'" in p.title
    assert "truncate -s 0" in p.fix
    fx.put(root, "etc/hostname", data=b"localhost\n")
    assert rules(root) == []


def test_selinux_enforcing_and_relabel(tmp_path: Path) -> None:
    root = clean_tree(tmp_path / "r")
    fx.put(root, "etc/selinux/config", data=b"SELINUX=enforcing\nSELINUXTYPE=targeted\n")
    [p] = check_root_tree(root)
    assert p.rule == "selinux-enforcing" and "selinux=0" in p.fix
    assert rules(root, cmdline="quiet selinux=0") == []
    assert rules(root, cmdline="enforcing=0") == []
    fx.put(root, ".autorelabel", data=b"")
    assert rules(root) == ["selinux-enforcing", "selinux-relabel"]
    assert rules(root, cmdline="selinux=0") == []


def test_host_files_are_never_read_through_links(tmp_path: Path) -> None:
    root = clean_tree(tmp_path / "r")
    (root / "etc/hostname").unlink()
    os.symlink("/etc/hostname", root / "etc/hostname")  # the host's own name
    assert rules(root) == []


def _plan(tmp_path: Path, root: Path, extra: str = "") -> object:
    return plan_from_dict({
        "interface": "lo", "server_ip": "127.0.0.1", "prefix": 8,
        "state_dir": str(tmp_path / "state"), "dhcp": {"mode": "proxy"},
        "nfs": {"enabled": True},
        "boot": {"media": str(root), "transport": "nfs", "extra_cmdline": extra}})


def test_doctor_names_each_problem_and_nothing_on_a_clean_tree(tmp_path: Path) -> None:
    root = clean_tree(tmp_path / "r")
    rep = run_doctor(_plan(tmp_path, root), probe=False, checksums=False)
    tree = [f for f in rep.checks if f.rule.startswith(("fstab", "netmgr", "hostname",
                                                        "selinux", "root-tree"))]
    assert [(f.rule, f.severity) for f in tree] == [("root-tree", Severity.ok)]
    with open(root / "etc/fstab", "a") as fh:
        fh.write("UUID=3f2a-11 / ext4 errors=remount-ro 0 1\n")
    fx.put(root, "etc/hostname", data=b"ws-template\n")
    fx.put(root, "etc/selinux/config", data=b"SELINUX=enforcing\n")
    (root / "etc/NetworkManager/conf.d/90-nfsroot.conf").unlink()
    rep = run_doctor(_plan(tmp_path, root), probe=False, checksums=False)
    found = {f.rule: f for f in rep.checks}
    for rule in ("fstab-local-disk", "netmgr-networkmanager", "hostname-fixed",
                 "selinux-enforcing"):
        assert rule in found and found[rule].fix, rule
    assert found["fstab-local-disk"].severity is Severity.error
    assert rep.errors >= 3


def test_doctor_keeps_the_initramfs_nfs_check(tmp_path: Path) -> None:
    root = clean_tree(tmp_path / "r", fx.INITRAMFS_TOOLS_LOCAL)
    rep = run_doctor(_plan(tmp_path, root), probe=False, checksums=False)
    assert any("scripts/nfs" in f.cause and f.rule == "boot-tree" for f in rep.checks), \
        [f.cause for f in rep.checks]
