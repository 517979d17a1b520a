"""Diagnosis rules, each against a recorded event sequence (tests/data/timeline)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pxewizard.events import ConsoleLine, DhcpServerSeen, LogLine, from_dict, read_jsonl
from pxewizard.insight.diagnose import (BridgeState, Finding, HostFacts, Severity, Thresholds,
                                        closest_name, diagnose, format_finding, package_for)
from pxewizard.insight.session import diagnose_events
from pxewizard.insight.timeline import Role, Stage, Status, TimelineBuilder

DATA = Path(__file__).resolve().parents[1] / "data" / "timeline"
MAC = "52:54:00:99:00:10"
FULL = HostFacts(server_ip="10.99.0.1", interface="pxe0", dhcp_mode="full")
PROXY = HostFacts(server_ip="10.99.0.1", interface="pxe0", dhcp_mode="proxy")


def load(name: str) -> list:
    return [from_dict(d) for d in read_jsonl(DATA / f"{name}.jsonl")]


def run(name: str, after: float, facts: HostFacts = FULL, **kw) -> list[Finding]:
    evs = load(name)
    now = max(e.ts for e in evs) + after
    return diagnose_events(evs, facts, now=now, **kw)[1]


def rules(findings: list[Finding]) -> list[str]:
    return sorted(f.rule for f in findings)


# --- what must stay quiet ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["bios-pxelinux-http-ok", "uefi-ovmf-syslinux-ok",
                                  "uefi-ipxe-http-ok"])
def test_healthy_boots_raise_nothing(name: str) -> None:
    # the pxelinux config search (9 misses), EDK2's tsize probe + ERROR 8, autoexec.ipxe
    assert run(name, 5) == []


def test_completed_boot_stays_quiet_long_after() -> None:
    assert run("bios-pxelinux-http-ok", 3600) == []


def test_proxy_boot_joined_by_neighbour_table_raises_nothing() -> None:
    assert run("proxy-bios-ok", 600, PROXY, neighbours={"10.99.0.77": MAC}) == []


def test_proxy_boot_without_the_join_does_not_blame_the_client() -> None:
    assert run("proxy-bios-ok", 600, PROXY) == []


# --- one fault each ----------------------------------------------------------------------

def test_missing_boot_loader_names_file_and_package() -> None:
    (f,) = run("fault-loader-missing", 1)
    assert f.rule == "tftp-not-found" and f.severity is Severity.error and f.client == MAC
    assert "pxelinux.0" in f.title and "pxelinux" in f.fix
    assert all(e.kind == "transfer_failed" for e in f.evidence)


def test_missing_file_suggests_the_case_twin() -> None:
    facts = HostFacts(server_ip="10.99.0.1", dhcp_mode="full", files=("PXELINUX.0", "x.c32"))
    (f,) = run("fault-loader-missing", 1, facts)
    assert "PXELINUX.0" in f.cause and "case" in f.cause


def test_mode_0600() -> None:
    (f,) = run("fault-mode-0600", 1)
    assert f.rule == "not-world-readable" and "0600" in f.title and "chmod" in f.fix


def test_tftpd_hpa_log_line_global_read() -> None:
    b = TimelineBuilder()
    b.feed(LogLine(ts=1.0, service="tftpd-hpa", level="error",
                   message="tftpd: File must have global read permissions"))
    fs = diagnose(b.snapshot(2.0))
    assert rules(fs) == ["not-world-readable"]


def test_bin_kernel() -> None:
    (f,) = run("fault-bin-kernel", 1)
    assert f.rule == "bin-kernel" and "rescue64.bin" in f.title and "LINUX" in f.fix


def test_ldlinux_mismatch_after_the_loader_wait() -> None:
    assert run("fault-ldlinux-mismatch", 5) == []
    (f,) = run("fault-ldlinux-mismatch", 25)
    assert f.rule == "ldlinux-mismatch" and f.stage is Stage.loader


def test_efi_client_given_bios_loader() -> None:
    (f,) = run("fault-wrong-arch", 1)
    assert f.rule == "wrong-arch-loader" and "efi_x64" in f.fix
    assert any(e.kind == "dhcp_exchange" for e in f.evidence)


def test_tftp_timeout_mid_file_suggests_smaller_blksize() -> None:
    (f,) = run("fault-tftp-timeout", 1)
    assert f.rule == "tftp-timeout" and "vmlinuz" in f.title
    assert "8192" in f.cause and "max_blksize" in f.fix and f.severity is Severity.error


def test_ipxe_loop() -> None:
    fs = run("fault-ipxe-loop", 1)
    assert rules(fs) == ["ipxe-loop"]
    assert "ipxe_script" in fs[0].fix


def test_no_stage3_after_kernel_and_initramfs() -> None:
    # the kernel's own DHCP (the last event) is the clock: stage 3 follows within seconds
    assert run("fault-no-stage3", 7) == []
    (f,) = run("fault-no-stage3", 8.5)
    assert f.rule == "no-stage3" and "command line" in f.cause
    (f,) = run("fault-no-stage3", 130)
    assert f.rule == "no-stage3" and "command line" in f.cause
    assert rules(run("fault-no-stage3", 20, thresholds=Thresholds(stage3_wait=10))) == [
        "no-stage3"]


def test_nfs_v4() -> None:
    (f,) = run("fault-nfs-v4", 1)
    assert f.rule == "nfs-v4" and "vers=3" in f.fix


def test_client_ram_from_console() -> None:
    (f,) = run("fault-ram-console", 1)
    assert f.rule == "client-ram" and "Out of memory" in f.cause
    assert isinstance(f.evidence[0], ConsoleLine)


def test_client_ram_from_a_stalled_http_copy() -> None:
    assert run("fault-ram-http-stall", 5) == []
    (f,) = run("fault-ram-http-stall", 40)
    assert f.rule == "client-ram" and f.severity is Severity.warning
    facts = HostFacts(server_ip="10.99.0.1", dhcp_mode="full", client_ram=512 << 20)
    (f,) = run("fault-ram-http-stall", 40, facts)
    assert f.severity is Severity.error and "512 MiB" in f.cause


def test_client_ram_host_fact() -> None:
    facts = HostFacts(transport="http", ram_needed=2 << 30, client_ram=1 << 30)
    fs = diagnose(TimelineBuilder().snapshot(0.0), facts)
    assert rules(fs) == ["client-ram"] and fs[0].client == ""


def test_competing_dhcp_server_in_full_mode() -> None:
    (f,) = run("fault-competing-dhcp", 1)
    assert f.rule == "competing-dhcp" and "10.99.0.2" in f.title
    assert isinstance(f.evidence[0], DhcpServerSeen)


def test_other_server_in_proxy_mode_is_expected() -> None:
    assert run("fault-competing-dhcp", 1, PROXY) == []


def test_client_took_another_servers_offer() -> None:
    fs = run("fault-other-server-won", 1)
    assert rules(fs) == ["competing-dhcp", "dhcp-other-server-won"]
    won = next(f for f in fs if f.rule == "dhcp-other-server-won")
    assert "10.99.0.2" in won.cause and "no boot file" in won.cause


def test_offer_never_requested() -> None:
    assert run("fault-offer-ignored", 2) == []
    (f,) = run("fault-offer-ignored", 10)
    assert f.rule == "dhcp-offer-ignored" and f.severity is Severity.warning


def test_no_dhcp_at_all() -> None:
    assert run("fault-no-dhcp", 30) == []
    (f,) = run("fault-no-dhcp", 61)
    assert f.rule == "no-dhcp" and "VLAN" in f.cause and "forward" in f.cause


def test_no_dhcp_names_the_bridge_when_it_blocks() -> None:
    br = BridgeState(interface="br0", bridge="br0", stp=True, forward_delay=15.0)
    facts = HostFacts(server_ip="10.99.0.1", interface="br0", dhcp_mode="full", bridge=br)
    fs = run("fault-no-dhcp", 61, facts)
    assert rules(fs) == ["bridge-forward-delay", "no-dhcp"]
    nd = next(f for f in fs if f.rule == "no-dhcp")
    assert nd.cause.index("br0") < nd.cause.index("VLAN")


def test_bridge_forward_delay_is_a_host_fact() -> None:
    br = BridgeState(interface="br0", bridge="br0", stp=True, forward_delay=15.0,
                     ports_not_forwarding=("tap0 (listening)",))
    (f,) = diagnose(TimelineBuilder().snapshot(0.0), HostFacts(bridge=br))
    assert f.rule == "bridge-forward-delay" and f.severity is Severity.error
    assert "30 s" in f.title and "forward_delay 0" in f.fix
    assert "tap0 (listening)" in f.details[0]
    off = BridgeState(interface="br0", bridge="br0", stp=False, forward_delay=15.0)
    assert diagnose(TimelineBuilder().snapshot(0.0), HostFacts(bridge=off)) == []


def test_pool_full() -> None:
    (f,) = run("fault-pool-full", 1)
    assert f.rule == "dhcp-pool-full" and "range" in f.fix


def test_unknown_arch_without_boot_file() -> None:
    (f,) = run("fault-no-boot-file-arch", 1)
    assert f.rule == "dhcp-no-boot-file" and "efi_arm64" in f.cause


def test_not_a_pxe_client_in_proxy_mode_is_info_only() -> None:
    (f,) = run("proxy-not-pxe", 1, PROXY)
    assert f.rule == "dhcp-not-pxe" and f.severity is Severity.info


def test_ack_but_no_tftp() -> None:
    assert run("fault-ack-no-tftp", 15) == []       # iPXE waits ~13 s for IPv6 first
    (f,) = run("fault-ack-no-tftp", 30)
    assert f.rule == "ack-no-tftp" and "69" in f.cause


def test_ack_but_no_http_names_http_and_its_port() -> None:
    """The same stall with an http:// boot file (iPXE chained to boot.ipxe): the cause and
    the fix speak of HTTP on the URL's host and TCP port, not of TFTP and UDP 69."""
    dicts = read_jsonl(DATA / "fault-ack-no-tftp.jsonl")
    for d in dicts:
        if d.get("boot_file"):
            d["boot_file"] = "http://10.99.0.1:8080/boot.ipxe"
    evs = [from_dict(d) for d in dicts]
    (f,) = diagnose_events(evs, FULL, now=max(e.ts for e in evs) + 30)[1]
    assert f.rule == "ack-no-tftp" and "http://10.99.0.1:8080/boot.ipxe" in f.title
    assert "HTTP on 10.99.0.1:8080" in f.cause and "TCP 8080" in f.cause
    assert "TFTP" not in f.cause.split("request came")[1] and "69" not in f.cause
    assert "TCP 8080" in f.fix and "curl -I http://10.99.0.1:8080/boot.ipxe" in f.fix
    # a firewall rule on this host for that port is named as the cause
    facts = HostFacts(server_ip="10.99.0.1", interface="pxe0", dhcp_mode="full",
                      firewall=lambda: ["tcp dport 8080 drop", "udp dport 69 accept"])
    (f,) = diagnose_events(evs, facts, now=max(e.ts for e in evs) + 30)[1]
    assert "a firewall rule on this host drops HTTP: tcp dport 8080 drop" in f.cause
    assert "accept rule for TCP 8080" in f.fix


