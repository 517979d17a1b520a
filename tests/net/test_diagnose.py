"""Fault injection with real clients: each fault yields its finding within seconds.

Our server (`pxewizard serve`) runs in a namespace; real clients nobody here
wrote (busybox udhcpc, tftp-hpa's tftp, dnsmasq as the competing server) run
in others. The served JSONL events go through the timeline and the diagnosis,
and `pxewizard doctor` runs in the server's namespace as an operator would.

- healthy: udhcpc lease + pxelinux.0 + the pxelinux config search + kernel +
  initramfs over TFTP -> a complete timeline and no finding;
- a missing file -> tftp-not-found naming the file and the package;
- a file with mode 0600 -> not-world-readable;
- a dnsmasq full DHCP server on the same bridge -> competing-dhcp (doctor's probe);
- a bridge with STP on and forward delay 15 s -> bridge-forward-delay, and the
  fix (forward delay 0) lets the client through.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pxewizard.insight.diagnose import Finding, HostFacts
from pxewizard.insight.session import diagnose_events, host_facts, served_paths
from pxewizard.events import from_dict
from pxewizard.plan import load_plan
from pxewizard.insight.timeline import Role, Stage, Status
from tests.net.dhcp_support import serve_dhcp
from tests.support.netns import Netns, NetPair, link_netns, namespace, net_pair
from tests.support.serving import REPO, Served, write_plan
from tests.support.tools import require, require_root

SERVER_IP = "10.99.0.1"
CLIENT_MAC = "52:54:00:99:00:10"
MEDIA = REPO / "examples" / "demo-media"

UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc hook: configure the address like a PXE ROM would, and record the lease
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    env | sort > "{out}"
    ;;
esac
"""


def diag_plan(tmp: Path, *, interface: str = "pxe0", **dhcp: Any) -> Path:
    root = tmp / "tftp"
    root.mkdir(exist_ok=True)
    d: dict[str, Any] = {"mode": "full", "range_start": "10.99.0.100",
                         "range_end": "10.99.0.110"}
    d.update(dhcp)
    return write_plan(tmp, {"interface": interface, "server_ip": SERVER_IP, "prefix": 24,
                            "dhcp": d, "tftp": {"root": str(root)},
                            "http": {"enabled": False},
                            "boot": {"media": str(MEDIA),
                                     "external_http": f"http://{SERVER_IP}:8080/"}})


def facts_for(plan_path: Path) -> HostFacts:
    from pxewizard.boot.tree import build_boot

    plan = load_plan(plan_path)
    return host_facts(plan, files=served_paths(build_boot(plan).tree))


def diagnosis(served: Served, facts: HostFacts, after: float = 1.0):
    events = [from_dict(d) for d in served.events()]
    now = max(e.ts for e in events) + after
    return diagnose_events(events, facts, now=now)


def wait_for(served: Served, pred, timeout: float = 10.0) -> dict:
    return served.wait_event(pred, timeout=timeout)


def udhcpc(ns: Netns, tmp: Path, *, tries: int = 4, check: bool = True) -> dict[str, str]:
    """busybox udhcpc as a BIOS PXE client (option 60 PXEClient, option 93 = 0)."""
    require("udhcpc")
    out = tmp / "lease.env"
    with contextlib.suppress(FileNotFoundError):
        out.unlink()
    script = tmp / "udhcpc.sh"
    script.write_text(UDHCPC_SCRIPT.replace("{out}", str(out)))
    script.chmod(0o755)
    r = ns.run("udhcpc", "-f", "-q", "-n", "-i", "eth0", "-t", str(tries), "-T", "1",
               "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000",
               "-s", str(script), "-O", "bootfile", check=False, timeout=60)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    if not out.exists():
        return {}
    return dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)


