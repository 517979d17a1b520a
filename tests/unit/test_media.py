"""Boot media detection on fixture trees and ISOs built by the tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pxewizard.boot.initramfs import list_initramfs, nfs_support
from pxewizard.boot.media import arrange, find_media, probe, scan_media
from pxewizard.errors import PxeError
from tests.data.boot import fixtures as fx
from tests.support.tools import require


def _sizes(root: Path, entry) -> None:
    """Every (path, size) an entry lists is the real file's size."""
    for vpath, size in entry.files:
        assert (root / vpath).stat().st_size == size, vpath


def test_sysrescue_archiso_directory(tmp_path: Path) -> None:
    root = fx.make_archiso(tmp_path / "sr")
    [m] = find_media(root)
    assert (m.profile, m.label, m.version) == ("sysrescue-archiso", "SystemRescue 11.01", "11.01")
    assert [e.id for e in m.entries] == ["sysresccd", "memtest", "memtest-efi", "local"]
    main = m.entries[0]
    assert main.kernel == "sysresccd/boot/x86_64/vmlinuz"
    assert main.initrds == ("sysresccd/boot/intel_ucode.img", "sysresccd/boot/amd_ucode.img",
                            "sysresccd/boot/x86_64/sysresccd.img")
    assert main.cmdline == "archisobasedir=sysresccd"
    assert dict(main.files)["sysresccd/x86_64/airootfs.sfs"] == 9000
    assert "sysresccd/x86_64/airootfs.sha512" in dict(main.files)
    assert main.image_size == m.image_size == 9000
    assert m.image == root / "sysresccd/x86_64/airootfs.sfs"
    assert m.image_vpath == "sysresccd/x86_64/airootfs.sfs"
    _sizes(root, main)
    assert [(e.kind, e.firmware) for e in m.entries[1:]] == [
        ("memtest", "bios"), ("memtest", "efi"), ("localboot", "any")]
    assert m.warnings == ()


def test_sysrescue_legacy_directory(tmp_path: Path) -> None:
    root = fx.make_legacy(tmp_path / "old")
    [m] = find_media(root)
    assert (m.profile, m.label) == ("sysrescue-legacy", "SystemRescueCd 5.3.2")
    assert [e.id for e in m.entries] == ["rescue64", "rescue32", "altker64", "altker32",
                                         "memtest", "local"]
    e = m.entries[0]
    assert (e.kernel, e.initrds) == ("isolinux/rescue64", ("isolinux/initram.igz",))
    assert e.image_size == 8000 and m.image == root / "sysrcd.dat"
    assert dict(e.files) == {"isolinux/rescue64": 1100, "isolinux/initram.igz": 700,
                             "sysrcd.dat": 8000, "sysrcd.md5": 45}
    assert m.nbd_source == root / "sysrcd.dat"
    _sizes(root, e)


@pytest.mark.parametrize("make, profile, ids, image", [
    (fx.make_debian_live, "debian-live", ["live-6-1-0-13-amd64", "local"],
     "live/filesystem.squashfs"),
    (fx.make_casper, "ubuntu-casper", ["casper", "local"], "casper/filesystem.squashfs"),
    (fx.make_generic, "generic", ["linux", "local"], ""),
    (fx.make_memtest, "memtest", ["memtest", "memtest-efi", "local"], ""),
])
def test_other_profiles(tmp_path: Path, make, profile: str, ids: list[str], image: str) -> None:
    root = make(tmp_path / "m")
    [m] = find_media(root)
    assert m.profile == profile
    assert [e.id for e in m.entries] == ids
    assert m.image_vpath == image
    for e in m.entries:
        _sizes(root, e)
    if image:
        assert m.entries[0].image_size == (root / image).stat().st_size


def test_live_labels_come_from_disk_info(tmp_path: Path) -> None:
    [m] = find_media(fx.make_casper(tmp_path / "u"))
    assert m.label.startswith("Ubuntu 22.04.3 LTS")
    assert m.entries[0].cmdline == "boot=casper"


def test_nfsroot_initramfs_tools(tmp_path: Path) -> None:
    root = fx.make_nfsroot(tmp_path / "root", fx.INITRAMFS_TOOLS_NFS)
    [m] = find_media(root)
    assert (m.profile, m.flavour) == ("nfsroot", "initramfs-tools")
    assert m.label == "Debian GNU/Linux 12 (bookworm) (NFS root)"
    e = m.entries[0]
    assert (e.id, e.kernel, e.initrds) == ("nfsroot-6-1-0-13-amd64",
                                           "boot/vmlinuz-6.1.0-13-amd64",
                                           ("boot/initrd.img-6.1.0-13-amd64",))
    assert m.warnings == () and e.notes == ()


