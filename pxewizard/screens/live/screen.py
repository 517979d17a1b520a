"""Step 8: the servers run; every request, client, log line and finding as it happens.

Servers are started only through ``LiveSetup.start_plan`` (``pxewizard.serve.start_plan``
in the app). Events reach this screen only through
:class:`pxewizard.ui_bridge.EventBridge`, in batches; the timelines and findings come
from the run's :class:`~pxewizard.insight.session.InsightSession`. The panes
(``panes.py``) are RichLogs with ``max_lines``, so a boot storm cannot grow memory or
stall keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Footer, Header, RichLog

from ...boot.media import Media
from ...boot.ram import RamEstimate
from ...commands import lab
from ...detect.bridge import bridge_facts
from ...detect.firewall import firewall_check, plan_ports
from ...detect.ports import PortStatus
from ...errors import PxeError
from ...events import (ConsoleLine, Event, EventBus, JsonlLog, LogLine, NfsActivity,
                       TransferDone, TransferFailed, TransferProgress, TransferStarted)
from ...insight.diagnose import Finding, HostFacts
from ...insight.session import InsightSession, host_facts, served_paths
from ...insight.timeline import Snapshot, is_normal_miss
from ...plan import Plan
from ...safetext import escape_controls
from ...units import size_text
from ...ui_bridge import EventBridge, EventsArrived
from .confirm import Confirm
from .format import REQUEST_KINDS, log_row, request_row
from .panes import (MAX_LINES, ClientsPane, DiagnosisPane, LogPane, RequestsPane, StatusLine,
                    TabBar)

if TYPE_CHECKING:
    from textual.worker import Worker

    from ...app import PxeWizardApp
    from ...serve import Running

LAB_STOP_WAIT = 15.0
"""Seconds a quit waits for the test VM's cleanup (QEMU gets 5 s to stop, then SIGKILL)."""


@dataclass(frozen=True, kw_only=True)
class LiveSetup:
    """What the Live screen is given by the wizard (it reads nothing else of the app)."""

    plan: Plan | None
    """The Plan to run (None: Review found it invalid)."""
    start_plan: Callable[[Plan, EventBus], Awaitable[Running]]
    """Starts the Plan's servers (``pxewizard.serve.start_plan``; tests pass fakes)."""
    media: Media | None = None
    """The boot medium chosen, for the RAM estimate."""
    ram_estimate: Callable[..., RamEstimate] | None = None
    """``ram_estimate(media, entry, transport, copytoram)`` (None: no estimate)."""
    ports: tuple[PortStatus, ...] = ()
    """The port scan of Preflight (held ports are facts for the diagnosis)."""
    lab: bool = True
    """Offer the virtual test client (keys v/u, pane 5)."""
    log_path: str = ""
    """Where ``w`` saves the view (empty: the Plan's state_dir)."""
    plan_path: str = ""
    """The Plan file Review saved (empty: not saved), named on quit."""