def tftp_get(ns: Netns, tmp: Path, path: str) -> bool:
    """tftp-hpa fetches one file; True when it arrived."""
    require("tftp")
    local = tmp / "got" / path.replace("/", "_")
    local.parent.mkdir(exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        local.unlink()
    r = ns.run("tftp", "-m", "binary", SERVER_IP, "-c", "get", path, str(local),
               check=False, timeout=30)
    return r.returncode == 0 and local.exists() and local.stat().st_size > 0 and \
        "Error" not in r.stdout + r.stderr


def pxelinux_search(ip: str) -> list[str]:
    """The names pxelinux tries before `default` (syslinux doc/pxelinux.txt)."""
    hexip = "".join(f"{int(x):02X}" for x in ip.split("."))
    names = [f"pxelinux.cfg/01-{CLIENT_MAC.replace(':', '-')}"]
    names += [f"pxelinux.cfg/{hexip[:n]}" for n in range(8, 0, -1)]
    return names


def doctor(ns: Netns, plan: Path, *extra: str) -> tuple[int, dict]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = ns.run(sys.executable, "-m", "pxewizard", "doctor", "--plan", str(plan), "--json",
               "--no-checksum", *extra, check=False, timeout=120, env=env, cwd=str(REPO))
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, json.loads(r.stdout)


def record(served: Served, name: str) -> None:
    """PXW_RECORD_TIMELINE=1 saves the served events as tests/data/timeline/<name>.jsonl."""
    if os.environ.get("PXW_RECORD_TIMELINE"):
        text = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in served.events())
        text = re.sub(r"/tmp/pytest-of-[^/]+/pytest-\d+/[^/]+/", "/srv/pxe/", text)
        (REPO / "tests" / "data" / "timeline" / f"{name}.jsonl").write_text(text)


def rules(findings: list[Finding]) -> list[str]:
    return sorted(f.rule for f in findings)


@pytest.fixture
def pair() -> Iterator[NetPair]:
    require_root()
    with net_pair(client_mac=CLIENT_MAC) as p:
        yield p


def test_healthy_boot_yields_a_full_timeline_and_no_finding(pair: NetPair,
                                                             tmp_path: Path) -> None:
    plan = diag_plan(tmp_path)
    with serve_dhcp(pair.server, plan) as served:
        lease = udhcpc(pair.client, tmp_path)
        ip = lease["ip"]
        assert lease["boot_file"] == "pxelinux.0" and lease["siaddr"] == SERVER_IP
        assert tftp_get(pair.client, tmp_path, "pxelinux.0")
        assert tftp_get(pair.client, tmp_path, "ldlinux.c32")
        for name in pxelinux_search(ip):
            assert not tftp_get(pair.client, tmp_path, name)      # the normal misses
        assert tftp_get(pair.client, tmp_path, "pxelinux.cfg/default")
        menu = (tmp_path / "got" / "pxelinux.cfg_default").read_text()
        # '::path' is pxelinux for "from the TFTP root": it asks for path as is
        kernel = re.search(r"^\s*(?:KERNEL|LINUX)\s+(\S+)", menu, re.M | re.I).group(1)
        kernel = kernel.removeprefix("::")
        initrds = [i.removeprefix("::") for i in re.search(
            r"^\s*INITRD\s+(\S+)", menu, re.M | re.I).group(1).split(",")]
        assert tftp_get(pair.client, tmp_path, kernel)
        for i in initrds:
            assert tftp_get(pair.client, tmp_path, i)
        wait_for(served, lambda e: e["kind"] == "transfer_done"
                 and e["path"].endswith(initrds[-1].lstrip("/")))
        snap, findings = diagnosis(served, facts_for(plan), after=2.0)
        record(served, "net-healthy-tftp")
    assert findings == [], [f.title for f in findings]
    (tl,) = [t for t in snap.clients if t.transfers()]
    assert tl.mac == CLIENT_MAC and ip in tl.ips            # TFTP by IP joined to the lease
    assert tl.stage is Stage.initramfs
    assert [s.status for s in tl.steps if s.kind == "dhcp"] == [Status.ok]
    assert len([s for s in tl.steps if s.status is Status.normal_miss]) == 9
    per = tl.bytes_by_stage()
    assert per[Stage.loader] > 0 and per[Stage.kernel] > 0 and per[Stage.initramfs] > 0
    assert {Role.loader, Role.module, Role.config, Role.kernel, Role.initramfs} <= {
        s.role for s in tl.transfers() if s.status is Status.ok}


