"""The example Plans load, build their boot tree and point at the demo medium as they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from pxewizard.boot.tree import build_boot, nbd_exports, nfs_exports
from pxewizard.plan import load_plan
from tests.data.boot.syntax import check_ipxe, check_pxelinux

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAMES = ["full-dhcp-http.toml", "proxydhcp-http.toml", "tftp.toml", "nfs.toml", "nbd.toml"]


def test_every_example_is_listed() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.toml")) == sorted(NAMES)


def test_demo_media_is_tiny_and_sysrescue_shaped() -> None:
    files = [p for p in (EXAMPLES / "demo-media").rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 8192
    assert (EXAMPLES / "demo-media/sysresccd/boot/x86_64/vmlinuz").is_file()


@pytest.mark.parametrize("name", NAMES)
def test_example_builds(name: str) -> None:
    plan = load_plan(EXAMPLES / name)
    assert (plan.interface, str(plan.server_ip), plan.prefix) == ("pxe0", "10.99.0.1", 24)
    if plan.dhcp.mode.value == "full":
        assert (str(plan.dhcp.range_start), str(plan.dhcp.range_end)) == \
            ("10.99.0.100", "10.99.0.199")
    assert plan.boot.media == (EXAMPLES / "demo-media").resolve()
    boot = build_boot(plan)
    assert boot.media is not None and boot.media.profile == "sysrescue-archiso"
    # the only note allowed: archiso has no TFTP hook (tftp.toml)
    expected = 1 if plan.boot.transport.value == "tftp" else 0
    non_loader = [w for w in boot.warnings if "boot loader file" not in w]
    assert len(non_loader) == expected, boot.warnings
    line = boot.entries[0].cmdline
    assert "10.99.0.1" in line and "${" not in line
    assert {"http": "archiso_http_srv=http://10.99.0.1/", "tftp": "archiso_http_srv=",
            "nfs": "archiso_nfs_srv=10.99.0.1:", "nbd": "archiso_nbd_srv=10.99.0.1"}[
        plan.boot.transport.value] in line
    assert check_pxelinux(boot.menus["pxelinux.cfg/default"]) == []
    assert check_pxelinux(boot.menus["efi64/pxelinux.cfg/default"]) == []
    assert check_ipxe(boot.menus["boot.ipxe"], boot.tree, plan.http_base) == []
    assert boot.tree.resolve("sysresccd/x86_64/airootfs.sfs").size > 0
    if plan.nfs.enabled:
        assert [e.path for e in nfs_exports(plan)] == [(EXAMPLES / "demo-media").resolve()]
    if plan.nbd.enabled:
        assert list(nbd_exports(plan)) == ["archiso"]


def test_readme_plan_reference_names_every_field() -> None:
    from pxewizard.plan import field_docs

    readme = (EXAMPLES.parent / "README.md").read_text()
    section = readme[readme.index("## Plan format"):]
    missing = [key for key in field_docs()
               if f"`{key.split('.')[-1]}`" not in section and "`[" + key + "]`" not in section]
    assert missing == [], f"README's Plan format section lacks {missing}: document them there"
