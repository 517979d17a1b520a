"""Step 3: is another DHCP server on this segment? (the probe runs in detect/, not here)"""

from __future__ import annotations

import time

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from ...errors import PxeError
from ..base import WizardScreen


def _bar(done: float, width: int = 30) -> str:
    n = max(0, min(width, int(done * width)))
    return "[" + "#" * n + "." * (width - n) + "]"


class DhcpScanScreen(WizardScreen):
    """Send a DHCPDISCOVER on the chosen interface, list who answered."""

    STEP = "dhcp_scan"
    BINDINGS = [Binding("r", "rescan", "Scan again")]

    def body(self) -> ComposeResult:
        yield Static("", id="scan-status")
        yield Static("", id="scan-result")

    def on_mount(self) -> None:
        self.scan_started = 0.0
        self.scanning = False
        self.scan_error = ""
        self.set_interval(0.25, self.tick)
        if self.draft.servers_seen is None:
            self.action_rescan()
        else:
            self.show_result()

    def action_rescan(self) -> None:
        self.scan_started = time.monotonic()
        self.scanning = True
        self.scan_error = ""
        self.query_one("#scan-result", Static).update("")
        self.tick()
        self.scan()

    @work(exclusive=True, group="scan")
    async def scan(self) -> None:
        timeout = self.wizard.config.probe_timeout
        try:
            seen = await self.wizard.detector.probe(self.draft.interface, timeout)
        except (PxeError, OSError, ImportError) as exc:
            self.scan_error = str(exc)
            self.draft.servers_seen = None
        else:
            self.draft.servers_seen = list(seen)
        self.scanning = False
        self.tick()
        self.show_result()

    def tick(self) -> None:
        st = self.query_one("#scan-status", Static)
        timeout = self.wizard.config.probe_timeout
        if self.scanning:
            done = (time.monotonic() - self.scan_started) / timeout if timeout else 1.0
            st.update(f"Sending DHCPDISCOVER on {self.draft.interface} and listening for "
                      f"{timeout:g} s ...\n{_bar(done)}")
        elif self.scan_error:
            st.update(Text(f"The scan on {self.draft.interface} did not run: {self.scan_error}\n"
                           "r scans again. Without a scan, proxyDHCP is the safe choice.",
                           style="yellow"))
        else:
            st.update(f"Scan of {self.draft.interface} done (r scans again).")

    def show_result(self) -> None:
        seen = self.draft.servers_seen
        out = self.query_one("#scan-result", Static)
        if seen is None:
            out.update("")
            return
        t = Text()
        if not seen:
            t.append(f"No DHCP server answered on {self.draft.interface}.\n", style="bold green")
            t.append("Full DHCP is possible here, if this segment is yours alone.\n")
        else:
            t.append(f"{len(seen)} DHCP server(s) answered on {self.draft.interface}:\n",
                     style="bold yellow")
            for s in seen:
                kind = "proxyDHCP" if s.proxy else "DHCP"
                t.append(f"  {kind} {s.server_id} ({s.server_mac})\n", style="bold")
                details = [f"offered {s.offered_ip}" if s.offered_ip else "no address",
                           f"router {s.router}" if s.router else "",
                           f"dns {s.dns}" if s.dns else "",
                           f"boot {s.next_server}:{s.boot_file}" if s.boot_file else ""]
                t.append("    " + ", ".join(d for d in details if d) + "\n")
            t.append("proxyDHCP (boot information only, beside that server) is recommended.\n")
        out.update(t)

    def check(self) -> str | None:
        if self.scanning:
            return "the scan is still running; wait a moment"
        return None
