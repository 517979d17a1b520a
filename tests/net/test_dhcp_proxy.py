"""proxyDHCP beside a real dnsmasq full DHCP server on one segment.

Topology (all namespaces created here): a bridge namespace joins the server
namespace (ours, 10.99.0.1, proxy mode), a dnsmasq namespace (10.99.0.2, full
DHCP 10.99.0.150-160) and a client namespace. Checks: a plain client gets its
address from dnsmasq and nothing from us; PXE DISCOVERs get boot info from us
by architecture (0, 7, 9, 11, iPXE) with no address; a UEFI client asking
again on UDP 4011 gets the boot file there; our probe reports dnsmasq; full
mode refuses to start there unless overridden.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pxewizard.proto.dhcp import Packet, ip_str
from tests.net.dhcp_support import (dhcp_plan, exchanges, pxe_request, raw_exchange, serve_dhcp,
                                    udp_4011_exchange)
from tests.support.netns import Netns, bridge_ns, link_netns, namespace
from tests.support.serving import REPO, Served
from tests.support.tools import require, require_root

CLIENT_MAC = "52:54:00:99:03:01"
SCRIPT_URL = "http://10.99.0.1:8080/boot.ipxe"


@dataclass
class Segment:
    server: Netns
    dnsmasq: Netns
    client: Netns
    served: Served
    tmp: Path


@contextlib.contextmanager
def _segment(tmp: Path) -> Iterator[tuple[Netns, Netns, Netns]]:
    with bridge_ns() as br, namespace("srv") as srv, namespace("dnsm") as dn, \
            namespace("cli") as cli:
        for port, ns, ifname, addr, mac in (("p1", srv, "pxe0", "10.99.0.1/24", None),
                                           ("p2", dn, "eth0", "10.99.0.2/24", None),
                                           ("p3", cli, "eth0", None, CLIENT_MAC)):
            link_netns(br, port, ns, ifname, b_addr=addr, b_mac=mac)
            br.run("ip", "link", "set", port, "master", "br0")
        lease = tmp / "dnsmasq.leases"
        dn.popen("dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
                 "--interface=eth0", "--bind-interfaces", "--user=root",
                 "--dhcp-range=10.99.0.150,10.99.0.160,255.255.255.0,1h",
                 "--dhcp-option=3,10.99.0.2", "--dhcp-option=6,10.99.0.2",
                 f"--dhcp-leasefile={lease}", f"--pid-file={tmp / 'dnsmasq.pid'}",
                 "--no-ping", "--log-dhcp")
        yield srv, dn, cli


@pytest.fixture(scope="module")
def segment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Segment]:
    require_root()
    require("dnsmasq")
    tmp = tmp_path_factory.mktemp("dhcp-proxy")
    with _segment(tmp) as (srv, dn, cli):
        plan = dhcp_plan(tmp, mode="proxy")
        with serve_dhcp(srv, plan) as served:
            yield Segment(srv, dn, cli, served, tmp)


def _ours(replies: list[Packet]) -> list[Packet]:
    return [p for p in replies if p.server_id is not None and ip_str(p.server_id) == "10.99.0.1"]


def _theirs(replies: list[Packet]) -> list[Packet]:
    return [p for p in replies if p.server_id is not None and ip_str(p.server_id) == "10.99.0.2"]


def test_plain_client_gets_address_from_dnsmasq_and_nothing_from_us(segment: Segment) -> None:
    require("udhcpc")
    script = segment.tmp / "u.sh"
    script.write_text('#!/bin/sh\n[ "$1" = bound ] && env > %s\nexit 0\n'
                      % (segment.tmp / "u.env"))
    script.chmod(0o755)
    segment.client.run("udhcpc", "-f", "-q", "-n", "-i", "eth0", "-t", "4", "-T", "1",
                       "-s", str(script), timeout=30)
    env = dict(ln.split("=", 1) for ln in (segment.tmp / "u.env").read_text().splitlines()
               if "=" in ln)
    assert env["serverid"] == "10.99.0.2"
    assert 150 <= int(env["ip"].split(".")[-1]) <= 160
    ours = exchanges(segment.served, mac=CLIENT_MAC)
    assert ours and all(e["msg_out"] == "-" for e in ours)
    assert "not a PXE client" in ours[0]["reason"]


@pytest.mark.parametrize("arch,user_class,expected", [
    (0, None, "pxelinux.0"),
    (7, None, "efi64/syslinux.efi"),
    (9, None, "efi64/syslinux.efi"),
    (11, None, "grubaa64.efi"),
    (0, b"iPXE", SCRIPT_URL),  # QEMU's iPXE ROM: raw 4 bytes, no RFC 3004 length
    (7, b"\x04iPXE", SCRIPT_URL),  # RFC 3004 list form
])
def test_pxe_discover_gets_boot_file_by_arch(segment: Segment, arch: int,
                                             user_class: bytes | None, expected: str) -> None:
    xid = 0x5A000000 + arch * 16 + (1 if user_class else 0) + len(user_class or b"")
    pkt = pxe_request(CLIENT_MAC, xid, arch=arch, user_class=user_class)
    replies = raw_exchange(segment.client, "eth0", pkt, xid, want=2, timeout=4)
    ours, theirs = _ours(replies), _theirs(replies)
    assert theirs and theirs[0].yiaddr, "dnsmasq should offer the address"
    assert len(ours) == 1, replies
    p = ours[0]
    assert p.yiaddr == 0  # proxyDHCP: never an address
    assert p.msg_type == 2 and ip_str(p.siaddr) == "10.99.0.1"
    assert p.options[67].decode() == expected
    assert p.vendor_class == "PXEClient"
    assert p.pxe_vendor[6] == b"\x08"  # discovery control: boot from this file
    if len(expected) < 128:
        assert p.file.decode() == expected
    ev = segment.served.wait_event(lambda e: e["kind"] == "dhcp_exchange" and e["xid"] == xid)
    assert ev["msg_out"] == "OFFER" and ev["arch"] == arch and ev["boot_file"] == expected


def test_unknown_arch_is_logged_not_silent(segment: Segment) -> None:
    xid = 0x5A0000AA
    replies = raw_exchange(segment.client, "eth0", pxe_request(CLIENT_MAC, xid, arch=10), xid,
                           want=2, timeout=2)
    assert not _ours(replies)
    ev = segment.served.wait_event(lambda e: e["kind"] == "dhcp_exchange" and e["xid"] == xid)
    assert ev["msg_out"] == "-" and "10 (EFI ARM32)" in ev["reason"]


def test_uefi_asks_again_on_4011(segment: Segment) -> None:
    segment.client.run("ip", "addr", "replace", "10.99.0.170/24", "dev", "eth0")
    xid = 0x5B000007
    req = pxe_request(CLIENT_MAC, xid, msg=3, arch=7, ciaddr=0x0A6300AA,
                      extra={43: b"\x47\x04\x80\x00\x00\x00\xff"})
    p = udp_4011_exchange(segment.client, "10.99.0.170", "10.99.0.1", req)
    assert p is not None, "no ACK on 4011"
    assert p.msg_type == 5 and p.yiaddr == 0
    assert p.options[67] == b"efi64/syslinux.efi"
    assert p.pxe_vendor.get(71) == b"\x80\x00\x00\x00"  # boot item echoed
    ev = segment.served.wait_event(lambda e: e["kind"] == "dhcp_exchange" and e["xid"] == xid)
    assert ev["msg_out"] == "ACK" and "port 4011" in ev["reason"]


def test_probe_reports_dnsmasq_and_our_proxy(segment: Segment) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = segment.client.run(sys.executable, "-m", "pxewizard", "probe", "eth0", "--timeout", "2",
                           "--json", env=env, cwd=str(REPO))
    seen = json.loads(r.stdout)
    dnsmasq = [s for s in seen if s["server_id"] == "10.99.0.2"]
    ours = [s for s in seen if s["server_id"] == "10.99.0.1"]
    assert dnsmasq and not dnsmasq[0]["proxy"]
    assert 150 <= int(dnsmasq[0]["offered_ip"].split(".")[-1]) <= 160
    assert dnsmasq[0]["router"] == "10.99.0.2"
    assert ours and ours[0]["proxy"] and ours[0]["boot_file"] == "pxelinux.0"
    # serve probed before starting and logged what it saw
    assert any(e["kind"] == "dhcp_server_seen" and e["server_id"] == "10.99.0.2"
               for e in segment.served.events())
    table = segment.client.run(sys.executable, "-m", "pxewizard", "probe", "eth0", "--timeout",
                               "1", env=env, cwd=str(REPO)).stdout
    assert "10.99.0.2" in table and "proxyDHCP" in table


def test_full_mode_refuses_beside_dnsmasq(tmp_path: Path) -> None:
    require_root()
    require("dnsmasq")
    with _segment(tmp_path) as (srv, _dn, _cli):
        plan = dhcp_plan(tmp_path, mode="full")
        with serve_dhcp(srv, plan, expect_failure=True) as served:
            text = "\n".join(served.output)
            assert served.proc.returncode != 0
            assert "refusing to start full DHCP" in text and "10.99.0.2" in text
            assert "proxy" in text and "override_existing_server" in text
        plan = dhcp_plan(tmp_path, mode="full", override_existing_server=True)
        with serve_dhcp(srv, plan) as served:
            assert any("another DHCP server answers" in ln for ln in served.output)
