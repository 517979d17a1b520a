"""Menus: byte-for-byte for BIOS, UEFI and iPXE, plus syntax checks of what we generate."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pxewizard.boot.loaders import MENU_MODULES, Loaders
from pxewizard.boot.media import find_media
from pxewizard.boot.menus import MenuSettings, RemoteEntry, ipxe_script, menu_files, pxelinux_config
from pxewizard.boot.tree import build_boot
from pxewizard.plan import Plan, plan_from_dict
from tests.data.boot import fixtures as fx
from tests.data.boot.syntax import check_ipxe, check_pxelinux

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "boot" / "menus"
REGEN = os.environ.get("PXW_REGEN_GOLDEN") == "1"


def fake_loaders(base: Path) -> Loaders:
    """Loader files with the real names, in a temporary directory (no package needed)."""
    def f(rel: str) -> Path:
        return fx.put(base, rel, 64)

    return Loaders(
        pxelinux=f("bios/pxelinux.0"), lpxelinux=f("bios/lpxelinux.0"),
        ldlinux_c32=f("bios/ldlinux.c32"),
        bios_modules={m: f(f"bios/{m}") for m in MENU_MODULES},
        syslinux_efi64=f("efi64/syslinux.efi"), ldlinux_e64=f("efi64/ldlinux.e64"),
        efi64_modules={m: f(f"efi64/{m}") for m in MENU_MODULES},
        undionly_kpxe=f("ipxe/undionly.kpxe"), ipxe_efi=f("ipxe/ipxe.efi"),
        snponly_efi=f("ipxe/snponly.efi"), searched=(base,))


def make_plan(media: Path, transport: str, mode: str = "full", **sections: Any) -> Plan:
    data: dict[str, Any] = {
        "interface": "pxe0", "server_ip": "10.99.0.1",
        "dhcp": {"mode": mode, "boot_files": {"efi_x64": "efi64/syslinux.efi"}},
        "boot": {"media": str(media), "transport": transport, "timeout": 7,
                 "extra_cmdline": "setkmap=us"},
    }
    if mode == "full":
        data["dhcp"].update(range_start="10.99.0.100", range_end="10.99.0.199")
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return plan_from_dict(data)


CASES = {
    "archiso-http": (fx.make_archiso, "http", {}),
    "legacy-tftp": (fx.make_legacy, "tftp", {"http": {"port": 8080}}),
}


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs (PXW_REGEN_GOLDEN=1 rewrites it)"


def _first_entry(text: str) -> str:
    import re

    return re.search(r"^(?:LABEL|item) (\S+)", text, re.MULTILINE).group(1)


@pytest.mark.parametrize("mode,default,expected", [
    ("full", None, None), ("proxy", None, "local"), ("none", None, "local"),
    ("proxy", "local", "local")])
def test_default_entry_is_local_boot_beside_another_server(
        tmp_path: Path, mode: str, default: str | None, expected: str | None) -> None:
    extra = {"boot": {"default": default}} if default else {}
    plan = make_plan(fx.make_archiso(tmp_path / "media"), "http", mode, **extra)
    assert plan.menu_default == expected
    boot = build_boot(plan, loaders=fake_loaders(tmp_path / "loaders"))
    want = expected or _first_entry(boot.menus["pxelinux.cfg/default"])
    assert f"DEFAULT {want}\n" in boot.menus["pxelinux.cfg/default"]
    assert f"DEFAULT {want}\n" in boot.menus["efi64/pxelinux.cfg/default"]
    assert f"set menu-default {want}\n" in boot.menus["boot.ipxe"]
    if expected == "local":
        assert "LABEL local\n  MENU LABEL Boot from local disk" in boot.menus["pxelinux.cfg/default"]


def test_local_entry_id_matches_the_plan() -> None:
    from pxewizard.boot.media import LOCAL_ENTRY
    from pxewizard.plan import LOCAL_ENTRY_ID

    assert LOCAL_ENTRY.id == LOCAL_ENTRY_ID


def test_proxy_default_operator_choice_kept(tmp_path: Path) -> None:
    media = fx.make_archiso(tmp_path / "media")
    plan = make_plan(media, "http", "proxy")
    boot = build_boot(plan, loaders=fake_loaders(tmp_path / "loaders"))
    first = _first_entry(boot.menus["pxelinux.cfg/default"])
    plan = make_plan(media, "http", "proxy", boot={"default": first})
    boot = build_boot(plan, loaders=fake_loaders(tmp_path / "loaders"))
    assert f"DEFAULT {first}\n" in boot.menus["pxelinux.cfg/default"]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("mode", ["full", "proxy"])
def test_menus_byte_for_byte(tmp_path: Path, case: str, mode: str) -> None:
    make, transport, extra = CASES[case]
    plan = make_plan(make(tmp_path / "media"), transport, mode, **extra)
    boot = build_boot(plan, loaders=fake_loaders(tmp_path / "loaders"))
    assert sorted(boot.menus) == ["boot.ipxe", "efi64/pxelinux.cfg/default",
                                  "pxelinux.cfg/default"]
    # full and proxy DHCP give the same menus (the address is always literal), but for
    # the default: in proxy mode any PC of the LAN may get the menu, so it boots its disk
    menus = dict(boot.menus)
    if mode == "proxy":
        for vpath, line in (("pxelinux.cfg/default", "DEFAULT local\n"),
                            ("efi64/pxelinux.cfg/default", "DEFAULT local\n"),
                            ("boot.ipxe", "set menu-default local\n")):
            assert line in menus[vpath], vpath
            first = _first_entry(menus[vpath])
            menus[vpath] = menus[vpath].replace(line, line.replace("local", first), 1)
    _golden(f"{case}.bios.cfg", menus["pxelinux.cfg/default"])
    _golden(f"{case}.efi64.cfg", menus["efi64/pxelinux.cfg/default"])
    _golden(f"{case}.ipxe", menus["boot.ipxe"])
    for vpath, text in boot.menus.items():
        assert boot.tree.resolve(vpath).read() == text.encode()


@pytest.mark.parametrize("case", sorted(CASES))
def test_menus_parse_and_every_file_resolves(tmp_path: Path, case: str) -> None:
    make, transport, extra = CASES[case]
    plan = make_plan(make(tmp_path / "media"), transport, **extra)
    boot = build_boot(plan, loaders=fake_loaders(tmp_path / "loaders"))
    assert check_pxelinux(boot.menus["pxelinux.cfg/default"], boot.tree, "") == []
    assert check_pxelinux(boot.menus["efi64/pxelinux.cfg/default"], boot.tree, "efi64/") == []
    base = "http://10.99.0.1/" if transport == "http" else "http://10.99.0.1:8080/"
    assert check_ipxe(boot.menus["boot.ipxe"], boot.tree, base) == []


def test_checkers_catch_mistakes(tmp_path: Path) -> None:
    bad = "DEFAULT nope\nUI menu.c32\nTIMEOUT soon\nLABEL a\n  LINUX x\n  LINUX y\n"
    problems = check_pxelinux(bad)
    assert "DEFAULT nope names no LABEL" in problems
    assert any("TIMEOUT" in p for p in problems)
    assert any("LINUX twice" in p for p in problems)
    assert any("no MENU LABEL" in p for p in problems)
    problems = check_ipxe("#!ipxe\nitem a A\nchoose t || goto nowhere\ngoto ${target}\n"
                          "kernel http://x/k initrd=i.img\nfrobnicate\n")
    assert any("goto nowhere" in p for p in problems)
    assert any("without a label" in p for p in problems)
    assert any("initrd=i.img names no initrd" in p for p in problems)
    assert any("frobnicate" in p for p in problems)


def test_firmware_only_entries(tmp_path: Path) -> None:
    [m] = find_media(fx.make_archiso(tmp_path / "sr"))
    entries = list(m.entries)
    s = MenuSettings(title="t", default="memtest-efi", timeout=0)
    bios = pxelinux_config(entries, s, firmware="bios")
    efi = pxelinux_config(entries, s, firmware="efi64")
    assert "LABEL memtest\n" in bios and "memtest-efi" not in bios
    assert "LABEL memtest-efi\n" in efi and "LABEL memtest\n" not in efi
    # a default that the firmware does not have falls back to the first entry
    assert "DEFAULT sysresccd\n" in bios and "DEFAULT memtest-efi\n" in efi
    assert "TIMEOUT 0\n" in bios  # 0: wait for a choice
    script = ipxe_script(entries, s, base="http://10.99.0.1/")
    assert "iseq ${platform} pcbios && item memtest Memtest86+ (RAM test) ||\n" in script
    assert "iseq ${platform} efi && item memtest-efi Memtest86+ (RAM test, UEFI) ||\n" in script
    assert "choose --default ${menu-default} target || goto local\n" in script
    with pytest.raises(ValueError):
        pxelinux_config(entries, s, firmware="arm64")


def test_per_mac_defaults(tmp_path: Path) -> None:
    [m] = find_media(fx.make_archiso(tmp_path / "sr"))
    s = MenuSettings(title="t", timeout=5, per_mac=(("52:54:00:99:00:10", "local"),))
    files = menu_files(list(m.entries), s, base="http://10.99.0.1/")
    assert sorted(files) == ["boot.ipxe", "efi64/pxelinux.cfg/01-52-54-00-99-00-10",
                             "efi64/pxelinux.cfg/default", "pxelinux.cfg/01-52-54-00-99-00-10",
                             "pxelinux.cfg/default"]
    assert "DEFAULT local\n" in files["pxelinux.cfg/01-52-54-00-99-00-10"]
    assert "DEFAULT sysresccd\n" in files["pxelinux.cfg/default"]
    assert files["pxelinux.cfg/01-52-54-00-99-00-10"].replace("DEFAULT local", "DEFAULT x") == \
        files["pxelinux.cfg/default"].replace("DEFAULT sysresccd", "DEFAULT x")
    assert "iseq ${netX/mac} 52:54:00:99:00:10 && set menu-default local ||\n" in \
        files["boot.ipxe"]
    assert check_ipxe(files["boot.ipxe"]) == []


def test_per_mac_default_on_a_one_entry_menu_boots_at_once(tmp_path: Path) -> None:
    [m] = find_media(fx.make_generic(tmp_path / "g"))
    entries = list(m.entries)
    [real] = [e for e in entries if e.kind != "localboot"]
    assert any(e.kind == "localboot" for e in entries)
    mac = "52:54:00:99:00:10"
    s = MenuSettings(title="t", timeout=10, per_mac=((mac, real.id),))
    files = menu_files(entries, s, base="http://10.99.0.1/")
    # nothing left to choose for that MAC: no 10 s wait (pxelinux TIMEOUT is in tenths,
    # 0 would wait forever); every other client still gets the menu and its timeout
    for prefix in ("", "efi64/"):
        assert "TIMEOUT 1\n" in files[f"{prefix}pxelinux.cfg/01-52-54-00-99-00-10"]
        assert "TIMEOUT 100\n" in files[f"{prefix}pxelinux.cfg/default"]
    assert f"iseq ${{netX/mac}} {mac} && goto {real.id} ||\n" in files["boot.ipxe"]
    assert "--timeout 10000" in files["boot.ipxe"]
    assert check_ipxe(files["boot.ipxe"]) == []
    # a default of local boot still shows the menu (the operator may want the other entry)
    s = MenuSettings(title="t", timeout=10, per_mac=((mac, "local"),))
    files = menu_files(entries, s, base="http://10.99.0.1/")
    assert "TIMEOUT 100\n" in files["pxelinux.cfg/01-52-54-00-99-00-10"]
    assert f"iseq ${{netX/mac}} {mac} && set menu-default local ||\n" in files["boot.ipxe"]


REMOTE = RemoteEntry(
    id="debian-installer", label="Debian 12 installer (from the mirror)",
    kernel="http://deb.debian.org/debian/dists/bookworm/main/installer-amd64/current/images/"
           "netboot/debian-installer/amd64/linux",
    initrds=("http://deb.debian.org/debian/dists/bookworm/main/installer-amd64/current/images/"
             "netboot/debian-installer/amd64/initrd.gz",),
    cmdline="priority=low")


def test_remote_entry_in_ipxe_and_pxelinux_fallbacks(tmp_path: Path) -> None:
    [m] = find_media(fx.make_archiso(tmp_path / "sr"))
    entries = list(m.entries)
    s = MenuSettings(title="t")
    script = ipxe_script(entries, s, base="http://10.99.0.1/", remote=[REMOTE])
    assert f"kernel {REMOTE.kernel} initrd=initrd.gz priority=low\n" in script
    assert f"initrd {REMOTE.initrds[0]}\n" in script
    assert script.index("item debian-installer") < script.index("item local")
    assert check_ipxe(script) == []
    # pxelinux.0 has no HTTP: without a local copy the entry is shown disabled, with a note
    cfg = pxelinux_config(entries, s, remote=[REMOTE])
    assert ("LABEL debian-installer\n  MENU LABEL Debian 12 installer (from the mirror) "
            "(iPXE only)\n  MENU DISABLE\n  TEXT HELP\n  pxelinux has no HTTP") in cfg
    assert check_pxelinux(cfg) == []
    # with local copies it boots those and says so
    local = RemoteEntry(**{**REMOTE.__dict__, "local_kernel": "d-i/linux",
                           "local_initrds": ("d-i/initrd.gz",)})
    cfg = pxelinux_config(entries, s, remote=[local])
    assert "  LINUX ::/d-i/linux\n  INITRD ::/d-i/initrd.gz\n  APPEND priority=low\n" in cfg
    assert "boots the copy served here (d-i/linux)" in cfg
    # lpxelinux.0 fetches http:// itself
    cfg = pxelinux_config(entries, s, remote=[REMOTE], loader="lpxelinux.0")
    assert f"  LINUX {REMOTE.kernel}\n" in cfg
    assert check_pxelinux(cfg) == []


def test_remote_entry_rejects_non_http() -> None:
    with pytest.raises(ValueError, match="not an http:// URL"):
        RemoteEntry(id="x", label="x", kernel="/srv/linux")


def test_remote_entries_reach_the_tree(tmp_path: Path) -> None:
    plan = make_plan(fx.make_archiso(tmp_path / "sr"), "http")
    boot = build_boot(plan, remote=[REMOTE], loaders=fake_loaders(tmp_path / "l"))
    assert REMOTE.kernel in boot.tree.resolve("boot.ipxe").read().decode()
