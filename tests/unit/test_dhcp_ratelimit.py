"""DHCP per-MAC rate limit: real clients never hit it, a flood from one MAC is cut."""

from __future__ import annotations

from pxewizard.servers.dhcp import MacRateLimit

A, B = b"\x52\x54\x00\x00\x00\x01", b"\x52\x54\x00\x00\x00\x02"


def test_a_pxe_boot_is_never_limited() -> None:
    lim = MacRateLimit()
    now = 1000.0
    # a PXE ROM, its loader and the kernel: three DORAs with retries within seconds
    for i in range(12):
        assert lim.allow(A, now + i * 0.5)


def test_a_flood_is_cut_and_others_still_pass() -> None:
    lim = MacRateLimit(rate=10, burst=40)
    now = 1000.0
    allowed = sum(lim.allow(A, now + i * 0.0001) for i in range(1000))
    assert 40 <= allowed <= 41
    assert lim.allow(B, now + 0.1)
    assert not lim.allow(A, now + 0.0999)
    assert lim.allow(A, now + 1.2)  # refilled at 10/s


def test_table_is_bounded() -> None:
    lim = MacRateLimit(max_macs=100)
    for i in range(1000):
        lim.allow(i.to_bytes(6, "big"), 1000.0)
    assert len(lim._buckets) <= 100


async def test_clients_outside_allowed_macs_are_one_event_a_minute(tmp_path) -> None:
    """Every PC of an office LAN asks at each boot and renewal: say it once per MAC."""
    import asyncio
    import socket

    from pxewizard.events import DhcpExchange, EventBus
    from pxewizard.proto.dhcp import Mode, Packet, Policy, mac_bytes
    from pxewizard.servers.dhcp import start_dhcp

    bus = EventBus()
    bus.bind_loop(asyncio.get_running_loop())
    seen: list = []
    bus.subscribe(seen.append)
    policy = Policy(mode=Mode.PROXY, server_ip="127.0.0.1", network="127.0.0.0/8",
                    known_macs=frozenset({"02:00:00:00:0a:01"}))
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    svc = await start_dhcp(bus=bus, policy=policy, interface=None, address="127.0.0.1",
                           port=port, proxy_port=0)
    cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for n in range(20):
            pkt = Packet(xid=n, chaddr=mac_bytes("02:00:00:00:0a:02"),
                         options={53: b"\x01", 93: b"\x00\x00",
                                  60: b"PXEClient:Arch:00000:UNDI:002001"})
            cli.sendto(pkt.encode(), ("127.0.0.1", port))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if svc.stats["received"] >= 20:
                break
        await asyncio.sleep(0.3)
    finally:
        cli.close()
        await svc.close()
    said = [e for e in seen if isinstance(e, DhcpExchange)]
    assert svc.stats["received"] == 20 and svc.stats["refused"] == 20
    assert svc.stats["answered"] == 0
    assert len(said) == 1 and said[0].cause == "not_allowed" and said[0].msg_out == "-"