def test_missing_file_names_file_and_package(pair: NetPair, tmp_path: Path) -> None:
    plan = diag_plan(tmp_path)
    pair.client_address("10.99.0.10")
    with serve_dhcp(pair.server, plan) as served:
        assert not tftp_get(pair.client, tmp_path, "PXELINUX.0")   # a Windows-made name
        wait_for(served, lambda e: e["kind"] == "transfer_failed")
        _, findings = diagnosis(served, facts_for(plan))     # one second after the event
        record(served, "net-missing-file")
        # headless serve prints what the diagnosis says, once, as it appears
        deadline = time.monotonic() + 10
        while not any("ERROR" in ln and "PXELINUX.0" in ln for ln in served.output) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sum("ERROR" in ln and "PXELINUX.0" in ln for ln in served.output) == 1, \
            served.output[-20:]
    (f,) = findings
    assert f.rule == "tftp-not-found" and "PXELINUX.0" in f.title
    assert "pxelinux" in f.fix
    if "pxelinux.0" in facts_for(plan).files:
        assert "case" in f.cause


def test_quiet_serve_prints_findings_not_packets(pair: NetPair, tmp_path: Path) -> None:
    """`serve --quiet` (the exported systemd unit): the journal gets the ready line and the
    diagnosis in words, not a line per packet."""
    plan = diag_plan(tmp_path)
    pair.client_address("10.99.0.10")
    with serve_dhcp(pair.server, plan, quiet=True) as served:
        assert not tftp_get(pair.client, tmp_path, "PXELINUX.0")
        wait_for(served, lambda e: e["kind"] == "transfer_failed")
        deadline = time.monotonic() + 10
        while not any("ERROR" in ln and "PXELINUX.0" in ln for ln in served.output) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        out = list(served.output)
    assert sum("ERROR" in ln and "PXELINUX.0" in ln for ln in out) == 1, out
    assert any("fix:" in ln for ln in out), out
    assert any(re.match(r"^[\d:.]+\s+serve: info: ready: serving", ln) for ln in out), out
    assert not [ln for ln in out if re.match(r"^[\d:.]+\s+(tftp|dhcp|http)", ln)], out


def test_mode_0600_file(pair: NetPair, tmp_path: Path) -> None:
    plan = diag_plan(tmp_path)
    secret = tmp_path / "tftp" / "vmlinuz-custom"
    secret.write_bytes(b"\0" * 4096)
    secret.chmod(0o600)
    pair.client_address("10.99.0.10")
    with serve_dhcp(pair.server, plan) as served:
        assert not tftp_get(pair.client, tmp_path, "vmlinuz-custom")
        wait_for(served, lambda e: e["kind"] == "transfer_failed")
        _, findings = diagnosis(served, facts_for(plan))
        record(served, "net-mode-0600")
        rc, rep = doctor(pair.server, plan, "--no-probe")
    (f,) = findings
    assert f.rule == "not-world-readable" and "0600" in f.title and "chmod" in f.fix
    assert rc == 1
    assert any(c["rule"] == "not-world-readable" and "vmlinuz-custom" in " ".join(c["details"])
               for c in rep["checks"])