def test_nfsroot_dracut_zstd_with_microcode(tmp_path: Path) -> None:
    require("zstd")
    root = fx.make_nfsroot(tmp_path / "root", fx.DRACUT_NFS, compression="zstd",
                           kver="5.14.0-362.el9.x86_64", pretty="CentOS Stream 9",
                           microcode=True)
    [m] = find_media(root)
    assert (m.profile, m.flavour, m.warnings) == ("nfsroot", "dracut", ())


@pytest.mark.parametrize("names, flavour, words", [
    (fx.DRACUT_NO_NFS, "dracut", ["dracut --add nfs", "no nfs.ko"]),
    (fx.INITRAMFS_TOOLS_LOCAL, "initramfs-tools", ["without scripts/nfs", "BOOT=nfs",
                                                    "MODULES=netboot"]),
])
def test_nfsroot_warns_when_initramfs_cannot_mount_nfs(tmp_path: Path, names, flavour,
                                                       words) -> None:
    root = fx.make_nfsroot(tmp_path / "root", names)
    [m] = find_media(root)
    assert m.flavour == flavour
    text = " ".join(m.warnings)
    assert "boot/initrd.img-6.1.0-13-amd64" in text
    for w in words:
        assert w in text
    assert m.entries[0].notes  # the entry carries the warning to the menu's help text


@pytest.mark.parametrize("compression", ["none", "gzip", "xz"])
def test_initramfs_listing_of_concatenated_archives(tmp_path: Path, compression: str) -> None:
    p = tmp_path / "initrd.img"
    p.write_bytes(fx.initramfs(fx.INITRAMFS_TOOLS_NFS, compression, microcode=True))
    names = list_initramfs(p)
    assert "kernel/x86/microcode/GenuineIntel.bin" in names
    assert "scripts/nfs" in names and len(names) == 4 + len(fx.INITRAMFS_TOOLS_NFS)


def test_initramfs_unknown_compression_is_said(tmp_path: Path) -> None:
    p = tmp_path / "initrd.img"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 100)
    s = nfs_support(p)
    assert s.flavour == "" and "unknown compression" in s.problems[0]


# --- ISOs ----------------------------------------------------------------------------


def test_archiso_iso_read_without_mounting(tmp_path: Path) -> None:
    require("xorriso")
    src = fx.make_archiso(tmp_path / "src")
    iso = fx.make_iso(src, tmp_path / "systemrescue.iso", bootable=True)
    [m] = find_media(iso)
    assert (m.profile, m.version, m.is_iso) == ("sysrescue-archiso", "11.01", True)
    assert m.image == iso and m.nbd_source == iso and m.image_size == 9000
    assert m.warnings == ()
    with open(iso, "rb") as fh:
        for vpath in ("sysresccd/boot/x86_64/vmlinuz", "sysresccd/x86_64/airootfs.sfs",
                      "sysresccd/VERSION"):
            offset, size = m.extents[vpath]
            fh.seek(offset)
            assert fh.read(size) == (src / vpath).read_bytes()
    assert dict(m.entries[0].files) == dict(find_media(src)[0].entries[0].files)


def test_version_from_volume_label_when_no_version_file(tmp_path: Path) -> None:
    require("xorriso")
    src = fx.make_archiso(tmp_path / "src")
    (src / "sysresccd/VERSION").unlink()
    [m] = find_media(fx.make_iso(src, tmp_path / "sr.iso", volume="RESCUE1200"))
    assert m.label == "SystemRescue 12.00"


def test_legacy_iso(tmp_path: Path) -> None:
    require("xorriso")
    src = fx.make_legacy(tmp_path / "src")
    [m] = find_media(fx.make_iso(src, tmp_path / "sysrcd.iso", volume="sysrcd-5.3.2",
                                 bootable=True))
    assert m.profile == "sysrescue-legacy" and m.image_size == 8000


