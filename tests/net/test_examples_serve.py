"""Every Plan in examples/ runs as it is with `pxewizard serve`, and real clients use it.

Each example names interface pxe0 = 10.99.0.1/24; the test builds exactly that
in a namespace, with a client namespace behind a veth.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from tests.support.serving import REPO, serve
from tests.support.tools import require

EXAMPLES = REPO / "examples"
MEDIA = EXAMPLES / "demo-media"
SFS = MEDIA / "sysresccd/x86_64/airootfs.sfs"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _dhcp_lease(pair) -> str:
    """A real DHCP client (busybox udhcpc) gets a lease; returns what it printed."""
    r = pair.client.run("busybox", "udhcpc", "-i", pair.client_if, "-n", "-q", "-f", "-t", "5",
                        "-T", "1", "-s", "/bin/true", "-O", "bootfile", "-V", "PXEClient",
                        check=False, timeout=30)
    return r.stdout + r.stderr


def _curl(pair, url: str) -> bytes:
    out = subprocess.run(pair.client.cmd("curl", "-sSf", "--max-time", "20", url),
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout


@pytest.mark.parametrize("name", ["full-dhcp-http", "proxydhcp-http", "tftp", "nfs", "nbd"])
def test_example_serves(name: str, netpair, tmp_path: Path) -> None:
    require("curl", "busybox")
    plan = EXAMPLES / f"{name}.toml"
    with serve(netpair.server, plan, ready_timeout=30) as served:
        if name == "proxydhcp-http":
            netpair.client_address("10.99.0.10")
        else:
            out = _dhcp_lease(netpair)
            assert "10.99.0.1" in out and "obtained" in out.lower(), out
            netpair.client.run("ip", "addr", "flush", "dev", netpair.client_if)
            netpair.client_address("10.99.0.150")
        script = _curl(netpair, "http://10.99.0.1/boot.ipxe").decode()
        assert script.startswith("#!ipxe")
        assert "10.99.0.1" in script and "${pxeserver}" not in script
        if name in ("full-dhcp-http", "tftp"):
            require("tftp")
            data = _curl(netpair, "tftp://10.99.0.1/sysresccd/boot/x86_64/vmlinuz")
            assert data == (MEDIA / "sysresccd/boot/x86_64/vmlinuz").read_bytes()
            menu = _curl(netpair, "tftp://10.99.0.1/pxelinux.cfg/default").decode()
            assert "archiso" in menu
        if name in ("full-dhcp-http", "proxydhcp-http", "tftp"):
            assert _sha(_curl(netpair, "http://10.99.0.1/sysresccd/x86_64/airootfs.sfs")) == \
                _sha(SFS.read_bytes())
        if name == "nbd":
            require("nbdinfo")
            r = netpair.client.run("nbdinfo", "--size", "nbd://10.99.0.1/archiso")
            assert int(r.stdout) == SFS.stat().st_size
        if name == "nfs":
            require("nfs-ls")
            r = netpair.client.run("nfs-ls", "nfs://10.99.0.1/" + str(MEDIA) + "/sysresccd")
            assert "x86_64" in r.stdout, r.stdout + r.stderr
        kinds = {e["kind"] for e in served.events()}
        assert "service_started" in kinds