@contextlib.contextmanager
def segment(tmp: Path) -> Iterator[tuple[Netns, Netns, Netns]]:
    """Bridge namespace joining ours (10.99.0.1), a dnsmasq full DHCP (10.99.0.2), a client."""
    require("dnsmasq")
    from tests.support.netns import bridge_ns

    with bridge_ns() as br, namespace("srv") as srv, namespace("dnsm") as dn, \
            namespace("cli") as cli:
        for port, ns, ifname, addr, mac in (("p1", srv, "pxe0", f"{SERVER_IP}/24", None),
                                           ("p2", dn, "eth0", "10.99.0.2/24", None),
                                           ("p3", cli, "eth0", None, CLIENT_MAC)):
            link_netns(br, port, ns, ifname, b_addr=addr, b_mac=mac)
            br.run("ip", "link", "set", port, "master", "br0")
        dn.popen("dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
                 "--interface=eth0", "--bind-interfaces", "--user=root",
                 "--dhcp-range=10.99.0.150,10.99.0.160,255.255.255.0,1h",
                 "--dhcp-option=3,10.99.0.2", f"--dhcp-leasefile={tmp / 'dnsmasq.leases'}",
                 f"--pid-file={tmp / 'dnsmasq.pid'}", "--no-ping")
        time.sleep(0.5)
        yield srv, dn, cli


def test_competing_dnsmasq_is_found(tmp_path: Path) -> None:
    require_root()
    with segment(tmp_path) as (srv, dn, cli):
        # serve refuses full DHCP beside it; the refusal is in the log in words
        plan = diag_plan(tmp_path)
        rc, rep = doctor(srv, plan)
        found = [f for f in rep["findings"] if f["rule"] == "competing-dhcp"]
        assert rc == 1 and found, rep
        assert "10.99.0.2" in found[0]["title"]
        assert found[0]["evidence"][0]["kind"] == "dhcp_server_seen"
        # overridden (a segment the operator owns): the client may take either offer
        plan = diag_plan(tmp_path, override_existing_server=True)
        with serve_dhcp(srv, plan) as served:
            udhcpc(cli, tmp_path, check=False)
            wait_for(served, lambda e: e["kind"] == "dhcp_exchange"
                     and e["msg_in"] == "REQUEST")
            events = [from_dict(d) for d in served.events()]
            seen = srv_probe(srv)
            snap, findings = diagnose_events([*events, *seen], facts_for(plan),
                                             now=max(e.ts for e in events) + 1)
        assert "competing-dhcp" in rules(findings)


def srv_probe(srv: Netns) -> list:
    """Our probe, run in the server's namespace, as DhcpServerSeen events."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = srv.run(sys.executable, "-c",
                "import json; from pxewizard.detect.dhcp_probe import probe_sync\n"
                "print(json.dumps([s.to_dict() for s in probe_sync('pxe0', 2.5)]))",
                env=env, cwd=str(REPO), timeout=60)
    return [from_dict(d) for d in json.loads(r.stdout)]


def test_bridge_forward_delay_is_flagged_and_fixed(tmp_path: Path) -> None:
    """Server on br0 (STP on, forward delay 15 s); the client's port waits 30 s."""
    require_root()
    from pxewizard.detect.bridge import bridge_facts_sync, set_forward_delay_sync

    with namespace("srv") as srv, namespace("cli") as cli:
        srv.run("ip", "link", "add", "br0", "type", "bridge", "stp_state", "1",
                "forward_delay", "1500")
        srv.run("ip", "addr", "add", f"{SERVER_IP}/24", "dev", "br0")
        srv.run("ip", "link", "set", "br0", "up")
        link_netns(srv, "port0", cli, "eth0", b_mac=CLIENT_MAC)
        srv.run("ip", "link", "set", "port0", "master", "br0")
        facts = bridge_facts_sync("br0", netns=srv.name)
        assert facts.stp and facts.forward_delay == 15.0 and facts.blocks_seconds == 30.0
        assert "port0 (listening)" in facts.ports_not_forwarding
        plan = diag_plan(tmp_path, interface="br0")
        with serve_dhcp(srv, plan) as served:
            rc, rep = doctor(srv, plan, "--no-probe")
            found = [f for f in rep["findings"] if f["rule"] == "bridge-forward-delay"]
            assert rc == 1 and found, rep
            assert "30 s" in found[0]["title"] and "forward_delay 0" in found[0]["fix"]
            # the client's DISCOVERs die in the listening port, as a PXE ROM's would
            assert udhcpc(cli, tmp_path, tries=2, check=False) == {}
            assert not [e for e in served.events() if e["kind"] == "dhcp_exchange"]
            set_forward_delay_sync("br0", 0, netns=srv.name)
            assert bridge_facts_sync("br0", netns=srv.name).blocks_seconds == 0
            lease = udhcpc(cli, tmp_path)
            assert lease["ip"].startswith("10.99.0.1")
            rc, rep = doctor(srv, plan, "--no-probe")
            assert not [f for f in rep["findings"] if f["rule"] == "bridge-forward-delay"]


