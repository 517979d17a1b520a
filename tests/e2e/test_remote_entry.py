"""Issue 12: an iPXE menu entry whose kernel and initramfs are http:// URLs boots.

The Plan is the ``bios_ipxe_http`` case's (SeaBIOS + QEMU's iPXE ROM, iPXE
loader) plus ``boot.remote_entries``: one entry, made the default, whose
kernel and initramfs URLs point at our own HTTP server, at copies kept under
``remote/`` of ``http.root`` (outside the boot medium), the way an installer's
netboot files sit on a mirror. The generated ``boot.ipxe`` must carry those
URLs; the guest must boot through them (our HTTP log shows ``remote/vmlinuz``
and ``remote/initrd.gz``, never the medium's ``boot/vmlinuz``) and print the
stage-3 checksum.

QEMU's BIOS NIC ROM is iPXE already, so it gets ``boot.ipxe`` straight from
DHCP; a BIOS PXE ROM that is not iPXE (which would take undionly.kpxe first)
does not exist in QEMU (see README.md).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pxewizard.boot.tree import build_boot
from pxewizard.plan import plan_from_dict

from .cases import BY_NAME, check, prepare, run_ours
from .harness import SERVER_IP

CASE = BY_NAME["bios_ipxe_http"]
REMOTE_ID = "netinst"


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _http_paths(events: list[dict]) -> set[str]:
    return {str(e.get("path", "")).lstrip("/") for e in events
            if e.get("kind") == "transfer_done" and e.get("service") == "http"}


@pytest.mark.timeout(420)
def test_remote_http_entry_boots(guest, timing, tmp_path: Path) -> None:
    prep = prepare(CASE, guest, tmp_path)
    www = tmp_path / "www"
    _link_or_copy(guest.kernel, www / "remote" / "vmlinuz")
    _link_or_copy(guest.initrd, www / "remote" / "initrd.gz")
    base = f"http://{SERVER_IP}/remote/"
    cmdline = prep.plan["boot"]["extra_cmdline"]
    prep.plan["http"]["root"] = str(www)
    prep.plan["boot"]["remote_entries"] = [{
        "id": REMOTE_ID, "label": "Installer from a mirror (remote HTTP)",
        "kernel": base + "vmlinuz", "initrds": [base + "initrd.gz"], "cmdline": cmdline}]
    prep.plan["boot"]["default"] = REMOTE_ID

    script = build_boot(plan_from_dict(prep.plan)).menus["boot.ipxe"]
    assert f"kernel {base}vmlinuz" in script, script
    assert f"initrd {base}initrd.gz" in script, script

    b = run_ours(prep)
    timing.append(("remote_http_entry", b.result.seconds,
                   "ok" if b.printed_sha == prep.stage3_sha else "FAILED"))
    check(b)
    seen = _http_paths(getattr(b, "server_events", []))
    missing = {"boot.ipxe", "remote/vmlinuz", "remote/initrd.gz", "stage3.bin"} - seen
    assert not missing, f"HTTP transfers missing: {sorted(missing)}; seen: {sorted(seen)}"
    assert "boot/vmlinuz" not in seen, (
        f"the medium's own kernel was fetched: the default entry was not the remote one "
        f"({sorted(seen)})")
