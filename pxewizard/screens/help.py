"""F1 (or ``?``): the keys of the screen underneath, in words (and what its fields mean,
when the screen says: its ``HELP``); any key closes it."""

from __future__ import annotations

from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

_ALWAYS = (("tab / shift+tab", "move between fields"),
           ("enter", "presses the focused button or list row, else Next"))


def screen_keys(screen: Screen[object]) -> list[tuple[str, str]]:
    """(key, what it does) for every binding of ``screen`` and the app that has a description."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for _key, active in screen.active_bindings.items():
        b: Binding = active.binding
        if not isinstance(active.node, (Screen, App)):  # scrolling keys of a widget
            continue
        if not b.description or b.description in seen or not active.enabled \
                or b.key in ("tab", "shift+tab"):  # said by _ALWAYS
            continue
        seen.add(b.description)
        out.append((screen.app.get_key_display(b), b.description))
    return out


class HelpScreen(ModalScreen[None]):
    """The keys of the current screen; any key closes it."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 78; height: auto; max-height: 23; border: double $accent;
                            background: $panel; padding: 0 1; }
    """

    def __init__(self, keys: list[tuple[str, str]], title: str, about: str = "") -> None:
        super().__init__()
        self.keys = keys
        self.title_text = title
        self.about = about

    def compose(self) -> ComposeResult:
        lines = [f"Keys on {self.title_text}:", ""]
        lines += [f"  {k:<16} {what}" for k, what in self.keys]
        lines += [f"  {k:<16} {what}" for k, what in _ALWAYS]
        if self.about:
            lines += ["", *self.about.strip("\n").splitlines()]
        lines += ["", "any key closes this help"]
        with VerticalScroll():
            yield Static("\n".join(lines), id="help-text", markup=False)

    def on_key(self, event: events.Key) -> None:
        event.stop()
        self.dismiss(None)
