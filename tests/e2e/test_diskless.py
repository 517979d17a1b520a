"""Issue 12: a diskless client runs from a read-write NFS root on our NFSv3 server.

SeaBIOS + QEMU's iPXE ROM boots pxelinux from ``pxewizard serve``; the kernel
and a stage-1 initramfs (``diskless_guest.py``) mount a busybox root tree from
our NFS export (``rw = true``, ``squash = "no_root_squash"``) with the kernel
NFS client, ``switch_root`` into it, and stage 2 (PID 1 on the NFS root)
writes ``/data/written.bin``, renames it into place, reads it back on a fresh
mount and prints its sha256. The test then reads the file on the server's
own disk: there, with the guest's token, the printed checksum, root's
ownership (no_root_squash) and the mode the guest set.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from pathlib import Path
from typing import Any

import pytest

from pxewizard.plan import plan_from_dict
from pxewizard.proto.nfs3 import nfs_mount_options
from tests.support.serving import write_plan

from .diskless_guest import WRITTEN, build_initrd, build_root
from .harness import POOL, PREFIX, SERVER_IP, Boot, boot, lab_network, serve_ours


def _plan(work: Path, media: Path, rootfs: Path, cmdline: str) -> dict[str, Any]:
    plan: dict[str, Any] = {
        "interface": "pxe0", "server_ip": SERVER_IP, "prefix": PREFIX,
        "state_dir": str(work / "state"),
        "dhcp": {"mode": "full", "range_start": POOL[0], "range_end": POOL[1],
                 # QEMU's BIOS ROM is iPXE: without a script it runs pxelinux like any PXE ROM
                 "boot_files": {"bios": "pxelinux.0", "efi_x64": "efi64/syslinux.efi",
                                "ipxe_script": ""}},
        "http": {"port": 80},
        "nfs": {"enabled": True,
                "exports": [{"path": str(rootfs), "rw": True, "squash": "no_root_squash"}]},
        "boot": {"media": str(media), "loader": "pxelinux", "timeout": 1,
                 "extra_cmdline": cmdline},
    }
    plan_from_dict(plan)  # fail here, with the field named, rather than in serve
    return plan


@pytest.mark.timeout(420)
def test_diskless_nfs_root_rw(guest, timing, tmp_path: Path) -> None:
    images = build_initrd(tmp_path / "media" / "boot")
    media = images.kernel.parent.parent
    rootfs = build_root(tmp_path / "rootfs").resolve()
    token = secrets.token_hex(8)
    cmdline = (f"console=ttyS0,115200 quiet panic=1 pxwtest.nfsroot={SERVER_IP}:{rootfs} "
               f"pxwtest.nfsopts={nfs_mount_options(SERVER_IP)} pxwtest.token={token}")
    plan_path = write_plan(tmp_path, _plan(tmp_path, media, rootfs, cmdline))

    with lab_network() as net, serve_ours(net.server, plan_path) as served:
        b: Boot = boot(net, "diskless_nfs_rw", expected_sha="(the written file's)")
        events = served.events()
        served.drain()
    timing.append((b.case, b.result.seconds, "ok" if b.printed_sha else "FAILED"))
    assert b.printed_sha is not None, b.explain()
    # Stage 2 ran as PID 1 on the NFS root, mounted read-write ("SERVER:/path nfs rw,...").
    stage2 = next((ln for ln in b.result.lines if "pxwtest: stage 2 on" in ln), "")
    assert f"{SERVER_IP}:{rootfs} nfs rw," in stage2, (stage2, b.explain())

    written = rootfs / WRITTEN
    assert written.is_file(), (f"the guest printed a checksum but the server's disk has no "
                               f"{WRITTEN}:\n{b.explain()}")
    data = written.read_bytes()
    assert data.startswith(f"pxwtest.token={token}\n".encode()), data[:80]
    assert len(data) == len(f"pxwtest.token={token}\n") + 262144
    assert hashlib.sha256(data).hexdigest() == b.printed_sha, (
        "the server's copy differs from what the guest read back")
    st = os.stat(written)
    assert (st.st_uid, st.st_gid) == (0, 0), f"no_root_squash: owner should be root, {st}"
    assert stat.S_IMODE(st.st_mode) == 0o640, oct(st.st_mode)
    assert not (rootfs / "data" / "written.tmp").exists(), "the rename left the old name"
    assert any(e.get("service") == "mountd" and e.get("kind") == "session_opened"
               for e in events), "no MOUNT session in our server's events"
