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
