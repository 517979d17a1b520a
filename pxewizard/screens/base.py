"""What every wizard step shares: the step line, Back/Next, problems in words, the footer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Static

from . import STEPS, step_index, step_title
from .state import WizardState

if TYPE_CHECKING:
    from ..app import PxeWizardApp
    from .draft import Draft


class WizardScreen(Screen[Any]):
    """One step: a scrolling body between the step line and the Back/Next row."""

    STEP = ""
    BINDINGS = [
        Binding("ctrl+n", "next", "Next", key_display="^n"),
        Binding("escape", "back", "Back", key_display="esc"),
        # Enter is Next unless the focused widget takes it (Input, Button, a list, a radio)
        Binding("enter", "next", "Next", show=False),
    ]

    @property
    def wizard(self) -> "PxeWizardApp":
        return self.app  # type: ignore[return-value]

    @property
    def draft(self) -> "Draft":
        return self.wizard.draft

    @property
    def state(self) -> WizardState:
        """What earlier steps found, and the Plan Review built."""
        return self.wizard.state

    def compose(self) -> ComposeResult:
        i = step_index(self.STEP)
        yield Header(icon="*")
        yield Static(f"Step {i + 1}/{len(STEPS)}: {step_title(self.STEP)}", id="step")
        with VerticalScroll(id="body"):
            yield from self.body()
        yield Static("", id="problem", markup=False)  # errors quote what was typed: no markup
        with Horizontal(id="nav"):
            yield Button("< Back", id="back", compact=True)
            yield Button(self.next_label(), id="next", compact=True, variant="primary")
        yield Footer()

    def body(self) -> ComposeResult:
        yield from ()

    def next_label(self) -> str:
        return "Next >"

    # --- problems ----------------------------------------------------------------

    def show_problem(self, text: str | Text | None) -> None:
        """Say what stops the operator from going on (empty: nothing)."""
        w = self.query_one("#problem", Static)
        w.update(text or "")
        w.set_class(bool(text), "-shown")

    # --- navigation --------------------------------------------------------------

    def save(self) -> None:
        """Write this screen's fields into the draft (also on Back)."""

    def check(self) -> str | None:
        """Why Next cannot go on yet, in words; None when it can."""
        return None

    def action_next(self) -> None:
        self.save()
        problem = self.check()
        if problem:
            self.show_problem(problem)
            return
        self.show_problem(None)
        self.wizard.go_next()

    def action_back(self) -> None:
        self.save()
        self.wizard.go_back()

    @on(Button.Pressed, "#next")
    def _next_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_next()

    @on(Button.Pressed, "#back")
    def _back_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_back()
