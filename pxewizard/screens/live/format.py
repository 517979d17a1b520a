"""Events as rows of the Live view's Requests and Log panes (text only, no widgets)."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text

from ...events import (ConsoleLine, DhcpExchange, Event, LeaseChanged, LogLine, SessionClosed,
                       SessionOpened, TransferDone, TransferFailed, TransferStarted)
from ...insight.eventfmt import describe, exchange_words
from ...insight.timeline import is_normal_miss
from ...safetext import escape_controls
from ...units import size_text

REQUEST_KINDS = (DhcpExchange, LeaseChanged, TransferStarted, TransferDone, TransferFailed,
                 SessionOpened, SessionClosed)
"""Events shown in Requests; everything else (but progress) goes to Log."""


def hms(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def who(ev: Event, mac_of: Callable[[str], str | None] | None = None) -> str:
    """Client column: the MAC when known (an IP is looked up with ``mac_of``), else the IP."""
    mac = getattr(ev, "mac", "")
    peer = getattr(ev, "peer", "")
    key = ev.client or mac or (peer.rsplit(":", 1)[0] if peer else "")
    if key and "." in key and mac_of is not None:  # an IPv4 address, not a MAC
        try:
            return mac_of(key) or key
        except Exception:  # a view helper must not break the stream
            return key
    return key or "-"


def _what(ev: Event) -> tuple[str, str]:
    """(description, style) of a request event."""
    match ev:
        case DhcpExchange():
            extra = " ".join(x for x in (ev.yiaddr, ev.boot_file and f"file={ev.boot_file}",
                                         ev.arch_name) if x)
            style = "" if ev.msg_out != "-" else "dim"
            return f"{exchange_words(ev, '->')} {extra}".rstrip(), style
        case LeaseChanged():
            return f"lease {ev.ip} {ev.state}", ""
        case TransferStarted():
            return f"get {ev.path} {size_text(ev.size) if ev.size is not None else ''}" \
                .rstrip(), "dim"
        case TransferDone():
            rate = ev.sent / ev.seconds / 1e6 if ev.seconds > 0 else 0.0
            status = f"{ev.status} " if ev.status else ""
            return (f"{status}done {ev.path} {size_text(ev.sent)} {ev.seconds:.1f}s "
                    f"{rate:.1f}MB/s"), "green"
        case TransferFailed():
            if ev.probe:
                return f"probe {ev.path}: {ev.reason}", "dim"
            if is_normal_miss(ev):  # pxelinux's 01-<mac>, 0A4D0064 ... before default
                return f"miss {ev.path}: {ev.reason}", "dim"
            code = f" ({ev.code})" if ev.code else ""
            return f"FAIL {ev.path}: {ev.reason}{code}", "bold red"
        case SessionOpened():
            return f"open {ev.target} {ev.detail}".rstrip(), ""
        case SessionClosed():
            return f"closed {ev.target} read {size_text(ev.read)}", ""
    return ev.kind, ""


def request_row(ev: Event, mac_of: Callable[[str], str | None] | None = None) -> Text:
    """``12:00:01 52:54:00:99:00:10 tftp  done pxelinux.0 42 KiB 0.1s 0.4MB/s``."""
    svc = getattr(ev, "service", "dhcp" if isinstance(ev, LeaseChanged) else "")
    what, style = _what(ev)
    t = Text(f"{hms(ev.ts)} {escape_controls(who(ev, mac_of)):<17} {svc:<5} ")
    t.append(escape_controls(what), style=style)
    return t


def log_row(ev: Event) -> Text:
    """A Log pane line from any event (eventfmt's words), coloured by level."""
    style = ""
    if isinstance(ev, LogLine):
        style = {"error": "bold red", "warning": "yellow", "debug": "dim"}.get(ev.level, "")
    elif isinstance(ev, ConsoleLine):
        style = "cyan"
    elif isinstance(ev, TransferFailed) and (ev.probe or is_normal_miss(ev)):
        style = "dim"
    return Text(f"{hms(ev.ts)} {describe(ev)}", style=style)
