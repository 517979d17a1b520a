"""The lab's and the guest builder's pure parts: no root, no QEMU run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pxewizard.commands.lab import (VmSpec, choose_accel, clean_console, cpu_virt_flags,
                                    lab_bridge_for, qemu_argv)
from pxewizard.errors import PxeError
from tests.support.tools import require

from .guest import Cpio, module_depends, resolve_modules


def test_virt_flags_read_from_the_flags_line_only() -> None:
    assert cpu_virt_flags("flags\t: fpu vme vmx sse\n")
    assert cpu_virt_flags("flags\t: fpu svm\n")
    assert not cpu_virt_flags("flags\t: fpu vme sse4_2\nmodel name: vmx-like cpu\n")
    assert not cpu_virt_flags("flags\t: fpu vmxnet\n")


def test_accel_is_tcg_without_vmx_or_svm() -> None:
    accel, why = choose_accel()
    if not cpu_virt_flags(Path("/proc/cpuinfo").read_text()):
        assert accel == "tcg" and "vmx" in why


def test_bios_argv_boots_from_the_network_on_the_tap() -> None:
    require("qemu-system-x86_64")
    argv = qemu_argv(VmSpec(tap="tap9", mac="52:54:00:aa:bb:cc", accel="tcg", memory=384))
    line = " ".join(argv)
    assert "-boot n" in line and "-serial stdio" in line and "-no-reboot" in line
    assert "-m 384" in line and "-accel tcg" in line
    assert "tap,id=n0,ifname=tap9,script=no,downscript=no" in line
    assert "virtio-net-pci,netdev=n0,mac=52:54:00:aa:bb:cc,bootindex=1" in line
    assert "pflash" not in line


def test_uefi_argv_uses_ovmf_code_read_only_and_a_vars_copy(tmp_path: Path) -> None:
    require("qemu-system-x86_64")
    try:
        argv = qemu_argv(VmSpec(tap="t", firmware="uefi", romfile="", accel="tcg"),
                         ovmf_vars=tmp_path / "vars.fd")
    except PxeError as exc:
        pytest.skip(str(exc))
    line = " ".join(argv)
    assert "readonly=on" in line and f"file={tmp_path / 'vars.fd'}" in line
    dev = next(a for a in argv if a.startswith("virtio-net-pci,"))
    assert dev.endswith(",romfile=")  # no iPXE ROM: OVMF's own PXE


def test_uefi_secure_boot_and_http_boot_argv(tmp_path: Path) -> None:
    require("qemu-system-x86_64")
    try:
        argv = qemu_argv(VmSpec(tap="t", firmware="uefi", romfile="", accel="tcg",
                                secure_boot=True, http_boot=True), ovmf_vars=tmp_path / "v.fd")
    except PxeError as exc:
        pytest.skip(str(exc))
    line = " ".join(argv)
    assert "q35,smm=on" in line and "OVMF_CODE_4M.secboot.fd" in line
    assert "driver=cfi.pflash01,property=secure,value=on" in line
    assert "name=opt/org.tianocore/IPv4PXESupport,string=n" in line


def test_console_lines_lose_escapes_and_carriage_returns() -> None:
    assert clean_console("\x1b[2J\x1b[01;01HiPXE 1.0\r") == "iPXE 1.0"
    assert clean_console("[=3h[=3hBdsDxe: x") == "[=3h[=3hBdsDxe: x"
    assert clean_console("a\x00b\x07c\td") == "abc\td"


def test_lab_refuses_a_non_bridge_interface_with_the_fix() -> None:
    with pytest.raises(PxeError) as err:
        lab_bridge_for("lo")
    assert "not a bridge" in str(err.value) and "bridge" in (err.value.fix or "")
    with pytest.raises(PxeError, match="does not exist"):
        lab_bridge_for("pxw-no-such-if0")
    # a plain Ethernet NIC is wired to (tc mirred) instead; loopback never is
    from pxewizard.commands.lab import lab_attachment

    with pytest.raises(PxeError, match="not a bridge"):
        lab_attachment("lo")


def _modinfo(name: str, depends: str) -> bytes:
    return b"\x7fELF junk\0license=GPL\0depends=" + depends.encode() + b"\0name=" + \
        name.encode() + b"\0vermagic=6.1\0"


def test_module_dependencies_come_first_and_builtins_are_skipped(tmp_path: Path) -> None:
    files = {"nfsv3": "nfs,sunrpc", "nfs": "sunrpc,lockd,fscache", "lockd": "sunrpc,grace",
             "sunrpc": "", "grace": "", "fscache": "netfs", "netfs": ""}
    index = {}
    for name, deps in files.items():
        p = tmp_path / f"{name}.ko"
        p.write_bytes(_modinfo(name, deps))
        index[name] = p
    assert module_depends(index["nfs"].read_bytes()) == ["sunrpc", "lockd", "fscache"]
    order = [n for n, _ in resolve_modules(index, ["nfsv3"], builtin={"netfs"})]
    assert "netfs" not in order and order[-1] == "nfsv3"
    for name, deps in files.items():
        for d in filter(None, deps.split(",")):
            if d in order:
                assert order.index(d) < order.index(name)
    with pytest.raises(RuntimeError, match="nbd .*not in the kernel package"):
        resolve_modules(index, ["nbd"], builtin=set())


def test_cpio_archive_is_read_back_by_cpio(tmp_path: Path) -> None:
    require("cpio")  # GNU cpio reads back what our writer made (in CI: fails when missing)
    c = Cpio()
    c.file("init", b"#!/bin/sh\necho hi\n", 0o755)
    c.symlink("bin/sh", "busybox")
    c.chardev("dev/console", 5, 1)
    c.file("lib/modules/x.ko", b"\0" * 5)
    data = c.finish()
    assert len(data) % 4 == 0
    out = subprocess.run(["cpio", "-itv"], input=data, capture_output=True).stdout.decode()
    assert "init" in out and "bin/sh -> busybox" in out and "lib/modules/x.ko" in out
    assert any(ln.startswith("crw") and "dev/console" in ln for ln in out.splitlines())