def test_iso_that_is_not_bootable(tmp_path: Path) -> None:
    require("xorriso")
    src = tmp_path / "docs"
    fx.put(src, "README.txt", 100)
    fx.put(src, "pictures/cat.jpg", 3000)
    iso = fx.make_iso(src, tmp_path / "docs.iso", volume="DOCS")
    with pytest.raises(PxeError) as err:
        find_media(iso)
    text = str(err.value)
    assert f"no bootable system found in ISO {iso}" in text
    assert "not bootable: no El Torito boot record" in text
    assert "sysresccd/boot/x86_64/vmlinuz" in text and "sysrcd.dat" in text
    assert "fix:" in text


def test_iso_without_el_torito_but_with_kernels_is_served_with_a_warning(tmp_path: Path) -> None:
    require("xorriso")
    [m] = find_media(fx.make_iso(fx.make_archiso(tmp_path / "s"), tmp_path / "x.iso"))
    assert m.profile == "sysrescue-archiso"
    assert "no El Torito boot record" in m.warnings[0]


def test_truncated_iso_data(tmp_path: Path) -> None:
    require("xorriso")
    iso = fx.make_iso(fx.make_archiso(tmp_path / "src"), tmp_path / "sr.iso")
    offset, size = find_media(iso)[0].extents["sysresccd/x86_64/airootfs.sfs"]
    os.truncate(iso, offset + size // 2)
    with pytest.raises(PxeError) as err:
        find_media(iso)
    text = str(err.value)
    assert f"{iso} is truncated" in text and f"has only {offset + size // 2}" in text
    assert "sysresccd/x86_64/airootfs.sfs" in text
    assert "download the ISO again" in text


def test_truncated_iso_metadata(tmp_path: Path) -> None:
    require("xorriso")
    iso = fx.make_iso(fx.make_archiso(tmp_path / "src"), tmp_path / "sr.iso")
    os.truncate(iso, 20000)
    with pytest.raises(PxeError) as err:
        find_media(iso)
    text = str(err.value)
    assert f"{iso} is not a readable ISO 9660 image (20000 bytes" in text
    assert "byte 32768" in text and "truncated" in text


def test_not_an_iso_at_all(tmp_path: Path) -> None:
    f = tmp_path / "notes.iso"
    f.write_bytes(b"hello\n" * 10000)
    with pytest.raises(PxeError, match="is not a readable ISO 9660 image"):
        find_media(f)


# --- bad directories and autodetection -------------------------------------------------


def test_directory_without_kernels(tmp_path: Path) -> None:
    d = tmp_path / "empty-ish"
    fx.put(d, "README", 10)
    fx.put(d, "boot/grub/grub.cfg", 10)
    with pytest.raises(PxeError) as err:
        find_media(d)
    text = str(err.value)
    assert f"no bootable system found in directory {d}" in text
    for what in ("sysresccd/boot/x86_64/vmlinuz", "sysrcd.dat", "live/vmlinuz*",
                 "casper/vmlinuz*", "boot/vmlinuz*", "memtest"):
        assert what in text


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(PxeError, match="does not exist"):
        find_media(tmp_path / "nope")


def test_half_copied_sysrescue_says_what_is_missing(tmp_path: Path) -> None:
    root = fx.make_archiso(tmp_path / "sr")
    (root / "sysresccd/x86_64/airootfs.sfs").unlink()
    with pytest.raises(PxeError, match="not its root image sysresccd/x86_64/airootfs.sfs"):
        find_media(root)


def test_legacy_without_kernel(tmp_path: Path) -> None:
    root = tmp_path / "old"
    fx.put(root, "sysrcd.dat", 100)
    with pytest.raises(PxeError, match="found sysrcd.dat but no kernel; looked for rescue64"):
        find_media(root)


def test_autodetect_finds_mounted_media_and_skips_the_rest(tmp_path: Path) -> None:
    fx.make_archiso(tmp_path / "run/archiso/bootmnt")
    fx.make_legacy(tmp_path / "media/cdrom")
    fx.put(tmp_path / "media/usbstick", "photo.jpg", 10)
    found = find_media(None, search=[str(tmp_path / "run/archiso/bootmnt"),
                                     str(tmp_path / "media/*")])
    assert [m.profile for m in found] == ["sysrescue-archiso", "sysrescue-legacy"]
    assert find_media(None, search=[str(tmp_path / "nothing/*")]) == []


def test_probe_returns_none_for_nothing(tmp_path: Path) -> None:
    assert probe(tmp_path) is None


def test_joliet_only_iso(tmp_path: Path) -> None:
    require("xorriso")
    import subprocess

    src = fx.make_archiso(tmp_path / "src")
    iso = tmp_path / "joliet.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-J", "-V", "RESCUE1101", "-o",
                    str(iso), str(src)], check=True, capture_output=True)
    [m] = find_media(iso)
    assert m.profile == "sysrescue-archiso" and "sysresccd/x86_64/airootfs.sfs" in m.extents


