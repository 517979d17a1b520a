"""An .iso as boot medium is served in place: TFTP and HTTP read files from their extents."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.serving import serve, write_plan
from tests.support.tools import require


def test_tftp_and_http_serve_files_inside_an_iso(netpair, tmp_path: Path) -> None:
    require("xorriso", "curl")
    src = tmp_path / "isosrc"
    for d in ("sysresccd/boot/x86_64", "sysresccd/x86_64"):
        (src / d).mkdir(parents=True)
    kernel = os.urandom(70_000)
    sfs = os.urandom(300_000)
    (src / "sysresccd/boot/x86_64/vmlinuz").write_bytes(kernel)
    (src / "sysresccd/boot/x86_64/sysresccd.img").write_bytes(b"i" * 3000)
    (src / "sysresccd/x86_64/airootfs.sfs").write_bytes(sfs)
    iso = tmp_path / "sr.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-R", "-J", "-V", "RESCUE1200", "-o", str(iso),
                    str(src)], check=True, capture_output=True)
    os.chmod(iso, 0o644)
    plan = write_plan(tmp_path, {"interface": "pxe0", "server_ip": "10.99.0.1",
                                 "dhcp": {"mode": "none"}, "boot": {"media": str(iso)}})
    netpair.client_address()
    with serve(netpair.server, plan):
        for url, want in (("tftp://10.99.0.1/sysresccd/boot/x86_64/vmlinuz", kernel),
                          ("http://10.99.0.1/sysresccd/boot/x86_64/vmlinuz", kernel),
                          ("http://10.99.0.1/sysresccd/x86_64/airootfs.sfs", sfs)):
            r = subprocess.run(netpair.client.cmd("curl", "-sSf", "--max-time", "20", url),
                               capture_output=True, timeout=30)
            assert r.returncode == 0, r.stderr
            assert r.stdout == want, url
