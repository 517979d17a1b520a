"""The Linux console (TERM=linux): 16 colours and the VGA font's glyphs only.

The VGA font holds ASCII and code page 437 (box drawing, blocks, a few arrows);
Textual's defaults use glyphs outside it (``▔▁▊▎▏`` tall borders, ``●`` radio
dots, ``▁▂▃`` scrollbar ends, ``⏎`` in the footer), which the console draws as
diamonds. Here are the ASCII stand-ins, through Textual's own hooks: the scrollbar
renderer, the app's key display, and toggle buttons that render themselves on the
console. The TCSS in ``assets/linux.tcss`` does the borders.
"""

from __future__ import annotations

import os

from textual.content import Content
from textual.scrollbar import ScrollBar, ScrollBarRender
from textual.widgets import Checkbox, RadioButton

#: The characters the Linux console's default VGA font can draw besides ASCII (CP437's
#: upper half that matters to a TUI: box drawing, blocks, shades, arrows, a few symbols).
CP437_EXTRA = frozenset(
    "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»"
    "░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀"
    "αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■"
    "☺☻♥♦♣♠•◘○◙♂♀♪♫☼►◄↕‼¶§▬↨↑↓→←∟↔▲▼ "
)


def console_safe(text: str) -> bool:
    """True when every character can be drawn by the Linux console's VGA font."""
    return all(32 <= ord(c) < 127 or c in CP437_EXTRA or c == "\n" for c in text)


def foreign_chars(text: str) -> set[str]:
    """Characters the VGA font cannot draw."""
    return {c for c in text if not (32 <= ord(c) < 127 or c in CP437_EXTRA or c == "\n")}


def is_linux_console(term: str | None = None) -> bool:
    """TERM=linux (the kernel console, also what a serial getty often sets)."""
    return (term if term is not None else os.environ.get("TERM", "")) == "linux"


class AsciiScrollBarRender(ScrollBarRender):
    """Scrollbars without the ``▁▂▃`` ends the VGA font lacks (Textual's renderer hook:
    ``ScrollBar.renderer``)."""

    VERTICAL_BARS = [" "] * 8
    HORIZONTAL_BARS = [" "] * 8


def use_console_scrollbars(enable: bool) -> None:
    """Draw scrollbars for the console or with Textual's glyphs (process-wide, as Textual's
    ``ScrollBar.renderer`` is; the app sets it when it starts)."""
    ScrollBar.renderer = AsciiScrollBarRender if enable else ScrollBarRender


def console_key_display(text: str) -> str:
    """A key as the footer shows it, without ``⏎``/``⌫``, which the VGA font lacks."""
    return text.replace("\u23ce", "enter").replace("\u232b", "bksp")


def _console_toggle(widget: Checkbox | RadioButton, ascii: tuple[str, str, str]) -> Content:
    """``[*] label`` / ``( ) label``: the toggle drawn with ASCII sides. The ANSI theme cannot
    dim the inner glyph of an unset button, so an unset one shows a space instead."""
    left, inner, right = ascii
    style = widget.get_visual_style("toggle--button")
    button = Content.assemble(left, (inner if widget.value else " ", style), right)
    label = widget.label.pad(1, 1).stylize_before(widget.get_visual_style("toggle--label"))
    return Content.assemble(button, label)


class ConsoleCheckbox(Checkbox):
    """A Checkbox that the Linux console can draw (Textual's own look elsewhere)."""

    def render(self) -> Content:
        if getattr(self.app, "linux_console", False):
            return _console_toggle(self, ("[", "X", "]"))
        return super().render()


class ConsoleRadioButton(RadioButton):
    """A RadioButton that the Linux console can draw (Textual's own look elsewhere)."""

    def render(self) -> Content:
        if getattr(self.app, "linux_console", False):
            return _console_toggle(self, ("(", "*", ")"))
        return super().render()
