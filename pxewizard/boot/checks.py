"""Plan-time checks: Plans that cannot boot a client, said before one tries.

One place, used by headless ``serve`` (printed and logged at start), the
wizard's Review screen and ``doctor --plan``. Each :class:`PlanProblem` names
the field, the value and the fix. :func:`plan_summary` is what ``serve`` logs
in its ``PlanLoaded`` event, so a replayed log knows the command lines and the
``KERNEL x.bin`` lines that were served.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..files import FailCause, TreeError
from ..plan import Plan
from .loaders import LOADER_FILES, loader_firmware
from .tree import BootTree


@dataclass(frozen=True)
class PlanProblem:
    """One reason a Plan cannot (or may not) boot its clients."""

    severity: str
    """``error`` (clients cannot boot) or ``warning``."""
    rule: str
    """Id (``plan-efi-bios-loader``), the same in every place that shows it."""
    title: str
    """One line, naming the field and its value."""
    cause: str
    """Why it fails, in words."""
    fix: str
    """What to change."""


_URL = re.compile(r"\b(?:https?|ftp|tftp|nfs)://\[?([^/\s:\]]+)")
_NFSROOT = re.compile(r"\b(?:nfsroot|netboot|archiso_nfs_srv|nfs)=(?:nfs:)?(\d{1,3}(?:\.\d{1,3}){3}):")
_SRV = re.compile(r"\barchiso_http_srv=(?:https?://)?([^/\s:]+)")
_KERNEL_BIN = re.compile(r"^\s*KERNEL\s+(\S+\.bin)\s*$", re.I | re.M)


def cmdline_hosts(cmdline: str) -> list[str]:
    """Hosts a kernel command line fetches stage 3 from (URLs, nfsroot=IP:, archiso_*_srv)."""
    out: list[str] = []
    for rx in (_URL, _NFSROOT, _SRV):
        for m in rx.finditer(cmdline):
            if m.group(1) not in out:
                out.append(m.group(1))
    return out


def cmdline_urls(cmdline: str) -> list[str]:
    """The stage-3 locations named on a command line, as written."""
    return [w.split("=", 1)[-1] for w in cmdline.split()
            if _URL.search(w) or _NFSROOT.search(w) or _SRV.search(w)]


def _ipxe_loader(name: str) -> bool:
    f = LOADER_FILES.get(posixpath.basename(name).lower())
    return f is not None and f.family == "ipxe"


def _loader_problems(plan: Plan) -> list[PlanProblem]:
    b = plan.dhcp.boot_files
    out: list[PlanProblem] = []
    if b.efi_x64 and loader_firmware(b.efi_x64) == "bios":
        out.append(PlanProblem(
            "error", "plan-efi-bios-loader",
            f"dhcp.boot_files.efi_x64 = {b.efi_x64!r} is a BIOS loader",
            f"UEFI x64 clients get {b.efi_x64}, which only runs on BIOS firmware; the "
            "firmware refuses it and the boot stops after the download",
            "set dhcp.boot_files.efi_x64 to an EFI loader: efi64/syslinux.efi, ipxe.efi or "
            "snponly.efi"))
    if b.bios and loader_firmware(b.bios) == "efi":
        out.append(PlanProblem(
            "error", "plan-bios-efi-loader",
            f"dhcp.boot_files.bios = {b.bios!r} is an EFI loader",
            f"BIOS clients get {b.bios}, which only runs on UEFI firmware",
            "set dhcp.boot_files.bios to pxelinux.0 or undionly.kpxe"))
    if not b.ipxe_script:
        for field_, name in (("bios", b.bios), ("efi_x64", b.efi_x64)):
            if name and _ipxe_loader(name):
                out.append(PlanProblem(
                    "error", "plan-ipxe-loop",
                    f"dhcp.boot_files.{field_} = {name!r} (iPXE) with no "
                    "dhcp.boot_files.ipxe_script",
                    f"iPXE loaded from {name} asks DHCP again (user class iPXE) and, with no "
                    "script to hand it, gets the iPXE binary again: every client loops",
                    "set dhcp.boot_files.ipxe_script (e.g. boot.ipxe, pxewizard generates it)"))
    return out


def _our_hosts(plan: Plan) -> set[str]:
    ours = {str(plan.server_ip)}
    if plan.boot.external_http:
        ours.add(urlsplit(plan.boot.external_http).hostname or "")
    return ours


def stage3_elsewhere(plan: Plan, cmdlines: list[str]) -> list[str]:
    """Stage-3 locations on ``cmdlines`` that name a host other than ours."""
    ours = _our_hosts(plan)
    out: list[str] = []
    for line in cmdlines:
        for host in cmdline_hosts(line):
            if host not in ours:
                out += [u for u in cmdline_urls(line) if host in u and u not in out]
    return out


def _cmdline_problems(plan: Plan) -> list[PlanProblem]:
    ours = _our_hosts(plan)
    out: list[PlanProblem] = []
    for host in cmdline_hosts(plan.boot.extra_cmdline):
        if host not in ours:
            where = ", ".join(u for u in cmdline_urls(plan.boot.extra_cmdline) if host in u)
            out.append(PlanProblem(
                "warning", "plan-stage3-host",
                f"boot.extra_cmdline names {where or host}, on {host}: not this server",
                f"the kernel will ask {host} for its root image, not {plan.server_ip}; when "
                f"{host} does not serve it (or is not reachable) the boot stops after the "
                "kernel's own DHCP",
                f"remove it from boot.extra_cmdline (pxewizard writes the URL of this server) or "
                f"set boot.external_http to {host}'s URL if that server is meant"))
    return out


def _mode_problems(bt: BootTree) -> list[PlanProblem]:
    out: list[PlanProblem] = []
    seen: set[str] = set()
    for e in bt.entries:
        for path in (e.kernel, *e.initrds):
            if not path or "://" in path or path in seen:
                continue
            seen.add(path)
            try:
                bt.tree.resolve(path)
            except TreeError as exc:
                if exc.cause == FailCause.permission:
                    text = str(exc)
                    m = re.search(r"mode (0[0-7]{3})", text)
                    real = re.search(r"chmod o\+r (\S+?)\)", text)
                    mode = f" (mode {m.group(1)})" if m else ""
                    out.append(PlanProblem(
                        "error", "plan-not-readable",
                        f"menu entry {e.id}: {path} is not readable by others{mode}",
                        f"the servers serve only world-readable files; clients will get "
                        f"'access violation' for {path}",
                        f"chmod o+r {real.group(1) if real else path} (or chmod -R o+rX the "
                        "boot tree)"))
    return out


def plan_problems(plan: Plan, bt: BootTree | None = None) -> list[PlanProblem]:
    """Everything about the Plan (and its boot tree, when built) that stops clients."""
    out = _loader_problems(plan) + _cmdline_problems(plan)
    if bt is not None:
        out += _mode_problems(bt)
    return out


def bin_kernel_lines(bt: BootTree, plan: Plan) -> list[str]:
    """``config:kernel`` of every ``KERNEL x.bin`` line in a served pxelinux config."""
    out: list[str] = []
    texts: list[tuple[str, str]] = list(bt.menus.items())
    if plan.tftp.root is not None:
        for d in {"pxelinux.cfg", posixpath.join(bt.bios_dir, "pxelinux.cfg"),
                  posixpath.join(bt.efi_dir, "pxelinux.cfg")}:
            real = Path(plan.tftp.root) / d
            if real.is_dir():
                for f in sorted(real.iterdir())[:200]:
                    if f.is_file() and f.stat().st_size < 1_000_000:
                        try:
                            texts.append((f"{d}/{f.name}", f.read_text(errors="replace")))
                        except OSError:
                            continue
    for cfg, text in texts:
        for m in _KERNEL_BIN.finditer(text):
            out.append(f"{cfg}:{m.group(1)}")
    return out


def plan_summary(plan: Plan, bt: BootTree) -> dict[str, object]:
    """The fields of the ``PlanLoaded`` event serve logs at start."""
    cmdlines = [e.cmdline for e in bt.entries if e.cmdline]
    if plan.boot.extra_cmdline and plan.boot.extra_cmdline not in cmdlines:
        cmdlines.append(plan.boot.extra_cmdline)
    return dict(dhcp_mode=str(plan.dhcp.mode.value), server_ip=str(plan.server_ip),
                interface=plan.interface, transport=str(plan.boot.transport.value),
                menu_timeout=plan.boot.timeout, cmdlines=cmdlines,
                stage3_elsewhere=stage3_elsewhere(plan, cmdlines),
                bin_kernels=bin_kernel_lines(bt, plan))


__all__ = ["PlanProblem", "bin_kernel_lines", "cmdline_hosts", "cmdline_urls", "plan_problems",
           "plan_summary", "stage3_elsewhere"]
