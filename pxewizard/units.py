"""Byte counts in words, one rounding everywhere (stdout, Live, the wizard, the diagnosis)."""

from __future__ import annotations


def size_text(n: int | float | None) -> str:
    """``512 B``, ``41 KiB``, ``1.5 MiB``, ``300 MiB``, ``2.1 GiB``: binary units, one decimal
    below 10 and none from 10 up; ``?`` when unknown."""
    if n is None or n < 0:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            break
        size /= 1024
    if unit == "B":
        return f"{size:.0f} B"
    return f"{size:.1f} {unit}" if size < 9.95 else f"{size:.0f} {unit}"
