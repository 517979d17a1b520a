"""Per-client timelines from recorded event sequences (tests/data/timeline)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pxewizard.events import (DhcpExchange, TransferDone, TransferFailed, TransferProgress,
                              TransferStarted, from_dict, read_jsonl)
from pxewizard.insight.timeline import (Role, Stage, Status, TimelineBuilder, build, classify,
                                format_timeline, is_config_search_miss, loader_family,
                                loader_firmware)

DATA = Path(__file__).resolve().parents[1] / "data" / "timeline"
MAC = "52:54:00:99:00:10"


def load(name: str) -> list:
    return [from_dict(d) for d in read_jsonl(DATA / f"{name}.jsonl")]


def end(events: list) -> float:
    return max(e.ts for e in events)


@pytest.mark.parametrize("path,role", [
    ("pxelinux.0", Role.loader), ("lpxelinux.0", Role.loader),
    ("efi64/syslinux.efi", Role.loader), ("undionly.kpxe", Role.loader),
    ("ipxe.efi", Role.loader), ("snponly.efi", Role.loader),
    ("ldlinux.c32", Role.module), ("efi64/ldlinux.e64", Role.module), ("menu.c32", Role.module),
    ("pxelinux.cfg/default", Role.config), ("pxelinux.cfg/01-52-54-00-99-00-10", Role.config),
    ("boot.ipxe", Role.config),
    ("vmlinuz", Role.kernel), ("sysresccd/boot/x86_64/vmlinuz", Role.kernel),
    ("rescue64", Role.kernel), ("linux", Role.kernel), ("rescue64.bin", Role.kernel),
    ("sysresccd/boot/x86_64/sysresccd.img", Role.initramfs), ("initram.igz", Role.initramfs),
    ("initrd.gz", Role.initramfs), ("sysresccd/boot/intel_ucode.img", Role.initramfs),
    ("sysresccd/x86_64/airootfs.sfs", Role.rootfs), ("sysrcd.dat", Role.rootfs),
    ("live/filesystem.squashfs", Role.rootfs), ("sysresccd/x86_64/airootfs.sha512",
                                                Role.checksum),
    ("sysrcd.md5", Role.checksum), ("README.txt", Role.other),
])
def test_classify(path: str, role: Role) -> None:
    assert classify(path) is role


def test_classify_sessions_are_stage3() -> None:
    assert classify("archiso", "nbd") is Role.rootfs
    assert classify("/srv/sysresccd", "nfs") is Role.rootfs


def test_loader_family_and_firmware() -> None:
    assert loader_family("pxelinux.0") == "syslinux"
    assert loader_family("efi64/syslinux.efi") == "syslinux"
    assert loader_family("undionly.kpxe") == "ipxe"
    assert loader_firmware("pxelinux.0") == "bios"
    assert loader_firmware("undionly.kpxe") == "bios"
    assert loader_firmware("efi64/syslinux.efi") == "efi"
    assert loader_firmware("menu.c32") == ""       # efi64/ modules are .c32 too


@pytest.mark.parametrize("path", [
    "pxelinux.cfg/01-52-54-00-99-00-10", "pxelinux.cfg/0A630073", "pxelinux.cfg/0A63007",
    "pxelinux.cfg/0", "efi64/pxelinux.cfg/0A6", "pxelinux.cfg/b8945908-d6a6-41a9-611d-74a6ab80b83d",
    "autoexec.ipxe"])
def test_config_search_names_are_normal_misses(path: str) -> None:
    assert is_config_search_miss(path)


@pytest.mark.parametrize("path", ["pxelinux.cfg/default", "boot.ipxe", "ldlinux.c32",
                                  "pxelinux.0"])
def test_real_files_are_not_search_misses(path: str) -> None:
    assert not is_config_search_miss(path)


def test_healthy_bios_boot_walks_every_stage() -> None:
    evs = load("bios-pxelinux-http-ok")
    snap = build(evs, now=end(evs) + 5)
    assert len(snap.clients) == 1            # DHCP by MAC and TFTP/HTTP by IP joined
    tl = snap.clients[0]
    assert tl.client == MAC and tl.ip == "10.99.0.115"
    assert tl.stage is Stage.done
    assert tl.arch == 0 and tl.ipxe
    roles = [s.role for s in tl.transfers() if s.status is Status.ok]
    assert roles[:2] == [Role.loader, Role.module]
    assert Role.config in roles and Role.kernel in roles and Role.initramfs in roles
    assert roles[-1] is Role.rootfs
    misses = [s for s in tl.steps if s.status is Status.normal_miss]
    assert len(misses) == 9 and not tl.failed
    per = tl.bytes_by_stage()
    assert per[Stage.kernel] == 8_123_456 and per[Stage.initramfs] == 31_234_567
    assert per[Stage.stage3] > 700_000_000
    assert tl.idle == pytest.approx(5.0)
    kernel = tl.transfers(Role.kernel)[0]
    assert kernel.rate == pytest.approx(8_123_456 / 3.3)
    assert kernel.stage is Stage.kernel


def test_dhcp_transaction_is_one_step() -> None:
    evs = load("bios-pxelinux-http-ok")
    tl = build(evs).clients[0]
    first = tl.steps[0]
    assert first.kind == "dhcp" and first.status is Status.ok
    assert first.title == ("DHCP DISCOVER -> OFFER x2, REQUEST -> ACK 10.99.0.115 "
                           "file pxelinux.0")
    assert len(first.events) == 3


def test_edk2_probe_is_a_probe_not_a_failure() -> None:
    evs = load("uefi-ovmf-syslinux-ok")
    tl = build(evs).clients[0]
    probes = [s for s in tl.steps if s.status is Status.probe]
    assert [s.path for s in probes] == ["efi64/syslinux.efi"]
    assert not tl.failed
    assert tl.arch == 7 and tl.firmware == "efi"      # the second DHCP without option 93
    assert tl.stage is Stage.initramfs


def test_ipxe_autoexec_miss_is_normal() -> None:
    evs = load("uefi-ipxe-http-ok")
    tl = build(evs).clients[0]
    assert not tl.failed and tl.ipxe
    assert tl.stage is Stage.initramfs
    assert [s.status for s in tl.steps if s.path == "autoexec.ipxe"] == [Status.normal_miss]


def test_summary_while_a_transfer_runs() -> None:
    evs = [e for e in load("fault-stall-initramfs")]
    b = TimelineBuilder()
    for e in evs:
        b.feed(e)
    snap = b.snapshot(end(evs) + 12)
    (s,) = snap.summaries()
    assert s.stage is Stage.initramfs
    assert s.progress == pytest.approx(2_000_000 / 31_234_567)
    assert "initrd.gz" in s.label and "%" in s.label
    assert s.idle == pytest.approx(12.0)
    assert not s.failed


def test_incremental_snapshots_match_batch() -> None:
    evs = load("bios-pxelinux-http-ok")
    b = TimelineBuilder()
    stages = []
    for e in evs:
        b.feed(e)
        tl = b.snapshot(e.ts).clients
        stages.append(tl[0].stage if tl else Stage.waiting)
    assert stages == sorted(stages)           # a client never goes back a stage
    assert b.snapshot(end(evs)).clients == build(evs).clients


def test_ip_keyed_timeline_merges_when_the_mac_is_learned() -> None:
    evs = load("proxy-bios-ok")
    snap = build(evs)
    assert {tl.client for tl in snap.clients} == {MAC, "10.99.0.77"}
    b = TimelineBuilder()
    b.feed_many(evs)
    assert b.unknown_ips() == ["10.99.0.77"]
    b.learn("10.99.0.77", MAC.upper())         # from the neighbour table
    (tl,) = b.snapshot(end(evs)).clients
    assert tl.client == MAC and tl.ip == "10.99.0.77" and tl.stage is Stage.done
    assert [s.started for s in tl.steps] == sorted(s.started for s in tl.steps)


def test_proxy_4011_request_joins_ip() -> None:
    b = TimelineBuilder()
    b.feed(DhcpExchange(ts=1.0, client=MAC, service="proxydhcp", mac=MAC, xid=1,
                        msg_in="REQUEST", msg_out="ACK", requested_ip="10.1.2.3",
                        boot_file="efi64/syslinux.efi", arch=7, arch_name="EFI x64"))
    b.feed(TransferStarted(ts=2.0, client="10.1.2.3", service="tftp",
                           path="efi64/syslinux.efi", size=10, peer="10.1.2.3:1000"))
    (tl,) = b.snapshot(3.0).clients
    assert tl.client == MAC and tl.stage is Stage.loader


def test_client_key_from_peer_when_client_is_empty() -> None:
    b = TimelineBuilder()
    b.feed(TransferStarted(ts=1.0, service="http", path="vmlinuz", size=100,
                           peer="10.0.0.5:4000"))
    b.feed(TransferProgress(ts=1.5, service="http", path="vmlinuz", sent=50, size=100,
                            peer="10.0.0.5:4000"))
    (tl,) = b.snapshot(2.0).clients
    assert tl.client == "10.0.0.5"
    assert tl.current is not None and tl.current.fraction == 0.5
    b.feed(TransferDone(ts=2.0, service="http", path="vmlinuz", sent=100, seconds=1.0,
                        peer="10.0.0.5:4000"))
    (tl,) = b.snapshot(2.0).clients
    assert tl.steps[-1].status is Status.ok and tl.steps[-1].sent == 100


def test_failure_without_a_start_makes_a_step() -> None:
    b = TimelineBuilder()
    b.feed(TransferFailed(ts=1.0, client="10.0.0.5", service="tftp", path="pxelinux.0",
                          code=1, reason="file not found: pxelinux.0"))
    (tl,) = b.snapshot(1.0).clients
    assert tl.steps[0].status is Status.failed and tl.failed


def test_a_new_pxe_discover_after_the_kernel_starts_a_new_attempt() -> None:
    evs = load("fault-no-stage3")
    b = TimelineBuilder()
    b.feed_many(evs)
    t = end(evs) + 100
    b.feed(DhcpExchange(ts=t, client=MAC, service="dhcp", mac=MAC, xid=9, msg_in="DISCOVER",
                        msg_out="OFFER", arch=0, vendor_class="PXEClient:Arch:00000:UNDI:002001",
                        yiaddr="10.99.0.115", boot_file="pxelinux.0"))
    (tl,) = b.snapshot(t).clients
    assert tl.attempt == 2 and tl.stage is Stage.dhcp and len(tl.steps) == 1


def test_format_timeline_words() -> None:
    evs = load("bios-pxelinux-http-ok")
    lines = format_timeline(build(evs, now=end(evs)).clients[0])
    text = "\n".join(lines)
    assert lines[0].startswith(MAC) and "done" in lines[0]
    assert "miss  tftp pxelinux.cfg/0A630073" in text
    assert "FAIL" not in text
    assert "bytes: " in lines[-1]


def test_snapshot_caches_unchanged_clients() -> None:
    evs = load("bios-pxelinux-http-ok")
    b = TimelineBuilder()
    b.feed_many(evs)
    a, c = b.snapshot(end(evs)), b.snapshot(end(evs) + 3)
    assert a.clients[0].steps is c.clients[0].steps
    assert c.clients[0].idle == pytest.approx(3.0)


def test_switching_firmware_starts_a_new_attempt() -> None:
    evs = load("fault-wrong-arch")                 # EFI x64 client, BIOS loader
    b = TimelineBuilder()
    b.feed_many(evs)
    t = end(evs) + 30
    b.feed(DhcpExchange(ts=t, client=MAC, service="dhcp", mac=MAC, xid=5, msg_in="DISCOVER",
                        msg_out="OFFER", arch=0, arch_name="BIOS",
                        vendor_class="PXEClient:Arch:00000:UNDI:002001",
                        yiaddr="10.99.0.115", boot_file="pxelinux.0"))
    (tl,) = b.snapshot(t).clients
    assert tl.attempt == 2 and tl.arch == 0 and tl.firmware == "bios"
    assert not tl.transfers()


def test_retired_transfers_are_no_failure() -> None:
    """A loader that asks for the same file again: the TFTP server retires the abandoned
    transfer (cause superseded); the timeline shows it as ignored and nothing is found."""
    from pxewizard.events import TransferDone, TransferFailed, TransferStarted
    from pxewizard.insight.session import diagnose_events
    from pxewizard.insight.timeline import Status

    ip, evs = "10.99.0.115", []
    for i in range(50):
        peer = f"{ip}:{2000 + i}"
        evs.append(TransferStarted(ts=100 + i, client=ip, service="tftp", path="vmlinuz",
                                   size=8_000_000, options={"blksize": "1468"}, peer=peer))
        evs.append(TransferFailed(ts=100.9 + i, client=ip, service="tftp", path="vmlinuz",
                                  reason="the client asked for vmlinuz again", peer=peer,
                                  cause="superseded"))
    evs.append(TransferStarted(ts=151, client=ip, service="tftp", path="vmlinuz",
                               size=8_000_000, options={}, peer=f"{ip}:3000"))
    evs.append(TransferDone(ts=154, client=ip, service="tftp", path="vmlinuz", sent=8_000_000,
                            seconds=3, peer=f"{ip}:3000"))
    snap, findings = diagnose_events(evs, now=156)
    (tl,) = snap.clients
    assert [s.status for s in tl.steps].count(Status.ignored) == 50
    assert not tl.failed and findings == []


def _dora(i: int, xid: int, ts: float) -> list[DhcpExchange]:
    mac = "02:00:%02x:%02x:%02x:%02x" % (i >> 24, (i >> 16) & 255, (i >> 8) & 255, i & 255)
    ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    return [DhcpExchange(client=mac, service="dhcp", mac=mac, xid=xid, msg_in=m_in,
                         msg_out=m_out, yiaddr=ip, ts=ts) for m_in, m_out in
            (("DISCOVER", "OFFER"), ("REQUEST", "ACK"))]


def test_a_flood_of_new_macs_keeps_the_client_count_bounded() -> None:
    """Anyone on the LAN can send DHCP from a new MAC per packet: the timelines forget the
    least recently active clients instead of growing without end."""
    from pxewizard.insight import timeline
    b = TimelineBuilder()
    n = timeline.MAX_CLIENTS * 2 + 100
    for i in range(n):
        for ev in _dora(i, i, 1000.0 + i):
            b.feed(ev)
    snap = b.snapshot(1000.0 + n)
    assert len(snap.clients) <= timeline.MAX_CLIENTS
    assert b.evicted >= n - timeline.MAX_CLIENTS
    newest = _dora(n - 1, 0, 0)[0].mac
    assert any(tl.mac == newest for tl in snap.clients)          # the latest stay
    assert all(tl.mac != _dora(0, 0, 0)[0].mac for tl in snap.clients)
    assert len(b._ip_to_mac) <= 2 * timeline.MAX_CLIENTS + timeline.MAX_CLIENTS // 8 + 1


def test_a_client_renewing_for_days_keeps_a_bounded_number_of_steps() -> None:
    from pxewizard.insight import timeline
    b = TimelineBuilder()
    for xid in range(timeline.MAX_STEPS_PER_CLIENT + 50):
        for ev in _dora(7, xid, 1000.0 + xid):
            b.feed(ev)
    (tl,) = b.snapshot(5000.0).clients
    assert len(tl.steps) == timeline.MAX_STEPS_PER_CLIENT
    assert tl.steps[-1].status is Status.ok


def test_many_long_histories_keep_the_events_held_bounded(monkeypatch) -> None:
    from pxewizard.insight import timeline
    monkeypatch.setattr(timeline, "MAX_EVENTS_TOTAL", 5000)
    b = TimelineBuilder()
    for i in range(400):                     # 400 clients x 40 events = 16,000 events
        for xid in range(20):
            for ev in _dora(i, xid, 1000.0 + i * 20 + xid):
                b.feed(ev)
    assert b._held() <= 5000 + 64 * 40
    assert b.evicted > 0
    assert any(tl.mac == _dora(399, 0, 0)[0].mac for tl in b.snapshot(9999.0).clients)