def test_stage3_404() -> None:
    (f,) = run("fault-stage3-404", 1)
    assert f.rule == "stage3-failed" and "archisobasedir" in f.cause
    files = ("sysresccd/x86_64/airootfs.sfs",)
    (f,) = run("fault-stage3-404", 1, HostFacts(server_ip="10.99.0.1", files=files))
    assert "sysresccd/x86_64/airootfs.sfs" in f.details[0]


def test_stall_names_the_stage() -> None:
    assert run("fault-stall-initramfs", 10) == []
    (f,) = run("fault-stall-initramfs", 31)
    assert f.rule == "stall" and "initramfs" in f.title and f.stage is Stage.initramfs


def test_port_held_and_server_error() -> None:
    facts = HostFacts(ports_held=(("udp", 69, "tftp", "in.tftpd (pid 812)"),))
    b = TimelineBuilder()
    b.feed(LogLine(ts=1.0, service="serve", level="error",
                   message="cannot bind UDP 10.99.0.1:67: held by dnsmasq (pid 9)\n  fix: stop "
                           "dnsmasq (pid 9)"))
    fs = diagnose(b.snapshot(1.0), facts)
    assert rules(fs) == ["port-held", "server-error"]
    err = next(f for f in fs if f.rule == "server-error")
    assert err.fix.startswith("stop dnsmasq")


