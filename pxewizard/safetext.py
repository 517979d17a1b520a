"""One escaping function for every place an event is rendered as text.

Paths, host names, vendor classes and NFS names come from the network. Printed
raw, a TFTP filename holding ``\\n`` forges log lines and one holding ``ESC [2J``
clears the operator's screen. Every renderer (``serve``'s stdout, the Live view,
``replay``/``doctor``, timelines and findings) passes its text through
:func:`escape_controls`; the JSONL log keeps the raw text (JSON escapes it).
"""

from __future__ import annotations

_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(c: str) -> str:
    if c in _SHORT:
        return _SHORT[c]
    n = ord(c)
    if n < 0x100:
        return f"\\x{n:02x}"
    if 0xDC80 <= n <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{n - 0xDC00:02x}"
    return f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def escape_controls(text: str) -> str:
    """``text`` with every non-printable character (C0/C1 controls, DEL, bidi overrides,
    line separators, lone surrogates) written as a visible escape such as ``\\x1b``.
    Printable text (the usual case) is returned as is, at the cost of one
    ``str.isprintable()``. Backslashes are left alone (Windows-style TFTP paths)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape_char(c) for c in text)


__all__ = ["escape_controls"]
