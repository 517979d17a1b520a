"""Kernel command lines: 4 transports x 2 SystemRescue generations x full/proxy DHCP, and more."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pxewizard.boot.cmdline import ARCHISO_NO_TFTP, entries_for
from pxewizard.boot.media import find_media
from pxewizard.errors import PxeError
from pxewizard.plan import Plan, plan_from_dict
from tests.data.boot import fixtures as fx


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
    from tests.support.tools import require

    require("xorriso")
    base = tmp_path_factory.mktemp("iso")
    return fx.make_iso(fx.make_archiso(base / "src"), base / "systemrescue.iso")


# (generation, transport) -> expected line; {path} is the medium's directory
EXPECTED = {
    ("archiso", "http"): "archisobasedir=sysresccd ip=dhcp archiso_http_srv=http://10.99.0.1/",
    ("archiso", "tftp"): "archisobasedir=sysresccd ip=dhcp archiso_http_srv=http://10.99.0.1/",
    ("archiso", "nfs"): "archisobasedir=sysresccd ip=dhcp archiso_nfs_srv=10.99.0.1:{path} "
                        "copytoram=n",
    ("archiso", "nbd"): "archisobasedir=sysresccd ip=dhcp archiso_nbd_srv=10.99.0.1 copytoram=n",
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
    assert line == ("archisobasedir=sysresccd ip=dhcp archiso_http_srv=http://10.99.0.1:8080/ "
                    "setkmap=de  rootpass=s3cret")
    assert notes == ("HTTP always copies the root image to RAM; copytoram = false has no effect",)
    line, _ = first_line(p, make_plan(p, "nfs", boot={"copytoram": True}))
    assert line.endswith("copytoram=y")


def test_external_http_server(media: dict[str, Path]) -> None:
    p = media["archiso-dir"]
    line, _ = first_line(p, make_plan(p, "http",
                                      boot={"external_http": "http://mirror.lan/sr"}))
    assert "archiso_http_srv=http://mirror.lan/sr/" in line


def test_nfs_options_when_portmapper_cannot_help(media: dict[str, Path]) -> None:
    p = media["archiso-dir"]
    plan = make_plan(p, "nfs", nfs={"nfs_port": 12049, "mount_port": 12048, "portmap": False})
    line, _ = first_line(p, plan)
    assert "archiso_nfs_opt=port=12049,mountport=12048" in line


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
