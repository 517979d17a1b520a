"""Issue 21 with real firmware: a fault injected into a QEMU PXE boot through `pxewizard
serve`, and the finding the server's own events give, with the seconds from the stall.

- ``stage3_other_host``: SeaBIOS + iPXE ROM, pxelinux, the guest's stage-3 URL on
  10.99.0.77 (``boot.extra_cmdline``): kernel and initrd come, the kernel's udhcpc gets its
  lease, then nothing reaches us -> ``stage3-other-host`` naming the URL;
- ``firewall_tftp``: an nftables rule in the server's namespace drops UDP 69 -> the ROM
  gets its ACK and boot file and no request arrives -> ``ack-no-tftp`` (serve names the rule);
- ``blksize_mtu``: the bridge's end of our link at MTU 1000, the ROM asks blksize 1432 -> the OACK gets
  through, block 1 does not -> ``BlksizeGranted`` and ``blksize-mtu``;
- ``stp``: the lab bridge with STP on and forward delay 15 s -> BPDUs on pxe0 ->
  ``stp-forward-delay`` at start, and the ROM's DISCOVERs held for 30 s.

With ``PXW_RECORD_TIMELINE=1`` each boot's events are saved as
tests/data/timeline/e2e-stall-<case>.jsonl (tests/unit/test_stalls.py replays them).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from pxewizard.events import from_dict
from pxewizard.insight.diagnose import HostFacts
from pxewizard.insight.session import diagnose_events

from .cases import BY_NAME, STAGE3, prepare
from .harness import SERVER_IP, boot, lab_network, serve_ours

REPO = Path(__file__).resolve().parents[2]
FACTS = HostFacts(server_ip=SERVER_IP, interface="pxe0", dhcp_mode="full")


def _record(events: list[dict], name: str) -> None:
    if os.environ.get("PXW_RECORD_TIMELINE"):
        text = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events)
        text = re.sub(r"/tmp/pytest-of-[^/]+/pytest-\d+/[^/]+/", "/srv/pxe/", text)
        (REPO / "tests" / "data" / "timeline" / f"e2e-stall-{name}.jsonl").write_text(text)


def _first(events, rule: str, start: float, limit: float = 60.0) -> tuple[float, object]:
    t = start
    while t <= start + limit:
        for f in diagnose_events([e for e in events if e.ts <= t], FACTS, now=t)[1]:
            if f.rule == rule:
                return t - start, f
        t += 0.25
    raise AssertionError(f"no {rule} within {limit} s")


def _run(name: str, guest, tmp_path: Path, *, stage3: str | None = None, timeout: float,
         before=None) -> list[dict]:
    prep = prepare(BY_NAME["bios_pxelinux_http"], guest, tmp_path)
    if stage3 is not None:
        prep.plan["boot"]["extra_cmdline"] = prep.plan["boot"]["extra_cmdline"].replace(
            f"http://{SERVER_IP}/{STAGE3}", stage3)
    from tests.support.serving import write_plan

    with lab_network() as net:
        if before is not None:
            before(net)
        plan_path = write_plan(prep.work, prep.plan)
        with serve_ours(net.server, plan_path) as served:
            boot(net, name, prep.stage3_sha, timeout=timeout)
            time.sleep(0.5)
            events = served.events()
    _record(events, name)
    return events


@pytest.mark.timeout(420)
def test_stage3_on_another_host(guest, tmp_path: Path) -> None:
    raw = _run("stage3_other_host", guest, tmp_path, stage3=f"http://10.99.0.77/{STAGE3}",
               timeout=150)
    evs = [from_dict(d) for d in raw]
    plan = [e for e in evs if e.kind == "plan_loaded"][0]
    assert f"http://10.99.0.77/{STAGE3}" in plan.stage3_elsewhere
    kernel_ack = [e for e in evs if e.kind == "dhcp_exchange" and e.msg_out == "ACK"
                  and not e.vendor_class.startswith("PXEClient")]
    assert kernel_ack, "the kernel's own DHCP did not reach us"
    delay, f = _first(evs, "stage3-other-host", kernel_ack[0].ts)
    print(f"STALL stage3-other-host {delay:.2f} s: {f.title}")
    assert delay <= 10 and "10.99.0.77" in f.title


@pytest.mark.timeout(420)
def test_firewall_drops_tftp(guest, tmp_path: Path) -> None:
    def nft(net) -> None:
        net.server.run("nft", "add table inet pxwtest")
        net.server.run("nft", "add chain inet pxwtest input { type filter hook input "
                              "priority 0 ; policy accept ; }")
        net.server.run("nft", "add rule inet pxwtest input udp dport 69 drop")

    raw = _run("firewall_tftp", guest, tmp_path, timeout=70, before=nft)
    evs = [from_dict(d) for d in raw]
    ack = [e for e in evs if e.kind == "dhcp_exchange" and e.msg_out == "ACK"]
    assert ack and ack[0].boot_file and not [e for e in evs if e.kind == "transfer_started"]
    delay, f = _first(evs, "ack-no-tftp", ack[0].ts)
    print(f"STALL ack-no-tftp {delay:.2f} s: {f.title}")
    assert delay <= 16.2 + 10


@pytest.mark.timeout(420)
def test_blksize_above_the_path_mtu(guest, tmp_path: Path) -> None:
    def small(net) -> None:
        # the bridge's end of the server's link at MTU 1000 (veth drops what exceeds the
        # receiving end's MTU, as a smaller link on the way would), the server's NIC at
        # 1500; no UDP GSO on the server side (GSO packets bypass that check)
        net.bridge.run("ip", "link", "set", "p-srv", "mtu", "1000")
        net.server.run("ethtool", "-K", "pxe0", "tx-udp-segmentation", "off", check=False)

    raw = _run("blksize_mtu", guest, tmp_path, timeout=150, before=small)
    evs = [from_dict(d) for d in raw]
    granted = [e for e in evs if e.kind == "blksize_granted"]
    assert granted, [e.kind for e in evs]
    first = [e for e in evs if e.kind == "transfer_started" and e.path == granted[0].path][0]
    delay, f = _first(evs, "blksize-mtu", first.ts)
    print(f"STALL blksize-mtu {delay:.2f} s: {f.title}")
    assert delay <= 10


@pytest.mark.timeout(420)
def test_stp_forward_delay(guest, tmp_path: Path) -> None:
    def stp(net) -> None:
        net.bridge.run("ip", "link", "set", "br0", "type", "bridge", "forward_delay", "1500",
                       "stp_state", "1")

    raw = _run("stp", guest, tmp_path, timeout=90, before=stp)
    evs = [from_dict(d) for d in raw]
    bpdu = [e for e in evs if e.kind == "bpdu_seen"]
    assert bpdu and bpdu[0].forward_delay == 15.0
    delay, f = _first(evs, "stp-forward-delay", bpdu[0].ts)
    print(f"STALL stp-forward-delay {delay:.2f} s: {f.title}")
    assert delay <= 10
    disc = [e for e in evs if e.kind == "dhcp_exchange"]
    if disc:
        print(f"first DISCOVER secs={disc[0].secs}")


HEALTHY = ("bios_pxelinux_http", "uefi_ipxe_chainload", "uefi_syslinux_http", "bios_proxydhcp",
           "bios_nfs")


@pytest.mark.timeout(420)
@pytest.mark.parametrize("name", HEALTHY)
def test_healthy_boot_gives_no_finding(name: str, guest, tmp_path: Path) -> None:
    """BIOS, UEFI (iPXE), OVMF, proxy beside a non-PXE DHCP server, NFSv3: the boot
    completes and the diagnosis of its events says nothing, at every second of it."""
    from pxewizard.insight.diagnose import Severity

    from .cases import check, run_ours

    b = run_ours(prepare(BY_NAME[name], guest, tmp_path))
    check(b)
    evs = [from_dict(d) for d in b.server_events]  # type: ignore[attr-defined]
    facts = HostFacts(server_ip=SERVER_IP, interface="pxe0",
                      dhcp_mode="proxy" if "proxy" in name else "full")
    t, end = min(e.ts for e in evs), max(e.ts for e in evs) + 5
    while t <= end:
        found = [f for f in diagnose_events([e for e in evs if e.ts <= t], facts, now=t)[1]
                 if f.severity >= Severity.warning]
        assert found == [], (name, round(t - min(e.ts for e in evs), 1),
                             [f.title for f in found])
        t += 1.0


@pytest.mark.timeout(420)
def test_stage3_file_deleted(guest, tmp_path: Path) -> None:
    """stage3.bin deleted from the medium, its .md5 left: a 404 named as a deleted file,
    the checksum never offered as 'did you mean'."""
    from pxewizard.boot.tree import build_boot
    from pxewizard.insight.session import host_facts, served_paths
    from pxewizard.plan import load_plan
    from tests.support.serving import write_plan

    prep = prepare(BY_NAME["bios_pxelinux_http"], guest, tmp_path)
    (prep.media / f"{STAGE3}.md5").write_text(f"{prep.stage3_sha}  {STAGE3}\n")
    (prep.media / STAGE3).unlink()
    with lab_network() as net:
        plan_path = write_plan(prep.work, prep.plan)
        with serve_ours(net.server, plan_path) as served:
            boot(net, "stage3_deleted", prep.stage3_sha, timeout=150)
            time.sleep(0.5)
            raw = served.events()
    _record(raw, "stage3_deleted")
    evs = [from_dict(d) for d in raw]
    plan = load_plan(plan_path)
    facts = host_facts(plan, files=served_paths(build_boot(plan).tree))
    miss = [e for e in evs if e.kind == "transfer_failed" and e.path.endswith(STAGE3)]
    assert miss and miss[0].code == 404
    found = [f for f in diagnose_events(evs, facts, now=miss[0].ts)[1]
             if f.rule == "stage3-failed"]
    assert found, [e.kind for e in evs]
    print(f"STALL stage3-failed 0.00 s: {found[0].title} / {found[0].cause}")
    assert "deleted?" in found[0].cause and f"{STAGE3}.md5" in found[0].cause
    assert "closest" not in found[0].cause
