"""`pxewizard export`: each configuration is accepted by the real program's own check."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pxewizard.commands.export import FORMATS, export, render_dnsmasq
from pxewizard.plan import plan_from_dict
from tests.support.netns import namespace, stub_interface
from tests.support.tools import require, require_root


def _plan(tmp: Path, mode: str = "full", **extra) -> object:
    media = tmp / "media"
    media.mkdir(exist_ok=True)
    (media / "airootfs.sfs").write_bytes(b"x" * 1024)
    data = {
        "interface": "pxe0", "server_ip": "10.99.0.1", "state_dir": str(tmp / "state"),
        "dhcp": {"mode": mode, "range_start": "10.99.0.100", "range_end": "10.99.0.199",
                 "router": "10.99.0.254", "dns": ["10.99.0.53"], "domain": "lab.example",
                 "reservations": [{"mac": "52:54:00:99:00:10", "ip": "10.99.0.20",
                                   "hostname": "vm1", "boot_file": "ipxe.efi"}],
                 "relay_pools": [{"subnet": "10.20.0.0/24", "range_start": "10.20.0.100",
                                  "range_end": "10.20.0.150", "router": "10.20.0.1"}],
                 "relay_agents": ["10.20.0.1"],
                 "boot_files": {"efi_ia32": "syslinux32.efi", "efi_arm64": "grubaa64.efi"}},
        "tftp": {"root": str(media)},
        "nbd": {"enabled": True, "exports": [{"name": "archiso",
                                              "path": str(media / "airootfs.sfs")}]},
        "nfs": {"enabled": True, "exports": [{"path": str(media)}]},
    }
    if mode != "full":
        for k in ("range_start", "range_end", "reservations", "relay_pools"):
            data["dhcp"].pop(k)
    data.update(extra)
    return plan_from_dict(data)


def _run(*cmd: str, ns=None, timeout: float = 30) -> subprocess.CompletedProcess:
    full = ns.cmd(*cmd) if ns else list(cmd)
    return subprocess.run(full, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def pxe_ns():
    """A namespace with an interface pxe0 = 10.99.0.1/24 (the checkers look it up)."""
    require_root()
    with namespace("exp") as ns:
        stub_interface(ns, "pxe0", "10.99.0.1/24")
        yield ns


@pytest.mark.parametrize("mode", ["full", "proxy"])
def test_dnsmasq_accepts(tmp_path: Path, mode: str) -> None:
    require("dnsmasq")
    out = tmp_path / "out"
    export(_plan(tmp_path, mode), out, ["dnsmasq"], with_tree=False)
    r = _run("dnsmasq", "--test", "-C", str(out / "dnsmasq.conf"))
    assert r.returncode == 0 and "syntax check OK" in (r.stdout + r.stderr), r.stderr


def test_isc_dhcpd_accepts(tmp_path: Path, pxe_ns) -> None:
    require("dhcpd")
    out = tmp_path / "out"
    export(_plan(tmp_path), out, ["isc-dhcpd"], with_tree=False)
    r = _run("dhcpd", "-t", "-cf", str(out / "dhcpd.conf"), ns=pxe_ns)
    assert r.returncode == 0, r.stdout + r.stderr


def test_kea_accepts(tmp_path: Path, pxe_ns) -> None:
    require("kea-dhcp4")
    out = tmp_path / "out"
    export(_plan(tmp_path), out, ["kea"], with_tree=False)
    conf = out / "kea-dhcp4.conf"
    conf.write_text(conf.read_text().replace("/var/lib/kea", str(tmp_path)))
    r = _run("kea-dhcp4", "-t", str(conf), ns=pxe_ns)
    assert r.returncode == 0, r.stdout + r.stderr


def test_nginx_accepts(tmp_path: Path, pxe_ns) -> None:
    require("nginx")
    out = tmp_path / "out"
    export(_plan(tmp_path), out, ["nginx"], with_tree=False)
    conf = out / "nginx.conf"
    conf.write_text(conf.read_text().replace("/run/nginx-pxewizard.pid",
                                             str(tmp_path / "nginx.pid")))
    r = _run("nginx", "-t", "-c", str(conf), "-e", str(tmp_path / "error.log"), ns=pxe_ns)
    assert r.returncode == 0, r.stdout + r.stderr


def test_nbd_server_starts_and_serves(tmp_path: Path, pxe_ns) -> None:
    require("nbd-server", "nbdinfo")
    out = tmp_path / "out"
    plan = _plan(tmp_path)
    export(plan, out, ["nbd-server"], with_tree=False)
    conf = out / "nbd-server.conf"
    text = conf.read_text().replace("user = nbd", "user = root").replace("group = nbd",
                                                                         "group = root")
    conf.write_text(text)
    proc = pxe_ns.popen("nbd-server", "-d", "-C", str(conf))
    try:
        for _ in range(50):
            r = _run("nbdinfo", "--size", "nbd://10.99.0.1/archiso", ns=pxe_ns)
            if r.returncode == 0:
                break
            subprocess.run(["sleep", "0.1"])
        assert r.stdout.strip() == "1024", r.stdout + r.stderr
    finally:
        pxe_ns.kill_all()
        assert proc.poll() is not None


def test_every_format_and_tree(tmp_path: Path) -> None:
    out = tmp_path / "out"
    written = export(_plan(tmp_path), out, None)
    names = {p.name for p in written}
    assert names >= {"dnsmasq.conf", "dhcpd.conf", "kea-dhcp4.conf", "tftpd-hpa", "nginx.conf",
                     "nbd-server.conf", "exports", "pxewizard.service", "tftpboot"}
    assert len(FORMATS) == 8
    assert (out / "tftpboot" / "airootfs.sfs").stat().st_size == 1024
    exports = (out / "exports").read_text()
    assert "10.99.0.0/24(ro,no_subtree_check,insecure,root_squash)" in exports


def test_dnsmasq_decisions(tmp_path: Path) -> None:
    text = render_dnsmasq(_plan(tmp_path), tmp_path)
    assert "dhcp-match=set:efi64,option:client-arch,7" in text
    assert "dhcp-match=set:efi64,option:client-arch,9" in text
    assert "dhcp-boot=tag:ipxe,http://10.99.0.1/boot.ipxe" in text
    assert "dhcp-boot=tag:!ipxe,tag:bios,pxelinux.0,,10.99.0.1" in text
    assert "dhcp-host=52:54:00:99:00:10,10.99.0.20,vm1" in text
    proxy = render_dnsmasq(_plan(tmp_path, "proxy"), tmp_path)
    assert "dhcp-range=10.99.0.0,proxy,255.255.255.0" in proxy
    assert 'pxe-service=tag:!ipxe,x86PC,"pxewizard",pxelinux,10.99.0.1' in proxy


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """The unit bounds the capabilities to what the Plan's servers use while starting, sets
    no_new_privs, a descriptor limit, and has systemd create /run/pxewizard (ProtectSystem=
    strict leaves it read-only otherwise: the lock cannot be taken)."""
    import sys

    from pxewizard.commands.export import render_systemd
    from pxewizard.privileges import START_CAPS
    from pxewizard.serve import start_capabilities

    require("systemd-analyze")
    out = tmp_path / "out"
    export(_plan(tmp_path), out, ["systemd"], with_tree=False)
    text = (out / "pxewizard.service").read_text()
    assert "ExecStart=/opt/pxewizard/bin/pxewizard serve" in text
    lines = dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln and ln[0] != "#")
    want = set(start_capabilities(_plan(tmp_path)))
    assert set(lines["CapabilityBoundingSet"].split()) == want
    assert want >= set(START_CAPS) | {"CAP_NET_ADMIN"} and "CAP_SYS_ADMIN" not in want
    assert lines["NoNewPrivileges"] == "yes" and int(lines["LimitNOFILE"]) >= 4096
    assert lines["RuntimeDirectory"] == "pxewizard" and lines["ProtectSystem"] == "strict"
    assert lines["AmbientCapabilities"] == ""
    # systemd's own checker, with an ExecStart that exists on this machine
    unit = tmp_path / "pxewizard.service"
    unit.write_text(render_systemd(_plan(tmp_path), Path("/etc/pxewizard/plan.toml"),
                                   exe=sys.executable))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "pxewizard.service" not in r.stderr, r.stderr


def test_tree_from_an_iso_is_written_from_its_extents(tmp_path: Path) -> None:
    require("xorriso")
    src = tmp_path / "isosrc"
    (src / "sysresccd" / "boot" / "x86_64").mkdir(parents=True)
    (src / "sysresccd" / "x86_64").mkdir(parents=True)
    kernel = bytes(range(256)) * 40
    (src / "sysresccd" / "boot" / "x86_64" / "vmlinuz").write_bytes(kernel)
    (src / "sysresccd" / "boot" / "x86_64" / "sysresccd.img").write_bytes(b"i" * 3000)
    (src / "sysresccd" / "x86_64" / "airootfs.sfs").write_bytes(b"s" * 5000)
    iso = tmp_path / "sr.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-R", "-J", "-V", "RESCUE1200", "-o", str(iso),
                    str(src)], check=True, capture_output=True)
    plan = plan_from_dict({"interface": "pxe0", "server_ip": "10.99.0.1",
                           "state_dir": str(tmp_path / "state"), "dhcp": {"mode": "proxy"},
                           "boot": {"media": str(iso)}})
    out = tmp_path / "out"
    export(plan, out, ["dnsmasq"])
    assert (out / "tftpboot" / "sysresccd/boot/x86_64/vmlinuz").read_bytes() == kernel


@pytest.mark.parametrize("mode", ["full", "proxy"])
def test_allowed_macs_exported(tmp_path: Path, mode: str, pxe_ns) -> None:
    """dhcp.allowed_macs: the exported servers answer the listed clients only, and their own
    checkers accept the result."""
    require("dnsmasq", "dhcpd", "kea-dhcp4")
    plan = _plan(tmp_path, mode)
    data = plan.model_dump(mode="json", exclude_none=True)
    data["dhcp"]["allowed_macs"] = ["52:54:00:99:00:11"]
    plan = plan_from_dict(data)
    out = tmp_path / "out"
    export(plan, out, ["dnsmasq", "isc-dhcpd", "kea"], with_tree=False)
    text = (out / "dnsmasq.conf").read_text()
    assert "dhcp-host=52:54:00:99:00:11\n" in text and "dhcp-ignore=tag:!known" in text
    r = _run("dnsmasq", "--test", "-C", str(out / "dnsmasq.conf"))
    assert r.returncode == 0, r.stderr
    if mode == "full":
        isc = (out / "dhcpd.conf").read_text()
        assert "deny unknown-clients;" in isc and "hardware ethernet 52:54:00:99:00:11;" in isc
        r = _run("dhcpd", "-t", "-cf", str(out / "dhcpd.conf"), ns=pxe_ns)
        assert r.returncode == 0, r.stdout + r.stderr
        conf = out / "kea-dhcp4.conf"
        conf.write_text(conf.read_text().replace("/var/lib/kea", str(tmp_path)))
        assert '"client-class": "KNOWN"' in conf.read_text()
        r = _run("kea-dhcp4", "-t", str(conf), ns=pxe_ns)
        assert r.returncode == 0, r.stdout + r.stderr
