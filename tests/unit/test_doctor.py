"""`pxewizard doctor`: host checks with fakes, the firewall parsers, --log replay, exit codes."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from pxewizard.insight.diagnose import Severity, diagnose
from pxewizard.commands.doctor import (check_checksums, check_ports, check_readable,
                                       check_rp_filter, cli_doctor, host_facts, run_doctor,
                                       served_paths, wanted_ports)
from pxewizard.detect.firewall import firewall_from_iptables, firewall_from_nft
from pxewizard.plan import plan_from_dict

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "timeline"


def plan(tmp_path: Path, **over) -> object:
    d = {"interface": "lo", "server_ip": "127.0.0.1", "prefix": 8,
         "state_dir": str(tmp_path / "state"),
         "dhcp": {"mode": "proxy"}, "tftp": {"root": str(tmp_path / "tftp")},
         "boot": {"media": str(REPO / "examples" / "demo-media")}}
    d.update(over)
    (tmp_path / "tftp").mkdir(exist_ok=True)
    return plan_from_dict(d)


def args(**kw) -> argparse.Namespace:
    base = dict(plan=None, log=None, client_ram=None, no_probe=True, no_checksum=False,
                json=False, verbose=False)
    base.update(kw)
    return argparse.Namespace(**base)


def test_replay_of_a_fault_log_exits_1_with_words(capsys: pytest.CaptureFixture) -> None:
    rc = cli_doctor(args(log=str(DATA / "fault-loader-missing.jsonl")))
    out = capsys.readouterr().out
    assert rc == 1
    assert "boot loader file pxelinux.0 is missing" in out
    assert "fix: install the package pxelinux" in out
    assert "Clients (1):" in out and "FAIL  tftp pxelinux.0" in out


def test_replay_of_a_healthy_log_exits_0(capsys: pytest.CaptureFixture) -> None:
    rc = cli_doctor(args(log=str(DATA / "bios-pxelinux-http-ok.jsonl")))
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "Findings: none" in out and "miss  tftp pxelinux.cfg/0A630073" in out


def test_json_output(capsys: pytest.CaptureFixture) -> None:
    rc = cli_doctor(args(log=str(DATA / "fault-mode-0600.jsonl"), json=True))
    data = json.loads(capsys.readouterr().out)
    assert rc == 1 and data["ok"] is False
    (f,) = data["findings"]
    assert f["rule"] == "not-world-readable" and f["evidence"][0]["kind"] == "transfer_failed"
    assert data["clients"][0]["stage"] == "loader"


def test_bad_plan_and_missing_log_never_traceback(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text('interface = "lo"\nserver_ip = "not an ip"\n')
    assert cli_doctor(args(plan=str(bad))) == 1
    assert "server_ip" in capsys.readouterr().out
    rc = cli_doctor(args(log=str(tmp_path / "nope.jsonl")))
    out = capsys.readouterr().out
    assert rc == 0 and "log check" in out and "Traceback" not in out


def test_garbage_log_lines_are_skipped(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    log = tmp_path / "e.jsonl"
    log.write_text('{"kind":"transfer_failed","ts":1,"client":"10.0.0.9","service":"tftp",'
                   '"path":"pxelinux.0","code":1,"reason":"file not found","cause":"not_found"}\n'
                   'not json\n'
                   '{"kind":"transfer_failed","bogus":1}\n')
    assert cli_doctor(args(log=str(log))) == 1
    assert "pxelinux.0 is missing" in capsys.readouterr().out


def test_plan_on_loopback(tmp_path: Path) -> None:
    p = plan(tmp_path)
    secret = tmp_path / "tftp" / "secret.cfg"
    secret.write_text("x")
    secret.chmod(0o600)
    rep = run_doctor(p, probe=False)
    rules = {f.rule: f for f in rep.checks}
    assert rules["interface"].severity is Severity.ok
    assert rules["not-world-readable"].severity is Severity.error
    assert "secret.cfg (mode 0600)" in rules["not-world-readable"].details[0]
    assert rep.errors >= 1
    assert "sysresccd/x86_64/airootfs.sfs" in rep.facts.files
    assert rep.facts.dhcp_mode == "proxy" and rep.facts.server_ip == "127.0.0.1"


def test_client_ram_against_the_estimate(tmp_path: Path) -> None:
    rep = run_doctor(plan(tmp_path), probe=False, client_ram=64 << 20)
    ram = [f for f in rep.findings if f.rule == "client-ram"]
    assert ram and ram[0].severity is Severity.error
    rep = run_doctor(plan(tmp_path), probe=False, client_ram=64 << 30)
    assert not [f for f in rep.findings if f.rule == "client-ram"]


def test_missing_interface_is_an_error(tmp_path: Path) -> None:
    rep = run_doctor(plan(tmp_path, interface="pxwt-nosuch0"), probe=False)
    (f,) = [f for f in rep.checks if f.rule == "interface"]
    assert f.severity is Severity.error and "does not exist" in f.title


def test_ports_held_become_findings(tmp_path: Path) -> None:
    p = plan(tmp_path)
    held = {(69, "udp"): "in.tftpd (pid 812)"}
    out, facts = check_ports(p, holder=lambda port, proto: held.get((port, proto)))
    assert facts == [("udp", 69, "TFTP", "in.tftpd (pid 812)")] and out == []
    snap = run_doctor(p, probe=False, checksums=False).snapshot
    f = [f for f in diagnose(snap, host_facts(p, ports_held=facts)) if f.rule == "port-held"]
    assert f and "in.tftpd (pid 812)" in f[0].title


def test_wanted_ports_follow_the_plan(tmp_path: Path) -> None:
    p = plan(tmp_path, nfs={"enabled": True}, boot={"media": str(REPO / "examples" /
                                                                  "demo-media"),
                                                    "transport": "nfs"})
    got = set(wanted_ports(p))
    assert {("udp", 67, "proxyDHCP"), ("udp", 4011, "proxyDHCP (UEFI)"), ("udp", 69, "TFTP"),
            ("tcp", 2049, "NFS"), ("udp", 20048, "MOUNT")} <= got


def test_readable_check(tmp_path: Path) -> None:
    (tmp_path / "ok").write_text("x")
    assert check_readable([tmp_path])[0].severity is Severity.ok
    (tmp_path / "bad").write_text("x")
    os.chmod(tmp_path / "bad", 0o640)
    (f,) = check_readable([tmp_path])
    assert f.severity is Severity.error and "bad (mode 0640)" in f.details[0]


def test_rp_filter(tmp_path: Path) -> None:
    p = plan(tmp_path)
    for name, v in (("all", "0"), ("lo", "1")):
        (tmp_path / "conf" / name).mkdir(parents=True)
        (tmp_path / "conf" / name / "rp_filter").write_text(v + "\n")
    (f,) = check_rp_filter(p, proc=tmp_path / "conf")
    assert f.severity is Severity.info and "rp_filter=2" in f.fix


def test_iptables_parser() -> None:
    text = """*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
