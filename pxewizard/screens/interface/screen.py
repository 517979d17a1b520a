"""Step 2: the interface clients will boot through (and its address, and its bridge)."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Button, DataTable, Input, Static

from ...detect.interfaces import InterfaceInfo, check_assignment, preferred
from ...errors import PxeError
from ..base import WizardScreen
from ..widgets import FieldRow


def _state(i: "InterfaceInfo") -> str:
    if i.loopback:
        return "loop"
    if i.state == "down":
        return "down"
    return i.state if i.carrier else "nocarr"


def _kind(i: "InterfaceInfo") -> str:
    if i.wireless:
        return "wifi"
    if i.bridge is not None:
        return "bridge"
    return i.kind or "-"


class InterfaceScreen(WizardScreen):
    """A table of interfaces; warnings for the highlighted one; assign an address; fix a bridge."""

    STEP = "interface"
    BINDINGS = [Binding("f", "fix_bridge", "Bridge: forward now", show=False),
                Binding("r", "reload", "Reload", show=False)]

    def body(self) -> ComposeResult:
        yield DataTable(id="ifaces", cursor_type="row", zebra_stripes=False)
        yield Static("", id="details")
        with Vertical(id="assign"):
            yield Static("Give it an IPv4 address (brought up, added with pyroute2):",
                         classes="hint")
            yield FieldRow("address/prefix",
                           Input(placeholder="192.168.50.1/24", id="addr", compact=True))
            yield FieldRow("gateway (opt.)",
                           Input(placeholder="none: an isolated segment", id="gw", compact=True))
            yield Button("Assign address", id="do-assign", compact=True)
        yield Button("STP off, forward delay 0", id="fix-bridge", compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#ifaces", DataTable)
        table.add_columns("Name", "State", "Speed", "IPv4", "MAC", "Kind")
        self.query_one("#assign").display = False
        self.query_one("#fix-bridge").display = False
        if self.state.interfaces is None:
            self.load()
        else:
            self.fill()

    @work(exclusive=True, group="interfaces")
    async def load(self) -> None:
        self.state.interfaces = list(await self.wizard.detector.interfaces())
        self.fill()

    def action_reload(self) -> None:
        self.load()

    def fill(self) -> None:
        table = self.query_one("#ifaces", DataTable)
        table.clear()
        ifaces = self.state.interfaces or []
        for i in ifaces:
            speed = f"{i.speed_mbps}M" if i.speed_mbps else "-"
            table.add_row(i.name, _state(i), speed, ", ".join(i.ipv4) or "-", i.mac or "-",
                          _kind(i), key=i.name)
        want = self.draft.interface
        if not any(i.name == want for i in ifaces):
            pick = preferred(ifaces)
            want = pick.name if pick else ""
        names = [i.name for i in ifaces]
        if want in names:
            table.move_cursor(row=names.index(want))
        self.show_selected()
        table.focus()

    def selected(self) -> "InterfaceInfo | None":
        table = self.query_one("#ifaces", DataTable)
        ifaces = self.state.interfaces or []
        if not ifaces or table.row_count == 0:
            return None
        row = table.cursor_row
        return ifaces[row] if 0 <= row < len(ifaces) else None

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self.show_selected()

    @on(DataTable.RowSelected)
    def _selected(self) -> None:
        self.action_next()

    def show_selected(self) -> None:
        i = self.selected()
        details = self.query_one("#details", Static)
        if i is None:
            details.update("Looking for interfaces ...")
            return
        t = Text()
        t.append(f"{i.name}", style="bold")
        t.append(f"  MTU {i.mtu}")
        if i.gateway:
            t.append(f"  default route via {i.gateway}")
        if i.bridge is not None:
            b = i.bridge
            t.append(f"  bridge: STP {'on' if b.stp else 'off'}, forward delay "
                     f"{b.forward_delay:g} s, ports {', '.join(b.ports) or 'none'}")
        t.append("\n")
        warnings = i.warnings()
        for w in warnings:
            t.append("! ", style="bold yellow")
            t.append(w + "\n", style="yellow")
        if not warnings:
            t.append("ready to serve PXE clients\n", style="green")
        details.update(t)
        self.query_one("#assign").display = not i.ipv4 and not i.loopback
        self.query_one("#fix-bridge").display = (
            i.bridge is not None and i.bridge.stp and i.bridge.forward_delay > 0)

    # --- actions -----------------------------------------------------------------

    @on(Button.Pressed, "#do-assign")
    @on(Input.Submitted, "#addr, #gw")
    def _assign(self) -> None:
        i = self.selected()
        if i is None:
            return
        text = self.query_one("#addr", Input).value.strip()
        addr, _, prefix = text.partition("/")
        try:
            a, p, gw = check_assignment(addr, prefix or "24", self.query_one("#gw", Input).value)
        except ValueError as exc:
            self.show_problem(str(exc))
            return
        self.assign(i.name, a, p, gw)

    @work(exclusive=True, group="assign")
    async def assign(self, name: str, address: str, prefix: int, gateway: str) -> None:
        try:
            await self.wizard.detector.assign_address(name, address, prefix, gateway or None)
        except PxeError as exc:
            self.show_problem(str(exc))
            return
        self.show_problem(None)
        self.notify(f"{name} now has {address}/{prefix}")
        self.draft.interface = name
        self.load()

    @on(Button.Pressed, "#fix-bridge")
    def action_fix_bridge(self) -> None:
        i = self.selected()
        if i is not None and i.bridge is not None:
            self.fix_bridge(i.name)

    @work(exclusive=True, group="assign")
    async def fix_bridge(self, name: str) -> None:
        try:
            await self.wizard.detector.bridge_forward_now(name)
        except PxeError as exc:
            self.show_problem(str(exc))
            return
        self.show_problem(None)
        self.notify(f"{name}: STP off, forward delay 0")
        self.load()

    # --- draft -------------------------------------------------------------------

    def save(self) -> None:
        i = self.selected()
        if i is None:
            return
        if i.name != self.draft.interface or i.address != self.draft.server_ip:
            self.draft.servers_seen = None  # a new segment: scan again
            self.draft.range_start = self.draft.range_end = self.draft.router = ""
        self.draft.interface = i.name
        self.draft.server_ip = i.address
        self.draft.prefix = i.prefix
        self.draft.gateway = i.gateway

    def check(self) -> str | None:
        i = self.selected()
        if i is None:
            return "no interface found yet (r reloads)"
        if i.loopback:
            return "the loopback interface cannot reach any client; choose a network interface"
        if not i.ipv4:
            return (f"{i.name} has no IPv4 address: type one (e.g. 192.168.50.1/24) and press "
                    "Assign address")
        return None