def test_proxy_client_joined_through_the_neighbour_table(tmp_path: Path) -> None:
    """dnsmasq gives the address, we give the boot file (proxyDHCP): the TFTP requests
    come from an IP we never handed out; the server's ARP table puts them on the MAC."""
    require_root()
    require("udhcpc", "tftp")
    from pxewizard.detect.neighbours import neighbours_sync
    from pxewizard.insight.timeline import TimelineBuilder
    from tests.net.dhcp_support import pxe_request, raw_exchange

    with segment(tmp_path) as (srv, dn, cli):
        plan = diag_plan(tmp_path, mode="proxy")
        with serve_dhcp(srv, plan) as served:
            # the PXE ROM's DISCOVER: our proxy offer carries the boot file, no address
            replies = raw_exchange(cli, "eth0", pxe_request(CLIENT_MAC, 0x5EED), 0x5EED,
                                   want=2)
            assert replies
            # its address comes from dnsmasq (a plain client: proxyDHCP stays out of it)
            env = dict(os.environ)
            script = tmp_path / "plain.sh"
            script.write_text(UDHCPC_SCRIPT.replace("{out}", str(tmp_path / "plain.env")))
            script.chmod(0o755)
            cli.run("udhcpc", "-f", "-q", "-n", "-i", "eth0", "-t", "4", "-T", "1",
                    "-s", str(script), env=env, timeout=60)
            ip = dict(line.split("=", 1) for line in
                      (tmp_path / "plain.env").read_text().splitlines() if "=" in line)["ip"]
            assert ip.startswith("10.99.0.15") or ip.startswith("10.99.0.16")
            assert tftp_get(cli, tmp_path, "pxelinux.0")
            assert tftp_get(cli, tmp_path, "ldlinux.c32")
            wait_for(served, lambda e: e["kind"] == "transfer_done"
                     and e["path"] == "ldlinux.c32")
            events = [from_dict(d) for d in served.events()]
            table = {n.ip: n.mac for n in neighbours_sync("pxe0", netns=srv.name)}
        assert table.get(ip) == CLIENT_MAC
        now = max(e.ts for e in events) + 1
        # the client's REQUEST to dnsmasq (option 50) already names its address ...
        b = TimelineBuilder()
        b.feed_many(events)
        assert not b.unknown_ips()
        assert [t.client for t in b.snapshot(now).clients if t.transfers()] == [CLIENT_MAC]
        # ... and without it (a firmware whose REQUEST we missed) the ARP table joins them
        b = TimelineBuilder()
        b.feed_many(e for e in events if not getattr(e, "requested_ip", ""))
        assert ip in b.unknown_ips()
        b.learn(ip, table[ip])
        snap = b.snapshot(now)
        (tl,) = [t for t in snap.clients if t.mac == CLIENT_MAC]
        assert ip in tl.ips and tl.stage is Stage.loader
        assert tl.steps[0].kind == "dhcp" and tl.steps[0].service == "proxydhcp"
        from pxewizard.insight.diagnose import diagnose

        assert diagnose(snap, facts_for(plan)) == []
