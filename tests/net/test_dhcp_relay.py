"""A client on another subnet gets an address from a relay pool, through a real relay agent.

client ns (eth0) <-> relay ns (dnsmasq --dhcp-relay; 10.20.0.1 client side,
10.99.0.2 server side) <-> server ns (pxe0 10.99.0.1, full DHCP with a relay
pool for 10.20.0.0/24). The relay sets giaddr 10.20.0.1; our answer goes back
to the relay's port 67 and the client gets an address and router of that subnet.
"""

from __future__ import annotations

from pathlib import Path

from tests.net.dhcp_support import dhcp_plan, exchanges, serve_dhcp
from tests.support.netns import link_netns, namespace
from tests.support.tools import require, require_root


def test_relayed_client_gets_relay_pool_address(tmp_path: Path) -> None:
    require_root()
    require("dnsmasq", "udhcpc")
    with namespace("srv") as srv, namespace("rly") as rly, namespace("cli") as cli:
        link_netns(srv, "pxe0", rly, "up0", a_addr="10.99.0.1/24", b_addr="10.99.0.2/24")
        link_netns(rly, "down0", cli, "eth0", a_addr="10.20.0.1/24",
                   b_mac="52:54:00:99:04:01")
        srv.run("ip", "route", "add", "10.20.0.0/24", "via", "10.99.0.2")
        rly.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        rly.popen("dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
                  "--user=root", "--dhcp-relay=10.20.0.1,10.99.0.1",
                  "--interface=down0", "--interface=up0", "--bind-interfaces",
                  f"--pid-file={tmp_path / 'relay.pid'}")
        plan = dhcp_plan(tmp_path, relay_agents=["10.20.0.1"], relay_pools=[{
            "subnet": "10.20.0.0/24", "range_start": "10.20.0.50", "range_end": "10.20.0.59",
            "router": "10.20.0.1", "dns": ["10.20.0.53"]}])
        out = tmp_path / "env"
        script = tmp_path / "u.sh"
        script.write_text(f'#!/bin/sh\n[ "$1" = bound ] && env > {out}\nexit 0\n')
        script.chmod(0o755)
        with serve_dhcp(srv, plan) as served:
            r = cli.run("udhcpc", "-f", "-q", "-n", "-i", "eth0", "-t", "5", "-T", "1",
                        "-s", str(script), check=False, timeout=30)
            assert out.exists(), r.stdout + r.stderr + "\n".join(served.output)
            env = dict(ln.split("=", 1) for ln in out.read_text().splitlines() if "=" in ln)
            assert 50 <= int(env["ip"].split(".")[-1]) <= 59 and env["ip"].startswith("10.20.0.")
            assert env["router"] == "10.20.0.1" and env["dns"] == "10.20.0.53"
            assert env["serverid"] == "10.99.0.1"
            acks = exchanges(served, mac="52:54:00:99:04:01", msg_out="ACK")
            assert acks and acks[0]["relay"] == "10.20.0.1"
