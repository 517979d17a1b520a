"""Issue 21 with real peers: stalls the server can see, named by `pxewizard serve` itself.

- a Linux bridge with STP (forward delay 15 s) beside our interface: the kernel's own
  BPDUs reach us and serve names the bridge id and forward delay at once; ISC dhclient
  (sending the PXE vendor class) gets through 30 s later with ``secs`` saying so;
- an nftables rule in the server's namespace drops UDP 69: busybox udhcpc gets its lease
  and boot file, tftp-hpa gets nothing; serve names the rule (handle) and keeps it;
- a bridge port at MTU 1000 between server and client, curl asks blksize 1468: the OACK
  gets through, block 1 does not; serve grants 512 (BlksizeGranted) and curl's next
  request goes through.

Each test records its events as tests/data/timeline/net-<case>.jsonl with
PXW_RECORD_TIMELINE=1.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pxewizard.events import from_dict
from pxewizard.insight.session import diagnose_events
from tests.net.dhcp_support import serve_dhcp
from tests.net.test_diagnose import (CLIENT_MAC, SERVER_IP, diag_plan, facts_for, record,
                                     tftp_get, udhcpc)
from tests.support.netns import Netns, link_netns, namespace
from tests.support.tools import require, require_root


def _wait_output(served, pred, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hit = [ln for ln in served.output if pred(ln)]
        if hit:
            return hit
        time.sleep(0.2)
    raise AssertionError("not in serve's output:\n" + "\n".join(served.output[-30:]))


@pytest.fixture
def stp_segment() -> Iterator[tuple[Netns, Netns, Netns]]:
    """srv (pxe0) -- p1 [br0: STP on, forward delay 15 s] p2 -- cli (eth0)."""
    require_root()
    with namespace("br") as br, namespace("srv") as srv, namespace("cli") as cli:
        br.run("ip", "link", "add", "br0", "type", "bridge", "stp_state", "1",
               "forward_delay", "1500", "hello_time", "200")
        br.run("ip", "link", "set", "br0", "address", "52:54:00:99:00:fe")
        link_netns(br, "p1", srv, "pxe0", b_addr=f"{SERVER_IP}/24")
        link_netns(br, "p2", cli, "eth0", b_mac=CLIENT_MAC)
        for p in ("p1", "p2"):
            br.run("ip", "link", "set", p, "master", "br0")
        br.run("ip", "link", "set", "br0", "up")
        yield br, srv, cli


def test_stp_bridge_named_at_start_and_late_discover(stp_segment, tmp_path: Path) -> None:
    require("dhclient")
    br, srv, cli = stp_segment
    plan = diag_plan(tmp_path)
    with serve_dhcp(srv, plan) as served:
        t0 = time.time()
        bpdu = served.wait_event(lambda e: e["kind"] == "bpdu_seen", timeout=10)
        assert bpdu["bridge_id"] == "8000.52:54:00:99:00:fe"
        assert bpdu["forward_delay"] == 15.0 and bpdu["protocol"] == "stp"
        lines = _wait_output(served, lambda ln: "spanning tree on this segment" in ln, 10)
        named_after = time.time() - t0
        assert "forward delay 15 s" in lines[0]
        # a DHCP client with the PXE vendor class, through the listening port
        conf = tmp_path / "dhclient.conf"
        conf.write_text('send vendor-class-identifier "PXEClient:Arch:00000:UNDI:002001";\n'
                        "timeout 60; retry 1;\n")
        p = cli.popen("dhclient", "-d", "-1", "-4", "-cf", str(conf), "-sf", "/bin/true",
                      "-lf", str(tmp_path / "dh.leases"), "-pf", str(tmp_path / "dh.pid"),
                      "eth0")
        try:
            first = served.wait_event(lambda e: e["kind"] == "dhcp_exchange", timeout=60)
        finally:
            p.terminate()
            p.wait(10)
        events = [from_dict(d) for d in served.events()]
        record(served, "net-stp-forward-delay")
    assert first["secs"] >= 4, first
    _, findings = diagnose_events(events, facts_for(plan), now=first["ts"])
    f = [x for x in findings if x.rule == "stp-forward-delay" and x.client]
    assert f and "late" in f[0].title and "forward delay 15" in f[0].title, findings
    assert named_after < 10


def test_firewall_rule_dropping_tftp_is_named(tmp_path: Path) -> None:
    require_root()
    require("nft", "udhcpc", "tftp")
    from tests.support.netns import net_pair

    with net_pair(client_mac=CLIENT_MAC) as pair:
        pair.server.run("nft", "add table inet pxwtest")
        pair.server.run("nft", "add chain inet pxwtest input { type filter hook input "
                               "priority 0 ; policy accept ; }")
        pair.server.run("nft", "add rule inet pxwtest input udp dport 69 drop")
        plan = diag_plan(tmp_path)
        with serve_dhcp(pair.server, plan) as served:
            lease = udhcpc(pair.client, tmp_path)
            assert lease["boot_file"] == "pxelinux.0"
            acked = time.time()
            assert not tftp_get(pair.client, tmp_path, "pxelinux.0")
            lines = _wait_output(served, lambda ln: "asked for no file" in ln, 40)
            delay = time.time() - acked
            text = "\n".join(served.output)
            record(served, "net-firewall-tftp")
        assert "handle" in text and "pxwtest" in text and "drops port 69" in text, text
        assert lines and delay < 25 + 10


def test_blksize_above_the_path_mtu_is_granted_smaller(tmp_path: Path) -> None:
    require_root()
    require("curl", "ethtool")
    with namespace("br") as br, namespace("srv") as srv, namespace("cli") as cli:
        br.run("ip", "link", "add", "br0", "type", "bridge", "stp_state", "0",
               "forward_delay", "0")
        link_netns(br, "p1", srv, "pxe0", b_addr=f"{SERVER_IP}/24")
        link_netns(br, "p2", cli, "eth0", b_addr="10.99.0.10/24", b_mac=CLIENT_MAC)
        for p in ("p1", "p2"):
            br.run("ip", "link", "set", p, "master", "br0")
        br.run("ip", "link", "set", "br0", "up")
        # the client's side of the path is MTU 1000; the server's NIC would segment on the
        # wire, so no UDP GSO on the server's side (it bypasses the MTU check on veth)
        br.run("ip", "link", "set", "p2", "mtu", "1000")
        cli.run("ip", "link", "set", "eth0", "mtu", "1000")
        srv.run("ethtool", "-K", "pxe0", "tx-udp-segmentation", "off", check=False)
        plan = diag_plan(tmp_path)
        big = tmp_path / "tftp" / "big.bin"
        big.write_bytes(bytes(range(256)) * 200)
        big.chmod(0o644)
        with serve_dhcp(srv, plan) as served:
            url = f"tftp://{SERVER_IP}/big.bin"
            out = tmp_path / "got.bin"
            r = cli.run("curl", "-s", "--tftp-blksize", "1468", "--max-time", "12", "-o",
                        str(out), url, check=False, timeout=30)
            assert r.returncode != 0          # block 1 never arrives
            g = served.wait_event(lambda e: e["kind"] == "blksize_granted", timeout=10)
            r = cli.run("curl", "-s", "--tftp-blksize", "1468", "--max-time", "20", "-o",
                        str(out), url, check=False, timeout=30)
            assert r.returncode == 0, r.stderr
            assert out.read_bytes() == big.read_bytes()
            events = [from_dict(d) for d in served.events()]
            _wait_output(served, lambda ln: "do not get through" in ln, 10)
            record(served, "net-blksize-mtu")
    assert g["asked"] == 1468 and g["granted"] == 512 and g["packet"] == 1500
    started = [e for e in events if e.kind == "transfer_started" and e.path == "big.bin"]
    assert started[-1].options.get("blksize") == "512"
    _, findings = diagnose_events(events, facts_for(plan))
    assert "blksize-mtu" in [f.rule for f in findings]
    assert "tftp-timeout" not in [f.rule for f in findings]
