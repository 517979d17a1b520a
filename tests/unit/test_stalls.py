"""Issue 21: every stall named within 10 seconds, from what the server can see.

Each recorded fault (tests/data/timeline, made by make.py's ``stalls()`` from the captured
timing) is replayed with ``now`` stepping forward from the last thing the client did; the
test checks which finding appears, its words, and how many seconds after the stall it
came. The healthy recordings must stay quiet at every step. ``python -m
tests.unit.test_stalls`` prints the table of findings and delays.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pxewizard.events import DhcpExchange, Event, from_dict, read_jsonl
from pxewizard.insight.diagnose import Finding, HostFacts, Severity, Thresholds, closest_name
from pxewizard.insight.session import diagnose_events

DATA = Path(__file__).resolve().parents[1] / "data" / "timeline"
MAC = "52:54:00:99:00:10"
FULL = HostFacts(server_ip="10.99.0.1", interface="pxe0", dhcp_mode="full")
STEP = 0.25

HEALTHY = ["bios-pxelinux-http-ok", "uefi-ovmf-syslinux-ok", "uefi-ipxe-http-ok",
           "proxy-bios-ok", "net-healthy-tftp", "e2e-bios_proxydhcp",
           "e2e-bios_pxelinux_http", "e2e-uefi_ipxe_chainload", "e2e-uefi_syslinux_http",
           "ok-linux-bin-kernel"]


def load(name: str) -> list[Event]:
    return [from_dict(d) for d in read_jsonl(DATA / f"{name}.jsonl")]


def at(events: list[Event], now: float, facts: HostFacts = FULL) -> list[Finding]:
    return diagnose_events([e for e in events if e.ts <= now], facts, now=now)[1]


def first_finding(events: list[Event], rule: str, start: float, limit: float = 90.0,
                  facts: HostFacts = FULL) -> tuple[float, Finding]:
    """The first moment (stepping STEP s from ``start``) a finding of ``rule`` is there."""
    t = start
    while t <= start + limit:
        for f in at(events, t, facts):
            if f.rule == rule:
                return t, f
        t += STEP
    raise AssertionError(f"no {rule} within {limit} s of {start}")


# (recording, rule, the stall: the client's last event before it went silent, facts)
def _stall_kernel_dhcp(evs: list[Event]) -> float:
    return [e for e in evs if isinstance(e, DhcpExchange) and e.msg_out == "ACK"][-1].ts


CASES = {
    # STP: the BPDU names the bridge at once (before any client); the late DISCOVER (secs
    # 30) is named the moment it arrives
    "stp-bpdu": ("fault-stp-forward-delay", "stp-forward-delay",
                 lambda evs: min(e.ts for e in evs if e.kind == "bpdu_seen")),
    "stp-late-discover": ("fault-stp-forward-delay", "stp-forward-delay",
                          lambda evs: max(e.ts for e in evs if e.kind == "dhcp_exchange")),
    "stage3-other-host": ("fault-stage3-other-host", "stage3-other-host", _stall_kernel_dhcp),
    "stage3-deleted": ("fault-stage3-deleted", "stage3-failed",
                       lambda evs: max(e.ts for e in evs if e.kind == "transfer_failed")),
    "firewall-tftp": ("fault-firewall-tftp", "ack-no-tftp",
                      lambda evs: [e for e in evs if e.kind == "dhcp_exchange"][2].ts),
    "blksize-mtu": ("fault-blksize-mtu", "blksize-mtu",
                    lambda evs: [e for e in evs if e.kind == "transfer_started"][0].ts),
    "kernel-bin-line": ("fault-kernel-bin-line", "bin-kernel",
                        lambda evs: [e for e in evs if e.kind == "transfer_started"
                                     and e.path.endswith(".bin")][0].ts),
    "nfs-v4": ("fault-nfs-v4-rpc", "nfs-v4",
               lambda evs: max(e.ts for e in evs if e.kind == "rpc_version_refused")),
    # recorded from tests/net/test_stalls.py: a real Linux bridge's BPDUs, ISC dhclient,
    # busybox udhcpc + tftp-hpa behind an nftables drop rule, curl over an MTU-1000 port
    "net-stp-bpdu": ("net-stp-forward-delay", "stp-forward-delay",
                     lambda evs: min(e.ts for e in evs if e.kind == "bpdu_seen")),
    "net-firewall-tftp": ("net-firewall-tftp", "ack-no-tftp",
                          lambda evs: [e for e in evs if e.kind == "dhcp_exchange"][-1].ts),
    "net-blksize-mtu": ("net-blksize-mtu", "blksize-mtu",
                        lambda evs: [e for e in evs if e.kind == "transfer_started"][0].ts),
    # recorded from real QEMU boots (SeaBIOS + iPXE ROM, pxelinux) by tests/e2e/test_stalls.py
    "e2e-stage3-other-host": ("e2e-stall-stage3_other_host", "stage3-other-host",
                              _stall_kernel_dhcp),
    "e2e-firewall-tftp": ("e2e-stall-firewall_tftp", "ack-no-tftp",
                          lambda evs: [e for e in evs if e.kind == "dhcp_exchange"][-1].ts),
    "e2e-blksize-mtu": ("e2e-stall-blksize_mtu", "blksize-mtu",
                        lambda evs: [e for e in evs if e.kind == "transfer_started"][0].ts),
    "e2e-stage3-deleted": ("e2e-stall-stage3_deleted", "stage3-failed",
                           lambda evs: max(e.ts for e in evs if e.kind == "transfer_failed")),
    "e2e-stp": ("e2e-stall-stp", "stp-forward-delay",
                lambda evs: min(e.ts for e in evs if e.kind == "bpdu_seen")),
}
# when the expected next request should have come at the latest (the healthy budget)
BUDGET = {"firewall-tftp": 16.2, "net-firewall-tftp": 16.2, "e2e-firewall-tftp": 16.2,
          "stage3-other-host": 2.0, "e2e-stage3-other-host": 2.0}


def _facts(case: str) -> HostFacts:
    if case == "stage3-deleted":
        return HostFacts(server_ip="10.99.0.1", dhcp_mode="full", files=(
            "sysresccd/x86_64/sysrcd.dat.md5", "sysresccd/x86_64/airootfs.sfs",
            "sysresccd/boot/x86_64/vmlinuz"))
    if case == "e2e-stage3-deleted":
        return HostFacts(server_ip="10.99.0.1", dhcp_mode="full", files=(
            "stage3.bin.md5", "boot/vmlinuz", "boot/initrd.gz"))
    if case in ("firewall-tftp", "net-firewall-tftp", "e2e-firewall-tftp"):
        return HostFacts(server_ip="10.99.0.1", dhcp_mode="full", firewall=lambda: [
            "nftables: rule inet filter input handle 7 drops port 69"])
    return FULL


def measure(case: str) -> tuple[float, Finding]:
    name, rule, stall = CASES[case]
    evs = load(name)
    if case == "stp-late-discover":   # the client-level finding, not the host one
        t0 = stall(evs)
        for f in at(evs, t0, _facts(case)):
            if f.rule == rule and f.client:
                return 0.0, f
        raise AssertionError("no client-level stp finding")
    t0 = stall(evs)
    t, f = first_finding(evs, rule, t0, facts=_facts(case))
    return t - t0, f


@pytest.mark.parametrize("name", HEALTHY)
def test_healthy_recordings_stay_quiet_at_every_step(name: str) -> None:
    evs = load(name)
    facts = HostFacts(dhcp_mode="proxy") if "proxy" in name else HostFacts()
    t, end = min(e.ts for e in evs), max(e.ts for e in evs) + 5
    snap, _ = diagnose_events(evs, facts)
    if all(tl.stage.name == "done" for tl in snap.clients):
        end += 55   # a finished boot stays quiet long after; truncated recordings end here
    while t <= end:
        found = [f for f in at(evs, t, facts) if f.severity >= Severity.warning]
        assert found == [], (t - min(e.ts for e in evs), [f.title for f in found])
        t += 1.0


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_stall_is_named_within_10_s(case: str) -> None:
    delay, f = measure(case)
    assert delay <= BUDGET.get(case, 0.0) + 10.0, (delay, f.title)
    assert f.severity >= Severity.warning and f.cause and f.fix and f.evidence


def test_stp_names_bridge_forward_delay_and_fix() -> None:
    _, f = measure("stp-bpdu")
    assert "8000.52:54:00:99:00:fe" in f.title and "15 s" in f.title
    assert "edge" in f.fix and not f.client
    _, f = measure("stp-late-discover")
    assert f.severity is Severity.error and f.client == MAC
    assert "30 s late" in f.title and "8000.52:54:00:99:00:fe" in f.title
    assert "forward delay 15" in f.title


def test_stage3_other_host_names_the_url_and_not_this_server() -> None:
    delay, f = measure("stage3-other-host")
    assert "http://10.99.0.77/" in f.title and "not this server" in f.title
    assert delay <= 10.0


def test_stage3_deleted_says_so_and_never_offers_the_md5() -> None:
    _, f = measure("stage3-deleted")
    assert "not in any served root (deleted?)" in f.cause
    assert "sysrcd.dat.md5" in f.cause and "checksum" in f.cause
    assert "did you mean" not in f.cause and "closest" not in f.cause
    files = ["sysresccd/x86_64/sysrcd.dat.md5", "sysresccd/x86_64/airootfs.sfs"]
    assert closest_name("sysresccd/x86_64/sysrcd.dat", files) != \
        "the closest served name is sysresccd/x86_64/sysrcd.dat.md5"
    assert "sysrcd.dat.md5" not in closest_name("sysresccd/x86_64/sysrcd.dat", files)
    # a checksum asked for still finds its neighbour
    assert "sysrcd.dat.md5" in closest_name("sysresccd/x86_64/sysrcd.dat.MD5", files)


def test_firewall_finding_names_the_rule_and_stays_after_the_dhcp_retry() -> None:
    evs = load("fault-firewall-tftp")
    facts = _facts("firewall-tftp")
    _, f = measure("firewall-tftp")
    assert "handle 7" in f.cause and "delete" in f.fix and f.details
    # the ROM asks DHCP again 62 s later: the finding stays (no transfer ever came)
    last = max(e.ts for e in evs)
    for dt in (0.5, 5, 30, 120):
        assert "ack-no-tftp" in [x.rule for x in at(evs, last + dt, facts)]


def test_blksize_mtu_names_the_mtu_and_the_grant_not_a_firewall() -> None:
    evs = load("fault-blksize-mtu")
    _, f = measure("blksize-mtu")
    assert "below 1500" in f.title and "blksize 512" in f.cause
    later = at(evs, max(e.ts for e in evs) + 1)
    assert "tftp-timeout" not in [x.rule for x in later]   # no firewall guess on top


def test_net_recordings_name_the_real_peers() -> None:
    _, f = measure("net-stp-bpdu")
    assert "8000.52:54:00:99:00:fe" in f.title and "15 s" in f.title
    evs = load("net-stp-forward-delay")
    first = [e for e in evs if isinstance(e, DhcpExchange)][0]
    assert first.secs >= 4          # ISC dhclient counted the 30 s the port held it
    late = [x for x in at(evs, first.ts) if x.rule == "stp-forward-delay" and x.client]
    assert late and late[0].severity is Severity.error
    _, f = measure("net-blksize-mtu")
    assert "1468" in f.title and "below 1500" in f.title


def test_bin_kernel_only_when_the_served_config_said_kernel() -> None:
    evs = load("ok-linux-bin-kernel")
    assert [f.rule for f in at(evs, max(e.ts for e in evs) + 5)] == []
    _, f = measure("kernel-bin-line")
    assert f.severity is Severity.error and "rescue64.bin" in f.title


def test_nfs_v4_prog_mismatch_is_the_error_with_vers3() -> None:
    _, f = measure("nfs-v4")
    assert f.severity is Severity.error and "vers=3" in f.fix and "PROG_MISMATCH" in f.cause


@pytest.mark.parametrize("name, rule", [("fault-competing-dhcp-stopped", "competing-dhcp"),
                                        ("fault-no-dhcp-stopped", "no-dhcp")])
def test_replay_keeps_the_dhcp_mode_after_a_clean_stop(name: str, rule: str) -> None:
    evs = load(name)
    snap, fs = diagnose_events(evs, HostFacts(), now=max(e.ts for e in evs))
    assert not snap.services and snap.plan is not None and snap.plan.dhcp_mode == "full"
    assert rule in [f.rule for f in fs]


def test_thresholds_are_the_healthy_budget_plus_less_than_10_s() -> None:
    """The stage budgets against the longest gaps of the healthy recordings."""
    th = Thresholds()
    gaps = {"offer": 4.05, "ack": 16.19, "kernel-dhcp": 21.22, "stage3-after-dhcp": 2.0}
    assert gaps["offer"] < th.offer_wait <= gaps["offer"] + 10
    assert gaps["ack"] < th.ack_wait <= gaps["ack"] + 10
    assert gaps["kernel-dhcp"] < th.stage3_wait <= gaps["kernel-dhcp"] + 10
    assert gaps["stage3-after-dhcp"] < th.stage3_after_dhcp <= gaps["stage3-after-dhcp"] + 10


def table() -> list[str]:
    rows = ["| fault | finding | seconds from stall | text |", "|---|---|---|---|"]
    for case in sorted(CASES):
        delay, f = measure(case)
        rows.append(f"| {case} | {f.rule} ({f.severity.label}) | {delay:.2f} | {f.title} |")
    return rows


if __name__ == "__main__":
    print("\n".join(table()))
