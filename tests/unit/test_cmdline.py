"""Kernel command lines: 4 transports x 2 SystemRescue generations x full/proxy DHCP, and more."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from pxewizard.boot.cmdline import ARCHISO_NO_TFTP, entries_for
from pxewizard.boot.media import find_media
from pxewizard.boot.tree import build_boot, nbd_exports
from pxewizard.errors import PxeError
from pxewizard.commands.export import render_nbd_server
from pxewizard.plan import Plan, plan_from_dict
from pxewizard.files import FileRange
from tests.data.boot import fixtures as fx
from tests.support.tools import require
from tests.unit.test_menus import fake_loaders


def make_plan(media: Path, transport: str, mode: str = "full", **sections: Any) -> Plan:
    data: dict[str, Any] = {
        "interface": "pxe0", "server_ip": "10.99.0.1", "prefix": 24,
        "dhcp": {"mode": mode},
        "boot": {"media": str(media), "transport": transport},
    }
    if mode == "full":
        data["dhcp"].update(range_start="10.99.0.100", range_end="10.99.0.199")
    if transport == "nbd":
        data["nbd"] = {"enabled": True, "oldstyle_port": 10810}
    if transport == "nfs":
        data["nfs"] = {"enabled": True}
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return plan_from_dict(data)


def first_line(media: Path, plan: Plan) -> tuple[str, tuple[str, ...]]:
    [m] = find_media(media)
    e = entries_for(m, plan)[0]
    return e.cmdline, e.notes


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("media")
    return {"archiso-dir": fx.make_archiso(base / "sr"),
            "legacy": fx.make_legacy(base / "old")}


@pytest.fixture(scope="module")
def archiso_iso(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require("xorriso")
    base = tmp_path_factory.mktemp("iso")
    return fx.make_iso(fx.make_archiso(base / "src"), base / "systemrescue.iso")


# (generation, transport) -> expected line; {path} is the medium's directory
# HTTP fetches airootfs.sfs only: the medium's sysrescue.d/*.yaml go as sysrescuecfg= URLs
SRCFG = "sysrescuecfg=http://10.99.0.1/sysrescue.d/100-defaults.yaml"
EXPECTED = {
    ("archiso", "http"): "archisobasedir=sysresccd iomem=relaxed ip=dhcp "
                         f"archiso_http_srv=http://10.99.0.1/ {SRCFG}",
    ("archiso", "tftp"): "archisobasedir=sysresccd iomem=relaxed ip=dhcp "
                         f"archiso_http_srv=http://10.99.0.1/ {SRCFG}",
    ("archiso", "nfs"): "archisobasedir=sysresccd iomem=relaxed ip=dhcp "
                        "archiso_nfs_srv=10.99.0.1:{path} copytoram=n",
    ("archiso", "nbd"): "archisobasedir=sysresccd iomem=relaxed ip=dhcp archiso_nbd_srv=10.99.0.1 "
                        "copytoram=n",
    ("legacy", "http"): "netboot=http://10.99.0.1/sysrcd.dat dodhcp",
    ("legacy", "tftp"): "netboot=tftp://10.99.0.1/sysrcd.dat dodhcp",
    ("legacy", "nfs"): "netboot=nfs://10.99.0.1:{path} dodhcp",
    ("legacy", "nbd"): "netboot=nbd://10.99.0.1:10810 dodhcp",
}


@pytest.mark.parametrize("mode", ["full", "proxy"])
@pytest.mark.parametrize("generation, transport", sorted(EXPECTED))
def test_matrix(media: dict[str, Path], archiso_iso: Path, generation: str, transport: str,
                mode: str) -> None:
    # NBD of modern SystemRescue exports the whole ISO, so that case boots the .iso
    path = archiso_iso if (generation, transport) == ("archiso", "nbd") else \
        media["archiso-dir" if generation == "archiso" else "legacy"]
    line, notes = first_line(path, make_plan(path, transport, mode))
    assert line == EXPECTED[(generation, transport)].format(path=path.resolve())
    # literal address in both DHCP modes: never a loader variable
    assert "${" not in line and "10.99.0.1" in line
    if (generation, transport) == ("archiso", "tftp"):
        assert notes == (ARCHISO_NO_TFTP,)
    else:
        assert notes == ()


def test_full_and_proxy_lines_are_identical(media: dict[str, Path]) -> None:
    for transport in ("http", "tftp", "nfs", "nbd"):
        for key in ("archiso-dir", "legacy"):
            if (key, transport) == ("archiso-dir", "nbd"):
                continue
            p = media[key]
            assert first_line(p, make_plan(p, transport, "full")) == \
                first_line(p, make_plan(p, transport, "proxy"))


def test_http_port_extra_cmdline_and_copytoram(media: dict[str, Path]) -> None:
    p = media["archiso-dir"]
    plan = make_plan(p, "http", http={"port": 8080},
                     boot={"extra_cmdline": " setkmap=de  rootpass=s3cret ", "copytoram": False})
    line, notes = first_line(p, plan)
    assert line == ("archisobasedir=sysresccd iomem=relaxed ip=dhcp "
                    "archiso_http_srv=http://10.99.0.1:8080/ "
                    "sysrescuecfg=http://10.99.0.1:8080/sysrescue.d/100-defaults.yaml "
                    "setkmap=de  rootpass=s3cret")
    assert notes == ("HTTP always copies the root image to RAM; copytoram = false has no effect",)
    line, _ = first_line(p, make_plan(p, "nfs", boot={"copytoram": True}))
    assert line.endswith("copytoram=y")


def test_external_http_server(media: dict[str, Path]) -> None:
    p = media["archiso-dir"]
    line, _ = first_line(p, make_plan(p, "http",
                                      boot={"external_http": "http://mirror.lan/sr"}))
    assert "archiso_http_srv=http://mirror.lan/sr/" in line


# --- checked against the code that reads the line (issue 25) ----------------------------

NFSMOUNT = "/usr/lib/klibc/bin/nfsmount"


def klibc_nfsmount_parse(archiso_nfs_opt: str | None) -> str:
    """Run Debian's klibc nfsmount (the parser SystemRescue's mkinitcpio-nfs-utils copies) the
    way archiso_pxe_nfs does: ``nfsmount ${archiso_nfs_opt:+-o $archiso_nfs_opt} SRV DIR``.
    The directory does not exist, so after parsing it stops at stat(): no network is touched.
    Returns its stderr."""
    require(NFSMOUNT)
    argv = [NFSMOUNT] + (["-o", archiso_nfs_opt] if archiso_nfs_opt else []) + \
        ["10.99.0.1:/srv/sr", "/nonexistent/pxwtest-bootmnt"]
    proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)
    return proc.stderr


def nfs_opt(line: str) -> str | None:
    return next((w.split("=", 1)[1] for w in line.split() if w.startswith("archiso_nfs_opt=")),
                None)


@pytest.mark.parametrize("medium", ["archiso-dir", "copy"])
def test_archiso_nfs_no_option_while_our_portmapper_answers(
        media: dict[str, Path], tmp_path: Path, medium: str) -> None:
    # a copied medium in a plain directory and the fixture one: same rule
    p = media["archiso-dir"] if medium == "archiso-dir" else fx.make_archiso(tmp_path / "sr")
    for ports in ({}, {"nfs_port": 12049, "mount_port": 12048}):
        line, notes = first_line(p, make_plan(p, "nfs", nfs=ports))
        assert nfs_opt(line) is None and notes == ()


def test_archiso_nfs_without_portmapper_port_only_and_mount_on_627(
        media: dict[str, Path]) -> None:
    p = media["archiso-dir"]
    plan = make_plan(p, "nfs", nfs={"nfs_port": 12049, "mount_port": 627, "portmap": False})
    line, notes = first_line(p, plan)
    assert nfs_opt(line) == "port=12049"
    assert "archiso_nfs_srv=10.99.0.1:" in line and "mountport" not in line
    assert len(notes) == 1 and "190 s" in notes[0] and "nfs.portmap = true" in notes[0]
    # even on 2049: without a portmapper, nfsmount over TCP needs port= or it gives up
    line, _ = first_line(p, make_plan(p, "nfs", nfs={"mount_port": 627, "portmap": False}))
    assert nfs_opt(line) == "port=2049"


def test_archiso_nfs_without_portmapper_refuses_another_mount_port(
        media: dict[str, Path]) -> None:
    p = media["archiso-dir"]
    plan = make_plan(p, "nfs", nfs={"nfs_port": 12049, "portmap": False})
    with pytest.raises(PxeError, match=r"nfs.mount_port: 20048 .*627") as exc:
        first_line(p, plan)
    assert "nfs.portmap = true" in exc.value.fix and "nfs.mount_port = 627" in exc.value.fix


def test_klibc_nfsmount_rejects_the_old_line_and_takes_the_new_one(
        media: dict[str, Path]) -> None:
    # before issue 25 the line carried mountport=, which nfsmount aborts on
    assert "bad option 'mountport'" in klibc_nfsmount_parse("port=12049,mountport=12048")
    p = media["archiso-dir"]
    for nfs in ({"nfs_port": 12049, "mount_port": 627, "portmap": False},
                {"nfs_port": 12049}):
        opt = nfs_opt(first_line(p, make_plan(p, "nfs", nfs=nfs))[0])
        err = klibc_nfsmount_parse(opt)
        assert "bad option" not in err and "invalid value" not in err, err
        assert "No such file or directory" in err  # it parsed everything and reached stat()


def test_nfs_root_profiles_keep_mountport(tmp_path: Path) -> None:
    for names in (fx.DRACUT_NFS, fx.INITRAMFS_TOOLS_NFS):
        root = fx.make_nfsroot(tmp_path / names[0].strip("/").replace("/", "-"), names)
        plan = make_plan(root, "nfs", nfs={"nfs_port": 12049, "mount_port": 12048,
                                           "portmap": False})
        assert "port=12049,mountport=12048" in first_line(root, plan)[0]


@pytest.mark.parametrize("name", ["my media", "a;b", "$(reboot)", "x`y`", "q'uote", "c:d"])
def test_nfs_medium_path_with_shell_characters_is_refused(tmp_path: Path, name: str) -> None:
    for make in (fx.make_archiso, fx.make_legacy):
        p = make(tmp_path / make.__name__ / name)
        with pytest.raises(PxeError, match="boot.media: the path .* cannot carry") as exc:
            first_line(p, make_plan(p, "nfs"))
        assert "mount --bind" in exc.value.fix
        # HTTP names files inside the medium, never the medium's own path: unaffected
        assert "archiso_http_srv=" in first_line(p, make_plan(p, "http"))[0] or \
            "netboot=http://" in first_line(p, make_plan(p, "http"))[0]


@pytest.mark.parametrize("kind", ["dir", "iso"])
def test_archiso_tftp_without_http_is_an_error(media: dict[str, Path], archiso_iso: Path,
                                               kind: str) -> None:
    p = media["archiso-dir"] if kind == "dir" else archiso_iso
    with pytest.raises(PxeError, match="boot.transport: tftp cannot boot SystemRescue") as exc:
        first_line(p, make_plan(p, "tftp", http={"enabled": False}))
    assert "http.enabled = true" in exc.value.fix
    # an external HTTP server holding the medium is enough
    line, _ = first_line(p, make_plan(p, "tftp", http={"enabled": False},
                                      boot={"external_http": "http://mirror.lan/sr/"}))
    assert "archiso_http_srv=http://mirror.lan/sr/" in line


@pytest.mark.parametrize("kind", ["dir", "iso"])
def test_archiso_nbd_export_name(media: dict[str, Path], archiso_iso: Path, kind: str) -> None:
    # the medium as a copied directory or as the .iso; the export is the .iso either way
    p = media["archiso-dir"] if kind == "dir" else archiso_iso
    one = {"exports": [{"name": "sysrescue-12", "path": str(archiso_iso)}]}
    line, _ = first_line(p, make_plan(p, "nbd", nbd=one))
    assert line.endswith("archiso_nbd_srv=10.99.0.1 archiso_nbd_name=sysrescue-12 copytoram=n")
    i = str(archiso_iso)
    both = {"exports": [{"name": "other", "path": i}, {"name": "archiso", "path": i}]}
    assert "archiso_nbd_name" not in first_line(p, make_plan(p, "nbd", nbd=both))[0]
    if kind == "iso":
        assert "archiso_nbd_name" not in first_line(p, make_plan(p, "nbd"))[0]
    two = {"exports": [{"name": "a", "path": i}, {"name": "b", "path": i}]}
    with pytest.raises(PxeError, match="nbd.exports: none is named \"archiso\""):
        first_line(p, make_plan(p, "nbd", nbd=two))
    odd = {"exports": [{"name": "my iso", "path": i}]}
    with pytest.raises(PxeError, match="export name 'my iso'"):
        first_line(p, make_plan(p, "nbd", nbd=odd))


def customised(root: Path) -> Path:
    """A SystemRescue medium customised as its manual says: YAML files, autorun, an SRM."""
    fx.make_archiso(root, version="12.00")
    fx.put(root, "sysrescue.d/999-custom.yaml", data=b"---\nsysconfig:\n  bookmarks: false\n")
    fx.put(root, "sysrescue.d/500-my site.yaml", data=b"---\nglobal:\n  nofirewall: true\n")
    fx.put(root, "sysrescue.d/notes.yml", data=b"not read: .yml\n")  # the manual: .yaml only
    fx.put(root, "sysrescue.d/old/200-x.yaml", data=b"---\n")  # not in sysrescue.d itself
    fx.put(root, "autorun/autorun0", data=b"#!/bin/sh\necho hi\n")
    fx.put(root, "sysresccd/zfs.srm", 500)
    return root


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    require("xorriso")
    base = tmp_path_factory.mktemp("custom")
    d = customised(base / "dir")
    return {"dir": d, "iso": fx.make_iso(d, base / "custom.iso", volume="RESCUE1200")}


@pytest.mark.parametrize("kind", ["dir", "iso"])
@pytest.mark.parametrize("transport", ["http", "tftp"])
def test_customised_medium_over_http(custom: dict[str, Path], kind: str, transport: str,
                                     tmp_path: Path) -> None:
    p = custom[kind]
    line, notes = first_line(p, make_plan(p, transport))
    base = "http://10.99.0.1/"
    assert line.split(f"archiso_http_srv={base} ", 1)[1] == (
        f"sysrescuecfg={base}sysrescue.d/100-defaults.yaml "
        f"sysrescuecfg={base}sysrescue.d/500-my%20site.yaml "
        f"sysrescuecfg={base}sysrescue.d/999-custom.yaml "
        f"ar_source={base}autorun/")
    assert any("zfs.srm" in n and "late_load_srm" in n for n in notes)
    # every URL on the line is a file the HTTP server serves
    tree = build_boot(make_plan(p, transport), loaders=fake_loaders(tmp_path)).tree
    for w in line.split():
        if w.startswith("sysrescuecfg="):
            assert tree.resolve(unquote(w.split(base, 1)[1])).read().startswith(b"---")
    assert tree.resolve("autorun/autorun0").read().startswith(b"#!/bin/sh")


def test_customised_medium_over_nfs_and_nbd_reads_it_in_place(custom: dict[str, Path]) -> None:
    line, notes = first_line(custom["dir"], make_plan(custom["dir"], "nfs"))
    assert "sysrescuecfg" not in line and "ar_source" not in line and notes == ()
    line, notes = first_line(custom["iso"], make_plan(custom["iso"], "nbd"))
    assert "sysrescuecfg" not in line and "ar_source" not in line and notes == ()


def test_own_ar_source_wins(tmp_path: Path) -> None:
    p = customised(tmp_path / "sr")
    line, _ = first_line(p, make_plan(p, "http",
                                      boot={"extra_cmdline": "ar_source=http://x.lan/ar/"}))
    assert line.count("ar_source=") == 1 and line.endswith("ar_source=http://x.lan/ar/")
    fx.put(p, "sysrescue.d/600-ar.yaml", data=b"---\nautorun:\n  ar_source: nfs://x:/ar\n")
    assert "ar_source" not in first_line(p, make_plan(p, "http"))[0]
    # scripts at the top of the medium (before SystemRescue 9) are found there
    q = fx.make_archiso(tmp_path / "old", version="8.07")
    fx.put(q, "autorun", data=b"#!/bin/sh\n")
    line, _ = first_line(q, make_plan(q, "http"))
    assert line.endswith("archiso_http_srv=http://10.99.0.1/ ar_source=http://10.99.0.1/")
    assert "sysrescuecfg" not in line  # no sysrescue.d before 9.00


def test_legacy_iso_nbd_exports_sysrcd_dat_inside_the_iso(tmp_path: Path) -> None:
    require("xorriso")
    src = fx.make_legacy(tmp_path / "src")
    iso = fx.make_iso(src, tmp_path / "systemrescuecd-5.3.2.iso", volume="sysrcd-5.3.2")
    line, _ = first_line(iso, make_plan(iso, "nbd"))
    assert line == "netboot=nbd://10.99.0.1:10810 dodhcp"
    [(name, rng)] = nbd_exports(make_plan(iso, "nbd")).items()
    assert name == "sysrcd" and isinstance(rng, FileRange) and rng.path == iso
    with open(iso, "rb") as fh:
        fh.seek(rng.offset)
        assert fh.read(rng.size) == (src / "sysrcd.dat").read_bytes()
    # a directory exports the file itself
    assert nbd_exports(make_plan(src, "nbd")) == {"sysrcd": src / "sysrcd.dat"}
    # `pxewizard export` points nbd-server at the copy the boot tree gets, not the .iso
    conf = render_nbd_server(make_plan(iso, "nbd"), {"sysrcd": rng}, tmp_path / "tftpboot")
    assert f"exportname = {tmp_path / 'tftpboot' / 'sysrcd.dat'}" in conf


def test_legacy_docache_on_nfs_and_nbd(media: dict[str, Path]) -> None:
    p = media["legacy"]
    for t in ("nfs", "nbd"):
        line, _ = first_line(p, make_plan(p, t, boot={"copytoram": True}))
        assert line.endswith("docache dodhcp")


def test_legacy_nbd_needs_oldstyle_port(media: dict[str, Path]) -> None:
    p = media["legacy"]
    plan = make_plan(p, "nbd", nbd={"oldstyle_port": None})
    with pytest.raises(PxeError, match="oldstyle NBD handshake.*nbd.oldstyle_port"):
        first_line(p, plan)


def test_archiso_nbd_from_a_plain_directory_says_why(media: dict[str, Path]) -> None:
    p = media["archiso-dir"]
    with pytest.raises(PxeError, match="exports the whole ISO image"):
        first_line(p, make_plan(p, "nbd"))


def test_nfs_of_an_iso_says_to_mount_it(archiso_iso: Path) -> None:
    with pytest.raises(PxeError, match="mount -o loop,ro"):
        first_line(archiso_iso, make_plan(archiso_iso, "nfs"))


def test_memtest_and_local_entries_have_no_transport(media: dict[str, Path]) -> None:
    p = media["archiso-dir"]
    [m] = find_media(p)
    entries = {e.id: e for e in entries_for(m, make_plan(p, "http",
                                                          boot={"extra_cmdline": "x=1"}))}
    assert entries["memtest"].cmdline == "" and entries["local"].cmdline == ""


@pytest.mark.parametrize("names, expected", [
    (fx.DRACUT_NFS, "root=nfs:10.99.0.1:{path}:vers=3,nolock rw ip=dhcp"),
    (fx.INITRAMFS_TOOLS_NFS, "root=/dev/nfs nfsroot=10.99.0.1:{path},vers=3,nolock ip=dhcp rw"),
])
@pytest.mark.parametrize("mode", ["full", "proxy"])
def test_nfs_root_lines(tmp_path: Path, names: list[str], expected: str, mode: str) -> None:
    root = fx.make_nfsroot(tmp_path / "root", names)
    line, notes = first_line(root, make_plan(root, "nfs", mode))
    assert line == expected.format(path=root.resolve())
    assert notes == ()


def test_nfs_root_with_another_transport_is_noted(tmp_path: Path) -> None:
    root = fx.make_nfsroot(tmp_path / "root", fx.INITRAMFS_TOOLS_NFS)
    _, notes = first_line(root, make_plan(root, "http"))
    assert notes == ("an NFS root needs the nfs transport and nfs.enabled = true",)


def test_debian_live_and_casper(tmp_path: Path) -> None:
    live = fx.make_debian_live(tmp_path / "live")
    assert first_line(live, make_plan(live, "http"))[0] == \
        "boot=live fetch=http://10.99.0.1/live/filesystem.squashfs"
    assert first_line(live, make_plan(live, "tftp"))[0] == \
        "boot=live fetch=tftp://10.99.0.1/live/filesystem.squashfs"
    assert first_line(live, make_plan(live, "nfs"))[0] == \
        f"boot=live netboot=nfs nfsroot=10.99.0.1:{live.resolve()}"
    line, notes = first_line(live, make_plan(live, "nbd"))
    assert "fetch=http://" in line and "no NBD root" in notes[0]
    casper = fx.make_casper(tmp_path / "casper")
    assert first_line(casper, make_plan(casper, "nfs"))[0] == \
        f"boot=casper netboot=nfs nfsroot=10.99.0.1:{casper.resolve()} ip=dhcp"
    line, notes = first_line(casper, make_plan(casper, "http"))
    assert "url=" not in line and "whole .iso" in notes[0]


def test_plan_entries_filter_and_unknown_ids(media: dict[str, Path]) -> None:
    p = media["archiso-dir"]
    [m] = find_media(p)
    got = entries_for(m, make_plan(p, "http", boot={"entries": ["local", "sysresccd"]}))
    assert [e.id for e in got] == ["local", "sysresccd"]
    with pytest.raises(PxeError, match="boot.entries: nope not found.*sysresccd, memtest"):
        entries_for(m, make_plan(p, "http", boot={"entries": ["nope"]}))


def test_casper_iso_name_with_a_space_is_percent_encoded(tmp_path: Path) -> None:
    require("xorriso")
    iso = fx.make_iso(fx.make_casper(tmp_path / "src"), tmp_path / "ubuntu 22.04.iso",
                      volume="Ubuntu 22.04")
    line, _ = first_line(iso, make_plan(iso, "http"))
    assert line.endswith("url=http://10.99.0.1/ubuntu%2022.04.iso")
    tree = build_boot(make_plan(iso, "http"), loaders=fake_loaders(tmp_path / "l")).tree
    assert tree.resolve(unquote("ubuntu%2022.04.iso")).size == iso.stat().st_size
