"""Issue 23: two diskless clients, one root tree, in each nfs.root_mode that keeps them apart.

SeaBIOS + QEMU's iPXE ROM boots pxelinux from ``pxewizard serve``; the boot medium is the
root tree itself (profile ``nfsroot``: its own ``boot/vmlinuz-*`` and ``boot/initrd.img-*``),
so each client gets the command line pxewizard writes for that tree and mode. Two clients
(two MACs) boot one after the other (one QEMU at a time: TCG on a shared 2-core machine);
each writes ``/data/client-<its MAC>``; the second must not see the first one's file.

- ``ro-overlay``: both get ``root=/dev/nfs nfsroot=IP:TREE,vers=3,nolock ip=dhcp ro
  overlayroot=tmpfs``; the tree is exported read-only and must be byte for byte unchanged
  afterwards; each client's root is an overlay whose upper layer is client RAM.
- ``per-client``: each MAC is listed in ``nfs.clients``; pxewizard copies the tree to
  ``<state_dir>/roots/<mac>`` at start and writes a pxelinux ``01-<mac>`` file whose line
  mounts that copy read-write (with ``loader = "ipxe"``: boot.ipxe's ``iseq ${netX/mac}``
  test picks the line); each copy holds exactly its own client's file, with the checksum
  the client printed, and the tree is unchanged.

The guest initramfs (``roots_guest.py``) implements initramfs-tools' NFS root and Debian's
``overlayroot`` init-bottom steps with busybox (the real initramfs-tools/overlayroot are too
heavy to build here); it carries the real scripts' file names, so pxewizard recognises the
tree as initramfs-tools with overlayroot, exactly as a Debian tree with the overlayroot
package. It adds explicit NFS ports (``pxwtest.nfsextra=``) where klibc's nfsmount would ask
the portmapper.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import Any

import pytest

from pxewizard.plan import plan_from_dict
from pxewizard.proto.nfs3 import nfs_mount_options
from tests.support.serving import write_plan

from .harness import POOL, PREFIX, SERVER_IP, Boot, boot, lab_network, serve_ours
from .roots_guest import build_tree

MACS = ("52:54:00:23:00:0a", "52:54:00:23:00:0b")


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = "dir"
    return out


def _plan(work: Path, tree: Path, mode: str, cmdline: str,
          loader: str = "pxelinux") -> dict[str, Any]:
    nfs: dict[str, Any] = {"enabled": True, "root_mode": mode}
    if mode == "per-client":
        nfs["clients"] = list(MACS)
    plan: dict[str, Any] = {
        "interface": "pxe0", "server_ip": SERVER_IP, "prefix": PREFIX,
        "state_dir": str(work / "state"),
        "dhcp": {"mode": "full", "range_start": POOL[0], "range_end": POOL[1],
                 # QEMU's BIOS ROM is iPXE: without a script it runs pxelinux like any PXE
                 # ROM; with one it runs boot.ipxe (the ${netX/mac} test)
                 "boot_files": {"bios": "pxelinux.0", "efi_x64": "efi64/syslinux.efi",
                                "ipxe_script": ""} if loader == "pxelinux" else
                 {"bios": "undionly.kpxe", "efi_x64": "ipxe.efi"}},
        "http": {"port": 80},
        "nfs": nfs,
        "boot": {"media": str(tree), "transport": "nfs", "loader": loader, "timeout": 1,
                 "extra_cmdline": cmdline},
    }
    plan_from_dict(plan)
    return plan


def _fields(b: Boot) -> dict[str, str]:
    line = b.result.matched or ""
    out = {}
    for key in ("name", "others", "root"):
        if f"{key}=" in line:
            rest = line.split(f"{key}=", 1)[1]
            out[key] = rest.split("]")[0] + "]" if rest.startswith("[") else rest.split()[0]
    return out


@pytest.mark.timeout(900)
@pytest.mark.parametrize("mode,loader", [("ro-overlay", "pxelinux"),
                                         ("per-client", "pxelinux"), ("per-client", "ipxe")])
def test_two_clients_one_tree(guest, timing, tmp_path: Path, mode: str, loader: str) -> None:
    tree, _version = build_tree(tmp_path / "tree")
    tree = tree.resolve()
    token = secrets.token_hex(8)
    extra = nfs_mount_options(SERVER_IP).removeprefix("vers=3,nolock,")
    cmdline = (f"console=ttyS0,115200 quiet panic=1 pxwtest.nfsextra={extra} "
               f"pxwtest.token={token}")
    plan_path = write_plan(tmp_path, _plan(tmp_path, tree, mode, cmdline, loader))
    before = _snapshot(tree)

    boots: list[Boot] = []
    with lab_network() as net, serve_ours(net.server, plan_path) as served:
        for i, mac in enumerate(MACS):
            b = boot(net, f"diskless_{mode}_{loader}_{i}", expected_sha="(the written file's)",
                     mac=mac)
            timing.append((b.case, b.result.seconds, "ok" if b.printed_sha else "FAILED"))
            assert b.printed_sha is not None, b.explain()
            boots.append(b)
        events = served.events()
        served.drain()

    names = [f"client-{m.replace(':', '-')}" for m in MACS]
    for b, name in zip(boots, names):
        f = _fields(b)
        assert f.get("name") == name, (f, b.explain())
        # neither sees another client's file: the first boots into an empty /data, the
        # second does not see what the first wrote
        assert f.get("others") == "[]", (f, b.explain())
    assert _snapshot(tree) == before, "the shared tree changed on the server"
    assert any(e.get("kind") == "nfs_activity" and e.get("read", 0) > 0 for e in events), \
        "no per-client NFS activity was published"

    menu = ("boot.ipxe" if loader == "ipxe" else "pxelinux.cfg/default"
            if mode == "ro-overlay" else "pxelinux.cfg/01-52-54-00-23-00-0")
    assert any(e.get("kind") == "transfer_done" and menu in str(e.get("path", ""))
               for e in events), f"no client fetched {menu}"
    if mode == "ro-overlay":
        for b in boots:
            f = _fields(b)
            assert f["root"] == "overlayroot,overlay,rw", (f, b.explain())
            assert "pxwtest: overlayroot: tmpfs over the NFS root" in "\n".join(b.result.lines)
        assert not (tmp_path / "state" / "roots").exists()
    else:
        roots = tmp_path / "state" / "roots"
        for b, mac, name in zip(boots, MACS, names):
            own = (roots / mac.replace(":", "-")).resolve()
            assert _fields(b)["root"] == f"{SERVER_IP}:{own},nfs,rw", (_fields(b), b.explain())
            data = sorted(p.name for p in (own / "data").iterdir())
            assert data == [name], (own, data)
            body = (own / "data" / name).read_bytes()
            assert body == f"pxwtest.token={token} {name}\n".encode()
            assert hashlib.sha256(body).hexdigest() == b.printed_sha
