"""The spanning-tree BPDU codec (proto/stp.py) and the listener's rate limit."""

from __future__ import annotations

import asyncio

from pxewizard.events import BpduSeen, EventBus
from pxewizard.proto.stp import build_config_bpdu, parse_bpdu, parse_frame
from pxewizard.proto.tftp import fitting_blksize

# An 802.1D configuration BPDU laid out as a Linux bridge sends one (stp_state 1,
# forward_delay 1500, priority 0x8000; net/bridge/br_stp_bpdu.c); tests/net/test_stalls.py
# reads the real ones off a bridge
LINUX_BRIDGE = bytes.fromhex(
    "0180c2000000" "5254009900fe" "0026" "424203"
    "0000" "00" "00" "00" "80005254009900fe" "00000000" "80005254009900fe" "8001"
    "0000" "1400" "0200" "0f00") + bytes(8)


def test_config_bpdu_of_a_linux_bridge() -> None:
    b = parse_frame(LINUX_BRIDGE)
    assert b is not None and b.protocol == "stp"
    assert b.bridge_id == "8000.52:54:00:99:00:fe" == b.root_id
    assert (b.forward_delay, b.hello, b.max_age) == (15.0, 2.0, 20.0)
    assert b.source == "52:54:00:99:00:fe" and b.port_id == 0x8001


def test_rstp_and_round_trip() -> None:
    f = build_config_bpdu(bridge_mac="02:00:00:00:00:01", priority=0x1000, forward_delay=4,
                          rstp=True)
    b = parse_frame(f)
    assert b is not None and b.protocol == "rstp" and b.forward_delay == 4.0
    assert b.bridge_id == "1000.02:00:00:00:00:01"


def test_not_a_bpdu() -> None:
    assert parse_frame(b"") is None
    assert parse_frame(LINUX_BRIDGE[:30]) is None
    assert parse_frame(b"\xff" * 6 + LINUX_BRIDGE[6:]) is None          # other destination
    tcn = LINUX_BRIDGE[:17] + b"\x00\x00\x00\x80" + LINUX_BRIDGE[21:]
    assert parse_frame(tcn) is None                                     # a TCN: no timers
    assert parse_bpdu(b"\xaa\xaa\x03" + bytes(40)) is None              # SNAP, not STP
    ether = LINUX_BRIDGE[:12] + b"\x08\x00" + LINUX_BRIDGE[14:]
    assert parse_frame(ether) is None                                   # an EtherType


async def test_listener_publishes_each_bridge_once_until_it_changes() -> None:
    import socket

    from pxewizard.servers.stp import StpListener

    bus, got = EventBus(), []
    bus.subscribe(got.append)
    a, b = socket.socketpair()
    try:
        lst = StpListener(a, "pxe0", bus)
        for i in range(5):
            lst.frame(LINUX_BRIDGE, 100.0 + 2 * i)
        lst.frame(build_config_bpdu(bridge_mac="52:54:00:99:00:fe", forward_delay=0), 111.0)
        await asyncio.sleep(0)
        await lst.close()
    finally:
        b.close()
    seen = [e for e in got if isinstance(e, BpduSeen)]
    assert [e.forward_delay for e in seen] == [15.0, 0.0]
    assert seen[0].bridge_id == "8000.52:54:00:99:00:fe" and seen[0].interface == "pxe0"


def test_fitting_blksize() -> None:
    assert fitting_blksize(1468) == 512            # below a 1500 path: unknown, 512 fits all
    assert fitting_blksize(8192) == 1468           # jumbo blocks on an Ethernet path
    assert fitting_blksize(1468, path_mtu=1000) == 968
    assert fitting_blksize(1468, path_mtu=1500) == 512