-A INPUT -p udp -m udp --dport 67 -j ACCEPT
-A INPUT -p udp -m udp --dport 69 -j REJECT --reject-with icmp-port-unreachable
-A INPUT -p tcp -m multiport --dports 22,80 -j ACCEPT
COMMIT
"""
    hints = firewall_from_iptables(text, {67, 69, 80, 4011})
    assert any("drops port 69" in h for h in hints)
    assert any("policy DROP" in h and "4011" in h and "80" not in h.split("port(s)")[1]
               for h in hints)


def test_nft_parser() -> None:
    data = {"nftables": [
        {"chain": {"family": "inet", "table": "filter", "name": "input", "hook": "input",
                   "policy": "drop"}},
        {"rule": {"family": "inet", "table": "filter", "chain": "input", "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}},
                       "right": {"set": [67, 4011]}}}, {"accept": None}]}},
        {"rule": {"family": "inet", "table": "filter", "chain": "input", "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}},
                       "right": 69}}, {"drop": None}]}},
    ]}
    hints = firewall_from_nft(data, {67, 69, 4011, 80})
    assert any("drops port 69" in h for h in hints)
    assert any("policy drop" in h and "69, 80" in h for h in hints)


def test_checksum(tmp_path: Path) -> None:
    import hashlib

    from types import SimpleNamespace

    (tmp_path / "x86_64").mkdir()
    img = tmp_path / "x86_64" / "airootfs.sfs"
    img.write_bytes(b"squash" * 1000)
    good = hashlib.sha512(img.read_bytes()).hexdigest()
    (tmp_path / "x86_64" / "airootfs.sha512").write_text(f"{good}  airootfs.sfs\n")
    media = SimpleNamespace(path=tmp_path, image_vpath="x86_64/airootfs.sfs")
    (f,) = check_checksums(media)
    assert f.severity is Severity.ok
    img.write_bytes(b"damaged")
    (f,) = check_checksums(media)
    assert f.severity is Severity.error and "does not match" in f.title


def test_served_paths_walks_roots(tmp_path: Path) -> None:
    from pxewizard.files import FileTree

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "c.txt").write_text("x")
    t = FileTree([tmp_path])
    t.add_bytes("gen/menu.cfg", "x")
    assert set(served_paths(t)) == {"gen/menu.cfg", "a/b/c.txt"}


def test_replay_without_host_checks(capsys: pytest.CaptureFixture) -> None:
    from pxewizard.commands.doctor import cli_replay

    assert cli_replay(argparse.Namespace(log=str(DATA / "fault-bin-kernel.jsonl"))) == 1
    out = capsys.readouterr().out
    assert "Host checks" not in out and "rescue64.bin" in out
    assert cli_replay(argparse.Namespace(file=str(DATA / "uefi-ipxe-http-ok.jsonl"))) == 0


async def test_join_unknown_from_the_neighbour_table(monkeypatch: pytest.MonkeyPatch) -> None:
    from pxewizard.detect import neighbours as nb
    from pxewizard.insight.timeline import TimelineBuilder
    from pxewizard.events import from_dict, read_jsonl

    async def fake(interface=None):
        return [nb.Neighbour(ip="10.99.0.77", mac="52:54:00:99:00:10"),
                nb.Neighbour(ip="10.99.0.5", mac="52:54:00:00:00:05")]

    monkeypatch.setattr(nb, "neighbours", fake)
    b = TimelineBuilder()
    b.feed_many(from_dict(d) for d in read_jsonl(DATA / "proxy-bios-ok.jsonl"))
    assert await nb.join_unknown(b, "pxe0") == 1
    assert b.unknown_ips() == [] and len(b.snapshot(0).clients) == 1


def test_bridge_without_carrier_is_explained() -> None:
    from pxewizard.detect.bridge import BridgeFacts, BridgePort
    from pxewizard.insight.diagnose import Finding
    from pxewizard.commands.doctor import _explain_bridge_carrier

    link = Finding(severity=Severity.error, rule="link", client="",
                   title="br0 has no link (down, no carrier)", cause="x", fix="y")
    waiting = BridgeFacts(interface="br0", bridge="br0", is_bridge=True, stp=True,
                          forward_delay=15.0, ports=(BridgePort(name="tap0", state="listening"),))
    (f,) = _explain_bridge_carrier([link], waiting)
    assert f.severity is Severity.info and "tap0 (listening)" in f.cause
    empty = BridgeFacts(interface="br0", bridge="br0", is_bridge=True)
    (f,) = _explain_bridge_carrier([link], empty)
    assert f.severity is Severity.error and "master br0" in f.fix


def test_damaged_log_is_replayed_as_far_as_it_goes(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    log = tmp_path / "e.jsonl"
    good = (DATA / "fault-loader-missing.jsonl").read_text()
    log.write_text('{"kind":"transfer_started","ts":"soon","service":"tftp","path":"x"}\n'
                   '{"kind":"transfer_progress","ts":5,"client":"10.0.0.1","service":"tftp",'
                   '"path":"x","sent":"many"}\n'
                   '{"kind":"dhcp_exchange","ts":6,"service":"dhcp","mac":"","xid":1,'
                   '"msg_in":"DISCOVER","msg_out":"-"}\n[1,2]\n' + good)
    rc = cli_doctor(args(log=str(log)))
    out = capsys.readouterr().out
    assert rc == 1 and "pxelinux.0 is missing" in out and "internal error" not in out


def test_doctor_names_media_it_skipped(tmp_path) -> None:
    """Issue 19: a folder of media; the broken ones are named with the reason."""
    from pxewizard.commands.doctor import check_boot
    from pxewizard.plan import plan_from_dict
    from tests.data.boot import fixtures as fx

    folder = tmp_path / "isos"
    fx.make_archiso(folder / "sysrescue")
    fx.make_memtest_deb(folder / "memtest")
    (folder / "old.iso").write_bytes(b"truncated download")
    plan = plan_from_dict({"interface": "pxe0", "server_ip": "10.99.0.1",
                           "boot": {"media": str(folder)}})
    findings, _files, media, _problems = check_boot(plan)
    skipped = [f for f in findings if f.rule == "media-skipped"]
    assert [f.title for f in skipped] == [f"boot.media: skipped {folder / 'old.iso'}"]
    assert "not a readable ISO 9660 image" in skipped[0].cause
    assert media.profile == "memtest"  # a folder's media come in name order
    ok = [f for f in findings if f.rule == "boot-tree" and "menu entries" in f.title]
    assert ok and "Memtest86+ (memtest), SystemRescue 11.01 (sysrescue-archiso)" in ok[0].title


@pytest.mark.parametrize("name, title", [
    ("fault-competing-dhcp-stopped", "another DHCP server answers here: 10.99.0.2"),
    ("fault-no-dhcp-stopped", "no DHCP request seen")])
def test_replay_and_doctor_log_say_the_same_after_a_clean_stop(
        name: str, title: str, capsys: pytest.CaptureFixture) -> None:
    """The Plan's DHCP mode comes from the log's PlanLoaded event, so replay
    (no Plan) and doctor --log find what the live view found, in the same words."""
    from pxewizard.commands.doctor import cli_replay

    rc = cli_replay(argparse.Namespace(log=str(DATA / f"{name}.jsonl"), json=False,
                                       verbose=False))
    out = capsys.readouterr().out
    assert title in out, out
    rc2 = cli_doctor(args(log=str(DATA / f"{name}.jsonl")))
    out2 = capsys.readouterr().out
    assert title in out2
    assert rc == 1 or "warning" in out
    assert rc2 == rc or rc2 == 1