# --- issue 19: installers, memtest86+ as Debian installs it, Windows PE, several media -----


def test_debian_netboot_tree_as_the_package_installs_it(tmp_path: Path) -> None:
    root = fx.make_debian_netboot(tmp_path / "text")
    [m] = find_media(root)
    assert (m.profile, m.label, m.version) == (
        "debian-installer", "Debian 12 (bookworm) installer (netboot)", "12")
    e = m.entries[0]
    assert (e.id, e.kind, e.kernel, e.initrds) == (
        "debian-installer", "linux", "debian-installer/amd64/linux",
        ("debian-installer/amd64/initrd.gz",))
    assert dict(e.files) == {"debian-installer/amd64/linux": 8222656,
                             "debian-installer/amd64/initrd.gz": 40810276}
    assert e.cmdline == "vga=788"  # its own pxelinux.cfg: "vga=788 ... --- quiet"
    assert [x.id for x in m.entries] == ["debian-installer", "local"]


def test_debian_netboot_package_folder_gives_text_and_gtk(tmp_path: Path) -> None:
    base = tmp_path / "usr/lib/debian-installer/images/12/amd64"
    fx.make_debian_netboot(base / "text")
    fx.make_debian_netboot(base / "gtk")
    media, skipped = scan_media([base.parent.parent])  # .../images: 3 levels down
    assert [(m.path.name, m.entries[0].id) for m in media] == [
        ("gtk", "debian-installer-gtk"), ("text", "debian-installer")]
    assert skipped == []


def test_debian_netinst_explains_the_netboot_initrd(tmp_path: Path, monkeypatch) -> None:
    import pxewizard.boot.media as media_mod

    monkeypatch.setattr(media_mod, "DEBIAN_NETBOOT_GLOB", str(tmp_path / "none/*"))
    [m] = find_media(fx.make_debian_netinst(tmp_path / "cd"))
    assert m.profile == "debian-iso"
    e = m.entries[0]
    assert e.kind == "message" and e.files == () and e.kernel == ""
    assert e.label == 'Debian GNU/Linux 12.5.0 "Bookworm": needs the netboot initrd'
    assert "apt-get install debian-installer-12-netboot-amd64" in e.notes[0]
    installed = fx.make_debian_netboot(tmp_path / "images/12/amd64/text")
    monkeypatch.setattr(media_mod, "DEBIAN_NETBOOT_GLOB", str(tmp_path / "images/*/amd64/text"))
    [m] = find_media(fx.make_debian_netinst(tmp_path / "cd2"))
    assert f"add {installed} to boot.media" in m.entries[0].notes[0]


@pytest.mark.parametrize("dvd, key", [(False, "inst.stage2"), (True, "inst.repo")])
def test_redhat_tree(tmp_path: Path, dvd: bool, key: str) -> None:
    [m] = find_media(fx.make_redhat(tmp_path / "alma", dvd=dvd))
    assert (m.profile, m.label, m.version, m.flavour) == (
        "redhat-installer", "AlmaLinux 9.3 installer", "9.3", key)
    e = m.entries[0]
    assert (e.id, e.kernel, e.initrds) == ("almalinux-install", "images/pxeboot/vmlinuz",
                                          ("images/pxeboot/initrd.img",))
    assert e.image_size == 870_000_000 and m.image_vpath == "images/install.img"


def test_ubuntu_live_server_iso_costs_the_whole_iso(tmp_path: Path) -> None:
    require("xorriso")
    src = fx.make_ubuntu_server(tmp_path / "src", scale=1000)
    iso = fx.make_iso(src, tmp_path / "ubuntu-22.04.4-live-server-amd64.iso",
                      volume="Ubuntu-Server 22.04.4")
    [m] = find_media(iso)
    assert m.profile == "ubuntu-casper"
    assert m.entries[0].image_size == iso.stat().st_size


