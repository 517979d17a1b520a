"""Checks of an NFS root tree before any client boots it (``pxewizard doctor``).

A root copied from an installed machine usually hangs at boot for reasons nobody sees from
the network. Each check reads files of the tree only (nothing is run, nothing written) and
names the file, the line and the fix:

- ``etc/fstab`` lines mounting a local disk (``UUID=``, ``LABEL=``, ``PARTUUID=``,
  ``/dev/sd*``, ``/dev/nvme*``, ``/dev/vd*``...) without ``nofail``: a diskless client has
  no such disk and systemd waits 90 s for it, then drops to the emergency shell;
- the tree's network manager managing the interface its root lives on: NetworkManager
  (enabled, the interface not in ``unmanaged-devices``), ifupdown (``auto``/``allow-hotplug``
  + ``iface X inet dhcp|static``), systemd-networkd (a ``.network`` file matching it without
  ``KeepConfiguration=``): each takes the address down or renews it and cuts the root away;
- a fixed ``etc/hostname``: every client of the tree gets the same name;
- SELinux ``enforcing`` with no ``selinux=0``/``enforcing=0`` on the command line (NFSv3
  carries no labels), and ``/.autorelabel`` (a relabel of the whole NFS root at boot).

Missing NFS support in the tree's initramfs is found when the medium is read
(``initramfs.nfs_support``) and reported with the boot tree.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path

LOCAL_DISK = re.compile(r"^(UUID=|LABEL=|PARTUUID=|PARTLABEL=|/dev/(sd|nvme|vd|hd|xvd|mmcblk)"
                        r"|/dev/disk/)")
"""fstab specs that name a disk of the machine the tree was copied from."""
_VIRTUAL = {"proc", "sysfs", "tmpfs", "devpts", "devtmpfs", "nfs", "nfs4", "cifs", "none"}
_WANTS = ("etc/systemd/system/multi-user.target.wants",
          "etc/systemd/system/network-online.target.wants",
          "etc/systemd/system/sockets.target.wants",
          "etc/systemd/system/sysinit.target.wants")


@dataclass(frozen=True)
class RootProblem:
    """One pitfall of a root tree, in words."""

    rule: str
    """Short id: fstab-local-disk, netmgr-*, hostname-fixed, selinux-*."""
    title: str
    cause: str
    fix: str
    severity: str = "warning"
    """``warning`` or ``error`` (the boot hangs or the root is lost)."""


def _read(root: Path, rel: str) -> str:
    p = root / rel
    try:
        if p.is_symlink() or not p.is_file():
            return ""
        return p.read_text("utf-8", "replace")
    except OSError:
        return ""


def _lines(text: str) -> list[tuple[int, str]]:
    return [(n, ln.strip()) for n, ln in enumerate(text.splitlines(), 1)
            if ln.strip() and not ln.strip().startswith("#")]


def _enabled(root: Path, *units: str) -> bool:
    # lexists: a unit link points at /lib/systemd/..., which must not be looked up on the host
    return any(os.path.lexists(root / d / u) for d in _WANTS for u in units)


def check_fstab(root: Path) -> list[RootProblem]:
    out = []
    for n, line in _lines(_read(root, "etc/fstab")):
        f = line.split()
        if len(f) < 3 or not LOCAL_DISK.match(f[0]) or f[2] in _VIRTUAL:
            continue
        opts = f[3].split(",") if len(f) > 3 else []
        if "nofail" in opts or "noauto" in opts:
            continue
        where = "swap" if f[2] == "swap" else f[1]
        if where == "/":
            fix = (f"delete line {n} of {root}/etc/fstab: the root is the NFS export, mounted "
                   "by the initramfs")
        else:
            fix = (f"add nofail to its options (line {n} of {root}/etc/fstab: "
                   f"{f[0]} {f[1]} {f[2]} {','.join(opts + ['nofail']) or 'nofail'} ...), "
                   "or comment the line out")
        out.append(RootProblem(
            "fstab-local-disk", f"etc/fstab line {n} mounts a local disk ({f[0]} on {where}) "
                                "without nofail",
            f"a diskless client has no {f[0]}: systemd waits 90 s for it and stops in the "
            "emergency shell", fix, "error"))
    return out


TYPICAL_NICS = ("eth0", "enp1s0", "ens3", "eno1")
"""Names a boot interface has when its name in the tree is not given."""


def _nm_unmanaged(root: Path, iface: str | None) -> bool:
    """NetworkManager's unmanaged-devices covers ``iface`` (None: every typical NIC name;
    a ``mac:`` spec counts, as only the admin knows the clients' MACs)."""
    covered: set[str] = set()
    wanted = {iface} if iface else set(TYPICAL_NICS)
    confs = [root / "etc/NetworkManager/NetworkManager.conf",
             *sorted((root / "etc/NetworkManager/conf.d").glob("*.conf"))]
    for p in confs:
        for _n, line in _lines(_read(root, str(p.relative_to(root)))):
            k, _, v = line.partition("=")
            if k.strip() != "unmanaged-devices":
                continue
            for spec in v.split(";"):
                spec = spec.strip()
                if spec in ("*", "interface-name:*") or spec.startswith("mac:"):
                    return True
                if spec.startswith("interface-name:"):
                    pat = spec.split(":", 1)[1].lstrip("=~")
                    covered |= {n for n in wanted if fnmatch.fnmatch(n, pat)}
    return covered == wanted


