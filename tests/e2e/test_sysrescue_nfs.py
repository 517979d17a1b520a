"""Issue 25: SystemRescue's NFS line, read by the code that reads it on the client.

SeaBIOS + QEMU's iPXE ROM boots pxelinux from ``pxewizard serve``; the medium is
SystemRescue-shaped (``archiso_guest.py``), the Plan has the portmapper off, NFS
moved to port 2050 and MOUNT on 627 (klibc nfsmount's fallback). The guest's
initramfs runs archiso's NFS hook with Debian's klibc ``nfsmount``, first with the
option pxewizard wrote before issue 25 (``port=2050,mountport=627``: nfsmount
aborts on ``mountport``, SystemRescue would drop to its emergency shell), then with
the line pxewizard writes now (``archiso_nfs_opt=port=2050``), which mounts the
medium and reads ``airootfs.sfs`` back.

Without a portmapper nfsmount asks port 111 for the MOUNT port 50 times (~190 s)
before it tries 627: that wait is part of this one boot, and the reason the Plan
notes say to keep the portmapper on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pxewizard.plan import plan_from_dict
from tests.support.serving import write_plan
from tests.support.tools import require, require_root

from .archiso_guest import NFSMOUNT, build_medium
from .harness import POOL, PREFIX, SERVER_IP, Boot, boot, lab_network, serve_ours, sha256_file

NFS_PORT = 2050
MOUNT_PORT = 627
OLD_OPT = f"port={NFS_PORT},mountport={MOUNT_PORT}"
"""What pxewizard wrote for this Plan before issue 25."""


def _plan(work: Path, media: Path) -> dict[str, Any]:
    plan: dict[str, Any] = {
        "interface": "pxe0", "server_ip": SERVER_IP, "prefix": PREFIX,
        "state_dir": str(work / "state"),
        "dhcp": {"mode": "full", "range_start": POOL[0], "range_end": POOL[1],
                 # QEMU's BIOS ROM is iPXE: without a script it runs pxelinux like any PXE ROM
                 "boot_files": {"bios": "pxelinux.0", "efi_x64": "efi64/syslinux.efi",
                                "ipxe_script": ""}},
        "http": {"port": 80},
        "nfs": {"enabled": True, "portmap": False, "nfs_port": NFS_PORT,
                "mount_port": MOUNT_PORT},
        "boot": {"media": str(media), "transport": "nfs", "loader": "pxelinux", "timeout": 1,
                 "extra_cmdline": "console=ttyS0,115200 quiet panic=1 "
                                  f"pxwtest.old_nfs_opt={OLD_OPT}"},
    }
    plan_from_dict(plan)  # fail here, with the field named, rather than in serve
    return plan


@pytest.mark.timeout(660)
def test_sysrescue_nfs_line_with_klibc_nfsmount_portmapper_off(timing, tmp_path: Path) -> None:
    require_root()
    require("qemu-system-x86_64", "apt-get", "dpkg-deb", "busybox", NFSMOUNT)
    medium = build_medium(tmp_path / "media", 2 * 2**20 + 777)
    sha = sha256_file(medium.image)
    plan_path = write_plan(tmp_path, _plan(tmp_path, medium.root))

    with lab_network() as net, serve_ours(net.server, plan_path) as served:
        b: Boot = boot(net, "sysrescue_nfs_no_portmap", expected_sha=sha, timeout=540)
        events = served.events()
        served.drain()
    timing.append((b.case, b.result.seconds, "ok" if b.printed_sha == sha else "FAILED"))
    lines = b.result.lines
    for ln in lines:  # shown with -s, and in the report of a failure
        if "pxwtest:" in ln and "cmdline" not in ln:
            print(ln.strip()[:300])
    cmdline = next((ln for ln in lines if "pxwtest: cmdline" in ln), "")
    # the line pxewizard wrote: port= only, no mountport (outside our test's own parameter)
    assert f" archiso_nfs_opt=port={NFS_PORT} " in cmdline, (cmdline, b.explain())
    assert "mountport" not in cmdline.replace(f"pxwtest.old_nfs_opt={OLD_OPT}", ""), cmdline
    assert " iomem=relaxed " in cmdline and f"archiso_nfs_srv={SERVER_IP}:" in cmdline
    # today's line fails there: klibc's nfsmount aborts on mountport=
    old = next((ln for ln in lines if "pxwtest: old archiso_nfs_opt" in ln), "")
    assert "nfsmount exit 1" in old and "bad option 'mountport'" in old, (old, b.explain())
    # the fixed one boots: the medium is mounted and airootfs.sfs reads back whole
    assert b.printed_sha == sha, b.explain()
    new = next((ln for ln in lines if "pxwtest: new archiso_nfs_opt" in ln), "")
    assert "nfsmount exit 0" in new, new
    assert any("pxwtest: mounted" in ln and " nfs " in ln for ln in lines), \
        b.explain()
    assert any(e.get("service") == "mountd" and e.get("kind") == "session_opened"
               for e in events), "no MOUNT session (port 627) in our server's events"
