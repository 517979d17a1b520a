"""The DHCP decision, fed real and crafted packets, with no sockets and no clock."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pxewizard.proto.dhcp import (FLAG_BROADCAST, BootFiles, Decision, LeaseState, LeaseTable,
                                  Mode, MsgType, Packet, Policy, Pool, Reservation, decide,
                                  decode, ip_int, ip_str, mac_bytes)

DATA = Path(__file__).resolve().parents[1] / "data" / "dhcp"
SCRIPT = "http://10.99.0.1/boot.ipxe"
T0 = 1_000_000.0


def vector(name: str) -> Packet:
    return decode(bytes.fromhex((DATA / f"{name}.hex").read_text().strip()))


def policy(**kw: object) -> Policy:
    base: dict[str, object] = dict(
        server_ip="10.99.0.1", network="10.99.0.0/24", range_start="10.99.0.100",
        range_end="10.99.0.199", router="10.99.0.254", dns=("10.99.0.53",), domain="lab",
        lease_time=3600,
        boot=BootFiles(bios="pxelinux.0", efi_x64="syslinux.efi", efi_arm64="grubaa64.efi",
                       uefi_http="http://10.99.0.1/ipxe.efi", ipxe_script=SCRIPT))
    base.update(kw)
    return Policy(**base)  # type: ignore[arg-type]


def req(mac: str = "02:00:00:00:00:01", msg: int = 1, *, xid: int = 1, arch: int | None = None,
        vendor: str | None = None, flags: int = 0, ciaddr: str | None = None,
        giaddr: str | None = None, **opts: bytes) -> Packet:
    o: dict[int, bytes] = {53: bytes((msg,))}
    if arch is not None:
        o[93] = arch.to_bytes(2, "big")
        o[60] = (vendor or f"PXEClient:Arch:{arch:05d}:UNDI:003010").encode()
    elif vendor:
        o[60] = vendor.encode()
    for k, v in opts.items():
        o[int(k[1:])] = v
    return Packet(xid=xid, flags=flags, chaddr=mac_bytes(mac),
                  ciaddr=ip_int(ciaddr) if ciaddr else 0, giaddr=ip_int(giaddr) if giaddr else 0,
                  options=o)


def run(p: Packet, pol: Policy, t: LeaseTable, now: float = T0,
        **kw: object) -> tuple[Decision, Packet | None]:
    d = decide(p, pol, t, now, **kw)  # type: ignore[arg-type]
    for op in d.ops:
        t.apply(op)
    return d, decode(d.reply) if d.reply else None


def dora(mac: str, pol: Policy, t: LeaseTable, now: float = T0, **kw: object) -> str:
    d, offer = run(req(mac, 1, **kw), pol, t, now)  # type: ignore[arg-type]
    assert offer is not None, d.reason
    d, ack = run(req(mac, 3, o50=offer.yiaddr.to_bytes(4, "big"), o54=b"\x0a\x63\x00\x01",
                     **kw), pol, t, now)  # type: ignore[arg-type]
    assert ack is not None and ack.msg_type == MsgType.ACK, d.reason
    return ip_str(ack.yiaddr)


# --- real client packets ---------------------------------------------------------------------


def test_ovmf_native_full_dora_and_syslinux_efi_second_dhcp() -> None:
    pol, t = policy(), LeaseTable()
    d, offer = run(vector("pxe-uefi-ovmfnative-syslinux-f1-discover"), pol, t)
    assert d.msg_out == "OFFER" and offer is not None
    assert offer.options[67] == b"syslinux.efi" and offer.file == b"syslinux.efi"
    assert ip_str(offer.siaddr) == "10.99.0.1" and offer.options[66] == b"10.99.0.1"
    assert offer.vendor_class == "PXEClient" and offer.pxe_vendor == {6: b"\x08"}
    assert offer.options[97] == vector("pxe-uefi-ovmfnative-syslinux-f1-discover").options[97]
    assert d.dest is not None and d.dest.broadcast  # OVMF sets the broadcast flag
    assert "EFI x64" in d.reason and d.arch_name == "EFI x64"
    # the captured REQUEST asks for 10.99.0.115 from server 10.99.0.1 (INIT-REBOOT-free pool)
    d, ack = run(vector("pxe-uefi-ovmfnative-syslinux-f2-request"), pol, t)
    assert d.msg_out == "ACK" and ack is not None and ip_str(ack.yiaddr) == "10.99.0.115"
    assert t.by_mac("52:54:00:99:00:10").state is LeaseState.BOUND  # type: ignore[union-attr]
    # syslinux.efi's own DHCP: no option 93, no vendor class -> its address, no boot file
    # (answered by what this request says, not by what the MAC sent before)
    d, offer = run(vector("pxe-uefi-ovmfnative-syslinux-f6-discover"), pol, t)
    assert offer is not None and 67 not in offer.options and offer.file.strip(b"\0") == b""
    assert ip_str(offer.yiaddr) == "10.99.0.115" and "not a PXE client" in d.reason
    assert d.boot_file == "" and offer.siaddr == 0
    assert 60 not in offer.options  # not a PXE ROM: no PXEClient echo


def test_ipxe_rom_gets_script_url_not_ipxe_again() -> None:
    pol, t = policy(), LeaseTable()
    d, offer = run(vector("pxe-bios-ipxerom-f1-discover"), pol, t)
    assert offer is not None and offer.options[67] == SCRIPT.encode()
    assert offer.file == SCRIPT.encode()
    assert "iPXE" in d.reason and d.user_class == "iPXE"
    d, offer = run(vector("pxe-uefi-ipxerom-syslinux-f1-discover"), pol, t)
    assert offer is not None and offer.options[67] == SCRIPT.encode()


def test_ipxe_without_script_configured_warns() -> None:
    pol = policy(boot=BootFiles(bios="undionly.kpxe", ipxe_script=None))
    d, offer = run(vector("pxe-bios-ipxerom-f1-discover"), pol, LeaseTable())
    assert offer is not None and offer.options[67] == b"undionly.kpxe"
    assert "may load iPXE again" in d.reason


@pytest.mark.parametrize("arch,expected", [(0, "pxelinux.0"), (7, "syslinux.efi"),
                                           (9, "syslinux.efi"), (11, "grubaa64.efi")])
def test_boot_file_by_arch(arch: int, expected: str) -> None:
    d, offer = run(req(arch=arch), policy(), LeaseTable())
    assert offer is not None and offer.options[67] == expected.encode()


def test_uefi_http_boot() -> None:
    d, offer = run(req(arch=16, vendor="HTTPClient:Arch:00016:UNDI:003001"), policy(),
                   LeaseTable())
    assert offer is not None and offer.options[67] == b"http://10.99.0.1/ipxe.efi"
    assert offer.options[60] == b"HTTPClient" and 43 not in offer.options


HTTP_VC = "HTTPClient:Arch:00016:UNDI:003001"


@pytest.mark.parametrize("with_93", [True, False])
def test_uefi_http_boot_full_dora(with_93: bool) -> None:
    """UEFI spec 2.10 §24.7.2: the offer carries the boot file URL (option 67) and echoes
    option 60 "HTTPClient"; without option 93 the arch comes from the vendor class."""
    pol, t = policy(), LeaseTable()
    r = req(arch=16, vendor=HTTP_VC) if with_93 else req(vendor=HTTP_VC)
    d, offer = run(r, pol, t)
    assert offer is not None and d.msg_out == "OFFER" and offer.yiaddr
    assert offer.options[67] == b"http://10.99.0.1/ipxe.efi" and offer.options[60] == b"HTTPClient"
    assert 43 not in offer.options and "boot_files.uefi_http" in d.reason
    d2, ack = run(req(msg=3, arch=16, vendor=HTTP_VC, o50=ip_int(ip_str(offer.yiaddr)).to_bytes(
        4, "big"), o54=bytes((10, 99, 0, 1))), pol, t)
    assert ack is not None and d2.msg_out == "ACK" and ack.yiaddr == offer.yiaddr
    assert ack.options[67] == b"http://10.99.0.1/ipxe.efi" and ack.options[60] == b"HTTPClient"


def test_uefi_http_boot_proxy() -> None:
    """proxyDHCP: the offer on 67 and the ACK on 4011 carry the URL and HTTPClient, no address."""
    pol, t = policy(mode=Mode.PROXY), LeaseTable()
    d, offer = run(req(arch=16, vendor=HTTP_VC), pol, t)
    assert offer is not None and d.msg_out == "OFFER" and offer.yiaddr == 0
    assert offer.options[67] == b"http://10.99.0.1/ipxe.efi" and offer.options[60] == b"HTTPClient"
    assert 43 not in offer.options and 51 not in offer.options and 3 not in offer.options
    d2, ack = run(req(msg=3, arch=16, vendor=HTTP_VC, ciaddr="10.99.0.77"), pol, t, port=4011,
                  peer=(ip_int("10.99.0.77"), 68))
    assert ack is not None and d2.msg_out == "ACK" and ack.yiaddr == 0
    assert ack.options[67] == b"http://10.99.0.1/ipxe.efi" and ack.options[60] == b"HTTPClient"
    assert d2.dest is not None and ip_str(d2.dest.ip) == "10.99.0.77"


def test_uefi_http_boot_unconfigured_is_explained() -> None:
    pol = policy(mode=Mode.PROXY, boot=BootFiles(efi_x64="syslinux.efi", uefi_http=None))
    d, _ = run(req(arch=16, vendor=HTTP_VC), pol, LeaseTable())
    assert d.reply is None and "uefi_http is not set" in d.reason


@pytest.mark.parametrize("arch,words", [(10, "EFI ARM32"), (6, "efi_ia32 is not set"),
                                        (42, "arch 42")])
def test_unknown_or_unconfigured_arch_is_explained(arch: int, words: str) -> None:
    d, offer = run(req(arch=arch), policy(), LeaseTable())
    assert offer is not None and 67 not in offer.options  # full mode: address, no file
    assert words in d.reason
    d, _ = run(req(arch=arch), policy(mode=Mode.PROXY), LeaseTable())
    assert d.reply is None and words in d.reason  # proxy: nothing to offer, said why


# --- full DHCP rules -----------------------------------------------------------------------


def test_two_discovers_in_flight_get_different_addresses() -> None:
    pol, t = policy(), LeaseTable()
    a, _ = run(req("02:00:00:00:00:01"), pol, t)
    b, _ = run(req("02:00:00:00:00:02"), pol, t)
    assert a.yiaddr and b.yiaddr and a.yiaddr != b.yiaddr
    # the same client asking again keeps its offer
    a2, _ = run(req("02:00:00:00:00:01"), pol, t)
    assert a2.yiaddr == a.yiaddr
    # B's REQUEST for A's held address is refused
    d, nak = run(req("02:00:00:00:00:02", 3, o50=ip_int(a.yiaddr).to_bytes(4, "big"),
                     o54=b"\x0a\x63\x00\x01"), pol, t)
    assert d.msg_out == "NAK" and "held by 02:00:00:00:00:01" in d.reason
    assert d.dest is not None and d.dest.broadcast


def test_offer_hold_expires() -> None:
    pol, t = policy(range_end="10.99.0.100", offer_hold=30), LeaseTable()
    a, _ = run(req("02:00:00:00:00:01"), pol, t)
    b, _ = run(req("02:00:00:00:00:02"), pol, t, now=T0 + 1)
    assert b.reply is None and "pool exhausted" in b.reason
    b, _ = run(req("02:00:00:00:00:02"), pol, t, now=T0 + 31)
    assert b.yiaddr == a.yiaddr == "10.99.0.100"


def test_a_discover_flood_cannot_starve_the_pool() -> None:
    """Random-MAC DISCOVERs never REQUEST: with the pool full of their offers, a new client
    takes the oldest offer older than offer_reclaim_after; a bound lease is never taken."""
    pol, t = policy(range_end="10.99.0.102", offer_hold=30), LeaseTable()
    bound = dora("02:00:00:00:02:00", pol, t)
    flood = [run(req(f"02:00:00:00:02:{i:02x}"), pol, t, now=T0 + i)[0].yiaddr
             for i in (1, 2)]
    d, _ = run(req("02:00:00:00:02:ff"), pol, t, now=T0 + 2.5)
    assert d.reply is None and "pool exhausted" in d.reason  # no offer is 2 s old yet
    d, _ = run(req("02:00:00:00:02:ff"), pol, t, now=T0 + 3.5)
    assert d.yiaddr == flood[0] != bound and "taken back" in d.reason
    d, ack = run(req("02:00:00:00:02:ff", msg=3, o50=bytes(map(int, d.yiaddr.split(".")))),
                 pol, t, now=T0 + 3.6)
    assert ack is not None and d.msg_out == "ACK"
    late, _ = run(req("02:00:00:00:02:01", msg=3, o50=bytes(map(int, flood[0].split(".")))),
                  pol, t, now=T0 + 4)
    assert late.msg_out != "ACK"  # the flooder's old offer is gone; one holder per address


def test_pool_exhaustion_no_address_twice() -> None:
    pol, t = policy(range_end="10.99.0.104"), LeaseTable()
    got = [dora(f"02:00:00:00:01:{i:02x}", pol, t) for i in range(5)]
    assert len(set(got)) == 5
    d, _ = run(req("02:00:00:00:01:ff"), pol, t)
    assert d.reply is None and d.msg_out == "-"
    assert "pool exhausted: all 5 addresses of 10.99.0.100-10.99.0.104" in d.reason
    # an expired lease is reclaimed for the newcomer
    d, _ = run(req("02:00:00:00:01:ff"), pol, t, now=T0 + 4000)
    assert d.yiaddr in got


def test_request_for_another_server_drops_our_offer() -> None:
    pol, t = policy(), LeaseTable()
    run(req(), pol, t)
    d, _ = run(req(msg=3, o54=b"\x0a\x63\x00\x02", o50=b"\x0a\x63\x00\x64"), pol, t)
    assert d.reply is None and "chose DHCP server 10.99.0.2" in d.reason
    assert t.by_mac("02:00:00:00:00:01") is None


def test_renew_is_unicast_to_ciaddr() -> None:
    pol, t = policy(), LeaseTable()
    ip = dora("02:00:00:00:00:01", pol, t)
    d, ack = run(req(msg=3, ciaddr=ip), pol, t, now=T0 + 1800)
    assert ack is not None and ip_str(ack.yiaddr) == ip and ip_str(ack.ciaddr) == ip
    assert d.dest is not None and (ip_str(d.dest.ip), d.dest.port) == (ip, 68)
    assert "renewing" in d.reason
    assert t.by_mac("02:00:00:00:00:01").expires == T0 + 1800 + 3600  # type: ignore[union-attr]


def test_init_reboot_wrong_subnet_naks() -> None:
    pol, t = policy(), LeaseTable()
    dora("02:00:00:00:00:01", pol, t)  # a client we know, moved to another network
    d, nak = run(req(msg=3, o50=b"\xc0\xa8\x01\x05"), pol, t)
    assert nak is not None and nak.msg_type == MsgType.NAK and nak.yiaddr == 0
    assert "not in subnet" in d.reason and nak.options[56]


@pytest.mark.parametrize("ciaddr,o50", [(None, b"\x0a\x63\x00\x96"), ("10.99.0.150", None)])
def test_request_from_unknown_client_gets_no_answer(ciaddr: str | None,
                                                    o50: bytes | None) -> None:
    """RFC 2131 4.3.2: INIT-REBOOT (or RENEWING) with no record of the client: silence,
    so a flood of bare REQUESTs binds nothing."""
    pol, t = policy(), LeaseTable()
    opts = {"o50": o50} if o50 else {}
    for i in range(20):
        d, reply = run(req(f"02:00:00:00:01:{i:02x}", 3, ciaddr=ciaddr, **opts), pol, t)
        assert reply is None and d.ops == () and "no record" in d.reason
    assert len(list(t)) == 0
    # a wrong-subnet INIT-REBOOT of an unknown client is silent too (no record comes first)
    d, reply = run(req(msg=3, o50=b"\xc0\xa8\x01\x05"), pol, t)
    assert reply is None and "no record" in d.reason
    # a reserved MAC is a record: its INIT-REBOOT for its address is ACKed
    pol = policy(reservations=(Reservation(mac="02:00:00:00:00:aa", ip="10.99.0.20"),))
    d, ack = run(req("02:00:00:00:00:aa", 3, o50=b"\x0a\x63\x00\x14"), pol, LeaseTable())
    assert ack is not None and ack.msg_type == MsgType.ACK


def test_init_reboot_of_known_client_is_acked() -> None:
    pol, t = policy(), LeaseTable()
    ip = dora("02:00:00:00:00:01", pol, t)
    d, ack = run(req(msg=3, o50=ip_int(ip).to_bytes(4, "big")), pol, t, now=T0 + 100)
    assert ack is not None and ack.msg_type == MsgType.ACK and "init-reboot" in d.reason


def test_unicast_offer_needs_neighbour_entry() -> None:
    d, offer = run(req(), policy(), LeaseTable())
    assert d.dest is not None and not d.dest.broadcast
    assert d.dest.arp_mac == "02:00:00:00:00:01" and ip_str(d.dest.ip) == d.yiaddr
    d, _ = run(req("02:00:00:00:00:03", flags=FLAG_BROADCAST), policy(), LeaseTable())
    assert d.dest is not None and d.dest.broadcast and d.dest.arp_mac is None


def test_decline_and_release() -> None:
    pol, t = policy(), LeaseTable()
    ip = dora("02:00:00:00:00:01", pol, t)
    d, _ = run(req(msg=4, o50=ip_int(ip).to_bytes(4, "big"), o54=b"\x0a\x63\x00\x01"), pol, t)
    assert d.reply is None and "already in use" in d.reason
    assert t.by_ip(ip_int(ip)).state is LeaseState.DECLINED  # type: ignore[union-attr]
    other = dora("02:00:00:00:00:01", pol, t)
    assert other != ip  # the declined address is out of the pool
    assert dora("02:00:00:00:00:02", pol, t) not in (ip, other)
    d, _ = run(req(msg=7, ciaddr=other), pol, t)
    assert "released" in d.reason
    assert t.by_mac("02:00:00:00:00:01").state is LeaseState.RELEASED  # type: ignore[union-attr]
    assert dora("02:00:00:00:00:01", pol, t) == other  # affinity survives a release


def test_inform() -> None:
    d, ack = run(req(msg=8, ciaddr="10.99.0.50", arch=0), policy(), LeaseTable())
    assert ack is not None and ack.msg_type == MsgType.ACK and ack.yiaddr == 0
    assert 51 not in ack.options and ack.options[67] == b"pxelinux.0"
    assert d.dest is not None and ip_str(d.dest.ip) == "10.99.0.50"


@pytest.mark.parametrize("ciaddr", ["192.0.2.7", "10.99.0.255", "10.99.0.0"])
def test_inform_off_subnet_gets_no_answer(ciaddr: str) -> None:
    """The ACK to an INFORM goes to ciaddr: answering any ciaddr reflects at anyone."""
    d, ack = run(req(msg=8, ciaddr=ciaddr, arch=0), policy(), LeaseTable())
    assert ack is None and "only on the subnet" in d.reason


def test_proxy_inform_on_4011_off_subnet_gets_no_answer() -> None:
    pol = policy(mode=Mode.PROXY, range_start=None, range_end=None)
    p = req(msg=8, arch=7, ciaddr="192.0.2.7")
    d, ack = run(p, pol, LeaseTable(), port=4011, peer=(ip_int("192.0.2.7"), 4011))
    assert ack is None and "only on the subnet" in d.reason
    d, ack = run(req(msg=8, arch=7, ciaddr="10.99.0.7"), pol, LeaseTable(), port=4011,
                 peer=(ip_int("10.99.0.7"), 4011))
    assert ack is not None


def test_relayed_request_only_from_listed_relay_agents() -> None:
    pools = (Pool(subnet="10.20.0.0/24", range_start="10.20.0.10", range_end="10.20.0.20"),)
    d, offer = run(req(giaddr="10.20.0.1"), policy(relay_pools=pools), LeaseTable())
    assert offer is None and "dhcp.relay_agents" in d.reason
    d, offer = run(req(giaddr="10.20.0.1"), policy(relay_pools=pools,
                                                   relay_agents=("10.20.0.1",)), LeaseTable())
    assert offer is not None and ip_str(offer.yiaddr) == "10.20.0.10"
    # a forged giaddr inside a relay pool's subnet, but not a listed agent
    d, offer = run(req(giaddr="10.20.0.2"), policy(relay_pools=pools,
                                                   relay_agents=("10.20.0.1",)), LeaseTable())
    assert offer is None
    # proxy mode too
    pol = policy(mode=Mode.PROXY, range_start=None, range_end=None)
    d, offer = run(req(arch=0, giaddr="10.20.0.1"), pol, LeaseTable())
    assert offer is None and "not a relay agent" in d.reason


def test_reservations() -> None:
    pol = policy(reservations=(
        Reservation(mac="02:00:00:00:00:aa", ip="10.99.0.20", hostname="node1",
                    boot_file="special.efi"),))
    t = LeaseTable()
    d, offer = run(req("02:00:00:00:00:aa", arch=7), pol, t)
    assert offer is not None and ip_str(offer.yiaddr) == "10.99.0.20"
    assert offer.options[12] == b"node1" and offer.options[67] == b"special.efi"
    dora("02:00:00:00:00:bb", pol, t)  # known to us, then asks for aa's address
    d, nak = run(req("02:00:00:00:00:bb", 3, o50=b"\x0a\x63\x00\x14"), pol, t)
    assert nak is not None and "reserved for 02:00:00:00:00:aa" in d.reason


def test_relay_pools() -> None:
    pol = policy(relay_pools=(Pool(subnet="10.20.0.0/24", range_start="10.20.0.10",
                                   range_end="10.20.0.20", router="10.20.0.1",
                                   dns=("10.20.0.53",)),),
                 relay_agents=("10.20.0.1", "172.16.0.1"))
    t = LeaseTable()
    d, offer = run(req(giaddr="10.20.0.1", o82=b"\x01\x02ab"), pol, t)
    assert offer is not None and ip_str(offer.yiaddr) == "10.20.0.10"
    assert offer.options[3] == b"\x0a\x14\x00\x01" and offer.options[6] == b"\x0a\x14\x00\x35"
    assert offer.options[1] == b"\xff\xff\xff\x00" and offer.options[82] == b"\x01\x02ab"
    assert d.dest is not None and (ip_str(d.dest.ip), d.dest.port) == ("10.20.0.1", 67)
    assert d.relay == "10.20.0.1"
    d, _ = run(req("02:00:00:00:00:09", giaddr="172.16.0.1"), pol, t)
    assert d.reply is None and "no pool for that subnet" in d.reason


def test_reply_respects_max_message_size() -> None:
    pol = policy(dns=tuple(f"10.99.1.{i}" for i in range(1, 60)), domain="x" * 200)
    d, offer = run(req(arch=0), pol, LeaseTable())
    assert d.reply is not None and len(d.reply) <= 576 - 28
    assert offer is not None and offer.options[53] == b"\x02" and 54 in offer.options


# --- proxyDHCP ------------------------------------------------------------------------------


def test_proxy_ignores_non_pxe_and_offers_no_address() -> None:
    pol, t = policy(mode=Mode.PROXY), LeaseTable()
    d, _ = run(vector("pxe-bios-ipxerom-f21-discover"), pol, t)  # busybox udhcpc
    assert d.reply is None and "not a PXE client" in d.reason
    d, offer = run(vector("pxe-uefi-ovmfnative-syslinux-f1-discover"), pol, t)
    assert offer is not None and offer.yiaddr == 0 and offer.msg_type == MsgType.OFFER
    assert offer.options[67] == b"syslinux.efi" and offer.pxe_vendor[6] == b"\x08"
    assert 51 not in offer.options and 1 not in offer.options and 3 not in offer.options
    assert d.ops == ()  # proxy keeps no leases


def test_proxy_4011_ack_to_sender() -> None:
    pol, t = policy(mode=Mode.PROXY), LeaseTable()
    p = req(msg=3, arch=7, ciaddr="10.99.0.150", o43=b"\x47\x04\x80\x00\x00\x00\xff")
    d, ack = run(p, pol, t, port=4011, peer=(ip_int("10.99.0.150"), 4011))
    assert ack is not None and ack.msg_type == MsgType.ACK and ack.yiaddr == 0
    assert ack.options[67] == b"syslinux.efi" and ack.pxe_vendor[71] == b"\x80\x00\x00\x00"
    assert d.dest is not None and (ip_str(d.dest.ip), d.dest.port) == ("10.99.0.150", 4011)


def test_proxy_port_67_request_for_real_server_is_silent() -> None:
    pol = policy(mode=Mode.PROXY)
    d, _ = run(req(msg=3, arch=0, o54=b"\x0a\x63\x00\x02", o50=b"\x0a\x63\x00\x96"), pol,
               LeaseTable())
    assert d.reply is None and "10.99.0.2" in d.reason


def test_bootp_and_replies_are_ignored() -> None:
    p = req()
    del p.options[53]
    d = decide(p, policy(), LeaseTable(), T0)
    assert d.reply is None and "BOOTP" in d.reason
    p = req()
    p.op = 2
    assert decide(p, policy(), LeaseTable(), T0).reply is None


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(p.stem for p in DATA.glob("*.hex"))),
       st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
       st.sampled_from([Mode.FULL, Mode.PROXY]), st.sampled_from([67, 4011]))
def test_decide_never_raises_but_valueerror(name: str, muts: list[tuple[int, int]], mode: Mode,
                                            port: int) -> None:
    b = bytearray(bytes.fromhex((DATA / f"{name}.hex").read_text().strip()))
    for i, v in muts:
        if i < len(b):
            b[i] = v
    try:
        p = decode(bytes(b))
        d = decide(p, policy(mode=mode), LeaseTable(), T0, port=port, peer=(0, 68))
    except ValueError:
        return
    if d.reply is not None:
        decode(d.reply)


# --- dhcp.allowed_macs (dnsmasq's dhcp-ignore=tag:!known) ---------------------------------

LISTED, OTHER = "02:00:00:00:0a:01", "02:00:00:00:0a:02"


@pytest.mark.parametrize("mode", [Mode.FULL, Mode.PROXY])
def test_only_known_macs_are_answered(mode: Mode) -> None:
    kw: dict[str, object] = {"mode": mode, "known_macs": frozenset({LISTED})}
    if mode is Mode.PROXY:
        kw.update(range_start=None, range_end=None)
    pol, t = policy(**kw), LeaseTable()
    d, reply = run(req(LISTED, 1, arch=0), pol, t)
    assert reply is not None and d.msg_out == "OFFER" and d.cause == ""
    for msg in (1, 3):
        d, reply = run(req(OTHER, msg, arch=0, o50=bytes([10, 99, 0, 120])), pol, t)
        assert reply is None and d.msg_out == "-" and not d.ops
        assert d.cause == "not_allowed" and "dhcp.allowed_macs" in d.reason
    # on port 4011 too (UEFI's second proxy question)
    if mode is Mode.PROXY:
        d, reply = run(req(OTHER, 3, arch=7), pol, t, port=4011, peer=(ip_int("10.99.0.9"), 68))
        assert reply is None and d.cause == "not_allowed"


def test_no_list_answers_everyone() -> None:
    d, reply = run(req(OTHER, 1, arch=0), policy(), LeaseTable())
    assert reply is not None and d.cause == ""


def test_non_pxe_request_gets_no_loader_whatever_the_mac_sent_before() -> None:
    """An EFI PXE ROM, then the initramfs's udhcpc from the same MAC (no option 60/93): the
    second gets its address and no boot file, not efi64/syslinux.efi nor pxelinux.0."""
    pol, t = policy(), LeaseTable()
    mac = "02:00:00:00:00:21"
    d, offer = run(req(mac, 1, arch=7), pol, t)
    assert offer is not None and offer.options[67] == b"syslinux.efi"
    d, offer = run(req(mac, 1, vendor="udhcp 1.36.1"), pol, t)
    assert offer is not None and offer.yiaddr and 67 not in offer.options
    assert d.boot_file == "" and "not a PXE client" in d.reason
    d, ack = run(req(mac, 3, vendor="udhcp 1.36.1", o50=offer.yiaddr.to_bytes(4, "big"),
                     o54=b"\x0a\x63\x00\x01"), pol, t)
    assert ack is not None and ack.msg_type == MsgType.ACK and 67 not in ack.options
    # a PXE ROM that leaves out option 93 still gets the BIOS default
    d, offer = run(req("02:00:00:00:00:22", 1, vendor="PXEClient"), pol, t)
    assert offer is not None and offer.options[67] == b"pxelinux.0"
