"""Plan-time checks (boot/checks.py): Plans that cannot boot a client, said before one tries,
the same in serve (PlanLoaded + findings), the Review screen and ``doctor --plan``."""

from __future__ import annotations

import shutil
from pathlib import Path

from pxewizard.boot.checks import plan_problems, plan_summary
from pxewizard.boot.tree import build_boot
from pxewizard.commands.doctor import run_doctor
from pxewizard.plan import plan_from_dict

REPO = Path(__file__).resolve().parents[2]


def plan(tmp_path: Path, media: Path | None = None, **over) -> object:
    d = {"interface": "lo", "server_ip": "127.0.0.1", "prefix": 8,
         "state_dir": str(tmp_path / "state"),
         "dhcp": {"mode": "proxy"}, "tftp": {"root": str(tmp_path / "tftp")},
         "boot": {"media": str(media or REPO / "examples" / "demo-media")}}
    for k, v in over.items():
        d[k] = {**d.get(k, {}), **v} if isinstance(v, dict) else v
    (tmp_path / "tftp").mkdir(exist_ok=True)
    return plan_from_dict(d)


def rules(p) -> list[str]:
    return sorted(x.rule for x in plan_problems(p, build_boot(p)))


def test_a_working_plan_has_no_problem(tmp_path: Path) -> None:
    assert rules(plan(tmp_path)) == []


def test_efi_x64_bios_loader(tmp_path: Path) -> None:
    p = plan(tmp_path, dhcp={"boot_files": {"efi_x64": "pxelinux.0"}})
    (x,) = plan_problems(p)
    assert x.rule == "plan-efi-bios-loader" and x.severity == "error"
    assert "dhcp.boot_files.efi_x64" in x.title and "'pxelinux.0'" in x.title
    assert "syslinux.efi" in x.fix


def test_bios_undionly_without_ipxe_script_loops(tmp_path: Path) -> None:
    p = plan(tmp_path, dhcp={"boot_files": {"bios": "undionly.kpxe", "ipxe_script": None}})
    (x,) = plan_problems(p)
    assert x.rule == "plan-ipxe-loop" and "ipxe_script" in x.fix and "loop" in x.cause


def test_extra_cmdline_url_on_another_host(tmp_path: Path) -> None:
    p = plan(tmp_path, boot={"extra_cmdline": "archiso_http_srv=http://10.1.2.3/ rootpass=x"})
    (x,) = plan_problems(p)
    assert x.rule == "plan-stage3-host" and "10.1.2.3" in x.title and "not this server" in x.title
    s = plan_summary(p, build_boot(p))
    assert s["stage3_elsewhere"] == ["http://10.1.2.3/"] and s["dhcp_mode"] == "proxy"
    # boot.external_http on that host: meant, not a problem
    p = plan(tmp_path, boot={"extra_cmdline": "archiso_http_srv=http://10.1.2.3/",
                             "external_http": "http://10.1.2.3/"})
    assert plan_problems(p) == []


def test_menu_kernel_mode_0600(tmp_path: Path) -> None:
    media = tmp_path / "media"
    shutil.copytree(REPO / "examples" / "demo-media", media)
    (media / "sysresccd" / "boot" / "x86_64" / "vmlinuz").chmod(0o600)
    p = plan(tmp_path, media)
    found = [x for x in plan_problems(p, build_boot(p)) if x.rule == "plan-not-readable"]
    assert found and "vmlinuz" in found[0].title and "0600" in found[0].title
    assert "chmod o+r" in found[0].fix


def test_kernel_bin_lines_of_a_hand_written_config(tmp_path: Path) -> None:
    p = plan(tmp_path)
    cfg = tmp_path / "tftp" / "pxelinux.cfg"
    cfg.mkdir(parents=True)
    (cfg / "default").write_text("DEFAULT r\nLABEL r\n  KERNEL rescue64.bin\n")
    assert plan_summary(p, build_boot(p))["bin_kernels"] == ["pxelinux.cfg/default:rescue64.bin"]


def test_doctor_plan_says_it_before_a_client_boots(tmp_path: Path) -> None:
    p = plan(tmp_path, dhcp={"boot_files": {"efi_x64": "pxelinux.0"}})
    rep = run_doctor(p, probe=False, checksums=False)
    assert "plan-efi-bios-loader" in [f.rule for f in rep.findings]
    assert rep.errors >= 1
