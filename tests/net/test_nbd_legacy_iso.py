"""Old SystemRescueCd booted from its .iso over NBD (issue 25): the export is sysrcd.dat.

Its initramfs attaches the NBD device and mounts the ``sysrcd.dat`` image on it
(the manual: ``nbd-server 2000 /mnt/cdrom/sysrcd.dat``), so the export must be that
file's extent inside the ISO, not the ISO. libnbd's nbdinfo and nbdcopy read it from
``pxewizard serve`` over the oldstyle handshake (what ``netboot=nbd://IP:PORT`` speaks)
and the newstyle one, in a client namespace.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from tests.data.boot import fixtures as fx
from tests.support.netns import net_pair
from tests.support.serving import serve, write_plan
from tests.support.tools import require, require_root

from .test_nbd import OLD_PORT, SRV, UnbufferedNs


def test_old_systemrescuecd_iso_exports_sysrcd_dat(tmp_path: Path) -> None:
    require_root()
    require("nbdinfo", "nbdcopy", "xorriso")
    src = fx.make_legacy(tmp_path / "src")
    data = os.urandom((1 << 20) + 2048 + 3)  # neither sector- nor block-aligned
    (src / "sysrcd.dat").write_bytes(data)
    iso = fx.make_iso(src, tmp_path / "systemrescuecd-x86-5.3.2.iso", volume="sysrcd-5.3.2")
    plan = write_plan(tmp_path, {
        "interface": "pxe0", "server_ip": SRV,
        "dhcp": {"mode": "none"}, "tftp": {"enabled": False}, "http": {"enabled": False},
        "boot": {"media": str(iso), "transport": "nbd"},
        "nbd": {"enabled": True, "port": 10809, "oldstyle_port": OLD_PORT},
    })
    want = hashlib.sha256(data).hexdigest()
    with net_pair() as pair:
        pair.client_address()
        with serve(UnbufferedNs(pair.server.name, pair.server.procs), plan) as srv:
            for url in (f"nbd://{SRV}:{OLD_PORT}", f"nbd://{SRV}/sysrcd"):
                size = subprocess.run(pair.client.cmd("nbdinfo", "--size", url),
                                      capture_output=True, text=True, timeout=60, check=True)
                assert int(size.stdout) == len(data), (url, size.stdout, iso.stat().st_size)
                copy = subprocess.run(pair.client.cmd("sh", "-c", f"nbdcopy {url} - | sha256sum"),
                                      capture_output=True, text=True, timeout=60, check=True)
                assert copy.stdout.split()[0] == want, url
            srv.wait_event(lambda e: e["kind"] == "session_opened" and e["target"] == "sysrcd"
                           and "oldstyle" in e["detail"])