def test_findings_sorted_worst_first_and_words() -> None:
    fs = run("fault-other-server-won", 1) + run("proxy-not-pxe", 1, PROXY)
    fs = sorted(fs, key=lambda f: -f.severity)
    lines = format_finding(fs[0])
    assert lines[0].startswith("ERROR") and any(x.strip().startswith("fix:") for x in lines)
    assert any("seen:" in x for x in lines)


def test_every_rule_has_a_sequence() -> None:
    from pxewizard.insight.diagnose import RULES
    assert len(RULES) >= 18


def test_helpers() -> None:
    assert package_for("efi64/syslinux.efi") == "syslinux-efi"
    assert package_for("undionly.kpxe") == "ipxe"
    assert "another folder" in closest_name("pxelinux.0", ["bios/pxelinux.0"])
    assert closest_name("x", []) == ""


def test_a_broken_rule_does_not_hide_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    from pxewizard.insight import diagnose as d

    def boom(*a):
        raise RuntimeError("x")

    monkeypatch.setattr(d, "RULES", [boom, *d.RULES])
    evs = load("fault-loader-missing")
    _, fs = diagnose_events(evs, FULL)
    assert {"internal", "tftp-not-found"} <= {f.rule for f in fs}


# --- sequences recorded from the tests/net runs (real udhcpc + tftp-hpa, our servers) ------

