"""The Linux console (TERM=linux): 16 colours and the VGA font's glyphs only.

The VGA font holds ASCII and code page 437 (box drawing, blocks, a few arrows);
Textual's defaults use glyphs outside it (``▔▁▊▎▏`` tall borders, ``●`` radio
dots, ``▁▂▃`` scrollbar ends, ``⏎`` in the footer), which the console draws as
diamonds. :func:`apply_console_glyphs` swaps them for ASCII once, before the app
starts; the TCSS in ``assets/linux.tcss`` does the borders.
"""

from __future__ import annotations

import os

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


_originals: dict[str, object] | None = None


def apply_console_glyphs(enable: bool = True) -> None:
    """Replace Textual's non-VGA glyphs with ASCII, or put the originals back (process-wide:
    the app sets it once at start; tests that build apps of both kinds switch it each time)."""
    global _originals
    from textual import keys
    from textual.content import Content
    from textual.scrollbar import ScrollBarRender
    from textual.widgets import RadioButton
    from textual.widgets._toggle_button import ToggleButton

    targets = {
        "v": (ScrollBarRender, "VERTICAL_BARS"), "h": (ScrollBarRender, "HORIZONTAL_BARS"),
        "tl": (ToggleButton, "BUTTON_LEFT"), "tr": (ToggleButton, "BUTTON_RIGHT"),
        "rl": (RadioButton, "BUTTON_LEFT"), "rr": (RadioButton, "BUTTON_RIGHT"),
        "ri": (RadioButton, "BUTTON_INNER"), "btn": (ToggleButton, "_button"),
    }
    if _originals is None:
        _originals = {k: cls.__dict__.get(attr) for k, (cls, attr) in targets.items()}
        _originals["keys"] = dict(keys.KEY_DISPLAY_ALIASES)
    if not enable:
        for k, (cls, attr) in targets.items():
            if _originals[k] is None:
                if attr in cls.__dict__:
                    delattr(cls, attr)
            else:
                setattr(cls, attr, _originals[k])
        keys.KEY_DISPLAY_ALIASES.clear()
        keys.KEY_DISPLAY_ALIASES.update(_originals["keys"])  # type: ignore[call-overload]
        keys.format_key.cache_clear()
        return

    def _button(self: ToggleButton) -> Content:
        # The ANSI theme cannot dim the inner glyph of an unset button: draw a space instead.
        style = self.get_visual_style("toggle--button")
        inner = self.BUTTON_INNER if self.value else " "
        return Content.assemble(self.BUTTON_LEFT, (inner, style), self.BUTTON_RIGHT)

    ScrollBarRender.VERTICAL_BARS = [" "] * 8
    ScrollBarRender.HORIZONTAL_BARS = [" "] * 8
    ToggleButton.BUTTON_LEFT = "["
    ToggleButton.BUTTON_RIGHT = "]"
    RadioButton.BUTTON_LEFT = "("
    RadioButton.BUTTON_RIGHT = ")"
    RadioButton.BUTTON_INNER = "*"
    ToggleButton._button = property(_button)  # type: ignore[method-assign,assignment]
    keys.KEY_DISPLAY_ALIASES.update({"enter": "enter", "backspace": "bksp"})
    keys.format_key.cache_clear()
