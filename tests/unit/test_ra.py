"""The Router Advertisement core: codec and responder rules, without sockets or sleeping."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pxewizard.plan import plan_from_dict
from pxewizard.proto.ra import (ALL_NODES, ALL_ROUTERS, DroppedNote, ForeignRouterNote,
                                RaSentNote, Responder, RouterAdvertisement, RouterSolicitation,
                                State, build_ra, build_rs, parse)

MAC = bytes.fromhex("525400990601")
OWN = "fe80::5054:ff:fe99:601"
CLIENT = "fe80::5054:ff:fe12:3456"
ROUTER = "fe80::1"
RS = bytes([133, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56])
# radvd's RA: hop 64, lifetime 600, a prefix 2001:db8:99::/64 and its MAC
FOREIGN_RA = (struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 600, 0, 0)
              + bytes([3, 4, 64, 0xC0]) + struct.pack("!III", 86400, 14400, 0)
              + bytes.fromhex("20010db8009900000000000000000000")
              + bytes([1, 1, 0x52, 0x54, 0, 0x99, 6, 3]))


def notes(r: Responder) -> list:
    out = []
    while (n := r.next_note()) is not None:
        out.append(n)
    return out


def answering(now: float = 0.0) -> Responder:
    r = Responder(mac=MAC, own=frozenset({OWN}))
    r.start(now)
    r.handle_timer(now + r.listen_first)
    r.datagrams_to_send()
    notes(r)
    return r


def test_our_ra_is_lifetime_0_no_prefix_m_o_clear() -> None:
    data = build_ra(MAC)
    assert len(data) == 24
    ra = parse(data)
    assert ra == RouterAdvertisement(source_lladdr=MAC)
    assert ra.router_lifetime == 0 and not ra.managed and not ra.other and ra.prefixes == ()


def test_parse_foreign_ra_and_rs() -> None:
    ra = parse(FOREIGN_RA, ROUTER)
    assert isinstance(ra, RouterAdvertisement)
    assert (ra.cur_hop_limit, ra.router_lifetime, ra.managed, ra.other) == (64, 600, False, False)
    assert ra.prefixes == ("2001:db8:99::/64",)
    rs = parse(RS, CLIENT)
    assert rs == RouterSolicitation(source_lladdr=bytes.fromhex("525400123456"))
    assert isinstance(parse(build_rs(MAC)), RouterSolicitation)


@pytest.mark.parametrize("data, why", [
    (b"\x85\x00", "too short"),
    (bytes([128, 0, 0, 0, 0, 0, 0, 0]), "neither"),
    (bytes([133, 1, 0, 0, 0, 0, 0, 0]), "code 1"),
    (bytes([133, 0, 0, 0, 0, 0, 0, 0, 1, 0]), "length 0"),
    (bytes([133, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0]), "past the end"),
    (bytes([134, 0, 0, 0, 0, 0, 0, 0, 0, 0]), "too short"),
])
def test_malformed(data: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse(data, CLIENT)


def test_rs_from_unspecified_with_lladdr_is_invalid() -> None:
    with pytest.raises(ValueError, match="6.1.1"):
        parse(RS, "::")


def test_listen_first_then_one_unsolicited_ra() -> None:
    r = Responder(mac=MAC, own=frozenset({OWN}))
    r.start(100.0)
    out = r.datagrams_to_send()
    assert [(d.dest, d.data[0]) for d in out] == [(ALL_ROUTERS, 133)]
    assert r.get_timer() == 100.0 + r.listen_first
    r.receive(RS, CLIENT, 255, 100.2)  # heard while listening: no answer yet
    assert r.datagrams_to_send() == []
    r.handle_timer(100.5)  # too early: nothing
    assert r.state is State.LISTENING
    r.handle_timer(101.0)
    assert r.state is State.ANSWERING
    out = r.datagrams_to_send()
    assert [(d.dest, d.data) for d in out] == [(ALL_NODES, build_ra(MAC))]
    sent = [n for n in notes(r) if isinstance(n, RaSentNote)]
    assert sent[0].solicit and not sent[1].solicit and "1 RS heard" in sent[1].reason
    assert r.get_timer() is None


def test_rs_answered_by_unicast_then_multicast_for_unspecified() -> None:
    r = answering()
    r.receive(RS, CLIENT + "%pxe0", 255, 5.0)
    assert [d.dest for d in r.datagrams_to_send()] == [CLIENT]
    assert notes(r)[0].client == "52:54:00:12:34:56"
    r.receive(RS[:8], "::", 255, 5.0)
    assert [d.dest for d in r.datagrams_to_send()] == [ALL_NODES]


def test_per_client_gap_and_global_rate_limit() -> None:
    r = answering()
    r.receive(RS, CLIENT, 255, 5.0)
    r.receive(RS, CLIENT, 255, 5.1)  # within the gap: the RA is on the wire already
    assert len(r.datagrams_to_send()) == 1
    r.receive(RS, CLIENT, 255, 5.6)
    assert len(r.datagrams_to_send()) == 1
    for i in range(200):  # a flood from forged sources, all at one instant
        r.receive(RS, f"fe80::{i + 1:x}", 255, 10.0)
    assert len(r.datagrams_to_send()) == 50
    drops = [n for n in notes(r) if isinstance(n, DroppedNote)]
    assert len(drops) == 1 and "rate limit" in drops[0].reason  # reported once a second


def test_hop_limit_not_255_is_dropped() -> None:
    r = answering()
    r.receive(RS, CLIENT, 64, 5.0)
    assert r.datagrams_to_send() == []
    (n,) = notes(r)
    assert isinstance(n, DroppedNote) and "hop limit 64" in n.reason
    r.receive(FOREIGN_RA, ROUTER, 64, 6.0)  # a forwarded RA is no router of this link
    assert r.state is State.ANSWERING


def test_own_ra_looped_back_is_not_foreign() -> None:
    r = answering()
    r.receive(build_ra(MAC), OWN, 255, 5.0)
    assert r.state is State.ANSWERING and notes(r) == []


def test_foreign_ra_while_listening_silences_for_good() -> None:
    r = Responder(mac=MAC, own=frozenset({OWN}))
    r.start(0.0)
    r.datagrams_to_send()
    r.receive(FOREIGN_RA, ROUTER, 255, 0.3)
    assert r.state is State.SILENT and r.get_timer() is None
    r.handle_timer(5.0)
    r.receive(RS, CLIENT, 255, 6.0)
    assert r.datagrams_to_send() == []
    seen = [n for n in notes(r) if isinstance(n, ForeignRouterNote)]
    assert len(seen) == 1 and seen[0].first and seen[0].lifetime == 600


def test_foreign_ra_later_silences_and_is_reported_rate_limited() -> None:
    r = answering()
    r.receive(FOREIGN_RA, ROUTER, 255, 10.0)
    r.receive(FOREIGN_RA, ROUTER, 255, 14.0)  # radvd every 4 s: not reported again soon
    r.receive(FOREIGN_RA, ROUTER, 255, 80.0)
    seen = [n for n in notes(r) if isinstance(n, ForeignRouterNote)]
    assert [n.first for n in seen] == [True, False]
    r.receive(RS, CLIENT, 255, 81.0)
    assert r.datagrams_to_send() == []


@pytest.mark.parametrize("mode, setting, sends", [
    ("full", "auto", True), ("proxy", "auto", False), ("none", "auto", False),
    ("full", "off", False), ("proxy", "on", True),
])
def test_plan_ipv6_ra(mode: str, setting: str, sends: bool) -> None:
    dhcp = {"mode": mode, "ipv6_ra": setting}
    if mode == "full":
        dhcp.update(range_start="10.0.0.100", range_end="10.0.0.110")
    plan = plan_from_dict({"interface": "eth0", "server_ip": "10.0.0.1", "dhcp": dhcp})
    assert plan.dhcp.sends_ra is sends


def test_plan_ipv6_ra_bad_value_names_field() -> None:
    from pxewizard.errors import PlanError

    with pytest.raises(PlanError, match="dhcp.ipv6_ra"):
        plan_from_dict({"interface": "eth0", "server_ip": "10.0.0.1",
                        "dhcp": {"ipv6_ra": "yes"}})


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=120), typ=st.sampled_from([133, 134, 0]),
       hop=st.sampled_from([255, 64, None]))
def test_any_bytes_are_answered_or_dropped_never_raise(data: bytes, typ: int,
                                                       hop: int | None) -> None:
    r = answering()
    msg = (bytes([typ, 0]) + data) if typ else data
    r.receive(msg, CLIENT, hop, 5.0)
    r.receive(msg, "::", hop, 5.0)
    for d in r.datagrams_to_send():
        assert d.data == build_ra(MAC)


@pytest.mark.parametrize("setting", ["auto", "on"])
def test_serve_without_a_raw_socket(setting: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """auto: a warning naming the fix and the other servers run; on: the start fails."""
    import asyncio

    from pxewizard import serve
    from pxewizard.errors import NeedsRoot, PxeError
    from pxewizard.events import EventBus, LogLine
    from pxewizard.servers import ra as ra_server

    async def refuse(**_kw):
        raise NeedsRoot("cannot open a raw ICMPv6 socket for Router Advertisements: "
                        "permission denied", "run pxewizard as root, or set dhcp.ipv6_ra = "
                        "\"off\"")

    monkeypatch.setattr(ra_server, "start_ra", refuse)
    plan = plan_from_dict({"interface": "eth0", "server_ip": "10.0.0.1",
                           "dhcp": {"mode": "full", "range_start": "10.0.0.100",
                                    "range_end": "10.0.0.110", "ipv6_ra": setting}})
    bus = EventBus()
    seen: list = []
    bus.subscribe(seen.append)
    if setting == "on":
        with pytest.raises(PxeError, match="raw ICMPv6"):
            asyncio.run(serve._start_ra(plan, None, bus))  # type: ignore[arg-type]
        return
    assert asyncio.run(serve._start_ra(plan, None, bus)) == []  # type: ignore[arg-type]
    [w] = [e for e in seen if isinstance(e, LogLine)]
    assert w.level == "warning" and "dhcp.ipv6_ra" in w.message and "\n" not in w.message