def test_memtest_where_debian_installs_it(tmp_path: Path) -> None:
    [m] = find_media(fx.make_memtest_deb(tmp_path / "deb"))
    assert m.profile == "memtest"
    assert [(e.id, e.kernel, e.firmware, dict(e.files)[e.kernel]) for e in m.entries[:2]] == [
        ("memtest", "boot/memtest86+x64.bin", "bios", 144312),
        ("memtest-efi", "boot/memtest86+x64.efi", "efi", 145408)]


def test_host_memtest(tmp_path: Path) -> None:
    from pxewizard.boot.media import host_memtest

    assert host_memtest([str(tmp_path / "nothing")]) is None
    root = fx.make_memtest_deb(tmp_path / "deb")
    m = host_memtest([str(root / "boot")])
    assert m is not None and [e.kernel for e in m.entries[:2]] == [
        "memtest86+x64.bin", "memtest86+x64.efi"]


def test_windows_pe_any_case(tmp_path: Path) -> None:
    [m] = find_media(fx.make_winpe(tmp_path / "win"))
    e = m.entries[0]
    assert (m.profile, e.kind, e.kernel) == ("windows-pe", "wimboot", "wimboot")
    assert e.initrds == ("bootmgr", "boot/BCD", "boot/boot.sdi", "sources/boot.wim")
    assert e.names == ("bootmgr", "BCD", "boot.sdi", "boot.wim")


def test_windows_iso_joliet_names(tmp_path: Path) -> None:
    require("xorriso")
    iso = fx.make_iso(fx.make_winpe(tmp_path / "src", scale=1000), tmp_path / "winpe.iso",
                      volume="CCCOMA_X64FRE_EN-US_DV9", bootable=True)
    [m] = find_media(iso)
    assert m.profile == "windows-pe" and m.label == "Windows PE CCCOMA_X64FRE_EN-US_DV9"
    assert m.entries[0].initrds[1].lower() == "boot/bcd"


def test_folder_of_media_and_what_was_skipped(tmp_path: Path) -> None:
    require("xorriso")
    folder = tmp_path / "isos"
    fx.make_archiso(folder / "sysrescue")
    fx.make_memtest_deb(folder / "tools/memtest")
    fx.make_iso(fx.make_redhat(tmp_path / "alma", scale=100000), folder / "alma.iso")
    (folder / "broken.iso").write_bytes(b"not an iso")
    fx.put(folder / "photos", "a.jpg", 10)
    half = fx.make_archiso(folder / "half")
    (half / "sysresccd/x86_64/airootfs.sfs").unlink()
    media, skipped = scan_media([folder])
    assert [(m.path.name, m.profile) for m in media] == [
        ("alma.iso", "redhat-installer"), ("sysrescue", "sysrescue-archiso"),
        ("memtest", "memtest")]
    reasons = {p.name: why for p, why in skipped}
    assert set(reasons) == {"broken.iso", "half"}
    assert "not a readable ISO 9660 image" in reasons["broken.iso"]
    assert "airootfs.sfs" in reasons["half"]


def test_a_single_string_and_a_list_give_the_same_first_medium(tmp_path: Path) -> None:
    root = fx.make_archiso(tmp_path / "sr")
    assert scan_media([root])[0] == find_media(root)


def test_arrange_keeps_ids_when_a_medium_is_appended(tmp_path: Path) -> None:
    sr = fx.make_archiso(tmp_path / "sr")
    di = fx.make_debian_netboot(tmp_path / "di")
    mt = fx.make_memtest_deb(tmp_path / "mt")
    one = arrange(scan_media([sr])[0])
    two = arrange(scan_media([sr, di])[0])
    three = arrange(scan_media([sr, di, mt])[0])
    ids = [[e.id for m in ms for e in m.entries] for ms in (one, two, three)]
    assert ids[0] == ["sysresccd", "memtest", "memtest-efi", "local"]
    assert ids[1] == ["sysresccd", "memtest", "memtest-efi", "debian-installer"]
    assert ids[2] == ids[1] + ["memtest-memtest86", "memtest-efi-memtest86"]
    # the first medium stays at the root, the others move below their key
    assert [m.vprefix for m in three] == ["", "debian-12-bookworm-installer-netboot/",
                                          "memtest86/"]
    assert three[1].entries[0].kernel == \
        "debian-12-bookworm-installer-netboot/debian-installer/amd64/linux"
    assert three[0].entries[0].kernel == one[0].entries[0].kernel
    assert {e.group_id for e in three[2].entries} == {"memtest86"}
