"""Widgets the wizard's screens share."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Label, RadioSet


class FieldRow(Horizontal):
    """One labelled field: the label in its column (``.label``), then the field itself (an
    Input, a Select ...), on one row (``.row``)."""

    DEFAULT_CLASSES = "row"

    def __init__(self, label: str, field: Widget, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.label_text = label
        self.field = field

    def compose(self) -> ComposeResult:
        yield Label(self.label_text, classes="label")
        yield self.field


class ChoiceSet(RadioSet):
    """A RadioSet whose highlighted row starts on the chosen button, not on the first.

    Textual highlights the first button on mount whatever is pressed; Space then pressed
    that one (on the DHCP-mode screen: full DHCP instead of the proxyDHCP shown as chosen)."""

    def on_mount(self) -> None:
        self.call_later(self._follow_pressed)  # after RadioSet's own mount handler

    def _follow_pressed(self) -> None:
        if self.pressed_index >= 0:
            self._selected = self.pressed_index
