"""The probe's packets and its table (the wire part is in tests/net/test_dhcp_proxy.py)."""

from __future__ import annotations

import itertools
import struct

from pxewizard.detect.dhcp_probe import _checksum, discover, format_table, udp_ip_packet
from pxewizard.events import DhcpServerSeen
from pxewizard.proto.dhcp import MsgType, decode


def test_plain_and_pxe_discover() -> None:
    plain = decode(discover("02:00:00:00:00:01", 7, pxe=False))
    assert plain.msg_type == MsgType.DISCOVER and plain.broadcast and plain.xid == 7
    assert 93 not in plain.options and 60 not in plain.options
    pxe = decode(discover("02:00:00:00:00:01", 8, pxe=True))
    assert pxe.arch == 0 and pxe.vendor_class.startswith("PXEClient:Arch:00000")
    assert 50 not in pxe.options and 54 not in pxe.options  # a DISCOVER takes no lease


def test_ip_udp_framing() -> None:
    pkt = udp_ip_packet(b"hello")
    assert _checksum(pkt[:20]) == 0  # a valid IPv4 header sums to 0xffff
    assert struct.unpack("!HHH", pkt[20:26]) == (68, 67, 13)
    assert pkt[12:16] == b"\0\0\0\0" and pkt[16:20] == b"\xff" * 4


def test_table() -> None:
    rows = [DhcpServerSeen(server_id="10.0.0.2", server_mac="aa:bb:cc:dd:ee:ff",
                           offered_ip="10.0.0.150", router="10.0.0.2", dns="10.0.0.2"),
            DhcpServerSeen(server_id="10.0.0.1", server_mac="aa:bb:cc:dd:ee:01",
                           boot_file="pxelinux.0", next_server="10.0.0.1", proxy=True)]
    text = format_table("eth0", rows, 4)
    assert "2 DHCP answer(s) on eth0" in text and "proxyDHCP" in text and "10.0.0.150" in text
    assert format_table("eth0", [], 4) == "no DHCP server answered on eth0 within 4 s"


def test_probe_retransmits_as_a_client_does() -> None:
    # dnsmasq answers ~3 s after a DISCOVER (its ping); busy servers answer the resend
    from pxewizard.detect.dhcp_probe import PROBE_TIMEOUT, send_times

    assert PROBE_TIMEOUT >= 5.0
    times = send_times(PROBE_TIMEOUT)
    assert times[0] == 0.0 and len(times) >= 3
    assert all(b - a <= 2.0 for a, b in itertools.pairwise(times))
    assert times[-1] <= PROBE_TIMEOUT - 1.0
    assert send_times(0.2) == [0.0]
    again = decode(discover("02:00:00:00:00:01", 9, pxe=False, secs=3))
    assert again.secs == 3 and again.xid == 9


def test_serve_scan_and_doctor_listen_as_long() -> None:
    import inspect

    from pxewizard.app import WizardConfig
    from pxewizard.detect.dhcp_probe import PROBE_TIMEOUT, look_before_serving

    assert inspect.signature(look_before_serving).parameters["timeout"].default == PROBE_TIMEOUT
    assert WizardConfig().probe_timeout == PROBE_TIMEOUT


def test_probe_of_a_missing_interface_lists_those_that_exist(capsys) -> None:
    import os

    from pxewizard.cli import main

    assert main(["probe", "nosuch7"]) == 2
    err = capsys.readouterr().err
    assert "interface nosuch7 does not exist" in err
    names = [n for n in os.listdir("/sys/class/net") if n != "lo"]
    assert "interfaces here:" in err and all(n in err for n in names)


def test_pool_in_use_names_each_address_and_who_uses_it() -> None:
    from pxewizard.detect.dhcp_probe import pool_in_use

    router = DhcpServerSeen(server_id="10.0.0.150", server_mac="aa:bb:cc:dd:ee:ff",
                            offered_ip="10.0.0.20", router="10.0.0.1", dns="10.0.0.1,10.0.0.160")
    used = pool_in_use([router], "10.0.0.100", "10.0.0.199")
    assert used == ["10.0.0.150 (its address: DHCP server 10.0.0.150, aa:bb:cc:dd:ee:ff)",
                    ("10.0.0.160 (a DNS server it hands out: DHCP server 10.0.0.150, "
                     "aa:bb:cc:dd:ee:ff)")]
    assert pool_in_use([router], "10.0.0.200", "10.0.0.250") == []


async def test_full_mode_override_warns_of_the_pool(monkeypatch) -> None:
    from pxewizard.detect import dhcp_probe

    other = DhcpServerSeen(server_id="10.0.0.1", server_mac="aa:bb:cc:dd:ee:ff",
                           offered_ip="10.0.0.120", router="10.0.0.1")

    async def fake_probe(interface, timeout, *, until=None):
        return [other]

    monkeypatch.setattr(dhcp_probe, "probe", fake_probe)
    said: list = []
    await dhcp_probe.look_before_serving("eth0", full=True, override=True, publish=said.append,
                                         pool=("10.0.0.100", "10.0.0.199"))
    warnings = [e.message for e in said if getattr(e, "level", "") == "warning"]
    assert any("10.0.0.120 (the address it offered" in w and "dhcp.range_start" in w
               for w in warnings)


def test_doctor_flags_the_pool() -> None:
    from pxewizard.doctor import check_probe
    from pxewizard.plan import plan_from_dict

    plan = plan_from_dict({"interface": "eth0", "server_ip": "10.0.0.2",
                           "dhcp": {"mode": "full", "range_start": "10.0.0.100",
                                    "range_end": "10.0.0.199"}})
    seen = [DhcpServerSeen(server_id="10.0.0.1", server_mac="aa:bb:cc:dd:ee:ff",
                           offered_ip="10.0.0.150")]
    (f,) = check_probe(plan, seen)
    assert f.rule == "pool-in-use" and f.severity.name == "warning"
    assert any("10.0.0.150" in d for d in f.details)
