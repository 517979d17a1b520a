"""Step 5: what to boot: media found (tick several, order them), entries, default, timeout.

Every medium found (autodetected, a typed path, every medium inside a typed folder) is a
row; enter ticks it for the menu, ``+``/``-`` move a ticked one up or down the menu. The
menu the Plan will serve is shown below, built by ``boot.media.arrange`` as serve does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Checkbox, DataTable, Input, Select, Static

from ...boot.media import LOCAL_ENTRY, BootEntry, Media, arrange
from ...errors import PxeError
from ...units import size_text
from ..base import WizardScreen
from ..console import ConsoleCheckbox
from ..widgets import FieldRow


class MediaScreen(WizardScreen):
    """Media found (or typed as a path), the entries put in the menu, default and timeout."""

    STEP = "media"
    BINDINGS = [Binding("plus", "move(-1)", "Up the menu", key_display="+"),
                Binding("minus", "move(1)", "Down the menu", key_display="-")]

    def body(self) -> ComposeResult:
        yield DataTable(id="media", cursor_type="row")
        yield Static("enter ticks a medium for the menu; + / - move it up / down",
                     id="media-help")
        yield FieldRow("ISO or folder",
                       Input(placeholder="/path/to/systemrescue.iso", id="path", compact=True))
        yield Static("", id="path-status")
        yield Static("Menu entries (tab moves, space toggles):", classes="section")
        yield Vertical(id="entries")
        yield FieldRow("default entry", Select[str]([], id="default", allow_blank=True,
                                                    compact=True, prompt="the first"))
        yield FieldRow("timeout (s)", Input(id="timeout", compact=True, type="integer"))
        yield Static("", id="menu-preview")

    def on_mount(self) -> None:
        self.media_list: list[Media] = []
        self.ticked: list[Path] = []
        """Paths of the media in the menu, in menu order."""
        self.by_hand = False
        """The operator ticked media: a typed path then adds to them instead of replacing."""
        self.unticked: set[str] = set()
        """Entry ids the operator left out."""
        self.shown_entries: list[str] = []
        if self.draft.entries is not None:
            self.unticked = {"?"}  # resolved against the entries once the media are known
        self.query_one("#media", DataTable).add_columns("Menu", "Medium", "Profile",
                                                        "Entries", "Image", "Path")
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

    def fill(self, select: Media | None = None, added: list[Media] | None = None) -> None:
        found = list(self.state.media_found or [])
        chosen = select if select is not None else self.draft.media
        for m in [*(added or []), chosen, *self.draft_extra()][::-1]:
            if m is not None and all(x.path != m.path for x in found):
                found.insert(0, m)
        self.media_list = found
        if added:
            if not self.by_hand:
                self.ticked = []
            self.ticked += [m.path for m in added if m.path not in self.ticked]
        elif not self.ticked and found:
            first = chosen if chosen is not None else found[0]
            self.ticked = [first.path] + [m.path for m in self.draft_extra()
                                          if m.path != first.path]
        if self.unticked == {"?"}:
            ids = [e.id for e in self.menu_entries()]
            self.unticked = {i for i in ids if i not in set(self.draft.entries or ())}
        self.redraw_table()
        if found:
            idx = next((i for i, m in enumerate(found)
                        if chosen is not None and m.path == chosen.path), 0)
            self.query_one("#media", DataTable).move_cursor(row=idx)
            self.show_entries(found[idx])
            if select is None:  # never steal the focus from the path being typed
                self.query_one("#media", DataTable).focus()
        self.show_menu()

    def draft_extra(self) -> list[Media]:
        """Further media of a loaded Plan or an earlier visit (objects when known)."""
        known = {str(m.path): m for m in (self.state.media_found or []) + self.media_list}
        return [known[p] for p in self.draft.extra_media if p in known]

    def redraw_table(self) -> None:
        table = self.query_one("#media", DataTable)
        row = table.cursor_row
        table.clear()
        for m in self.media_list:
            order = str(self.ticked.index(m.path) + 1) if m.path in self.ticked else ""
            table.add_row(order, m.label, m.profile, str(len(m.entries)),
                          size_text(m.image_size), str(m.path))
        if self.media_list:
            table.move_cursor(row=max(0, min(row, len(self.media_list) - 1)))

    def chosen_media(self) -> list[Media]:
        """The ticked media, in menu order, arranged as serve arranges them."""
        by_path = {m.path: m for m in self.media_list}
        return arrange([by_path[p] for p in self.ticked if p in by_path])

    def menu_entries(self) -> list[BootEntry]:
        """Every entry of the menu the ticked media make (local boot once, last)."""
        media = self.chosen_media()
        entries = [e for m in media for e in m.entries]
        if len(media) > 1:
            entries.append(LOCAL_ENTRY)
        return entries

    def show_menu(self) -> None:
        media = self.chosen_media()
        lines = ["The menu:" if media else "The menu: no medium ticked"]
        for m in media:
            shown = [e for e in m.entries if e.id not in self.unticked
                     and e.kind != "localboot"]
            if len(media) > 1:
                lines.append(f"  {m.label}")
            pad = "    " if len(media) > 1 else "  "
            lines += [f"{pad}{e.label}" for e in shown]
        if media and "local" not in self.unticked:
            lines.append("  Boot from local disk")
        self.query_one("#menu-preview", Static).update("\n".join(lines))

    @on(DataTable.RowSelected, "#media")
    def _media_selected(self) -> None:
        m = self.current()
        if m is None:
            return
        self.by_hand = True
        if m.path in self.ticked:
            self.ticked.remove(m.path)
        else:
            self.ticked.append(m.path)
        self.redraw_table()
        self.show_entries(m)
        self.show_menu()

    def action_move(self, step: int) -> None:
        m = self.current()
        if m is None or m.path not in self.ticked:
            return
        i = self.ticked.index(m.path)
        j = max(0, min(len(self.ticked) - 1, i + step))
        self.ticked.insert(j, self.ticked.pop(i))
        self.redraw_table()
        self.show_entries(m)
        self.show_menu()

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
        arranged = next((m for m in self.chosen_media() if m.path == media.path), None)
        entries = list((arranged or media).entries)
        if arranged is not None and len(self.ticked) > 1:
                entries.append(LOCAL_ENTRY)
        box = self.query_one("#entries", Vertical)
        box.remove_children()
        box.mount_all([ConsoleCheckbox(f"{e.label} ({e.id})", e.id not in self.unticked,
                                       name=e.id, compact=True) for e in entries])
        self.shown_entries = [e.id for e in entries]
        self.call_after_refresh(self.refresh_default, d.default)

    def refresh_default(self, keep: str | None = None) -> None:
        select = self.query_one("#default", Select)
        if not self.ticked:
            select.set_options([])
            return
        opts = [(e.label, e.id) for e in self.menu_entries() if e.id not in self.unticked]
        current = keep if keep is not None else (
            select.value if isinstance(select.value, str) else None)
        select.set_options(opts)
        if current in {v for _, v in opts}:
            select.value = current

    def selected_entries(self) -> list[str]:
        """Entry ids of the menu left ticked, in menu order."""
        return [e.id for e in self.menu_entries() if e.id not in self.unticked]

    @on(Checkbox.Changed)
    def _entries_changed(self, event: Checkbox.Changed) -> None:
        name = event.checkbox.name
        if name:
            if event.value:
                self.unticked.discard(name)
            else:
                self.unticked.add(name)
        self.refresh_default()
        self.show_menu()

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
            status.update(Text(str(exc), style="yellow"))  # every line: what was looked for
            return
        if not found:
            status.update(Text(f"{path}: nothing bootable found", style="yellow"))
            return
        m = found[0]
        more = f" and {len(found) - 1} more media" if len(found) > 1 else ""
        status.update(Text(f"ok: {m.label} ({m.profile}), {len(m.entries)} entries{more}",
                           style="green"))
        self.fill(select=m, added=found)

    # --- draft -------------------------------------------------------------------------

    def save(self) -> None:
        d = self.draft
        by_path = {m.path: m for m in self.media_list}
        chosen = [by_path[p] for p in self.ticked if p in by_path]
        m = chosen[0] if chosen else None
        d.media = m
        d.extra_media = [str(x.path) for x in chosen[1:]]
        d.more_media = list(chosen[1:])
        d.media_path = str(m.path) if m is not None else \
            self.query_one("#path", Input).value.strip()
        if m is not None:
            all_ids = [e.id for e in self.menu_entries()]
            picked = self.selected_entries()
            d.entries = None if picked == all_ids else picked
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