class LiveScreen(Screen[Any]):
    """Requests, Clients, Log, Diagnosis (and a lab VM's console), with totals below."""

    def __init__(self, setup: LiveSetup) -> None:
        super().__init__()
        self.setup = setup

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
        # the app's ^q (quit at once, no question) still works here, off the footer: with
        # it the footer ran past 80 columns and cut "f1 Help"; q (asks first) says Quit
        Binding("ctrl+q", "app.quit", "Quit at once, without asking", key_display="^q",
                show=False, priority=True),
    ]

    @property
    def wizard(self) -> "PxeWizardApp":
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header(icon="*")
        yield TabBar(console=self.setup.lab, id="tabbar")
        with ContentSwitcher(id="panes", initial="requests"):
            yield RequestsPane(id="requests")
            yield ClientsPane(id="clients")
            yield LogPane(id="log")
            yield DiagnosisPane(id="diagnosis")
            yield RichLog(id="console", max_lines=MAX_LINES, wrap=False, markup=False)
        yield StatusLine(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.pane = "requests"
        self.paused = False
        self.held_requests: list[Text] = []
        self.held_log: list[Text] = []
        self.request_lines: deque[Text] = deque(maxlen=MAX_LINES)
        self.counts = {"events": 0, "requests": 0, "bytes": 0, "failed": 0}
        self.active: dict[tuple[str, str, str], float] = {}
        self.rate_window: deque[tuple[float, int, int]] = deque(maxlen=20)
        self.running: Running | None = None
        self.state = "starting"
        self.lab_worker: Worker[None] | None = None
        self.bus = EventBus()
        self.insight = InsightSession(host_facts(self.setup.plan)).attach(self.bus)
        self.bridge = EventBridge(self.bus, self).attach()
        self.jsonl: JsonlLog | None = None
        self.set_interval(0.5, self.refresh_status)
        self.set_interval(1.0, self.refresh_clients)
        self.set_interval(2.0, self.refresh_diagnosis)
        self.refresh_status()
        self.start_servers()

    # --- servers -------------------------------------------------------------------------

    @work(exclusive=True, group="servers")
    async def start_servers(self) -> None:
        plan = self.setup.plan
        if plan is None:
            self.state = "no plan"
            return
        self.state = "starting"
        if self.jsonl is not None:  # a restart (s): the last run's findings are history
            self.insight.restart()
            self.counts["failed"] = 0
            if self.query_one(DiagnosisPane).show([]):
                self.show_tabbar()
        if self.jsonl is None:
            self.jsonl = JsonlLog(plan.jsonl_path, self.bus)
            self.bus.subscribe(self.jsonl)
        try:
            self.running = await self.setup.start_plan(plan, self.bus)
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
        self.insight.facts = await self.host_facts()

    async def host_facts(self) -> HostFacts:
        """What the diagnosis rules know of this host and Plan (bridge, ports, files, RAM)."""
        plan = self.setup.plan
        if plan is None:
            return HostFacts()
        bridge = None
        try:
            bridge = await bridge_facts(plan.interface)
        except Exception:  # advice only: the rules stay quiet about what is unknown
            pass
        files: list[str] = []
        tree = getattr(self.running, "tree", None)
        if tree is not None:
            files = await asyncio.to_thread(served_paths, tree)
        held = tuple((p.proto, p.port, p.service, p.holder or "")
                     for p in self.setup.ports if not p.free)
        ram_needed = None
        fn, media = self.setup.ram_estimate, self.setup.media
        if fn is not None and media is not None:
            try:
                ram_needed = fn(media, None, plan.boot.transport.value,
                                plan.boot.copytoram).needed_bytes
            except Exception:
                ram_needed = None
        return host_facts(plan, files=files, bridge=bridge, ram_needed=ram_needed,
                          ports_held=held, plan_problems=getattr(self.running, "problems", ()),
                          firewall=firewall_check(plan_ports(plan)))

    async def stop_servers(self) -> None:
        running, self.running = self.running, None
        if running is not None:
            self.state = "stopping"
            await running.close()
            self.bus.publish(LogLine(service="wizard", level="info", message="servers stopped"))
        self.state = "stopped"

    def exit_notes(self) -> list[str]:
        """What the operator needs after the app is gone: where the events and the Plan are
        (the app prints these on stdout once the screen is restored)."""
        plan = self.setup.plan
        if plan is None:
            return []
        saved = self.setup.plan_path
        return ["pxewizard: servers stopped",
                f"  every event of this run: {plan.jsonl_path}",
                f"  the Plan: {saved}; run it again with: pxewizard serve --plan {saved}"
                if saved else "  the Plan was not saved (Review: ^s saves it)"]

    async def shutdown(self) -> None:
        """Stop the lab VM and the servers; close the log (quit or leave)."""
        notes = getattr(self.app, "exit_notes", None)
        if isinstance(notes, list) and not notes:
            notes.extend(self.exit_notes())
        if self.lab_worker is not None:
            # and wait for its cleanup (QEMU killed, its tap and tc filters on the serving
            # NIC removed): the app exits right after this, which would cut it short
            worker, self.lab_worker = self.lab_worker, None
            worker.cancel()
            with contextlib.suppress(Exception):  # WorkerCancelled, a timeout
                await asyncio.wait_for(worker.wait(), LAB_STOP_WAIT)
        await self.stop_servers()
        self.bridge.detach()
        self.insight.detach()
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
        self.query_one(LogPane).lines.extend(log)
        if self.paused:
            self.held_requests = (self.held_requests + requests)[-MAX_LINES:]
            self.held_log = (self.held_log + log)[-MAX_LINES:]
            return
        self.write_rows(requests, log)

    def mac_of(self, ip: str) -> str | None:
        return self.insight.mac_of(ip)

    @property
    def log_lines(self) -> deque[Text]:
        return self.query_one(LogPane).lines

    @property
    def findings(self) -> list[Finding]:
        return self.query_one(DiagnosisPane).findings

    def write_rows(self, requests: list[Text], log: list[Text]) -> None:
        self.query_one(RequestsPane).write(requests)
        self.query_one(LogPane).write(log)

    def account(self, ev: Event) -> None:
        key = (getattr(ev, "service", ""), getattr(ev, "peer", "") or ev.client,
               getattr(ev, "path", ""))
        if isinstance(ev, NfsActivity):
            self.query_one(ClientsPane).nfs_io[ev.client] = (
                f"{size_text(ev.read)} / {size_text(ev.written)}")
        elif isinstance(ev, TransferStarted):
            self.active[key] = ev.ts
        elif isinstance(ev, (TransferDone, TransferFailed)):
            self.active.pop(key, None)
            if isinstance(ev, TransferDone):
                self.counts["bytes"] += ev.sent
            elif not ev.probe and not is_normal_miss(ev):  # a config lookup is no failure
                self.counts["failed"] += 1

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
        status = self.query_one(StatusLine)
        status.state, status.paused = self.state, self.paused
        status.requests, status.sent = self.counts["requests"], self.counts["bytes"]
        status.failed, status.active = self.counts["failed"], len(self.active)
        status.clients, status.mbps, status.rate = self.client_count(), mbps, rate

    def snapshot(self, max_age: float = 1.0) -> Snapshot | None:
        """The timeline snapshot, rebuilt at most once per ``max_age`` seconds."""
        return self.insight.snapshot(max_age=max_age)

    def client_count(self) -> int:
        snap = self.snapshot(max_age=2.0)
        return len(snap.clients) if snap is not None else 0

    def refresh_clients(self) -> None:
        if self.pane == "clients":
            self.query_one(ClientsPane).show(self.snapshot())

    def refresh_diagnosis(self) -> None:
        snap = self.snapshot()
        if snap is None:
            return
        try:
            findings = self.insight.findings_if_due(snap)
        except Exception:  # the diagnosis is advice; the servers and the view go on
            return
        if findings is None:  # the last pass was costly (thousands of clients): later
            return
        if self.query_one(DiagnosisPane).show(findings):
            self.show_tabbar()

    def show_tabbar(self) -> None:
        bar = self.query_one(TabBar)
        bar.current, bar.findings = self.pane, len(self.findings)

    # --- actions -------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "lab" or (action == "pane" and parameters == ("console",)):
            return self.setup.lab
        return True

    def action_pane(self, pane: str) -> None:
        if pane != "log":
            self.query_one(LogPane).release_keys()
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
        self.query_one(LogPane).show_filter()

    def action_save_log(self) -> None:
        plan = self.setup.plan
        base = Path(self.setup.log_path) if self.setup.log_path else (
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
        if not self.setup.lab or self.setup.plan is None:
            return
        if self.lab_worker is not None and self.lab_worker.is_running:
            self.lab_worker.cancel()
            self.lab_worker = None
            self.bus.publish(LogLine(service="lab", level="info", message="test VM stopped"))
            return
        self.lab_worker = self.run_lab(firmware)
        self.action_pane("console")

    @work(exclusive=True, group="lab")
    async def run_lab(self, firmware: str) -> None:
        plan = self.setup.plan
        assert plan is not None
        try:
            bridge, nic = lab.lab_attachment(plan.interface)
            spec = lab.VmSpec(tap=lab.tap_name(), firmware=firmware)
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
        self.insight.detach()
        if self.jsonl is not None:
            self.jsonl.close()
        self.wizard.go_back()

    def action_quit_live(self) -> None:
        n = len(self.active)
        if n:
            self.app.push_screen(
                Confirm(f"{n} transfer(s) are running: quitting stops them mid-way and the "
                        "clients fail to boot. Quit anyway?"), self._quit_answer)
            return
        if self.running is not None:  # clients may hold leases and boot from us any moment
            clients = self.client_count()
            self.app.push_screen(
                Confirm(f"The servers are running ({clients} client(s) seen): quitting stops "
                        "them and clients that boot later get no answer. Quit anyway?"),
                self._quit_answer)
            return
        self.run_worker(self.quit_now(), exclusive=True, group="quit")

    def _quit_answer(self, yes: bool | None) -> None:
        if yes:
            self.run_worker(self.quit_now(), exclusive=True, group="quit")

    async def quit_now(self) -> None:
        await self.shutdown()
        self.app.exit(0)
