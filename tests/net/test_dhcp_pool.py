"""Pool exhaustion and lease persistence, with busybox udhcpc as the client.

Six clients (six MACs) against a pool of five: five leases, the sixth gets no
offer and the event says why. Then the server is killed with SIGKILL and
restarted on the same SQLite lease file: every MAC gets its address back.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.net.dhcp_support import dhcp_plan, exchanges, serve_dhcp
from tests.support.netns import NetPair
from tests.support.tools import require

MACS = [f"52:54:00:99:02:{i:02x}" for i in range(1, 7)]
POOL = [f"10.99.0.{i}" for i in range(100, 105)]


def _lease(pair: NetPair, tmp: Path, mac: str, tries: int = 3) -> str | None:
    c = pair.client
    c.run("ip", "addr", "flush", "dev", "eth0")
    c.run("ip", "link", "set", "eth0", "down")
    c.run("ip", "link", "set", "eth0", "address", mac)
    c.run("ip", "link", "set", "eth0", "up")
    out = tmp / "ip"
    out.unlink(missing_ok=True)
    script = tmp / "udhcpc.sh"
    script.write_text(f'#!/bin/sh\n[ "$1" = bound ] && echo "$ip" > {out}\nexit 0\n')
    script.chmod(0o755)
    c.run("udhcpc", "-f", "-q", "-n", "-i", "eth0", "-t", str(tries), "-T", "1",
          "-s", str(script), check=False, timeout=30)
    return out.read_text().strip() if out.exists() else None


def test_pool_of_five_six_clients_and_restart(netpair: NetPair, tmp_path: Path) -> None:
    require("udhcpc")
    plan = dhcp_plan(tmp_path)  # pool 10.99.0.100-104
    got: dict[str, str | None] = {}
    with serve_dhcp(netpair.server, plan) as served:
        for mac in MACS[:5]:
            got[mac] = _lease(netpair, tmp_path, mac)
        assert sorted(ip for ip in got.values() if ip) == POOL  # five distinct addresses
        assert _lease(netpair, tmp_path, MACS[5], tries=2) is None
        silent = exchanges(served, mac=MACS[5], msg_in="DISCOVER", msg_out="-")
        assert silent and "pool exhausted" in silent[0]["reason"]
        # kill -9: no clean shutdown, the lease file must already hold every binding
        os.killpg(served.proc.pid, signal.SIGKILL)
        served.proc.wait(5)
    with serve_dhcp(netpair.server, plan) as served:
        for mac in (MACS[3], MACS[0]):
            assert _lease(netpair, tmp_path, mac) == got[mac]
        assert any(e["kind"] == "log_line" and "5 leases loaded" in e["message"]
                   for e in served.events())
        # still full: the sixth MAC gets nothing after the restart either
        assert _lease(netpair, tmp_path, MACS[5], tries=1) is None
