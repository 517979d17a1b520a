"""DHCP strictness against an attacker on the segment (issue 17, part 6).

From a client namespace: bare REQUESTs with option 50 from never-seen MACs
(INIT-REBOOT, RFC 2131 4.3.2) bind nothing and get no answer, while ISC
dhclient, rebooting with a lease file from another network, still falls back to
DISCOVER and gets an address; a forged giaddr (a relay the Plan does not list)
and an INFORM for an off-subnet ciaddr get no answer.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pxewizard.detect.dhcp_probe import udp_ip_packet
from pxewizard.proto.dhcp import FLAG_BROADCAST, Packet, ip_int, mac_bytes
from tests.net.dhcp_support import dhcp_plan, exchanges, raw_exchange, serve_dhcp
from tests.support.netns import Netns, net_pair
from tests.support.tools import require, require_root


def raw_send(ns: Netns, interface: str, payloads: list[bytes]) -> None:
    """Broadcast each DHCP payload from 0.0.0.0:68 on ``interface`` inside ``ns``."""
    frames = [udp_ip_packet(p).hex() for p in payloads]
    code = f"""
import socket
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
s.bind(({interface!r}, 0x0800))
for h in {frames!r}:
    s.sendto(bytes.fromhex(h), ({interface!r}, 0x0800, 0, 0, b"\\xff" * 6))
"""
    ns.run(sys.executable, "-c", code, timeout=30)


def request(mac: str, xid: int, **kw: object) -> bytes:
    opts = {53: b"\x03", 50: bytes((10, 99, 0, 100 + xid % 5))}
    return Packet(xid=xid, flags=FLAG_BROADCAST, chaddr=mac_bytes(mac), options=opts,
                  **kw).encode()  # type: ignore[arg-type]


def test_init_reboot_flood_binds_nothing_and_dhclient_still_gets_a_lease(tmp_path: Path) -> None:
    require_root()
    require("dhclient")
    with net_pair() as pair, serve_dhcp(pair.server, dhcp_plan(tmp_path)) as served:
        macs = [f"02:66:00:00:{i >> 8:02x}:{i & 255:02x}" for i in range(100)]
        raw_send(pair.client, "eth0", [request(m, 1000 + i) for i, m in enumerate(macs)])
        # one more, waiting for an answer that must not come
        assert raw_exchange(pair.client, "eth0", request("02:66:00:00:ff:ff", 77), 77,
                            timeout=2) == []
        time.sleep(0.5)
        silent = [e for e in exchanges(served, msg_in="REQUEST") if e["mac"].startswith("02:66")]
        assert len(silent) >= 50 and all(e["msg_out"] == "-" for e in silent), silent[:3]
        assert all("no record" in e["reason"] for e in silent)
        assert not [e for e in served.events() if e["kind"] == "lease_changed"]

        # a real client rebooting with a lease from elsewhere: INIT-REBOOT first (silence),
        # then DISCOVER -> a lease from the pool
        lease = tmp_path / "dhclient.leases"
        lease.write_text('lease {\n  interface "eth0";\n  fixed-address 10.99.0.103;\n'
                         '  option subnet-mask 255.255.255.0;\n'
                         '  renew 4 2037/01/01 00:00:00;\n  rebind 4 2037/01/01 00:00:00;\n'
                         '  expire 4 2037/01/01 00:00:00;\n}\n')
        conf = tmp_path / "dhclient.conf"
        conf.write_text("reboot 2;\ntimeout 20;\nretry 1;\n")
        script = tmp_path / "dhclient.sh"
        script.write_text("#!/bin/sh\nenv | sort > \"%s.$reason\"\n" % (tmp_path / "dh"))
        script.chmod(0o755)
        p = pair.client.popen("dhclient", "-d", "-1", "-4", "-cf", str(conf), "-sf", str(script),
                              "-lf", str(lease), "-pf", str(tmp_path / "dh.pid"), "eth0")
        deadline = time.monotonic() + 25
        while not (tmp_path / "dh.BOUND").exists() and time.monotonic() < deadline:
            assert p.poll() is None, p.stdout.read().decode()
            time.sleep(0.2)
        assert (tmp_path / "dh.BOUND").exists(), "dhclient did not bind"
        mac = pair.client_mac
        mine = exchanges(served, mac=mac)
        assert mine[0]["msg_in"] == "REQUEST" and mine[0]["msg_out"] == "-", mine
        assert "init-reboot" in mine[0]["reason"]
        assert any(e["msg_in"] == "DISCOVER" and e["msg_out"] == "OFFER" for e in mine)
        assert any(e["msg_in"] == "REQUEST" and e["msg_out"] == "ACK" for e in mine)
        pair.client.kill_all()


def test_forged_relay_and_off_subnet_inform_get_no_answer(tmp_path: Path) -> None:
    require_root()
    pool = {"subnet": "10.20.0.0/24", "range_start": "10.20.0.50", "range_end": "10.20.0.59",
            "router": "10.20.0.1"}
    plan = dhcp_plan(tmp_path, relay_pools=[pool], relay_agents=["10.20.0.1"])
    with net_pair() as pair, serve_dhcp(pair.server, plan) as served:
        forged = Packet(xid=501, chaddr=mac_bytes("02:67:00:00:00:01"),
                        giaddr=ip_int("10.20.0.7"), options={53: b"\x01"}).encode()
        inform = Packet(xid=502, flags=FLAG_BROADCAST, chaddr=mac_bytes("02:67:00:00:00:02"),
                        ciaddr=ip_int("192.0.2.9"), options={53: b"\x08"}).encode()
        on_subnet = Packet(xid=503, flags=FLAG_BROADCAST, chaddr=mac_bytes("02:67:00:00:00:03"),
                           ciaddr=ip_int("10.99.0.9"), options={53: b"\x08"}).encode()
        raw_send(pair.client, "eth0", [forged, inform])
        pair.client.run("ip", "addr", "add", "10.99.0.9/24", "dev", "eth0")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(exchanges(served)) < 2:
            time.sleep(0.1)
        ev = {e["xid"]: e for e in exchanges(served)}
        assert ev[501]["msg_out"] == "-" and "dhcp.relay_agents" in ev[501]["reason"]
        assert ev[502]["msg_out"] == "-" and "only on the subnet" in ev[502]["reason"]
        raw_send(pair.client, "eth0", [on_subnet])  # the control: an on-subnet INFORM
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and 503 not in {e["xid"] for e in exchanges(served)}:
            time.sleep(0.1)
        assert [e["msg_out"] for e in exchanges(served, xid=503)] == ["ACK"]
