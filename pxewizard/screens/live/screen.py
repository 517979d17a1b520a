"""Step 8: the servers run; every request, client, log line and finding as it happens.

Servers are started only through ``start_plan`` (WizardConfig.start_plan,
``pxewizard.serve.start_plan`` by default). Events reach this screen only
through :class:`pxewizard.ui_bridge.EventBridge`, in batches; panes are
RichLogs with ``max_lines`` so a boot storm cannot grow memory or stall keys.
"""

from __future__ import annotations

import os
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import ContentSwitcher, DataTable, Footer, Header, Input, RichLog, Static

from ...events import (ConsoleLine, Event, LogLine, NfsActivity, TransferDone, TransferFailed,
                       TransferProgress, TransferStarted)
from ...safetext import escape_controls
from ...ui_bridge import EventBridge, EventsArrived
from ..base import size_text
from .format import REQUEST_KINDS, log_row, request_row

if TYPE_CHECKING:
    from ...app import PxeWizardApp

PANES = (("requests", "Requests"), ("clients", "Clients"), ("log", "Log"),
         ("diagnosis", "Diagnosis"), ("console", "VM console"))
MAX_LINES = 5000


class LiveScreen(Screen[Any]):
    """Requests, Clients, Log, Diagnosis (and a lab VM's console), with totals below."""

    STEP = "live"
    BINDINGS = [
        Binding("1", "pane('requests')", "Requests", show=False),
        Binding("2", "pane('clients')", "Clients", show=False),
        Binding("3", "pane('log')", "Log", show=False),
        Binding("4", "pane('diagnosis')", "Diagnosis", show=False),
        Binding("5", "pane('console')", "VM console", show=False),
        Binding("p", "pause", "Pause"),
        Binding("s", "stop_start", "Stop/start"),
        Binding("w", "save_log", "Save log"),
        Binding("v", "lab('bios')", "Test VM"),
        Binding("u", "lab('uefi')", "UEFI VM", show=False),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("escape", "back", "Back", key_display="esc", show=False),
        Binding("q", "quit_live", "Quit"),
    ]

    @property
    def wizard(self) -> "PxeWizardApp":
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header(icon="*")
        yield Static("", id="tabbar")
        with ContentSwitcher(id="panes", initial="requests"):
            with Vertical(id="requests"):
                yield Static(f"{'time':<8} {'client':<17} {'svc':<5} what", classes="colhead")
                yield RichLog(id="requests-view", max_lines=MAX_LINES, wrap=False, markup=False)
            with Vertical(id="clients"):
                yield DataTable(id="clients-table", cursor_type="row")
                yield Static("", id="clients-detail")
            with Vertical(id="log"):
                yield Input(placeholder="filter: text to match (service, client, path)",
                            id="filter", compact=True)
                yield RichLog(id="log-view", max_lines=MAX_LINES, wrap=False, markup=False)
            yield RichLog(id="diagnosis", max_lines=2000, wrap=True, markup=False)
            yield RichLog(id="console", max_lines=MAX_LINES, wrap=False, markup=False)
        yield Static("", id="status")
        yield Footer()

    def on_mount(self) -> None:
        from ...events import EventBus

        self.pane = "requests"
        self.paused = False
        self.held_requests: list[Text] = []
        self.held_log: list[Text] = []
        self.log_lines: deque[Text] = deque(maxlen=MAX_LINES)
        self.request_lines: deque[Text] = deque(maxlen=MAX_LINES)
        self.filter_text = ""
        self.counts = {"events": 0, "requests": 0, "bytes": 0, "failed": 0}
        self.active: dict[tuple[str, str, str], float] = {}
        self.rate_window: deque[tuple[float, int, int]] = deque(maxlen=20)
        self.clients_simple: dict[str, list[str]] = {}
        self.nfs_io: dict[str, str] = {}
        """Client IP -> "read / written" from NfsActivity events (issue 23)."""
        self.findings: list[Any] = []
        self.snap: Any = None
        self.diag_facts: Any = None
        self.snap_at = 0.0
        self.running: Any = None
        self.state = "starting"
        self.lab_worker: Any = None
        self.bus = EventBus()
        self.bridge = EventBridge(self.bus, self).attach()
        self.builder = self.make_builder()
        self.jsonl: Any = None
        self.query_one("#clients-table", DataTable).add_columns(
            "Client", "IP", "Firmware", "Stage", "Idle", "NFS read/written")
        self.show_tabbar()
        self.set_interval(0.5, self.refresh_status)
        self.set_interval(1.0, self.refresh_clients)
        self.set_interval(2.0, self.refresh_diagnosis)
        self.refresh_status()
        self.start_servers()

    @staticmethod
    def make_builder() -> Any:
        try:
            from ...timeline import TimelineBuilder
        except ImportError:
            return None
        return TimelineBuilder()

    # --- servers -------------------------------------------------------------------------

    @work(exclusive=True, group="servers")
    async def start_servers(self) -> None:
        from ...errors import PxeError
        from ...events import JsonlLog

        plan = self.wizard.plan
        if plan is None:
            self.state = "no plan"
            return
        self.state = "starting"
        if self.jsonl is None:
            self.jsonl = JsonlLog(plan.jsonl_path, self.bus)
            self.bus.subscribe(self.jsonl)
        try:
            self.running = await self.wizard.config.start_plan(plan, self.bus)
        except PxeError as exc:
            self.state = "failed"
            self.bus.publish(LogLine(service="wizard", level="error", message=str(exc)))
            self.notify(str(exc).splitlines()[0], severity="error", timeout=10)
            self.action_pane("log")
            return
        except Exception as exc:  # a server bug: say so, keep the UI alive
            self.state = "failed"
            self.bus.publish(LogLine(service="wizard", level="error",
                                     message=f"servers did not start: {exc!r}"))
            self.action_pane("log")
            return
        self.state = "serving"
        self.bus.publish(LogLine(service="wizard", level="info",
                                 message=f"ready: serving on {plan.interface} {plan.server_ip}"))
        self.diag_facts = await self.host_facts()

    async def host_facts(self) -> Any:
        """What the diagnosis rules know of this host and Plan (bridge, ports, files, RAM)."""
        plan = self.wizard.plan
        try:
            from ...diagnose import HostFacts
        except ImportError:
            return None
        if plan is None:
            return HostFacts()
        bridge = None
        try:
            from ...detect.bridge import bridge_facts

            bridge = await bridge_facts(plan.interface)
        except Exception:  # advice only: the rules stay quiet about what is unknown
            pass
        files: tuple[str, ...] = ()
        tree = getattr(self.running, "tree", None)
        if tree is not None:
            files = tuple(vpath for vpath, _, _ in tree.entries())
        held = tuple((p.proto, p.port, p.service, p.holder or "")
                     for p in self.wizard.ports or [] if not p.free)
        ram_needed = None
        fn, media = self.wizard.config.ram_estimate, self.wizard.draft.media
        if callable(fn) and media is not None:
            try:
                ram_needed = fn(media, None, plan.boot.transport.value,
                                plan.boot.copytoram).needed_bytes
            except Exception:
                ram_needed = None
        boot_files = tuple((k, v) for k, v in plan.dhcp.boot_files.model_dump().items()
                           if isinstance(v, str))
        return HostFacts(server_ip=str(plan.server_ip), interface=plan.interface,
                         dhcp_mode=plan.dhcp.mode.value, boot_files=boot_files,
                         transport=plan.boot.transport.value, menu_timeout=plan.boot.timeout,
                         tftp_max_blksize=plan.tftp.max_blksize, bridge=bridge, files=files,
                         ram_needed=ram_needed, ports_held=held)

    async def stop_servers(self) -> None:
        running, self.running = self.running, None
        if running is not None:
            self.state = "stopping"
            await running.close()
            self.bus.publish(LogLine(service="wizard", level="info", message="servers stopped"))
        self.state = "stopped"

    async def shutdown(self) -> None:
        """Stop the lab VM and the servers; close the log (quit or leave)."""
        if self.lab_worker is not None:
            self.lab_worker.cancel()
            self.lab_worker = None
        await self.stop_servers()
        self.bridge.detach()
        if self.jsonl is not None:
            self.jsonl.close()

    # --- events --------------------------------------------------------------------------

    @on(EventsArrived)
    def _events(self, message: EventsArrived) -> None:
        events = message.bridge.drain()
        now = time.monotonic()
        self.counts["events"] += len(events)
        self.rate_window.append((now, self.counts["events"], self.counts["bytes"]))
        requests: list[Text] = []
        log: list[Text] = []
        for ev in events:
            self.account(ev)
            if isinstance(ev, (TransferProgress, NfsActivity)):
                continue
            if isinstance(ev, REQUEST_KINDS):
                requests.append(request_row(ev, self.mac_of))
                self.counts["requests"] += 1
            elif isinstance(ev, ConsoleLine):
                self.query_one("#console", RichLog).write(escape_controls(ev.line))
                log.append(log_row(ev))
            else:
                log.append(log_row(ev))
        self.request_lines.extend(requests)
        self.log_lines.extend(log)
        if self.paused:
            self.held_requests = (self.held_requests + requests)[-MAX_LINES:]
            self.held_log = (self.held_log + log)[-MAX_LINES:]
            return
        self.write_rows(requests, log)

    def mac_of(self, ip: str) -> str | None:
        return self.builder.mac_of(ip) if self.builder is not None else None

    def write_rows(self, requests: list[Text], log: list[Text]) -> None:
        if requests:
            self.query_one("#requests-view", RichLog).write(
                Text("\n").join(requests[-MAX_LINES:]))
        shown = [t for t in log if self.matches(t)]
        if shown:
            self.query_one("#log-view", RichLog).write(Text("\n").join(shown[-MAX_LINES:]))

    def account(self, ev: Event) -> None:
        if self.builder is not None:
            try:
                self.builder.feed(ev)
            except Exception:  # the timeline is a view; never lose the stream over it
                pass
        key = (getattr(ev, "service", ""), getattr(ev, "peer", "") or ev.client,
               getattr(ev, "path", ""))
        if isinstance(ev, NfsActivity):
            self.nfs_io[ev.client] = f"{size_text(ev.read)} / {size_text(ev.written)}"
        elif isinstance(ev, TransferStarted):
            self.active[key] = ev.ts
        elif isinstance(ev, (TransferDone, TransferFailed)):
            self.active.pop(key, None)
            if isinstance(ev, TransferDone):
                self.counts["bytes"] += ev.sent
            elif not ev.probe:
                self.counts["failed"] += 1
        if self.builder is None and isinstance(ev, REQUEST_KINDS):
            self.clients_simple[request_row(ev).plain.split()[1]] = [
                getattr(ev, "service", ""), request_row(ev).plain.split(None, 3)[-1]]

    # --- periodic views ------------------------------------------------------------------

    def refresh_status(self) -> None:
        rate = mbps = 0.0
        if len(self.rate_window) >= 2:
            (t0, n0, b0), (t1, n1, b1) = self.rate_window[0], self.rate_window[-1]
            if t1 > t0:
                rate = (n1 - n0) / (t1 - t0)
                mbps = (b1 - b0) / (t1 - t0) / 1e6
        while self.rate_window and time.monotonic() - self.rate_window[0][0] > 5:
            self.rate_window.popleft()
        clients = self.client_count()
        paused = "  PAUSED" if self.paused else ""
        self.query_one("#status", Static).update(
            f"{self.state}  req {self.counts['requests']}  clients {clients}  "
            f"active {len(self.active)}  sent {size_text(self.counts['bytes'])} "
            f"({mbps:.1f} MB/s)  {rate:.0f} ev/s"
            + (f"  failed {self.counts['failed']}" if self.counts["failed"] else "") + paused)

    def snapshot(self, max_age: float = 1.0) -> Any:
        """The timeline snapshot, rebuilt at most once per ``max_age`` seconds."""
        if self.builder is None:
            return None
        now = time.monotonic()
        if self.snap is None or now - self.snap_at > max_age:
            try:
                self.snap = self.builder.snapshot(time.time())
            except Exception:  # the timeline is a view; never lose the stream over it
                return self.snap
            self.snap_at = now
        return self.snap

    def client_count(self) -> int:
        if self.builder is not None:
            snap = self.snapshot(max_age=2.0)
            return len(snap.clients) if snap is not None else 0
        return len(self.clients_simple)

    def refresh_clients(self) -> None:
        if self.pane != "clients":
            return
        table = self.query_one("#clients-table", DataTable)
        rows: list[tuple[str, ...]] = []
        detail = Text()
        snap = self.snapshot()
        if snap is not None:
            for s in snap.summaries():
                rows.append((escape_controls(s.client), s.ip or "-",
                             escape_controls(s.firmware or "-"), escape_controls(s.label),
                             f"{s.idle:.0f}s", self.nfs_io.get(s.ip or "", "-")))
            row = table.cursor_row if table.row_count else 0
            if snap.clients and 0 <= row < len(snap.clients):
                from ...timeline import format_timeline

                for line in format_timeline(snap.clients[row])[-8:]:
                    detail.append(line + "\n")
        else:
            for client, (svc, what) in self.clients_simple.items():
                rows.append((escape_controls(client), "-", "-",
                             escape_controls(f"{svc} {what}"), "-",
                             self.nfs_io.get(client, "-")))
        cursor = table.cursor_row
        table.clear()
        for r in rows:
            table.add_row(*r)
        if rows:
            table.move_cursor(row=min(cursor, len(rows) - 1))
        self.query_one("#clients-detail", Static).update(detail)

    def refresh_diagnosis(self) -> None:
        if self.builder is None:
            return
        try:
            from ...diagnose import HostFacts, diagnose, format_finding
        except ImportError:
            return
        plan = self.wizard.plan
        facts = self.diag_facts or (HostFacts() if plan is None else HostFacts(
            server_ip=str(plan.server_ip), interface=plan.interface,
            dhcp_mode=plan.dhcp.mode.value, transport=plan.boot.transport.value,
            menu_timeout=plan.boot.timeout))
        snap = self.snapshot()
        if snap is None:
            return
        try:
            findings = diagnose(snap, facts)
        except Exception:
            return
        keys = [f.key for f in findings]
        if keys == [f.key for f in self.findings]:
            return
        self.findings = findings
        view = self.query_one("#diagnosis", RichLog)
        view.clear()
        if not findings:
            view.write("No problem found so far.")
        for f in findings:
            view.write("\n".join(format_finding(f, with_evidence=False)))
        self.show_tabbar()

    def show_tabbar(self) -> None:
        t = Text()
        for i, (pane, title) in enumerate(PANES, 1):
            if pane == "console" and not self.wizard.lab_available:
                continue
            if pane == "diagnosis" and self.findings:
                title = f"{title}({len(self.findings)})"
            label = f" {i} {title} "
            t.append(label, style="reverse bold" if pane == self.pane else "")
        self.query_one("#tabbar", Static).update(t)

    # --- actions -------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "lab" or (action == "pane" and parameters == ("console",)):
            return self.wizard.lab_available
        return True

    def action_pane(self, pane: str) -> None:
        self.pane = pane
        self.query_one("#panes", ContentSwitcher).current = pane
        self.show_tabbar()
        if pane == "clients":
            self.refresh_clients()
        elif pane == "diagnosis":
            self.refresh_diagnosis()

    def action_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            held_r, held_l = self.held_requests, self.held_log
            self.held_requests, self.held_log = [], []
            self.write_rows(held_r, held_l)
        self.refresh_status()

    async def action_stop_start(self) -> None:
        if self.running is not None:
            await self.stop_servers()
        elif self.state in ("stopped", "failed"):
            self.start_servers()
        self.refresh_status()

    def action_filter(self) -> None:
        self.action_pane("log")
        f = self.query_one("#filter", Input)
        f.add_class("-shown")
        f.focus()

    def matches(self, line: Text) -> bool:
        return not self.filter_text or self.filter_text in line.plain.lower()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip().lower()
        view = self.query_one("#log-view", RichLog)
        view.clear()
        shown = [t for t in self.log_lines if self.matches(t)]
        if shown:
            view.write(Text("\n").join(shown))

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.query_one("#log-view", RichLog).focus()

    def action_save_log(self) -> None:
        from pathlib import Path

        plan = self.wizard.plan
        base = Path(self.wizard.config.log_path) if self.wizard.config.log_path else (
            plan.state_dir if plan is not None else Path.cwd())
        path = base / time.strftime("pxewizard-live-%Y%m%d-%H%M%S.log")
        from ...errors import PxeError
        from ...ondisk import open_private

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            with open(fd, "w", encoding="utf-8") as fh:
                fh.write("# requests\n")
                fh.writelines(t.plain + "\n" for t in self.request_lines)
                fh.write("# log\n")
                fh.writelines(t.plain + "\n" for t in self.log_lines)
        except (OSError, PxeError) as exc:
            why = exc.message if isinstance(exc, PxeError) else exc.strerror
            self.notify(f"cannot write {path}: {why}", severity="error")
            return
        where = f"; every event is also in {plan.jsonl_path}" if plan is not None else ""
        self.notify(f"saved {path}{where}")

    def action_lab(self, firmware: str) -> None:
        if not self.wizard.lab_available or self.wizard.plan is None:
            return
        if self.lab_worker is not None and self.lab_worker.is_running:
            self.lab_worker.cancel()
            self.lab_worker = None
            self.bus.publish(LogLine(service="lab", level="info", message="test VM stopped"))
            return
        self.lab_worker = self.run_lab(firmware)
        if self.wizard.lab_available:
            self.action_pane("console")

    @work(exclusive=True, group="lab")
    async def run_lab(self, firmware: str) -> None:
        from ... import lab
        from ...errors import PxeError

        plan = self.wizard.plan
        assert plan is not None
        try:
            bridge, nic = lab.lab_attachment(plan.interface)
            spec = lab.VmSpec(tap=f"pxwlab{int(time.time()) % 100000}", firmware=firmware)
            self.bus.publish(LogLine(service="lab", level="info",
                                     message=f"starting a {firmware} test VM on {bridge or nic}"))
            await lab.run_vm(spec, bus=self.bus, bridge=bridge, nic=nic)
        except PxeError as exc:
            self.bus.publish(LogLine(service="lab", level="error", message=str(exc)))

    def action_back(self) -> None:
        if self.running is not None:
            msg = "servers are running: s stops them, then esc goes back to Review"
            self.bus.publish(LogLine(service="wizard", level="warning", message=msg))
            self.notify(msg)
            return
        self.bridge.detach()
        if self.jsonl is not None:
            self.jsonl.close()
        self.wizard.go_back()

    def action_quit_live(self) -> None:
        n = len(self.active)
        if n:
            from .confirm import Confirm

            self.app.push_screen(
                Confirm(f"{n} transfer(s) are running: quitting stops them mid-way and the "
                        "clients fail to boot. Quit anyway?"), self._quit_answer)
            return
        self.run_worker(self.quit_now(), exclusive=True, group="quit")

    def _quit_answer(self, yes: bool | None) -> None:
        if yes:
            self.run_worker(self.quit_now(), exclusive=True, group="quit")

    async def quit_now(self) -> None:
        await self.shutdown()
        self.app.exit(0)
