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

import asyncio
import contextlib
import faulthandler
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from textual.app import App
from textual.binding import Binding

from . import screens
from .detect.dhcp_probe import PROBE_TIMEOUT
from .screens import STEPS, step_index, step_title
from .screens.console import console_key_display, is_linux_console, use_console_scrollbars
from .screens.state import WizardState

if TYPE_CHECKING:
    from textual.screen import Screen

    from .detect.host import Detector
    from .events import EventBus
    from .plan import Plan
    from .screens.draft import Draft
    from .serve import Running

ASSETS = Path(__file__).resolve().parent / "assets"

class Stoppable(Protocol):
    """What starting a Plan gives back: the running servers, stopped by Live."""

    async def close(self) -> None: ...


def _default_start_plan(plan: Plan, bus: EventBus) -> Awaitable[Running]:
    # the servers (aiohttp...) load when Live starts them, not before the first screen
    from .serve import start_plan

    return start_plan(plan, bus)


def _default_ram_estimate() -> Callable[..., Any]:
    from .boot.ram import ram_estimate

    return ram_estimate


@dataclass
class WizardConfig:
    """What the app is given; tests replace any of it."""

    detector: "Detector | None" = None
    """Source of every fact about the machine (None: :class:`SystemDetector`)."""
    start_plan: Callable[["Plan", "EventBus"], Awaitable[Stoppable]] = _default_start_plan
    """Starts the servers of a Plan; returns an object with ``async close()``."""
    ram_estimate: Callable[..., Any] | None | str = "auto"
    """``ram_estimate(media, entry, transport, copytoram)``; "auto": pxewizard.boot.ram."""
    lab: bool = True
    """Offer the virtual test client in Live."""
    export: bool = True
    """Offer "Export for a permanent server" in Review."""
    linux_console: bool | None = None
    """Console glyphs and colours (None: from TERM)."""
    probe_timeout: float = PROBE_TIMEOUT
    """Seconds the DHCP scan listens (the same probe as serve's look before serving)."""
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
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", priority=True, key_display="^q"),
                Binding("f1", "help", "Help"),
                Binding("question_mark", "help", "Help", key_display="?", show=False)]

    def __init__(self, config: WizardConfig) -> None:
        self.config = config
        self.linux_console = (is_linux_console() if config.linux_console is None
                              else config.linux_console)
        use_console_scrollbars(self.linux_console)
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
        self.lab_available = config.lab
        self.export_available = config.export
        self.wizard_draft: Draft | None = None
        self.state = WizardState(plan=config.plan)
        """What the steps found, and the Plan Review built (the draft holds the answers)."""
        self.step = "review" if config.plan is not None else "preflight"
        self.exit_notes: list[str] = []
        """Lines ``cli_wizard`` prints on stdout after the app is gone (Live fills them)."""

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

    def load_draft(self, draft: "Draft") -> None:
        """Replace the operator's answers (Review's Load plan), then show Review again."""
        self.wizard_draft = draft
        self.go("review")

    def on_mount(self) -> None:
        self.theme = "ansi-dark" if self.linux_console else "textual-dark"
        self.push_screen(self.make_screen(self.step))
        self.call_after_refresh(self.first_paint)
        self._hang_up_quits()

    def _hang_up_quits(self) -> None:
        """SIGHUP (the SSH session or the terminal went away) and SIGTERM end the wizard
        as ^q does: the servers stop, a test VM is killed and its tap and tc filters are
        removed. Left to the default action, the process died at once and a test VM (a
        process of its own) ran on with its tap wired to the serving NIC."""
        try:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGHUP, signal.SIGTERM):
                loop.add_signal_handler(sig, self._on_hang_up, sig)
        except (RuntimeError, NotImplementedError, ValueError):
            pass  # not the main thread (a test's app), or no signals here

    def _on_hang_up(self, sig: int) -> None:
        logging.getLogger("pxewizard.ui").info("signal %d: stopping as ^q does", sig)
        self.run_worker(self._hang_up(sig), exclusive=True, group="hang-up")

    async def _hang_up(self, sig: int) -> None:
        await self.stop_everything()
        if sig == signal.SIGHUP:
            # The terminal is gone: Textual's exit would restore it through a writer that
            # then waits forever (seen: the process stayed, its servers already stopped).
            logging.getLogger("pxewizard.ui").info("terminal gone: exiting now")
            logging.shutdown()
            os._exit(128 + sig)
        self.exit(0)

    def first_paint(self) -> None:
        """Log how long the first screen took from process start (the figure in the report)."""
        try:
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
        """A fresh screen for step ``name`` (the wizard steps read the draft; Live is given
        what it runs)."""
        if name == "live":
            from .screens.live.screen import LiveSetup

            cfg = self.config
            ram = cfg.ram_estimate if callable(cfg.ram_estimate) else None
            return screens.make(name, setup=LiveSetup(
                plan=self.state.plan, start_plan=cfg.start_plan, media=self.draft.media,
                ram_estimate=ram, ports=tuple(self.state.ports or ()), lab=self.lab_available,
                log_path=cfg.log_path, plan_path=self.saved_plan_path()))
        return screens.make(name)

    def saved_plan_path(self) -> str:
        """The Plan file as saved by Review (empty when there is none on disk)."""
        path = self.draft.plan_path
        return str(Path(path).resolve()) if path and Path(path).is_file() else ""

    def go(self, name: str) -> None:
        self.step = name
        self.switch_screen(self.make_screen(name))

    def go_next(self) -> None:
        i = step_index(self.step)
        if i + 1 < len(STEPS):
            self.go(STEPS[i + 1].name)

    def go_back(self) -> None:
        i = step_index(self.step)
        if i > 0:
            self.go(STEPS[i - 1].name)

    def get_key_display(self, binding: Binding) -> str:
        """Keys in the footer; on the Linux console without glyphs its font lacks."""
        text = super().get_key_display(binding)
        return console_key_display(text) if self.linux_console else text

    def action_help(self) -> None:
        """F1 or ``?``: the keys of the current screen (an Input takes ``?`` as text)."""
        from .screens.help import HelpScreen, screen_keys

        if isinstance(self.screen, HelpScreen):
            return
        step = getattr(self.screen, "STEP", "")
        title = step_title(step) if step else "this screen"
        self.push_screen(HelpScreen(screen_keys(self.screen), title,
                                    getattr(self.screen, "HELP", "")))

    async def action_quit(self) -> None:
        """Ctrl+Q anywhere: stop what Live started (servers, a lab VM), then leave."""
        await self.stop_everything()
        self.exit(0)

    async def stop_everything(self) -> None:
        """Stop what Live started (servers, a lab VM and its tap), its log closed."""
        for screen in reversed(self.screen_stack):  # Live may sit under a dialog
            shutdown = getattr(screen, "shutdown", None)
            if shutdown is not None:
                await shutdown()


def make_app(detector: "Detector | None" = None, **kwargs: Any) -> PxeWizardApp:
    """The wizard app; every keyword is a :class:`WizardConfig` field."""
    return PxeWizardApp(WizardConfig(detector=detector, **kwargs))


def cli_wizard(args: Any) -> int:
    """``pxewizard`` / ``pxewizard wizard [--plan F] [--state-dir D]``."""
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
        logging.basicConfig(filename=log_file, level=logging.INFO)
        trace = open(log_file, "a")  # noqa: SIM115 - stays open for the handler
        faulthandler.register(signal.SIGUSR1, file=trace, all_threads=True)  # kill -USR1 PID
    app = make_app(plan=plan, plan_path=plan_path, base=base)
    result = app.run()
    with contextlib.suppress(OSError):  # a terminal gone meanwhile
        for line in app.exit_notes:  # the screen is restored: this stays in the terminal
            print(line)
    return int(result or 0)
