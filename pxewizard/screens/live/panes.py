"""The Live view's parts as widgets: the tab bar, the panes and the status line.

Each pane is told what to show (rows, a snapshot, findings) and keeps its own lines;
the screen only routes events and the insight session's results to them. The tab
bar is a Static rather than Textual's ``TabbedContent``: that one underlines the
active tab with ``━``, which the Linux console's VGA font cannot draw. It also cannot
show a finding count in a tab's title.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import DataTable, Input, RichLog, Static

from ...insight.diagnose import Finding, format_finding
from ...insight.timeline import Snapshot, format_timeline
from ...safetext import escape_controls
from ...units import size_text

PANES = (("requests", "Requests"), ("clients", "Clients"), ("log", "Log"),
         ("diagnosis", "Diagnosis"), ("console", "VM console"))
MAX_LINES = 5000


class WrapLog(RichLog):
    """A RichLog whose long lines wrap at the pane's width, nothing cut at column 80.

    RichLog renders at least ``min_width`` (78) columns, wider than the pane on an 80-column
    console with padding and a scrollbar: the ends of lines were cut off. The gutter is
    kept so a scrollbar appearing later does not cover the last column either."""

    DEFAULT_CSS = "WrapLog { scrollbar-gutter: stable; }"

    def __init__(self, *, id: str | None = None, max_lines: int = MAX_LINES) -> None:
        super().__init__(id=id, max_lines=max_lines, wrap=True, markup=False, min_width=1)

    def write(self, content: Any, width: int | None = None, expand: bool = False,
              shrink: bool = True, scroll_end: bool | None = None,
              animate: bool = False) -> "WrapLog":
        if width is None and self._size_known:
            # a hidden pane has no region: wrap at the screen's width less padding and bar
            width = self.scrollable_content_region.width or max(20, self.app.size.width - 4)
        super().write(content, width, expand, shrink, scroll_end, animate)
        return self


class TabBar(Static):
    """`` 1 Requests  2 Clients ...``, the current pane reversed, the finding count shown."""

    current: reactive[str] = reactive("requests")
    findings: reactive[int] = reactive(0)

    def __init__(self, *, console: bool, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.console = console
        """Show the VM console pane (the lab is offered)."""

    def render(self) -> Text:
        t = Text()
        for i, (pane, title) in enumerate(PANES, 1):
            if pane == "console" and not self.console:
                continue
            if pane == "diagnosis" and self.findings:
                title = f"{title}({self.findings})"
            t.append(f" {i} {title} ", style="reverse bold" if pane == self.current else "")
        return t


class StatusLine(Static):
    """The totals under the panes; each is reactive, so setting one redraws the line."""

    state: reactive[str] = reactive("starting")
    requests: reactive[int] = reactive(0)
    clients: reactive[int] = reactive(0)
    active: reactive[int] = reactive(0)
    sent: reactive[int] = reactive(0)
    mbps: reactive[float] = reactive(0.0)
    rate: reactive[float] = reactive(0.0)
    failed: reactive[int] = reactive(0)
    paused: reactive[bool] = reactive(False)

    def render(self) -> str:
        return self.line(self.size.width or 80)

    def line(self, width: int) -> str:
        """The totals in ``width`` columns. The state, PAUSED and the failures always show;
        the rates, then the other totals are dropped first when the line is too long."""
        must = [self.state] + (["PAUSED"] if self.paused else []) + (
            [f"failed {self.failed}"] if self.failed else [])
        rest = [f"req {self.requests}", f"clients {self.clients}", f"active {self.active}",
                f"sent {size_text(self.sent)}", f"{self.mbps:.1f} MB/s",
                f"{self.rate:.0f} ev/s"]
        while rest and len("  ".join(must + rest)) > width:
            rest.pop()
        return "  ".join(must + rest)


class RequestsPane(Vertical):
    """One row per DHCP exchange, lease, transfer and session."""

    def compose(self) -> ComposeResult:
        yield Static(f"{'time':<8} {'client':<17} {'svc':<5} what", classes="colhead")
        yield WrapLog(id="requests-view")

    def write(self, rows: list[Text]) -> None:
        if rows:
            self.query_one(RichLog).write(Text("\n").join(rows[-MAX_LINES:]))


class FilterInput(Input):
    """The Log filter. Enter gives the keys back at once: on a terminal the keys typed after
    Enter are already queued here before a Submitted message could move the focus, so a key
    that reaches the filter after it let go is handed back to the screen's bindings."""

    async def _on_key(self, event: events.Key) -> None:
        if self.screen.focused is not self:
            event.stop()
            event.prevent_default()
            self.app.simulate_key(event.key)
        elif event.key == "enter":
            event.stop()
            event.prevent_default()
            self.screen.set_focus(None)
            self.post_message(self.Submitted(self, self.value))


