"""mode = "none": every path the snippets for an existing DHCP server name is served.

The snippets shown on the DHCP-mode screen tell another DHCP server which boot
file each client architecture gets and where iPXE finds its script. Each name
there is fetched from a running ``pxewizard serve`` by the client a PXE ROM
would use: tftp-hpa for boot files, curl for URLs; a name that is not served
(the old ``syslinux.efi`` beside pxelinux.0, 0 bytes) fails here.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from pxewizard.plan import load_plan
from pxewizard.screens.dhcp_mode.snippets import snippets
from tests.support.serving import REPO, serve, write_plan
from tests.support.tools import require

pytestmark = pytest.mark.net

NAMES = (re.compile(r'filename "([^"]+)"'), re.compile(r'"boot-file-name": "([^"]+)"'),
         re.compile(r"^dhcp-boot=(?:tag:[^,\n]+,)*([^,\n]+)", re.MULTILINE),
         re.compile(r"^  .+\)\s+(\S+)$", re.MULTILINE))


def named_paths(plan) -> set[str]:
    found: set[str] = set()
    for _title, text in snippets(plan):
        for rx in NAMES:
            found.update(rx.findall(text))
    return found


def test_every_path_a_snippet_names_is_served(netpair, tmp_path: Path) -> None:
    require("tftp", "curl")
    data = tomllib.loads((REPO / "examples" / "proxydhcp-http.toml").read_text())
    data["dhcp"]["mode"] = "none"
    data["boot"]["media"] = str(REPO / "examples" / "demo-media")
    plan_path = write_plan(tmp_path, data)
    plan = load_plan(plan_path)
    paths = named_paths(plan)
    assert {"pxelinux.0", "efi64/syslinux.efi", "http://10.99.0.1/boot.ipxe"} <= paths, paths
    with serve(netpair.server, plan_path, ready_timeout=30):
        netpair.client_address("10.99.0.10")
        for path in sorted(paths):
            out = tmp_path / "got"
            out.unlink(missing_ok=True)
            if path.startswith("http"):
                r = subprocess.run(netpair.client.cmd("curl", "-sSf", "--max-time", "20", "-o",
                                                      str(out), path),
                                   capture_output=True, text=True, timeout=30, check=False)
            else:  # tftp-hpa, as a PXE ROM asks: the path as the DHCP server names it
                r = subprocess.run(netpair.client.cmd("tftp", "10.99.0.1", "-m", "binary", "-c",
                                                      "get", path, str(out)),
                                   capture_output=True, text=True, timeout=30, check=False)
            assert r.returncode == 0 and out.exists() and out.stat().st_size > 0, \
                f"{path}: not served ({r.stdout}{r.stderr})"
