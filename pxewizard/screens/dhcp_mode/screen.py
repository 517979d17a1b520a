"""Step 4: full DHCP, proxyDHCP, or none (another server points clients at us)."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, RadioSet, Static

from ...errors import PlanError
from ...plan import DhcpMode
from ..base import WizardScreen
from ..console import ConsoleRadioButton
from ..draft import I_OWN
from ..widgets import ChoiceSet, FieldRow
from .snippets import snippets

_MODES = {
    DhcpMode.full: ("full DHCP: hand out addresses (only on a segment you own)"),
    DhcpMode.proxy: ("proxyDHCP: boot information only, beside the existing DHCP server"),
    DhcpMode.none: ("none: the existing DHCP server is configured to point at us"),
}


class DhcpModeScreen(WizardScreen):
    """The mode, the pool for full DHCP, the typed override, the snippets for "none"."""

    STEP = "dhcp_mode"

    def body(self) -> ComposeResult:
        d = self.draft
        mode = d.dhcp_mode or d.default_mode()
        with ChoiceSet(id="mode"):
            for m, text in _MODES.items():
                yield ConsoleRadioButton(text, value=m is mode, id=f"mode-{m.value}")
        with Vertical(id="full"):
            for key, label, hint in (("range_start", "pool start", ""),
                                     ("range_end", "pool end", ""),
                                     ("router", "router", "none: clients get no gateway"),
                                     ("dns", "DNS servers", "comma-separated, may be empty"),
                                     ("lease_time", "lease (s)", "3600")):
                yield FieldRow(label, Input(placeholder=hint, id=key.replace("_", "-"),
                                            compact=True))
            with Vertical(id="override"):
                yield Static("", id="override-warning", classes="warn")
                yield FieldRow("confirm", Input(placeholder=f"{d.interface} or: {I_OWN}",
                                                id="confirm", compact=True))
        yield Static("", id="mode-help")

    def on_mount(self) -> None:
        d = self.draft
        host = self.state.host
        d.suggest_full(host.dns_servers if host is not None else ())
        for key in ("range_start", "range_end", "router", "dns"):
            self.query_one(f"#{key.replace('_', '-')}", Input).value = getattr(d, key)
        self.query_one("#lease-time", Input).value = str(d.lease_time)
        self.query_one("#confirm", Input).value = d.confirmation
        seen = d.servers_seen or []
        names = ", ".join(s.server_id for s in seen)
        self.query_one("#override-warning", Static).update(
            f"Another DHCP server ({names}) answered on {d.interface}. A second one hands out "
            f"conflicting addresses to every machine there. Only on a segment you own: type "
            f"{d.interface} or \"{I_OWN}\".")
        self.query_one("#mode", RadioSet).focus()
        self.refresh_mode()

    def mode(self) -> DhcpMode:
        pressed = self.query_one("#mode", RadioSet).pressed_button
        if pressed is None or pressed.id is None:
            return self.draft.dhcp_mode or self.draft.default_mode()
        return DhcpMode(pressed.id.removeprefix("mode-"))

    @on(RadioSet.Changed, "#mode")
    def _mode_changed(self) -> None:
        self.show_problem(None)
        self.refresh_mode()

    def refresh_mode(self) -> None:
        d = self.draft
        mode = self.mode()
        self.query_one("#full").display = mode is DhcpMode.full
        self.query_one("#override").display = mode is DhcpMode.full and d.other_server
        help_ = self.query_one("#mode-help", Static)
        if mode is DhcpMode.proxy:
            t = Text("pxewizard answers PXE clients with boot information only (UDP 67 and "
                     "4011); the existing server keeps handing out addresses.")
            if not d.other_server:
                t.append("\nNo server answered the scan: clients will get no address unless "
                         "one runs.", style="yellow")
            help_.update(t)
        elif mode is DhcpMode.none:
            help_.update(self.snippet_text())
        elif d.servers_seen is None:
            help_.update(Text("The DHCP scan did not run: make sure no other DHCP server "
                              "serves this segment before handing out addresses.",
                              style="yellow"))
        else:
            help_.update("")

    def snippet_text(self) -> Text:
        try:
            items = snippets(self.draft.to_plan())  # the Plan's own paths, as served
        except PlanError as exc:
            return Text(str(exc), style="yellow")
        t = Text("pxewizard runs no DHCP. Add this to the existing server:\n")
        for title, body in items:
            t.append(f"\n{title}\n", style="bold")
            t.append(body + "\n")
        return t

    def save(self) -> None:
        d = self.draft
        d.dhcp_mode = self.mode()
        for key in ("range_start", "range_end", "router", "dns"):
            setattr(d, key, self.query_one(f"#{key.replace('_', '-')}", Input).value.strip())
        try:
            d.lease_time = int(self.query_one("#lease-time", Input).value.strip() or "3600")
        except ValueError:
            d.lease_time = -1
        d.confirmation = self.query_one("#confirm", Input).value

    def check(self) -> str | None:
        d = self.draft
        if d.dhcp_mode is DhcpMode.full:
            if d.lease_time < 60:
                return "lease time: a number of seconds, at least 60 (3600 = one hour)"
            if d.needs_confirmation():
                return (f"another DHCP server answered on {d.interface}: type {d.interface} "
                        f"or \"{I_OWN}\" in confirm to run full DHCP anyway, or choose "
                        "proxyDHCP")
        try:
            d.to_plan()
        except PlanError as exc:
            return "\n".join(p for p in exc.problems if p.startswith(("dhcp", "server_ip")) or
                             "pool" in p) or str(exc)
        return None
