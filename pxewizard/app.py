"""The wizard application: ``make_app()`` (shared by the CLI and the tests) and ``cli_wizard``.

Everything the app needs from the outside comes in through :class:`WizardConfig`:
a :class:`~pxewizard.detect.host.Detector` (tests pass a fake), the function that
starts a Plan (``pxewizard.serve.start_plan``), the RAM estimator, and whether
the optional lab and export modules are present. Screens are views of one
:class:`~pxewizard.screens.draft.Draft`; going forward or back builds the next
screen from it, so no choice is lost.

Imports stay lazy: the first screen must be up in well under a second on a
rescue console.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.app import App
from textual.binding import Binding

from .screens.console import apply_console_glyphs, is_linux_console

if TYPE_CHECKING:
    from textual.screen import Screen

    from .detect.host import Detector, HostFacts
    from .detect.interfaces import InterfaceInfo
    from .detect.ports import PortStatus
    from .events import EventBus
    from .plan import Plan
    from .screens.draft import Draft

ASSETS = Path(__file__).resolve().parent / "assets"

STEPS: tuple[tuple[str, str], ...] = (
    ("preflight", "Preflight"),
    ("interface", "Interface"),
    ("dhcp_scan", "DHCP scan"),
    ("dhcp_mode", "DHCP mode"),
    ("media", "Boot media"),
    ("transport", "Transport"),
    ("review", "Review"),
    ("live", "Live"),
)
"""Screen names in order, with their titles."""


def _module_present(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _probe_timeout() -> float:
    from .detect.dhcp_probe import PROBE_TIMEOUT  # the scan listens as long as serve's probe

    return PROBE_TIMEOUT


def _default_start_plan(plan: "Plan", bus: "EventBus") -> Awaitable[Any]:
    from .serve import start_plan

    return start_plan(plan, bus)


def _default_ram_estimate() -> Callable[..., Any] | None:
    try:
        from .boot.ram import ram_estimate
    except ImportError:
        return None
    return ram_estimate


@dataclass
class WizardConfig:
    """What the app is given; tests replace any of it."""

    detector: "Detector | None" = None
    """Source of every fact about the machine (None: :class:`SystemDetector`)."""
    start_plan: Callable[["Plan", "EventBus"], Awaitable[Any]] = _default_start_plan
    """Starts the servers of a Plan; returns an object with ``async close()``."""
    ram_estimate: Callable[..., Any] | None | str = "auto"
    """``ram_estimate(media, entry, transport, copytoram)``; "auto": pxewizard.boot.ram."""
    lab: bool | None = None
    """Offer the virtual test client in Live (None: when pxewizard.lab is installed)."""
    export: bool | None = None
    """Offer "Export for a permanent server" in Review (None: when pxewizard.export exists)."""
    linux_console: bool | None = None
    """Console glyphs and colours (None: from TERM)."""
    probe_timeout: float = field(default_factory=_probe_timeout)
    """Seconds the DHCP scan listens."""
    plan: "Plan | None" = None
    """Start at Review with this Plan (``pxewizard --plan FILE``)."""
    plan_path: str = ""
    """Where Review saves the Plan."""
    base: dict[str, Any] = field(default_factory=dict)
    """Plan fields preset for a new Plan (state_dir, log path ...)."""
    log_path: str = ""
    """Where the Live screen saves its log (empty: the Plan's state_dir)."""


class PxeWizardApp(App[int]):
    """From detection to a running PXE server, keyboard only."""

    TITLE = "pxewizard: PXE boot server"
    SUB_TITLE = ""
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", priority=True, show=False)]

    def __init__(self, config: WizardConfig) -> None:
        self.config = config
        self.linux_console = (is_linux_console() if config.linux_console is None
                              else config.linux_console)
        if self.linux_console or config.linux_console is False:
            apply_console_glyphs(self.linux_console)
        css = [ASSETS / "base.tcss"]
        if self.linux_console:
            css.append(ASSETS / "linux.tcss")
        super().__init__(css_path=css)  # type: ignore[arg-type]
        if config.detector is None:
            from .detect.host import SystemDetector

            config.detector = SystemDetector()
        self.detector: Detector = config.detector
        if config.ram_estimate == "auto":
            config.ram_estimate = _default_ram_estimate()
        self.lab_available = _module_present("pxewizard.lab") if config.lab is None \
            else config.lab
        self.export_available = _module_present("pxewizard.export") if config.export is None \
            else config.export
        self.wizard_draft: Draft | None = None
        self.host: HostFacts | None = None
        """Filled by Preflight (or on demand)."""
        self.ports: list[PortStatus] | None = None
        self.interfaces: list[InterfaceInfo] | None = None
        self.media_found: list[Any] | None = None
        """Media found by autodetection (None: not searched yet)."""
        self.plan: Plan | None = config.plan
        """The Plan Review shows and Live runs."""
        self.step = "review" if config.plan is not None else "preflight"

    @property
    def draft(self) -> "Draft":
        """The operator's answers (built on first use: the Plan model is slow to import)."""
        if self.wizard_draft is None:
            from .screens.draft import Draft

            cfg = self.config
            if cfg.plan is not None:
                self.wizard_draft = Draft.from_plan(cfg.plan, cfg.plan_path)
            else:
                self.wizard_draft = Draft(base=dict(cfg.base))
                if cfg.plan_path:
                    self.wizard_draft.plan_path = cfg.plan_path
        return self.wizard_draft

    def on_mount(self) -> None:
        self.theme = "ansi-dark" if self.linux_console else "textual-dark"
        self.push_screen(self.make_screen(self.step))
        self.call_after_refresh(self.first_paint)

    def first_paint(self) -> None:
        """Log how long the first screen took from process start (the figure in the report)."""
        import logging

        try:
            import time

            # /proc/self/stat field 22: start time in clock ticks since boot (CLOCK_BOOTTIME)
            fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
            started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
            logging.getLogger("pxewizard.ui").info(
                "first screen %.3f s after process start",
                time.clock_gettime(time.CLOCK_BOOTTIME) - started)
        except (OSError, ValueError, IndexError, AttributeError):
            pass
        self.warm_up()

    def warm_up(self) -> None:
        """Import what the later steps need while the operator reads the first one."""
        def imports() -> None:
            from . import plan  # noqa: F401
            from .screens import draft  # noqa: F401

        self.run_worker(imports, thread=True, group="warm-up")

    # --- navigation ----------------------------------------------------------------

    def make_screen(self, name: str) -> "Screen[Any]":
        """A fresh screen for step ``name`` (it reads its state from the draft)."""
        from . import screens

        return screens.make(name)

    def step_index(self, name: str) -> int:
        return [s for s, _ in STEPS].index(name)

    def go(self, name: str) -> None:
        self.step = name
        self.switch_screen(self.make_screen(name))

    def go_next(self) -> None:
        i = self.step_index(self.step)
        if i + 1 < len(STEPS):
            self.go(STEPS[i + 1][0])

    def go_back(self) -> None:
        i = self.step_index(self.step)
        if i > 0:
            self.go(STEPS[i - 1][0])

    async def action_quit(self) -> None:
        """Ctrl+Q anywhere: stop what Live started (servers, a lab VM), then leave."""
        for screen in reversed(self.screen_stack):  # Live may sit under a dialog
            shutdown = getattr(screen, "shutdown", None)
            if shutdown is not None:
                await shutdown()
        self.exit(0)

    async def ensure_host(self) -> "HostFacts":
        if self.host is None:
            self.host = await self.detector.host()
        return self.host


def make_app(detector: "Detector | None" = None, **kwargs: Any) -> PxeWizardApp:
    """The wizard app; every keyword is a :class:`WizardConfig` field."""
    return PxeWizardApp(WizardConfig(detector=detector, **kwargs))


def cli_wizard(args: Any) -> int:
    """``pxewizard`` / ``pxewizard wizard [--plan F] [--state-dir D]``."""
    import logging

    from .plan import load_plan

    plan = None
    plan_path = getattr(args, "plan", None) or getattr(args, "wizard_plan", None) or ""
    if plan_path:
        plan = load_plan(plan_path)
    base: dict[str, Any] = {}
    state_dir = getattr(args, "state_dir", None)
    if state_dir:
        base["state_dir"] = str(Path(state_dir).resolve())
    log_file = os.environ.get("PXEWIZARD_UI_LOG")
    if log_file:  # Textual draws on stderr: never log there
        import faulthandler
        import signal

        logging.basicConfig(filename=log_file, level=logging.INFO)
        trace = open(log_file, "a")  # noqa: SIM115 - stays open for the handler
        faulthandler.register(signal.SIGUSR1, file=trace, all_threads=True)  # kill -USR1 PID
    app = make_app(plan=plan, plan_path=plan_path, base=base)
    result = app.run()
    return int(result or 0)
