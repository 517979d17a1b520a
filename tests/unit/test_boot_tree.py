"""The served boot tree: layout of loaders, media mapped (not copied), exports, RAM, loaders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pxewizard.boot.loaders import Loaders, find_loaders, missing_message
from pxewizard.boot.media import find_media
from pxewizard.boot.ram import MiB, WORKING_SET, ram_estimate
from pxewizard.boot.tree import build_boot, build_tree, nbd_exports, nfs_exports
from pxewizard.errors import PxeError
from pxewizard.files import NotFound
from tests.data.boot import fixtures as fx
from tests.support.tools import require
from tests.unit.test_menus import fake_loaders, make_plan


def _tree_snapshot(root: Path) -> dict[str, tuple[int, float]]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            st = p.stat()
            out[str(p)] = (st.st_size, st.st_mtime)
    return out


def test_layout_bios_uefi_ipxe(tmp_path: Path) -> None:
    media = fx.make_archiso(tmp_path / "sr")
    loaders = fake_loaders(tmp_path / "l")
    boot = build_boot(make_plan(media, "http"), loaders=loaders)
    t = boot.tree
    assert t.resolve("pxelinux.0").real == loaders.pxelinux
    assert t.resolve("ldlinux.c32").real == loaders.ldlinux_c32
    assert t.resolve("menu.c32").real == loaders.bios_modules["menu.c32"]
    # EFI modules share the BIOS names: they live beside syslinux.efi in efi64/
    assert t.resolve("efi64/syslinux.efi").real == loaders.syslinux_efi64
    assert t.resolve("efi64/ldlinux.e64").real == loaders.ldlinux_e64
    assert t.resolve("efi64/menu.c32").real == loaders.efi64_modules["menu.c32"]
    assert t.resolve("efi64/libcom32.c32").real == loaders.efi64_modules["libcom32.c32"]
    for name in ("undionly.kpxe", "ipxe.efi", "snponly.efi"):
        assert t.resolve(name).real is not None
    # the medium is mapped where it lies
    ref = t.resolve("sysresccd/x86_64/airootfs.sfs")
    assert ref.real == media / "sysresccd/x86_64/airootfs.sfs" and ref.size == 9000
    assert boot.warnings == []
    assert (boot.bios_dir, boot.efi_dir) == ("", "efi64")


def test_nothing_is_written_into_the_media(tmp_path: Path) -> None:
    media = fx.make_archiso(tmp_path / "sr")
    before = _tree_snapshot(media)
    build_boot(make_plan(media, "nfs", nfs={"enabled": True}),
               loaders=fake_loaders(tmp_path / "l"))
    assert _tree_snapshot(media) == before


def test_efi_x64_beside_the_bios_loader_is_warned_and_still_served(tmp_path: Path) -> None:
    media = fx.make_archiso(tmp_path / "sr")
    loaders = fake_loaders(tmp_path / "l")
    plan = make_plan(media, "http", dhcp={"boot_files": {"efi_x64": "syslinux.efi"}})
    boot = build_boot(plan, loaders=loaders)
    assert any("efi64/syslinux.efi" in w and "clash" in w for w in boot.warnings)
    assert boot.tree.resolve("syslinux.efi").real == loaders.syslinux_efi64
    assert boot.tree.resolve("efi64/menu.c32").real == loaders.efi64_modules["menu.c32"]


def test_efi_x64_in_its_own_directory(tmp_path: Path) -> None:
    plan = make_plan(fx.make_archiso(tmp_path / "sr"), "http",
                     dhcp={"boot_files": {"efi_x64": "uefi/syslinux.efi"}})
    boot = build_boot(plan, loaders=fake_loaders(tmp_path / "l"))
    assert boot.efi_dir == "uefi" and "uefi/pxelinux.cfg/default" in boot.menus
    assert boot.tree.resolve("uefi/ldlinux.e64").size == 64
    assert boot.warnings == []


def test_missing_boot_loaders_are_named_with_package_and_places(tmp_path: Path) -> None:
    plan = make_plan(fx.make_archiso(tmp_path / "sr"), "http")
    searched = (Path("/usr/lib/PXELINUX"), Path("/usr/lib/syslinux/modules/bios"))
    boot = build_boot(plan, loaders=Loaders(searched=searched))
    text = "\n".join(boot.warnings)
    assert ("pxelinux.0: boot loader file pxelinux.0 not found (looked in /usr/lib/PXELINUX, "
            "/usr/lib/syslinux/modules/bios); install it: `apt-get install pxelinux` on "
            "Debian/Ubuntu, `pacman -S syslinux` on Arch/SystemRescue") in text
    assert "ldlinux.c32 not found" in text and "apt-get install syslinux-common" in text
    assert "efi64/syslinux.efi: boot loader file syslinux.efi" in text
    assert "apt-get install syslinux-efi" in text
    assert "efi64/menu.c32 not found" in text


def test_missing_message_for_ipxe() -> None:
    assert "`apt-get install ipxe`" in missing_message("undionly.kpxe")
    assert "`apt-get install ipxe`" in missing_message("snponly.efi")


def test_a_loader_in_tftp_root_counts(tmp_path: Path) -> None:
    root = tmp_path / "tftproot"
    fx.put(root, "pxelinux.0", 10)
    plan = make_plan(fx.make_archiso(tmp_path / "sr"), "http", tftp={"root": str(root)})
    boot = build_boot(plan, loaders=Loaders())
    assert not any(w.startswith("pxelinux.0:") for w in boot.warnings)
    assert boot.tree.resolve("pxelinux.0").real == (root / "pxelinux.0").resolve()


def test_find_loaders_on_this_system() -> None:
    require("/usr/lib/PXELINUX/pxelinux.0", "/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi",
            "/usr/lib/ipxe/undionly.kpxe")
    found = find_loaders()
    assert found.missing() == []
    assert found.pxelinux == Path("/usr/lib/PXELINUX/pxelinux.0")
    assert found.syslinux_efi64 == Path("/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi")
    assert found.ldlinux_e64 == Path("/usr/lib/syslinux/modules/efi64/ldlinux.e64")
    assert found.bios_modules["menu.c32"] != found.efi64_modules["menu.c32"]


def test_find_loaders_search_first_and_efi_kept_apart(tmp_path: Path) -> None:
    bios = tmp_path / "bios"
    efi = tmp_path / "efi"
    fx.put(bios, "menu.c32", 1)
    fx.put(efi, "menu.c32", 2)
    fx.put(efi, "ldlinux.e64", 3)
    found = find_loaders([bios, efi])
    assert found.bios_modules["menu.c32"] == bios / "menu.c32"
    assert found.efi64_modules["menu.c32"] == efi / "menu.c32"
    assert found.ldlinux_e64 == efi / "ldlinux.e64"


def test_iso_files_are_byte_ranges_of_the_iso(tmp_path: Path) -> None:
    require("xorriso")
    src = fx.make_archiso(tmp_path / "src")
    iso = fx.make_iso(src, tmp_path / "sr.iso")
    tree = build_tree(make_plan(iso, "http"))
    for vpath in ("sysresccd/boot/x86_64/vmlinuz", "sysresccd/x86_64/airootfs.sfs"):
        ref = tree.resolve(vpath)
        assert ref.real is None and ref.location() == (iso, ref.offset) and ref.offset > 0
        assert ref.size == (src / vpath).stat().st_size
        assert ref.read() == (src / vpath).read_bytes()
    assert any(origin.startswith(f"{iso}@") for _p, _s, origin in tree.entries())


def test_exports_default_to_the_medium(tmp_path: Path) -> None:
    require("xorriso")
    src = fx.make_archiso(tmp_path / "src")
    iso = fx.make_iso(src, tmp_path / "sr.iso")
    plan = make_plan(iso, "nbd", nbd={"enabled": True})
    assert nbd_exports(plan) == {"archiso": iso}
    plan = make_plan(src, "nfs", nfs={"enabled": True})
    [exp] = nfs_exports(plan)
    assert (exp.path, exp.rw, exp.squash.value) == (src.resolve(), False, "root_squash")
    assert nbd_exports(plan) == {} and nfs_exports(make_plan(src, "http")) == []
    legacy = fx.make_legacy(tmp_path / "old")
    plan = make_plan(legacy, "nbd", nbd={"enabled": True, "oldstyle_port": 10810})
    assert nbd_exports(plan) == {"sysrcd": legacy / "sysrcd.dat"}


def test_plan_exports_win(tmp_path: Path) -> None:
    src = fx.make_archiso(tmp_path / "src")
    img = fx.put(tmp_path, "disk.img", 4096)
    plan = make_plan(src, "nbd", nbd={"enabled": True,
                                      "exports": [{"name": "archiso", "path": str(img)}]},
                     nfs={"enabled": True, "exports": [{"path": str(tmp_path), "rw": True}]})
    assert nbd_exports(plan) == {"archiso": img}
    assert nfs_exports(plan)[0].rw is True


def test_nbd_of_a_directory_says_what_to_do(tmp_path: Path) -> None:
    plan = make_plan(fx.make_archiso(tmp_path / "src"), "http", nbd={"enabled": True})
    assert nbd_exports(plan) == {}
    plan = make_plan(fx.make_archiso(tmp_path / "src2"), "nbd", nbd={"enabled": True})
    with pytest.raises(PxeError, match="set boot.media to the .iso"):
        nbd_exports(plan)


def test_no_medium_serves_a_local_boot_menu(tmp_path: Path, monkeypatch) -> None:
    import pxewizard.boot.tree as tree_mod

    monkeypatch.setattr(tree_mod, "find_media", lambda path: [])
    plan = make_plan(tmp_path, "http").model_copy(
        update={"boot": make_plan(tmp_path, "http").boot.model_copy(update={"media": None})})
    boot = build_boot(plan, loaders=fake_loaders(tmp_path / "l"))
    assert [e.id for e in boot.entries] == ["local"]
    assert "no boot medium found" in boot.warnings[0]
    assert "LOCALBOOT 0" in boot.menus["pxelinux.cfg/default"]


def test_bad_media_in_plan_raises(tmp_path: Path) -> None:
    d = tmp_path / "nothing"
    fx.put(d, "x.txt", 3)
    with pytest.raises(PxeError, match="no bootable system found"):
        build_tree(make_plan(d, "http"))


# --- RAM --------------------------------------------------------------------------------


def _archiso_media(tmp_path: Path):
    root = fx.make_archiso(tmp_path / "sr")
    fx.put(root, "sysresccd/x86_64/airootfs.sfs", 800 * MiB // 1000)  # keep the file small
    return find_media(root)[0]


@pytest.mark.parametrize("transport, copytoram, image_factor", [
    ("http", None, 2), ("tftp", None, 2), ("nfs", None, 0), ("nbd", False, 0),
    ("nfs", True, 2), ("nbd", True, 2),
])
def test_ram_archiso(tmp_path: Path, transport: str, copytoram, image_factor: int) -> None:
    m = _archiso_media(tmp_path)
    e = m.entries[0]
    sizes = dict(e.files)
    est = ram_estimate(m, None, transport, copytoram)
    base = sizes[e.kernel] + 3 * sum(sizes[i] for i in e.initrds) + WORKING_SET
    assert est.needed_bytes == base + image_factor * e.image_size
    text = " ".join(est.reasoning)
    assert ("x2" in text) == bool(image_factor)
    assert est.reasoning[-1].startswith("total: about")


def test_ram_legacy_local_and_memtest(tmp_path: Path) -> None:
    m = find_media(fx.make_legacy(tmp_path / "old"))[0]
    e = m.entries[0]
    http = ram_estimate(m, e, "http", None)
    nfs = ram_estimate(m, e, "nfs", None)
    assert http.needed_bytes - nfs.needed_bytes == 8000
    assert ram_estimate(m, m.entries[-1], "http", None).needed_bytes == 0
    mt = ram_estimate(m, next(x for x in m.entries if x.kind == "memtest"), "http", None)
    assert mt.needed_mib == 17


def test_nfs_root_tree_serves_only_its_kernels(tmp_path: Path) -> None:
    root = fx.make_nfsroot(tmp_path / "root", fx.INITRAMFS_TOOLS_NFS)
    fx.put(root, "etc/shadow", data=b"root:$6$secret:19000::::::\n")
    (root / "boot/vmlinuz").symlink_to("vmlinuz-6.1.0-13-amd64")
    plan = make_plan(root, "nfs", nfs={"enabled": True})
    boot = build_boot(plan, loaders=fake_loaders(tmp_path / "l"))
    assert [e.id for e in boot.entries] == ["nfsroot-6-1-0-13-amd64", "local"]
    assert boot.tree.resolve("boot/vmlinuz-6.1.0-13-amd64").size == 1500
    with pytest.raises(NotFound):
        boot.tree.resolve("etc/shadow")
    assert [e.path for e in nfs_exports(plan)] == [root.resolve()]


def test_nfs_root_initramfs_not_world_readable_is_said(tmp_path: Path) -> None:
    root = fx.make_nfsroot(tmp_path / "root", fx.DRACUT_NFS, kver="5.14.0-362.el9.x86_64")
    initrd = root / "boot/initrd.img-5.14.0-362.el9.x86_64"
    initrd.chmod(0o600)
    [m] = find_media(root)
    assert any(f"chmod o+r {initrd}" in w for w in m.warnings)


def test_unknown_default_is_warned(tmp_path: Path) -> None:
    plan = make_plan(fx.make_archiso(tmp_path / "sr"), "http", boot={"default": "sysrescue"})
    boot = build_boot(plan, loaders=fake_loaders(tmp_path / "l"))
    assert any("boot.default: 'sysrescue' is not a menu entry" in w for w in boot.warnings)
    assert "DEFAULT sysresccd\n" in boot.menus["pxelinux.cfg/default"]


def test_loader_ipxe_is_wired(tmp_path: Path) -> None:
    """boot.loader = "ipxe": BIOS PXE ROMs get undionly.kpxe, UEFI ipxe.efi, iPXE its script."""
    from pxewizard.proto.dhcp import BootFiles, LeaseTable, Mode, Packet, Policy, decide, decode
    from pxewizard.proto.dhcp import mac_bytes

    media = fx.make_archiso(tmp_path / "sr")
    loaders = fake_loaders(tmp_path / "l")
    plan = make_plan(media, "http", boot={"loader": "ipxe"}, dhcp={"boot_files": {}})
    bf = plan.dhcp.boot_files
    assert (bf.bios, bf.efi_x64, bf.ipxe_script) == ("undionly.kpxe", "ipxe.efi", "boot.ipxe")
    boot = build_boot(plan, loaders=loaders)
    assert boot.tree.resolve("undionly.kpxe").real == loaders.undionly_kpxe
    assert boot.tree.resolve("ipxe.efi").real == loaders.ipxe_efi
    assert boot.tree.resolve("boot.ipxe").read().startswith(b"#!ipxe")
    pol = Policy(mode=Mode.PROXY, server_ip="10.99.0.1", network="10.99.0.0/24",
                 boot=BootFiles(bios=bf.bios, efi_x64=bf.efi_x64,
                                ipxe_script="http://10.99.0.1/boot.ipxe"))
    for arch, uc, want in ((0, None, b"undionly.kpxe"), (7, None, b"ipxe.efi"),
                           (0, b"iPXE", b"http://10.99.0.1/boot.ipxe")):
        opts = {53: b"\x01", 93: arch.to_bytes(2, "big"),
                60: f"PXEClient:Arch:{arch:05d}:UNDI:002001".encode()}
        if uc:
            opts[77] = uc
        d = decide(Packet(xid=1, chaddr=mac_bytes("02:00:00:00:00:07"), options=opts), pol,
                   LeaseTable(), 0.0)
        assert decode(d.reply).options[67] == want
