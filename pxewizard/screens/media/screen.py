"""Step 5: what to boot: detected media, their entries, the default and the timeout."""

from __future__ import annotations

import asyncio

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Checkbox, DataTable, Input, Select, Static

from ...boot.media import Media
from ...errors import PxeError
from ...units import size_text
from ..base import WizardScreen
from ..console import ConsoleCheckbox
from ..widgets import FieldRow


class MediaScreen(WizardScreen):
    """Media found (or typed as a path), the entries put in the menu, default and timeout."""

    STEP = "media"

    def body(self) -> ComposeResult:
        yield DataTable(id="media", cursor_type="row")
        yield FieldRow("ISO or directory",
                       Input(placeholder="/path/to/systemrescue.iso", id="path", compact=True))
        yield Static("", id="path-status")
        yield Static("Menu entries (tab moves, space toggles):", classes="section")
        yield Vertical(id="entries")
        yield FieldRow("default entry", Select[str]([], id="default", allow_blank=True,
                                                    compact=True, prompt="the first"))
        yield FieldRow("timeout (s)", Input(id="timeout", compact=True, type="integer"))

    def on_mount(self) -> None:
        self.media_list: list[Media] = []
        self.query_one("#media", DataTable).add_columns("Medium", "Profile", "Entries",
                                                        "Image", "Path")
        self.query_one("#timeout", Input).value = str(self.draft.timeout)
        self.query_one("#path", Input).value = self.draft.media_path \
            if self.draft.media is None else ""
        if self.state.media_found is None:
            self.query_one("#path-status", Static).update("Looking for boot media ...")
            self.load()
        else:
            self.fill()
        if self.draft.media is None and self.draft.media_path:
            self.check_path(self.draft.media_path)

    @work(exclusive=True, group="media")
    async def load(self) -> None:
        try:
            self.state.media_found = list(await self.wizard.detector.media(None))
        except (PxeError, OSError, ImportError) as exc:
            self.state.media_found = []
            self.query_one("#path-status", Static).update(Text(str(exc), style="yellow"))
        else:
            if not self.state.media_found:
                self.query_one("#path-status", Static).update(
                    "No boot medium found on this machine: type the path of an ISO or a "
                    "directory.")
                self.query_one("#path", Input).focus()
            else:
                self.query_one("#path-status", Static).update("")
        self.fill()

    def fill(self, select: Media | None = None) -> None:
        found = list(self.state.media_found or [])
        chosen = select if select is not None else self.draft.media
        if chosen is not None and all(m.path != chosen.path for m in found):
            found.insert(0, chosen)
        self.media_list = found
        table = self.query_one("#media", DataTable)
        table.clear()
        for m in found:
            table.add_row(m.label, m.profile, str(len(m.entries)), size_text(m.image_size),
                          str(m.path))
        if found:
            idx = next((i for i, m in enumerate(found)
                        if chosen is not None and m.path == chosen.path), 0)
            table.move_cursor(row=idx)
            self.show_entries(found[idx])
            if select is None:  # never steal the focus from the path being typed
                table.focus()

    def current(self) -> Media | None:
        table = self.query_one("#media", DataTable)
        if not self.media_list:
            return None
        row = table.cursor_row
        return self.media_list[row] if 0 <= row < len(self.media_list) else None

    @on(DataTable.RowHighlighted, "#media")
    def _media_highlighted(self) -> None:
        m = self.current()
        if m is not None:
            self.show_entries(m)

    def show_entries(self, media: Media) -> None:
        d = self.draft
        same = d.media is not None and d.media.path == media.path
        wanted = set(d.entries) if same and d.entries is not None else None
        box = self.query_one("#entries", Vertical)
        box.remove_children()
        box.mount_all([ConsoleCheckbox(f"{e.label} ({e.id})", wanted is None or e.id in wanted,
                                name=e.id, compact=True) for e in media.entries])
        self.shown_entries = [e.id for e in media.entries]
        self.call_after_refresh(self.refresh_default, d.default if same else None)

    def refresh_default(self, keep: str | None = None) -> None:
        m = self.current()
        select = self.query_one("#default", Select)
        if m is None:
            select.set_options([])
            return
        chosen = set(self.selected_entries())
        opts = [(e.label, e.id) for e in m.entries if e.id in chosen]
        current = keep if keep is not None else (
            select.value if isinstance(select.value, str) else None)
        select.set_options(opts)
        if current in {v for _, v in opts}:
            select.value = current

    def selected_entries(self) -> list[str]:
        """Entry ids ticked, in media order."""
        return [cb.name for cb in self.query_one("#entries").query(Checkbox)
                if cb.value and cb.name]

    @on(Checkbox.Changed)
    def _entries_changed(self) -> None:
        self.refresh_default()

    # --- a typed path, checked as you type ---------------------------------------------

    @on(Input.Changed, "#path")
    def _path_changed(self, event: Input.Changed) -> None:
        path = event.value.strip()
        if not path:
            self.query_one("#path-status", Static).update("")
            return
        self.check_path(path)

    @work(exclusive=True, group="path")
    async def check_path(self, path: str) -> None:
        status = self.query_one("#path-status", Static)
        await asyncio.sleep(0.3)  # debounce: the worker is cancelled by the next keystroke
        status.update(f"checking {path} ...")
        try:
            found = list(await self.wizard.detector.media(path))
        except (PxeError, OSError) as exc:
            status.update(Text(str(exc).splitlines()[0], style="yellow"))
            return
        if not found:
            status.update(Text(f"{path}: nothing bootable found", style="yellow"))
            return
        m = found[0]
        status.update(Text(f"ok: {m.label} ({m.profile}), {len(m.entries)} entries",
                           style="green"))
        self.fill(select=m)

    # --- draft -------------------------------------------------------------------------

    def save(self) -> None:
        d = self.draft
        m = self.current()
        d.media = m
        d.media_path = str(m.path) if m is not None else \
            self.query_one("#path", Input).value.strip()
        if m is not None:
            chosen = self.selected_entries()
            all_ids = [e.id for e in m.entries]
            d.entries = None if chosen == all_ids else [i for i in all_ids if i in chosen]
            v = self.query_one("#default", Select).value
            d.default = v if isinstance(v, str) else None
        try:
            d.timeout = int(self.query_one("#timeout", Input).value or "10")
        except ValueError:
            d.timeout = -1

    def check(self) -> str | None:
        d = self.draft
        if d.media is None:
            return ("choose a boot medium: none was found here; type the path of an ISO or a "
                    "directory above")
        if d.entries is not None and not d.entries:
            return "select at least one menu entry (space toggles)"
        if not 0 <= d.timeout <= 3600:
            return "timeout: seconds from 0 (wait forever) to 3600"
        return None
