"""Issue 25: SystemRescue's NFS line, read by the code that reads it on the client.

SeaBIOS + QEMU's iPXE ROM boots pxelinux from ``pxewizard serve``; the medium is
SystemRescue-shaped (``archiso_guest.py``) and NFS is moved to port 2050. The
guest's initramfs runs archiso's NFS hook with Debian's klibc ``nfsmount``, first
with the option pxewizard wrote before issue 25 (``port=2050,mountport=...``:
nfsmount aborts on ``mountport``, SystemRescue would drop to its emergency shell),
then with the line pxewizard writes now, which mounts the medium and reads
``airootfs.sfs`` back:

- ``portmap_off``: no portmapper, MOUNT on 627 (nfsmount's fallback), the line
  carries ``archiso_nfs_opt=port=2050``. nfsmount asks port 111 for the MOUNT port
  50 times (~190 s) before it tries 627: that wait is part of this boot, and the
  reason the Plan's note says to keep the portmapper on.
- ``portmap_on``: our portmapper answers, MOUNT on 20048, the line carries no
  option: nfsmount finds both ports through the portmapper (over TCP, as klibc asks).
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
MOUNT_PORTS = {"portmap_off": 627, "portmap_on": 20048}


def old_opt(case: str) -> str:
    """What pxewizard wrote for the case's Plan before issue 25."""
    return f"port={NFS_PORT},mountport={MOUNT_PORTS[case]}"


def _plan(work: Path, media: Path, case: str) -> dict[str, Any]:
    plan: dict[str, Any] = {
        "interface": "pxe0", "server_ip": SERVER_IP, "prefix": PREFIX,
        "state_dir": str(work / "state"),
        "dhcp": {"mode": "full", "range_start": POOL[0], "range_end": POOL[1],
                 # QEMU's BIOS ROM is iPXE: without a script it runs pxelinux like any PXE ROM
                 "boot_files": {"bios": "pxelinux.0", "efi_x64": "efi64/syslinux.efi",
                                "ipxe_script": ""}},
        "http": {"port": 80},
        "nfs": {"enabled": True, "portmap": case == "portmap_on", "nfs_port": NFS_PORT,
                "mount_port": MOUNT_PORTS[case]},
        "boot": {"media": str(media), "transport": "nfs", "loader": "pxelinux", "timeout": 1,
                 "extra_cmdline": "console=ttyS0,115200 quiet panic=1 "
                                  f"pxwtest.old_nfs_opt={old_opt(case)}"},
    }
    plan_from_dict(plan)  # fail here, with the field named, rather than in serve
    return plan


@pytest.mark.timeout(660)
@pytest.mark.parametrize("case", sorted(MOUNT_PORTS))
def test_sysrescue_nfs_line_with_klibc_nfsmount(case: str, timing, tmp_path: Path) -> None:
    require_root()
    require("qemu-system-x86_64", "apt-get", "dpkg-deb", "busybox", NFSMOUNT)
    medium = build_medium(tmp_path / "media", 2 * 2**20 + 777)
    sha = sha256_file(medium.image)
    plan_path = write_plan(tmp_path, _plan(tmp_path, medium.root, case))

    with lab_network() as net, serve_ours(net.server, plan_path) as served:
        b: Boot = boot(net, f"sysrescue_nfs_{case}", expected_sha=sha,
                       timeout=540 if case == "portmap_off" else 240)
        events = served.events()
        served.drain()
    timing.append((b.case, b.result.seconds, "ok" if b.printed_sha == sha else "FAILED"))
    lines = b.result.lines
    for ln in lines:  # shown with -s, and in the report of a failure
        if "pxwtest:" in ln and "cmdline" not in ln:
            print(ln.strip()[:300])
    cmdline = next((ln for ln in lines if "pxwtest: cmdline" in ln), "")
    # the line pxewizard wrote: port= only without a portmapper, nothing with it; never
    # mountport (outside the test's own parameter)
    if case == "portmap_off":
        assert f" archiso_nfs_opt=port={NFS_PORT} " in cmdline, (cmdline, b.explain())
    else:
        assert "archiso_nfs_opt" not in cmdline, (cmdline, b.explain())
    assert "mountport" not in cmdline.replace(f"pxwtest.old_nfs_opt={old_opt(case)}", ""), \
        cmdline
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
               for e in events), "no MOUNT session in our server's events"
    if case == "portmap_on":  # no wait: the portmapper answered at once
        seconds = int(new.split(" after ", 1)[1].split(" s", 1)[0])
        assert seconds < 30 and "Connection refused" not in new, new