class LogPane(Vertical):
    """Every other event and log line, with a filter."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lines: deque[Text] = deque(maxlen=MAX_LINES)
        """Every line so far (the filter shows a part of them)."""
        self.filter_text = ""

    def compose(self) -> ComposeResult:
        yield FilterInput(placeholder="filter: text to match (service, client, path)",
                          id="filter", compact=True)
        yield WrapLog(id="log-view")

    def matches(self, line: Text) -> bool:
        return not self.filter_text or self.filter_text in line.plain.lower()

    def write(self, rows: list[Text]) -> None:
        shown = [t for t in rows if self.matches(t)]
        if shown:
            self.query_one(RichLog).write(Text("\n").join(shown[-MAX_LINES:]))

    def show_filter(self) -> None:
        f = self.query_one(Input)
        f.add_class("-shown")
        f.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip().lower()
        view = self.query_one(RichLog)
        view.clear()
        shown = [t for t in self.lines if self.matches(t)]
        if shown:
            view.write(Text("\n").join(shown))

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.release_keys()

    def release_keys(self) -> None:
        """The filter (or any widget of this pane) gives the keys back to the screen's bindings.

        Called on Enter and when the pane is hidden: a focused hidden Input would take every
        key (digits, ``p``) for itself (issue 18)."""
        focused = self.screen.focused
        if focused is not None and (focused is self or self in focused.ancestors):
            self.screen.set_focus(None)


class ClientsPane(Vertical):
    """One row per client with its stage; the selected client's last timeline steps below."""

    def compose(self) -> ComposeResult:
        yield DataTable(id="clients-table", cursor_type="row")
        yield Static("", id="clients-detail")

    def on_mount(self) -> None:
        self.nfs_io: dict[str, str] = {}
        """Client IP -> "read / written" from NfsActivity events (issue 23)."""
        self.query_one(DataTable).add_columns("Client", "IP", "Firmware", "Stage", "Idle",
                                              "NFS read/written")

    def show(self, snap: Snapshot | None) -> None:
        table = self.query_one(DataTable)
        rows: list[tuple[str, ...]] = []
        detail = Text()
        if snap is not None:
            for s in snap.summaries():
                rows.append((escape_controls(s.client), s.ip or "-",
                             escape_controls(s.firmware or "-"), escape_controls(s.label),
                             f"{s.idle:.0f}s", self.nfs_io.get(s.ip or "", "-")))
                # names and labels may quote network text
            row = table.cursor_row if table.row_count else 0
            if snap.clients and 0 <= row < len(snap.clients):
                for line in format_timeline(snap.clients[row])[-8:]:
                    detail.append(line + "\n")
        cursor = table.cursor_row
        table.clear()
        for r in rows:
            table.add_row(*r)
        if rows:
            table.move_cursor(row=min(cursor, len(rows) - 1))
        self.query_one("#clients-detail", Static).update(detail)


class DiagnosisPane(WrapLog):
    """The findings, worst first, redrawn only when they change."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=2000)
        self.findings: list[Finding] = []

    def show(self, findings: list[Finding]) -> bool:
        """Show ``findings``; False when they are the ones already shown."""
        if [f.key for f in findings] == [f.key for f in self.findings]:
            return False
        self.findings = findings
        self.clear()
        if not findings:
            self.write("No problem found so far.")
        for f in findings:
            self.write("\n".join(format_finding(f, with_evidence=False)))
        return True
