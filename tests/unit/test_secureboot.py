"""Secure Boot chain: grub.cfg golden for the three-media Plan, PE signature check, the
chain chosen by boot.secure_boot, and the DHCP boot file UEFI x64 / HTTP clients get."""

from __future__ import annotations

import struct
from dataclasses import replace
from pathlib import Path

import pytest

from pxewizard.boot.secureboot import (GRUB_CFG_VPATH, GRUB_VPATH, SHIM_VPATH, choose_chain,
                                       pe_signed, read_head, summary)
from pxewizard.boot.tree import build_boot
from tests.data.boot import fixtures as fx
from tests.unit.test_menus import THREE_MAC, _golden, fake_loaders, three_media_plan

pytestmark = pytest.mark.unit


def fake_pe(path: Path, *, signed: bool, plus: bool = True) -> None:
    """Rewrite the head of ``path`` as a PE32(+) header, with or without a certificate
    table (data directory 4), keeping the file's size."""
    size = path.stat().st_size
    head = bytearray(512)
    head[:2] = b"MZ"
    struct.pack_into("<I", head, 0x3C, 0x80)
    head[0x80:0x84] = b"PE\0\0"
    opt = 0x80 + 24
    struct.pack_into("<H", head, opt, 0x20B if plus else 0x10B)
    nrva_off, cert_off = (108, 144) if plus else (92, 128)
    struct.pack_into("<I", head, opt + nrva_off, 16)
    if signed:
        struct.pack_into("<II", head, opt + cert_off, 0x1000, 0x5F8)
    with open(path, "r+b") as fh:
        fh.write(head)
        fh.truncate(max(size, len(head)))


def signed_loaders(base: Path):
    return replace(fake_loaders(base), shim_x64=fx.put(base, "shim/shimx64.efi.signed", 64),
                   grub_net_x64=fx.put(base, "grub/grubnetx64.efi.signed", 64),
                   mok_x64=fx.put(base, "shim/mmx64.efi.signed", 64))


def test_pe_signature(tmp_path: Path) -> None:
    for plus in (True, False):
        for signed in (True, False):
            p = fx.put(tmp_path, f"k-{plus}-{signed}", 4096)
            fake_pe(p, signed=signed, plus=plus)
            assert pe_signed(read_head(p)) is signed
    assert pe_signed(b"") is None
    assert pe_signed(b"\x00" * 4096) is None  # a BIOS .bin
    assert pe_signed(b"MZ" + b"\xff" * 200) is None  # e_lfanew past the end
    assert pe_signed(read_head(tmp_path / "does-not-exist")) is None


def test_three_media_grub_cfg_byte_for_byte(tmp_path: Path) -> None:
    plan = three_media_plan(tmp_path, secure_boot="on")
    # Debian's installer kernel is signed (as in debian-installer-12-netboot-amd64);
    # SystemRescue's and memtest86+'s are not
    fake_pe(tmp_path / "d-i/text/debian-installer/amd64/linux", signed=True)
    fake_pe(tmp_path / "sysrescue/sysresccd/boot/x86_64/vmlinuz", signed=False)
    boot = build_boot(plan, loaders=signed_loaders(tmp_path / "loaders"))
    assert boot.secure_boot is not None
    cfg = boot.menus[GRUB_CFG_VPATH]
    _golden("three-media.grub.cfg", cfg)
    assert boot.tree.resolve(GRUB_CFG_VPATH).read().decode() == cfg
    for vpath in (SHIM_VPATH, GRUB_VPATH, "sb/mmx64.efi"):
        boot.tree.resolve(vpath)
    # same ids and default as the pxelinux UEFI menu, and every path resolves in the tree
    efi = boot.menus["efi64/pxelinux.cfg/default"]
    for line in efi.splitlines():
        if line.strip().startswith("LABEL ") and not line.strip().endswith("-back"):
            assert f"--id {line.split()[1]} " in cfg
    assert "set default='debian-12-bookworm-installer-netboot>debian-installer'\n" in cfg
    assert f"if [ \"$net_default_mac\" = {THREE_MAC} ]" not in cfg  # memtest is BIOS-only
    for line in cfg.splitlines():
        words = line.split()
        if words and words[0] in ("linux", "initrd"):
            boot.tree.resolve(words[1])
    assert "SystemRescue 11.01 (x86_64) (needs Secure Boot off)" in cfg
    assert "(amd64, netboot) (needs" not in cfg
    assert "\texit\n" in cfg


def test_chain_choice(tmp_path: Path) -> None:
    none = fake_loaders(tmp_path / "a")
    both = signed_loaders(tmp_path / "b")
    assert choose_chain("off", both) == (None, [])
    assert choose_chain("auto", none) == (None, [])
    assert choose_chain("auto", both)[0] is not None
    chain, warn = choose_chain("on", replace(both, grub_net_x64=None))
    assert chain is None and "grub-efi-amd64-signed" in warn[0] and "boot.secure_boot" in warn[0]
    assert "not served" in summary(None, "off", "efi64/syslinux.efi")
    # the Plan's field for serve and the exports, the wizard's words on its Review
    assert 'set boot.secure_boot = "auto"' in summary(None, "off", "efi64/syslinux.efi")
    wiz = summary(None, "off", "efi64/syslinux.efi", wizard=True)
    assert "boot.secure_boot" not in wiz
    assert 'choose Secure Boot "auto" in Advanced settings (^o)' in wiz
    assert "shim -> GRUB" in summary(both and choose_chain("on", both)[0], "on", None)


def test_off_serves_no_chain(tmp_path: Path) -> None:
    boot = build_boot(three_media_plan(tmp_path), loaders=signed_loaders(tmp_path / "l"))
    assert boot.secure_boot is None and GRUB_CFG_VPATH not in boot.menus


def test_dhcp_boot_files_for_uefi() -> None:
    from pxewizard.boot.secureboot import uefi_boot_files
    base = "http://10.99.0.1/"
    # the chain: UEFI x64 gets shim over TFTP; arch 16 iPXE (Debian 12's GRUB cannot
    # read its config after an HTTP boot)
    assert uefi_boot_files("efi64/syslinux.efi", None, chain_served=True, http_base=base,
                           served={"snponly.efi"}) == (SHIM_VPATH, base + "snponly.efi")
    # no chain: syslinux.efi has no HTTP, so an HTTP boot client gets iPXE
    assert uefi_boot_files("efi64/syslinux.efi", None, chain_served=False, http_base=base,
                           served={"snponly.efi", "ipxe.efi"}) == (
        "efi64/syslinux.efi", base + "snponly.efi")
    assert uefi_boot_files("ipxe.efi", None, chain_served=False, http_base=base) == (
        "ipxe.efi", base + "ipxe.efi")
    # the Plan's own choice wins; no HTTP server: nothing for arch 16
    assert uefi_boot_files("x.efi", "a.efi", chain_served=True, http_base=base)[1] == "a.efi"
    assert uefi_boot_files("efi64/syslinux.efi", None, chain_served=False, http_base=None,
                           served={"snponly.efi"})[1] is None