def test_recorded_healthy_tftp_boot_raises_nothing() -> None:
    evs = load("net-healthy-tftp")
    snap, fs = diagnose_events(evs, FULL, now=max(e.ts for e in evs) + 5)
    assert fs == []
    tl = next(t for t in snap.clients if t.transfers())
    assert tl.mac == MAC and tl.stage is Stage.initramfs


def test_recorded_missing_file() -> None:
    (f,) = run("net-missing-file", 1)
    assert f.rule == "tftp-not-found" and "PXELINUX.0" in f.title


def test_recorded_mode_0600() -> None:
    (f,) = run("net-mode-0600", 1)
    assert f.rule == "not-world-readable" and "0600" in f.title


def test_keys_stay_stable_while_counters_grow() -> None:
    a = {f.key for f in run("fault-stall-initramfs", 31)}
    b = {f.key for f in run("fault-stall-initramfs", 95)}
    assert a == b and len(a) == 1
    a = {f.key for f in run("fault-no-dhcp", 61)}
    assert a == {f.key for f in run("fault-no-dhcp", 300)}


def test_findings_for_one_client() -> None:
    from pxewizard.insight.diagnose import findings_for

    fs = run("fault-other-server-won", 1)
    assert [f.rule for f in findings_for(fs, MAC)] == ["dhcp-other-server-won"]
    assert [f.rule for f in findings_for(fs, "")] == ["competing-dhcp"]


def test_ipxe_did_its_dhcp_then_nothing() -> None:
    evs = [e for e in load("uefi-ipxe-http-ok") if e.ts < load("uefi-ipxe-http-ok")[0].ts + 20]
    evs = [e for e in evs if not (e.kind.startswith("transfer") and e.ts > evs[0].ts + 15)]
    last = max(e.ts for e in evs)
    _, fs = diagnose_events(evs, FULL, now=last + 10)
    assert fs == []
    _, fs = diagnose_events(evs, FULL, now=last + 30)
    (f,) = fs
    assert f.rule == "loader-no-next" and "own DHCP" in f.title and "boot.ipxe" in f.cause


E2E = ["e2e-bios_pxelinux_http", "e2e-uefi_syslinux_http", "e2e-uefi_ipxe_chainload",
       "e2e-bios_proxydhcp"]
