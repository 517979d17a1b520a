"""`pxewizard lab` as an operator runs it: a VM on the serving bridge, console on stdout.

The server namespace holds a bridge br0 carrying the server address (the
case where the Plan's interface is itself a bridge); `pxewizard serve` runs
there and `pxewizard lab --plan` joins a tap of its own to br0, boots BIOS
firmware, prints the guest's serial console and exits when the guest powers
off. Its console lines join the Plan's event log next to the servers' events;
its tap is gone afterwards.
"""

from __future__ import annotations

import os
import sys
import time

import pytest

from tests.support.netns import link_netns, namespace
from tests.support.serving import REPO, write_plan

from .cases import BY_NAME, prepare
from .guest import MARKER
from .harness import PREFIX, SERVER_IP, serve_ours


@pytest.mark.timeout(420)
def test_pxewizard_lab_boots_from_the_plan_bridge(guest, timing, tmp_path) -> None:
    case = BY_NAME["bios_pxelinux_http"]
    prep = prepare(case, guest, tmp_path)
    plan = dict(prep.plan, interface="br0")
    with namespace("lab") as ns:
        ns.run("ip", "link", "add", "br0", "type", "bridge", "stp_state", "0",
               "forward_delay", "0")
        ns.run("ip", "addr", "add", f"{SERVER_IP}/{PREFIX}", "dev", "br0")
        ns.run("ip", "link", "set", "br0", "up")
        plan_path = write_plan(tmp_path, plan)
        with serve_ours(ns, plan_path) as served:
            env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
            t0 = time.monotonic()
            proc = ns.run(sys.executable, "-m", "pxewizard", "lab", "--plan", str(plan_path),
                          "--memory", "512", "--timeout", "300", env=env, cwd=str(REPO),
                          check=False, timeout=360)
            seconds = time.monotonic() - t0
            events = served.events()
        links = ns.run("ip", "-o", "link", "show").stdout
    out = proc.stdout + proc.stderr
    marker = next((ln for ln in out.splitlines() if MARKER in ln), "")
    timing.append(("pxewizard_lab_cli", seconds, "ok" if prep.stage3_sha in marker else "FAILED"))
    print(f"E2E-TIMING case=pxewizard_lab_cli lab_start_to_exit={seconds:.1f}s", flush=True)
    assert proc.returncode == 0, out[-3000:]
    assert marker.startswith("[lab] ") and f"sha256={prep.stage3_sha}" in marker, out[-3000:]
    assert "lab: bios VM" in out and "in bridge br0" in out
    console = [e for e in events if e.get("kind") == "console_line"]
    assert any(MARKER in e.get("line", "") for e in console), \
        "the lab's console lines are not in the Plan's event log"
    assert any(e.get("kind") == "transfer_done" and e.get("path") == "pxelinux.0"
               for e in events), "the lab VM's requests did not reach our servers"
    assert "pxwlab" not in links, f"the lab's tap is still there:\n{links}"


@pytest.mark.timeout(420)
def test_pxewizard_lab_boots_beside_a_plain_nic(guest, timing, tmp_path) -> None:
    """The Plan's interface is a plain NIC (a veth whose other end is the "wire"): the lab
    wires its tap to it without a bridge and without moving its address, and leaves
    nothing behind (no tap, no tc qdisc or filter on the NIC)."""
    case = BY_NAME["bios_pxelinux_http"]
    prep = prepare(case, guest, tmp_path)
    plan = dict(prep.plan, interface="pxe0")
    with namespace("lab") as ns, namespace("wire") as wire:
        link_netns(ns, "pxe0", wire, "eth0", a_addr=f"{SERVER_IP}/{PREFIX}")
        plan_path = write_plan(tmp_path, plan)
        with serve_ours(ns, plan_path) as served:
            env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
            t0 = time.monotonic()
            proc = ns.run(sys.executable, "-m", "pxewizard", "lab", "--plan", str(plan_path),
                          "--memory", "512", "--timeout", "300", env=env, cwd=str(REPO),
                          check=False, timeout=360)
            seconds = time.monotonic() - t0
            events = served.events()
        links = ns.run("ip", "-o", "link", "show").stdout
        qdiscs = ns.run("tc", "qdisc", "show", "dev", "pxe0").stdout
        addrs = ns.run("ip", "-o", "addr", "show", "dev", "pxe0").stdout
    out = proc.stdout + proc.stderr
    marker = next((ln for ln in out.splitlines() if MARKER in ln), "")
    timing.append(("pxewizard_lab_plain_nic", seconds,
                   "ok" if prep.stage3_sha in marker else "FAILED"))
    assert proc.returncode == 0, out[-3000:]
    assert f"sha256={prep.stage3_sha}" in marker, out[-3000:]
    assert "tap wired to pxe0" in out
    assert any(e.get("kind") == "transfer_done" and e.get("path") == "pxelinux.0"
               for e in events), "the lab VM's requests did not reach our servers"
    assert "pxwlab" not in links, f"the lab's tap is still there:\n{links}"
    assert "clsact" not in qdiscs, f"the lab left its tc qdisc on pxe0:\n{qdiscs}"
    assert SERVER_IP in addrs  # the NIC kept its address
