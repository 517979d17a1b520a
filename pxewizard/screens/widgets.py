"""Widgets the wizard's screens share."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Label


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