"""Server events of real QEMU boots (SeaBIOS + iPXE ROM, OVMF) recorded from tests/e2e."""


@pytest.mark.parametrize("name", ["bios-pxelinux-http-ok", "uefi-ovmf-syslinux-ok",
                                  "uefi-ipxe-http-ok", "net-healthy-tftp", *E2E])
def test_healthy_boots_are_quiet_at_every_moment(name: str) -> None:
    """Live: the UI diagnoses after every event; a healthy boot never shows a finding."""
    from pxewizard.insight.timeline import TimelineBuilder

    evs = load(name)
    b = TimelineBuilder()
    for i, e in enumerate(evs):
        b.feed(e)
        nxt = evs[i + 1].ts if i + 1 < len(evs) else e.ts + 5
        for now in (e.ts, (e.ts + nxt) / 2, nxt - 0.001):
            assert diagnose(b.snapshot(max(now, e.ts)), FACTS.get(name, FULL)) == [], (i, e)


FACTS = {"e2e-bios_proxydhcp": PROXY}


@pytest.mark.parametrize("name", E2E)
def test_e2e_boots_have_a_complete_timeline(name: str) -> None:
    evs = load(name)
    snap, fs = diagnose_events(evs, FACTS.get(name, FULL), now=max(e.ts for e in evs) + 600)
    assert fs == []
    (tl,) = snap.clients
    assert tl.stage is Stage.done and tl.mac.startswith("52:54:00")
    per = tl.bytes_by_stage()
    assert per[Stage.kernel] > 1 << 20 and per[Stage.initramfs] > 1 << 20
    assert per[Stage.stage3] > 3 << 20                    # the e2e stage-3 file, all of it
    assert [s.role for s in tl.transfers() if s.stage is Stage.stage3] == [Role.rootfs]
    stages = [s.stage for s in tl.steps if s.kind == "transfer" and s.status is Status.ok
              and s.role is not Role.module]          # menu.c32 comes after the config
    assert stages == sorted(stages)


def test_replay_prints_each_fix_once_and_every_boot_attempt(tmp_path, capsys) -> None:
    import json
    from pathlib import Path
    from types import SimpleNamespace

    from pxewizard.commands.doctor import cli_replay

    data = Path(__file__).resolve().parents[1] / "data" / "timeline"
    for log in sorted(data.glob("*.jsonl")):
        cli_replay(SimpleNamespace(log=str(log)))
        out = capsys.readouterr().out
        for block in out.split("\n  ")[1:]:
            assert block.count("fix: ") <= 1, f"{log.name}: a fix printed twice:\n{block}"
    # the same client boots twice (a 404, then a reboot): both attempts are shown
    events = [json.loads(x) for x in (data / "fault-stage3-404.jsonl").read_text().splitlines()]
    two = tmp_path / "two.jsonl"
    two.write_text("".join(json.dumps({**e, "ts": e["ts"] + dt}) + "\n"
                           for dt in (0, 300) for e in events))
    cli_replay(SimpleNamespace(log=str(two)))
    out = capsys.readouterr().out
    assert "boot attempt 1 (earlier): reached initramfs, 1 failed step(s)" in out
    assert "boot attempt 2 (latest):" in out
    assert out.count("FAIL  http arch/x86_64/airootfs.sfs") == 2


def test_a_client_outside_allowed_macs_is_named_with_the_fix() -> None:
    from pxewizard.insight.session import diagnose_events
    from pxewizard.events import DhcpExchange

    ev = DhcpExchange(ts=100.0, client="52:54:00:99:99:01", service="proxydhcp",
                      mac="52:54:00:99:99:01", xid=1, msg_in="DISCOVER", msg_out="-",
                      vendor_class="PXEClient:Arch:00000:UNDI:002001", cause="not_allowed",
                      reason="52:54:00:99:99:01 is not in dhcp.allowed_macs")
    (f,) = [f for f in diagnose_events([ev], now=130.0)[1] if f.rule.startswith("dhcp-")]
    assert f.rule == "dhcp-not-allowed" and "add 52:54:00:99:99:01 to dhcp.allowed_macs" in f.fix
