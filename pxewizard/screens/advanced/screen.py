"""Review > Advanced settings: what a hand edit of the Plan reached before (issue 18).

HTTP port, extra kernel command line, allowed MACs, the loader family, Secure Boot,
reservations and remote menu entries. Each field shows the draft's value (a loaded Plan's
too); Done and Back build the Plan with the typed values and stay while it refuses one, the
Plan's own words next to the field. ctrl+r puts back the values the step was opened with.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Input, RadioSet, Static, TextArea

from ...boot.loaders import find_loaders
from ...errors import PlanError
from ..base import WizardScreen
from ..console import ConsoleRadioButton
from ..draft import Draft
from ..widgets import ChoiceSet, FieldRow
from .fields import (REMOTE_SYNTAX, RESERVATION_SYNTAX, assign, format_remote_entries,
                     format_reservations, parse_remote_entries, parse_reservations,
                     split_macs)

_LOADER_WORDS = {
    "pxelinux": "pxelinux (pxelinux.0, efi64/syslinux.efi)",
    "ipxe": "iPXE (undionly.kpxe, ipxe.efi; menu over HTTP)",
}

_SECURE_WORDS = {
    "off": "off: UEFI x64 PCs get the loader above",
    "auto": "auto: the signed shim -> GRUB, where installed",
    "on": "on: the signed shim -> GRUB; a warning if missing",
}


def signed_files_note() -> str:
    """Whether this machine has the signed chain's files, and the fix when it has not."""
    found = find_loaders()
    missing = [pkg for pkg, path in (("shim-signed", found.shim_x64),
                                     ("grub-efi-amd64-signed", found.grub_net_x64))
               if path is None]
    if not missing:
        return ("a PC with Secure Boot on refuses the loader above; shim-signed and "
                "grub-efi-amd64-signed are installed here")
    return ("a PC with Secure Boot on refuses the loader above; the signed chain needs "
            f"apt-get install {' '.join(missing)}")


HELP = """\
 HTTP port      our HTTP server's TCP port (80 unless taken)
 kernel cmdline added to every kernel line; SystemRescue: setkmap=de,
                rootpass=... (the Plan file then holds it: mode 0600)
 allowed MACs   answer only these PCs (and reserved ones); empty: all
 loader         pxelinux, or iPXE (kernels over HTTP, faster)
 Secure Boot    off, or UEFI x64 PCs get Debian's signed shim -> GRUB
 reservations   a line a client: MAC [IP] [entry-id] [host=] [file=]
 remote entries a line each: ID LABEL kernel=URL [initrd=URL] ..."""