def check_network_manager(root: Path, iface: str | None = None) -> list[RootProblem]:
    """``iface``: the client's boot interface name in the tree (None: any interface)."""
    out = []
    which = f"the boot interface {iface}" if iface else "the boot interface"
    cut = ("cuts the NFS root away from under the running system: the boot hangs at the "
           "first file it reads after that")
    if os.path.lexists(root / "usr/sbin/NetworkManager") and _enabled(
            root, "NetworkManager.service") and not _nm_unmanaged(root, iface):
        spec = f"interface-name:{iface}" if iface else "interface-name:eth*;interface-name:en*"
        out.append(RootProblem(
            "netmgr-networkmanager", f"NetworkManager is enabled in the tree and manages {which}",
            f"at boot it takes over the interface the initramfs configured and re-runs DHCP "
            f"on it (or takes it down), which {cut}",
            f"write {root}/etc/NetworkManager/conf.d/90-nfsroot.conf with [keyfile] "
            f"unmanaged-devices={spec} (or disable NetworkManager in the tree: rm "
            f"{root}/etc/systemd/system/multi-user.target.wants/NetworkManager.service)",
            "error"))
    ifaces = [_read(root, "etc/network/interfaces")] + [
        _read(root, str(p.relative_to(root)))
        for p in sorted((root / "etc/network/interfaces.d").glob("*"))]
    auto: set[str] = set()
    stanzas: list[tuple[str, str]] = []
    for text in ifaces:
        for _n, line in _lines(text):
            w = line.split()
            if w[0] in ("auto", "allow-hotplug") or w[0].startswith("allow-"):
                auto.update(w[1:])
            elif w[0] == "iface" and len(w) >= 4 and w[3] in ("dhcp", "static"):
                stanzas.append((w[1], w[3]))
    for name, method in stanzas:
        if name == "lo" or name not in auto or (iface and not fnmatch.fnmatch(iface, name)):
            continue
        out.append(RootProblem(
            "netmgr-ifupdown", f"ifupdown brings up {name} with inet {method} "
                               f"(etc/network/interfaces)",
            f"networking.service configures {name} again at boot (a new DHCP lease, or "
            f"ifdown at shutdown), which {cut}",
            f"change it to `iface {name} inet manual` in {root}/etc/network/interfaces "
            "(the initramfs has already configured it)", "error"))
    if _enabled(root, "systemd-networkd.service", "systemd-networkd.socket"):
        for p in sorted((root / "etc/systemd/network").glob("*.network")):
            text = _read(root, str(p.relative_to(root)))
            names = []
            keep = False
            for _n, line in _lines(text):
                k, _, v = line.partition("=")
                k = k.strip()
                if k == "Name":
                    names += v.split()
                elif (k == "KeepConfiguration" and v.strip() in (
                        "yes", "true", "dynamic", "dhcp")) or (
                        k == "CriticalConnection" and v.strip() in ("yes", "true")):
                    keep = True
            matches = not names or any(
                fnmatch.fnmatch(iface, n) if iface else n not in ("lo",) for n in names)
            if matches and not keep:
                shown = " ".join(names) or "every interface"
                out.append(RootProblem(
                    "netmgr-networkd", f"systemd-networkd manages {shown} "
                                       f"({p.relative_to(root)})",
                    f"networkd re-runs DHCP on the interface and drops the initramfs' address "
                    f"when the lease changes or at shutdown, which {cut}",
                    f"add KeepConfiguration=yes to the [Network] section of {p}", "error"))
    return out


def check_hostname(root: Path) -> list[RootProblem]:
    name = _read(root, "etc/hostname").strip()
    if not name or name in ("localhost", "localhost.localdomain", "(none)"):
        return []
    return [RootProblem(
        "hostname-fixed", f"etc/hostname is fixed to {name!r}",
        f"every client booting this tree is called {name!r} (the DHCP host name is ignored "
        "when etc/hostname is set), so logs, DHCP leases and mDNS all mix them up",
        f"empty it (truncate -s 0 {root}/etc/hostname) so each client takes the name DHCP "
        "gives it (dhcp.reservations hostname)")]


def check_selinux(root: Path, cmdline: str = "") -> list[RootProblem]:
    out = []
    words = cmdline.split()
    off = any(w in ("selinux=0", "enforcing=0") for w in words)
    mode = ""
    for _n, line in _lines(_read(root, "etc/selinux/config")):
        k, _, v = line.partition("=")
        if k.strip() == "SELINUX":
            mode = v.strip().strip('"').lower()
    if mode == "enforcing" and not off:
        out.append(RootProblem(
            "selinux-enforcing", "SELinux is enforcing in the tree (etc/selinux/config) and the "
                                 "command line has no selinux=0",
            "NFSv3 carries no SELinux labels: every file of the root is nfs_t, and the "
            "enforcing policy denies services their own files, so the boot fails",
            "add selinux=0 (or enforcing=0) to boot.extra_cmdline, or set SELINUX=permissive "
            f"in {root}/etc/selinux/config", "error"))
    if os.path.lexists(root / ".autorelabel") and mode in ("enforcing", "permissive") and not \
            any(w == "selinux=0" for w in words):
        out.append(RootProblem(
            "selinux-relabel", "the tree asks for an SELinux relabel at boot (/.autorelabel)",
            "the first client relabels the whole NFS root (hours over the network, and "
            "NFSv3 cannot store the labels), then reboots",
            f"rm {root}/.autorelabel, and add selinux=0 to boot.extra_cmdline"))
    return out


def check_root_tree(root: Path, *, cmdline: str = "",
                    boot_interface: str | None = None) -> list[RootProblem]:
    """Every pitfall of the root tree at ``root`` ([] when none is found)."""
    root = Path(root)
    return (check_fstab(root) + check_network_manager(root, boot_interface)
            + check_hostname(root) + check_selinux(root, cmdline))
