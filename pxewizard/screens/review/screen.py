"""Step 7: the Plan as the operator will get it, what is served, the ports; save; start."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Button, Input, Static

from ...boot.checks import plan_problems
from ...boot.secureboot import summary as secure_boot_summary
from ...boot.tree import build_boot
from ...commands.export import export as export_plan
from ...errors import PlanError, PxeError
from ...plan import DhcpMode, Plan, dump_plan, field_docs, load_plan, save_plan
from ...units import size_text
from ..advanced.fields import summary_lines as advanced_lines
from ..base import WizardScreen
from ..draft import DEFAULT_PLAN_NAME, Draft
from ..widgets import FieldRow


def documented_toml(plan: Plan) -> Text:
    """The Plan's TOML, each setting followed by its field doc (dimmed)."""
    docs = field_docs()
    t = Text()
    section = ""
    for line in dump_plan(plan).splitlines():
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            section = s.strip("[]").strip()
            t.append(line + "\n", style="bold")
            continue
        t.append(line + "\n")
        key = s.split("=", 1)[0].strip() if "=" in s else ""
        doc = docs.get(f"{section}.{key}" if section else key, "") if key else ""
        if doc:
            t.append("  # " + " ".join(doc.split()) + "\n", style="dim")
    return t


class ReviewScreen(WizardScreen):
    """Everything that will happen, before it happens."""

    STEP = "review"
    BINDINGS = [Binding("ctrl+s", "save_plan", "Save plan", key_display="^s"),
                Binding("ctrl+o", "advanced", "Advanced", key_display="^o")]

    def next_label(self) -> str:
        return "Start >"

    def body(self) -> ComposeResult:
        yield Static("", id="summary")
        with Horizontal(classes="row"):  # its own row: the one below is full at 80 columns
            yield Button("Advanced settings", id="advanced", compact=True)
        yield FieldRow("save plan as", Input(id="plan-path", compact=True))
        with Horizontal(classes="row", id="buttons"):
            yield Button("Save plan", id="save", compact=True)
            yield Button("Load plan", id="load", compact=True)
            yield Button("Export for a permanent server", id="export", compact=True)
        yield Static("", id="save-status")
        yield Static("", id="served")
        yield Static("", id="plan-toml")

    def on_mount(self) -> None:
        path = self.query_one("#plan-path", Input)
        path.value = self.draft.plan_path
        self.query_one("#export").display = self.wizard.export_available
        try:
            plan = self.draft.to_plan()
        except PlanError as exc:
            self.state.plan = None
            self.show_problem(str(exc))
            return
        self.state.plan = plan
        if self.draft.plan_path == DEFAULT_PLAN_NAME:
            # not the current directory (RAM on a live CD): the state dir, shown in full
            path.value = self.draft.plan_path = str(plan.state_dir / "plan.toml")
        self.query_one("#summary", Static).update(self.summary(plan))
        self.query_one("#plan-toml", Static).update(
            Text("Plan file (TOML) with what each setting means:\n", style="bold")
            + documented_toml(plan))
        self.query_one("#next").focus()
        self.load_served(plan)

    def summary(self, plan: Plan) -> Text:
        d = plan.dhcp
        t = Text()
        t.append(f"Serve on {plan.interface} {plan.server_ip}/{plan.prefix}\n", style="bold")
        if d.mode is DhcpMode.full:
            t.append(f"DHCP full: {d.range_start} - {d.range_end}, router "
                     f"{d.router or 'none'}, DNS {', '.join(map(str, d.dns)) or 'none'}, "
                     f"lease {d.lease_time} s\n")
            if d.override_existing_server:
                t.append("  beside another DHCP server: confirmed by the operator\n",
                         style="bold red")
        elif d.mode is DhcpMode.proxy:
            t.append("DHCP proxy: boot information only, beside the existing server\n")
        else:
            t.append("DHCP none: the existing server points clients here\n")
        t.append("IPv6: RA, lifetime 0: iPXE skips its router wait (none beside a router)\n"
                 if d.sends_ra else
                 f"IPv6: no Router Advertisement (ipv6_ra = {d.ipv6_ra.value})\n")
        b = plan.boot
        media = self.draft.media
        more = self.draft.extra_media
        what = media.label if media is not None else (b.media or 'autodetect')
        if more:  # several media: one menu group each
            what = f"{what} + {len(more)} more ({', '.join(more)})"
        t.append(f"Boot {what}, "
                 f"stage 3 over {b.transport.value.upper()}"
                 + (f" (copy to RAM: {'yes' if b.copytoram else 'no'})"
                    if b.copytoram is not None else "")
                 + (f" from {b.external_http}" if b.external_http else "") + "\n")
        t.append(f"Menu: {', '.join(b.entries) if b.entries else 'every entry'}; default "
                 f"{plan.menu_default or 'the first'}; timeout {b.timeout} s\n")
        ports = {(p.proto, p.port): p for p in self.state.ports or []}
        line = []
        for proto, port, svc in plan.bound_ports():
            held = ports.get((proto, port))
            mark = f" HELD by {held.holder}" if held is not None and not held.free else ""
            line.append(f"{svc} {proto}/{port}{mark}")
        t.append("Ports: " + "; ".join(line) + "\n")
        changed = advanced_lines(plan)
        t.append("Advanced settings (^o)", style="bold")
        t.append(": HTTP port, kernel cmdline, allowed MACs, loader, Secure Boot, "
                 "reservations, remote entries: all defaults\n" if not changed
                 else ", not the defaults:\n")
        for text in changed:
            t.append(f"  {text}\n")
        return t

    @work(exclusive=True, group="served", thread=True)
    def load_served(self, plan: Plan) -> None:
        try:
            boot = build_boot(plan)
            tree = boot.tree
            secure = secure_boot_summary(boot.secure_boot, plan.boot.secure_boot,
                                         plan.dhcp.boot_files.efi_x64, wizard=True)
            problems = plan_problems(plan, boot)
            entries = tree.entries()
            sources = tree.sources()
            menu = ""
            for vpath in ("pxelinux.cfg/default", "boot.ipxe"):
                try:
                    ref = tree.resolve(vpath)
                except Exception:
                    continue
                if ref.data is not None:
                    menu += f"--- {vpath} ---\n{ref.data.decode(errors='replace')}\n"
        except Exception as exc:  # advice only: Live reports the real error when it starts
            self.app.call_from_thread(self.query_one("#served", Static).update,
                                      Text(f"What is served cannot be listed yet: {exc}",
                                           style="yellow"))
            return
        t = Text(secure + "\n", style="bold" if boot.secure_boot else "yellow")
        if problems:   # the same checks serve and doctor --plan run (boot.checks)
            t.append("Before a client boots\n", style="bold")
            for p in problems:
                t.append(f"  {p.severity.upper()}: {p.title}\n",
                         style="red" if p.severity == "error" else "yellow")
                t.append(f"    {p.cause}\n    fix: {p.fix}\n")
        t.append("Served files\n", style="bold")
        for vpath, size, origin in entries[:200]:
            t.append(f"  {vpath}  {size_text(size)}  {'' if origin == 'generated' else origin}"
                     "\n")
        if len(entries) > 200:
            t.append(f"  ... and {len(entries) - 200} more\n")
        for prefix, real in sources:
            t.append(f"  {prefix or '/'}* from {real}\n")
        if menu:
            t.append("Boot menu and kernel command lines\n", style="bold")
            t.append(menu)
        self.app.call_from_thread(self.query_one("#served", Static).update, t)

    # --- save / export -----------------------------------------------------------------

    @on(Button.Pressed, "#save")
    @on(Input.Submitted, "#plan-path")
    def action_save_plan(self) -> None:
        plan = self.state.plan
        status = self.query_one("#save-status", Static)
        path = self.query_one("#plan-path", Input).value.strip()
        if plan is None or not path:
            status.update(Text("nothing to save: fix the problems above first"
                               if plan is None else "type a file name first", style="yellow"))
            return
        path = str(Path(path).expanduser().resolve())  # say exactly where it went
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            save_plan(plan, path)
        except OSError as exc:
            status.update(Text(f"cannot write {path}: {exc.strerror}", style="red"))
            self.notify(f"cannot write {path}: {exc.strerror}", severity="error")
            return
        self.draft.plan_path = path
        status.update(Text(f"saved to {path}; run it headless with: pxewizard serve --plan "
                           f"{path}", style="green"))
        status.scroll_visible()
        self.notify(f"Plan saved to {path}")  # on screen even when the status line is not

    @on(Button.Pressed, "#advanced")
    def action_advanced(self) -> None:
        """ctrl+o or the Advanced button: HTTP port, kernel command line, allowed MACs ..."""
        self.save()
        self.wizard.go("advanced")

    @on(Button.Pressed, "#load")
    def _load(self) -> None:
        """Replace the answers with a Plan file's (what ``pxewizard --plan FILE`` does)."""
        path = self.query_one("#plan-path", Input).value.strip()
        try:
            plan = load_plan(path)
        except PxeError as exc:
            self.query_one("#save-status", Static).update(Text(str(exc), style="red"))
            return
        self.wizard.load_draft(Draft.from_plan(plan, path))

    @on(Button.Pressed, "#export")
    def _export(self) -> None:
        plan = self.state.plan
        if plan is None:
            return
        # the export has its own folder and its own copy of the Plan: the save-as file is
        # left alone, and the unit names where a permanent server keeps its Plan
        self.export(plan, Path(plan.state_dir) / "export", self.query_one("#save-status", Static))

    @work(exclusive=True, group="export", thread=True)
    def export(self, plan: Plan, out_dir: Path, status: Static) -> None:
        installed = Path("/etc/pxewizard/plan.toml")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            save_plan(plan, out_dir / "plan.toml")
            written = export_plan(plan, out_dir, None, installed)
        except Exception as exc:
            self.app.call_from_thread(status.update, Text(f"export failed: {exc}", style="red"))
            return
        msg = (f"exported {len(written) + 1} files to {out_dir}; the service reads "
               f"{installed}: copy {out_dir / 'plan.toml'} there")
        self.app.call_from_thread(status.update, Text(msg, style="green"))
        self.app.call_from_thread(self.notify, msg)

    def save(self) -> None:
        self.draft.plan_path = self.query_one("#plan-path", Input).value.strip() \
            or self.draft.plan_path

    def check(self) -> str | None:
        if self.state.plan is None:
            return "the plan is not valid; go back and fix the fields named above"
        return None
