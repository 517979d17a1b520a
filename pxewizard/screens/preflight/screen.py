"""Step 1: what this machine can do before anything is chosen."""

from __future__ import annotations

import asyncio

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import Static

from ...units import size_text
from ..base import WizardScreen


class PreflightScreen(WizardScreen):
    """Root or not, RAM, boot loaders found or missing, ports free or held, versions."""

    STEP = "preflight"

    def body(self) -> ComposeResult:
        yield Static("Checking this machine ...", id="facts")

    def on_mount(self) -> None:
        self.load()

    @work(exclusive=True, group="preflight")
    async def load(self) -> None:
        w = self.wizard
        host, ports = await asyncio.gather(w.detector.host(), w.detector.ports())
        self.state.host, self.state.ports = host, list(ports)
        self.query_one("#facts", Static).update(self.render_facts())

    def render_facts(self) -> Text:
        host, ports = self.state.host, self.state.ports or []
        assert host is not None
        t = Text()
        t.append("This machine\n", style="bold")
        if host.is_root:
            t.append("  running as root\n")
        else:
            t.append("  NOT root: ", style="bold yellow")
            t.append("without root:\n")
            for line in host.root_limits():
                t.append(f"    - {line}\n")
        t.append(f"  RAM {size_text(host.ram_total)} ({size_text(host.ram_available)} "
                 "available)\n")
        t.append("Boot loaders\n", style="bold")
        found = [ld for ld in host.loaders if ld.found]
        missing = [ld for ld in host.loaders if not ld.found]
        if found:
            t.append(f"  found {len(found)} of {len(host.loaders)} files"
                     + (" (all)\n" if not missing else "\n"))
        if missing:
            t.append("  missing: ", style="yellow")
            t.append(", ".join(ld.name for ld in missing) + "\n")
            t.append("  install: " + ", ".join(host.missing_packages()) + "\n")
        if not host.loaders and not host.notes:
            t.append("  none found\n")
        for note in host.notes:
            t.append(f"  {note}\n", style="yellow")
        t.append("Ports\n", style="bold")
        free = [f"{p.port}/{p.proto}" for p in ports if p.free]
        if free:
            t.append("  free: ", style="green")
            t.append(" ".join(free) + "\n")
        for p in ports:
            if not p.free:
                t.append(f"  {p.port}/{p.proto} ({p.service}) ", style="bold red")
                t.append(f"held by {p.holder}\n", style="bold red")
        t.append("Versions\n", style="bold")
        for line in host.versions.splitlines():
            t.append(f"  {line}\n")
        return t