class AdvancedScreen(WizardScreen):
    """The settings most runs leave at their defaults, checked by the Plan as typed."""

    STEP = "advanced"
    HELP = HELP
    """What each field means, under the keys in the F1 help."""
    BINDINGS = [Binding("ctrl+r", "revert", "Undo changes", key_display="^r"),
                # priority: the focus moves before the keys typed after Tab are handed out
                # (a plain binding runs once Tab has bubbled up, and text typed right after
                # it went into the field just left)
                Binding("tab", "app.focus_next", show=False, priority=True),
                Binding("shift+tab", "app.focus_previous", show=False, priority=True)]

    def next_label(self) -> str:
        return "Done >"

    def body(self) -> ComposeResult:
        yield FieldRow("HTTP port", Input(placeholder="80", id="http-port", compact=True))
        yield Static("", id="err-http_port", classes="field-error", markup=False)
        yield FieldRow("kernel cmdline", Input(placeholder="e.g. setkmap=de rootpass=...",
                                               id="extra-cmdline", compact=True))
        yield Static("added to every kernel line; SystemRescue: setkmap=de (keymap), "
                     "rootpass= (root password: the saved Plan then holds it, mode 0600)",
                     classes="hint", markup=False)
        yield Static("", id="err-extra_cmdline", classes="field-error", markup=False)
        yield FieldRow("allowed MACs", Input(placeholder="empty: every client; or "
                                             "aa:bb:cc:dd:ee:ff, ...", id="allowed-macs",
                                             compact=True))
        yield Static("only these PCs (and reserved ones) get an answer, in every DHCP mode",
                     classes="hint", markup=False)
        yield Static("", id="err-allowed_macs", classes="field-error", markup=False)
        yield from self.choices("loader", "loader", _LOADER_WORDS,
                                self.draft.loader or "pxelinux")
        yield Static("", id="err-loader", classes="field-error", markup=False)
        yield from self.choices("Secure Boot", "secure-boot", _SECURE_WORDS,
                                self.draft.secure_boot or "off")
        yield Static(signed_files_note(), id="signed-files", classes="hint", markup=False)
        yield Static("", id="err-secure_boot", classes="field-error", markup=False)
        yield Static(f"reservations, one client a line: {RESERVATION_SYNTAX}",
                     classes="hint", markup=False)
        yield TextArea(id="reservations", soft_wrap=True, tab_behavior="focus")
        yield Static("", id="entry-ids", classes="hint", markup=False)
        yield Static("", id="err-reservations", classes="field-error", markup=False)
        yield Static(f"remote menu entries, one a line: {REMOTE_SYNTAX}",
                     classes="hint", markup=False)
        yield TextArea(id="remote-entries", soft_wrap=True, tab_behavior="focus")
        yield Static("", id="err-remote_entries", classes="field-error", markup=False)

    @staticmethod
    def choices(label: str, set_id: str, words: dict[str, str], current: str) -> ComposeResult:
        """A labelled radio set: a button ``{set_id}-{value}`` for each value of ``words``."""
        with Horizontal(classes="choice-row"):
            yield Static(label, classes="label")
            with ChoiceSet(id=set_id):
                for name, text in words.items():
                    yield ConsoleRadioButton(text, id=f"{set_id}-{name}", value=name == current)

    def on_mount(self) -> None:
        self.fill()
        ids = [e.id for m in (self.draft.media, *self.draft.more_media) if m is not None
               for e in m.entries]
        if ids:
            self.query_one("#entry-ids", Static).update(
                "entry ids of the menu: " + ", ".join(dict.fromkeys([*ids, "local"])))
        else:
            self.query_one("#entry-ids").display = False
        self.query_one("#http-port", Input).focus()

    # --- the draft's values <-> the fields ------------------------------------------------

    def current(self) -> dict[str, Any]:
        """The Advanced fields of the draft (before the step ever ran: as the Plan built from
        the draft has them, else the Plan's defaults)."""
        d = self.draft
        try:
            planned = Draft.advanced_of(d.to_plan())
        except PlanError:
            planned = {"http_port": "", "extra_cmdline": "", "allowed_macs": [],
                       "loader": "pxelinux", "secure_boot": "off", "reservations": [],
                       "remote_entries": []}
        mine = {k: getattr(d, k) for k in planned}
        return {k: v if v not in (None, "") else planned[k] for k, v in mine.items()}

    def fill(self) -> None:
        v = self.current()
        self.query_one("#http-port", Input).value = v["http_port"]
        self.query_one("#extra-cmdline", Input).value = v["extra_cmdline"]
        self.query_one("#allowed-macs", Input).value = ", ".join(v["allowed_macs"])
        self.query_one(f"#loader-{v['loader']}", ConsoleRadioButton).value = True
        self.query_one(f"#secure-boot-{v['secure_boot']}", ConsoleRadioButton).value = True
        self.query_one("#reservations", TextArea).text = format_reservations(v["reservations"])
        self.query_one("#remote-entries", TextArea).text = \
            format_remote_entries(v["remote_entries"])

    def typed(self) -> tuple[dict[str, Any], dict[str, list[int]], dict[str, list[str]]]:
        """(the Draft fields as typed, line numbers of the list entries, syntax problems)."""
        res, res_lines, res_bad = parse_reservations(self.query_one("#reservations",
                                                                    TextArea).text)
        rem, rem_lines, rem_bad = parse_remote_entries(self.query_one("#remote-entries",
                                                                      TextArea).text)
        pressed = self.query_one("#loader", RadioSet).pressed_button
        loader = pressed.id.removeprefix("loader-") if pressed and pressed.id else "pxelinux"
        pressed = self.query_one("#secure-boot", RadioSet).pressed_button
        secure = pressed.id.removeprefix("secure-boot-") if pressed and pressed.id else "off"
        values = {
            "http_port": self.query_one("#http-port", Input).value.strip(),
            "extra_cmdline": self.query_one("#extra-cmdline", Input).value.strip(),
            "allowed_macs": split_macs(self.query_one("#allowed-macs", Input).value),
            "loader": loader,
            "secure_boot": secure,
            "reservations": res,
            "remote_entries": rem,
        }
        syntax = {k: v for k, v in (("reservations", res_bad), ("remote_entries", rem_bad))
                  if v}
        return values, {"reservations": res_lines, "remote_entries": rem_lines}, syntax

    def problems(self) -> tuple[dict[str, Any], dict[str, list[str]]]:
        """The typed values (as the Plan normalised them, when it takes them all) and, per
        field, what the Plan (or the line syntax) refuses."""
        values, lines, found = self.typed()
        if not found:
            try:
                plan = dataclasses.replace(self.draft, **values).to_plan()
            except PlanError as exc:
                found, _others = assign(exc.problems, lines)  # others: Review's to show
            else:
                values = Draft.advanced_of(plan)
        return values, found

    def show_errors(self, found: dict[str, list[str]]) -> None:
        for w in self.query(".field-error").results(Static):
            field = (w.id or "").removeprefix("err-")
            text = "\n".join(found.get(field, ()))
            w.update(text)
            w.set_class(bool(text), "-shown")
        for field in found:
            self.query_one(f"#err-{field}").scroll_visible(animate=False)
            break

    # --- navigation: Done and Back both return to Review, once the Plan takes the values --

    def apply(self) -> bool:
        values, found = self.problems()
        self.show_errors(found)
        if found:
            n = sum(len(v) for v in found.values())
            self.show_problem(f"{n} setting(s) refused, named next to the field; fix them, "
                              "or ctrl+r to undo the changes")
            return False
        for k, v in values.items():
            setattr(self.draft, k, v)
        self.show_problem(None)
        return True

    def action_next(self) -> None:
        if self.apply():
            self.wizard.go("review")

    def action_back(self) -> None:
        if self.apply():
            self.wizard.go("review")

    def action_revert(self) -> None:
        """ctrl+r: the values the step was opened with."""
        self.fill()
        self.show_errors({})
        self.show_problem(None)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.focus_next()
