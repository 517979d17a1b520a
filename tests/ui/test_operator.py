"""Issue 18, the operator's path on screen: keys that cannot be trapped, a status line that
fits 80 columns, config-file lookups that are misses, not failures."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from textual.widgets import ContentSwitcher, Input

from .helpers import screen_lines, wait_for, wait_text
from .test_live import SIZE, missing_loader_events, plan_for, to_live


async def test_log_filter_lets_go_of_the_keys(wizard: Any, servers: Any,
                                              tmp_path: Path) -> None:
    """3, /, type, Enter, 1: the digits switch panes again and p pauses."""
    app = wizard(plan=plan_for(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        live = await to_live(pilot)
        switcher = live.query_one("#panes", ContentSwitcher)
        await pilot.press("3", "slash", *"tftp", "enter", "1")
        await pilot.pause()
        assert switcher.current == "requests"
        await pilot.press("2")
        await pilot.pause()
        assert switcher.current == "clients"
        assert not isinstance(app.focused, Input)
        await pilot.press("p")
        await pilot.pause()
        assert live.paused
        # the filter lets go of the keys also when its pane is hidden without Enter
        await pilot.press("p", "slash", *"dhcp")
        assert isinstance(app.focused, Input)
        live.action_pane("requests")
        await pilot.pause()
        assert not isinstance(app.focused, Input)
        await pilot.press("2")
        await pilot.pause()
        assert switcher.current == "clients"


async def test_status_line_fits_80_columns_with_paused_and_failures(
        wizard: Any, servers: Any, tmp_path: Path) -> None:
    app = wizard(plan=plan_for(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        live = await to_live(pilot)
        live.counts.update(requests=123_456, bytes=987_654_321_000, failed=4321)
        live.active.update({("tftp", f"10.99.0.{i}:2070", "x"): 0.0 for i in range(100, 199)})
        await pilot.press("p")
        text = await wait_text(pilot, "PAUSED", "failed 4321", "req 123456")
        status = next(ln for ln in screen_lines(app) if "PAUSED" in ln)
        assert status.strip().startswith("serving  PAUSED  failed 4321"), status
        assert len(status.rstrip()) <= 80, text


async def test_pxelinux_config_lookups_are_misses_not_failures(
        wizard: Any, servers: Any, tmp_path: Path) -> None:
    """A healthy pxelinux boot asks for 01-<mac>, 0A63..., ... then default: no FAIL, 0 failed."""
    from pxewizard.events import FailCause, TransferFailed
    from textual.widgets import RichLog

    app = wizard(plan=plan_for(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        live = await to_live(pilot)
        t = time.time()
        names = ["01-52-54-00-99-00-10", "0A630064", "0A63006", "0A6300", "0A630"]
        servers.bus.publish_many([
            TransferFailed(ts=t, service="tftp", path=f"pxelinux.cfg/{n}", reason="file not found",
                           code=1, cause=FailCause.not_found, peer="10.99.0.100:2071")
            for n in names])
        requests = live.query_one("#requests-view", RichLog)
        await wait_for(pilot, lambda: len(requests.lines) >= 5, what="requests")
        text = await wait_text(pilot, "miss pxelinux.cfg/0A630064")
        assert "FAIL" not in text and live.counts["failed"] == 0
        from pxewizard.insight.eventfmt import describe  # serve's stdout and the evidence
        ev = TransferFailed(ts=t, service="tftp", path="pxelinux.cfg/0A63",
                            reason="file not found",
                            code=1, cause=FailCause.not_found, peer="10.99.0.100:2071")
        assert "miss pxelinux.cfg/0A63" in describe(ev) and "FAIL" not in describe(ev)
        # a real missing file still is a failure
        servers.bus.publish(TransferFailed(ts=t, service="tftp", path="pxelinux.0",
                                           reason="file not found", code=1,
                                           cause=FailCause.not_found, peer="10.99.0.100:2072"))
        await wait_text(pilot, "FAIL pxelinux.0", "failed 1")


async def test_long_lines_wrap_and_the_diagnosis_keeps_every_character(
        wizard: Any, servers: Any, tmp_path: Path) -> None:
    from pxewizard.events import FailCause, LogLine, TransferFailed
    from pxewizard.insight.diagnose import format_finding

    from .test_live import boot_events

    app = wizard(plan=plan_for(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        live = await to_live(pilot)
        t = time.time()
        reason = "access denied: the path leaves the served tree, fix: serve its folder END1"
        servers.bus.publish_many(boot_events(t)[:3] + [
            TransferFailed(ts=t + 1, service="tftp", path="pxelinux.0", reason=reason, code=2,
                           cause=FailCause.not_found, peer="10.99.0.100:2071"),
            LogLine(service="serve", level="warning",
                    message="the firewall drops UDP 69 from 10.99.0.0/24: fix: nft insert rule "
                            "inet filter input udp dport 69 accept END2")])
        await wait_text(pilot, "END1")
        await pilot.press("3")
        await wait_text(pilot, "accept END2")
        await pilot.press("4")
        await wait_for(pilot, lambda: live.findings, timeout=10, what="a finding")
        from pxewizard.insight.diagnose import Finding, Severity
        from pxewizard.screens.live.panes import DiagnosisPane

        words = " ".join(f"{'abcdefghij'[:i % 9 + 1]}{i}" for i in range(90))  # wraps
        pane = live.query_one(DiagnosisPane)
        pane.show([Finding(severity=Severity.error, rule="x", client="", title="long",
                           cause=words, fix=words)])
        await pilot.pause(0.1)
        shown = " ".join(" ".join(screen_lines(app)).split())
        for f in pane.findings:
            for line in format_finding(f, with_evidence=False):
                for word in line.split():
                    assert word in shown, (word, shown)


async def test_media_path_shows_everything_that_was_looked_for(wizard: Any) -> None:
    from pxewizard.boot.media import LOOKED_FOR, _nothing_found

    from .fakes import FakeDetector
    from .helpers import screen_text
    from .test_wizard import next_to, to_dhcp_mode, type_text

    detector = FakeDetector()
    real_media = detector.media

    async def media(path: str | None = None) -> list[Any]:
        if path == "/srv/empty":
            raise _nothing_found(Path(path), "folder")
        return await real_media(path)

    detector.media = media  # type: ignore[method-assign]
    app = wizard(detector)
    async with app.run_test(size=(80, 40)) as pilot:
        await to_dhcp_mode(pilot)
        await next_to(pilot, "media")
        await wait_for(pilot, lambda: app.state.media_found is not None, what="media")
        await pilot.press("tab")
        await type_text(pilot, "/srv/empty")
        await wait_for(pilot, lambda: "looked for" in screen_text(app), what="error")
        await wait_text(pilot, LOOKED_FOR[0], LOOKED_FOR[-1], "fix: point boot.media")


async def test_restart_forgets_the_findings_of_the_last_run(
        wizard: Any, servers: Any, tmp_path: Path) -> None:
    app = wizard(plan=plan_for(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        live = await to_live(pilot)
        servers.bus.publish_many(missing_loader_events(time.time()))
        await pilot.press("4")
        await wait_for(pilot, lambda: live.findings, timeout=10, what="a finding")
        await pilot.press("s")
        await wait_for(pilot, lambda: live.state == "stopped", what="stopped")
        await pilot.press("s")  # the operator fixed the file and starts again
        await wait_for(pilot, lambda: live.state == "serving" and len(servers.plans) == 2,
                       what="serving again")
        live.refresh_diagnosis()
        await pilot.pause()
        assert live.findings == []
        await wait_text(pilot, "No problem found so far.")
        assert "Diagnosis(" not in " ".join(screen_lines(app))


async def test_dhcp_mode_highlight_follows_the_selected_mode(wizard: Any) -> None:
    """proxyDHCP is preselected: the highlighted row is proxyDHCP, Space keeps it."""
    from textual.widgets import RadioSet

    from pxewizard.plan import DhcpMode

    from .fakes import FakeDetector, seen_server
    from .test_wizard import next_to, to_interface

    app = wizard(FakeDetector(servers=[seen_server()]))
    async with app.run_test(size=SIZE) as pilot:
        await to_interface(pilot)
        await next_to(pilot, "dhcp_scan")
        await wait_for(pilot, lambda: app.draft.servers_seen is not None, what="scan")
        await next_to(pilot, "dhcp_mode")
        rs = app.screen.query_one("#mode", RadioSet)
        assert rs.pressed_index == 1 and rs._selected == 1
        await pilot.press("space")
        await pilot.pause()
        assert app.screen.mode() is DhcpMode.proxy


async def test_enter_is_next_help_key_and_footer_says_how_to_quit(wizard: Any) -> None:
    from .helpers import screen_text
    from .test_wizard import on_step

    app = wizard()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: on_step(app, "preflight"), what="preflight")
        await pilot.pause(0.3)
        footer = screen_lines(app)[-1]
        assert "^q Quit" in footer and "f1 Help" in footer, footer
        await pilot.press("f1")
        await wait_text(pilot, "Keys on Preflight", "^n Next", "esc Back", "^q Quit")
        await pilot.press("x")  # any key closes it
        await wait_for(pilot, lambda: "Keys on" not in screen_text(app), what="help closed")
        assert on_step(app, "preflight")
        await pilot.press("enter")
        await wait_for(pilot, lambda: on_step(app, "interface"), what="enter = next")
        await pilot.press("question_mark")
        await wait_text(pilot, "Keys on Interface")


async def test_q_asks_while_servers_run_and_says_where_log_and_plan_are(
        wizard: Any, servers: Any, tmp_path: Path) -> None:
    app = wizard(plan=plan_for(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        live = await to_live(pilot)
        await pilot.press("q")  # no transfer runs, but the servers do
        await wait_text(pilot, "servers are running", "Quit anyway?")
        await pilot.press("n")
        await pilot.pause()
        assert app.is_running and not servers.running[0].closed
        await pilot.press("q")
        await wait_text(pilot, "Quit anyway?")
        await pilot.press("y")
        await wait_for(pilot, lambda: servers.running[0].closed, what="servers closed")
        plan = live.setup.plan
    notes = "\n".join(app.exit_notes)
    assert str(plan.jsonl_path) in notes and "Plan" in notes, notes


async def test_q_after_stop_quits_at_once(wizard: Any, servers: Any, tmp_path: Path) -> None:
    app = wizard(plan=plan_for(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        live = await to_live(pilot)
        await pilot.press("s")
        await wait_for(pilot, lambda: live.state == "stopped", what="stopped")
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, what="quit")


async def test_ctrl_s_saves_in_the_state_dir_and_says_so_on_screen(
        wizard: Any, tmp_path: Path, monkeypatch: Any) -> None:
    from textual.widgets import Input as TInput

    monkeypatch.chdir(tmp_path)
    app = wizard(plan=plan_for(tmp_path), plan_path="")
    async with app.run_test(size=SIZE, notifications=True) as pilot:  # toasts on
        await wait_for(pilot, lambda: getattr(app.screen, "STEP", "") == "review", what="review")
        want = tmp_path / "state" / "plan.toml"
        assert app.screen.query_one("#plan-path", TInput).value == str(want)
        await pilot.press("ctrl+s")
        await wait_for(pilot, want.exists, what="saved")
        await wait_text(pilot, "saved to", "state/plan.tom")  # in full, in view
        assert not (tmp_path / "pxewizard-plan.toml").exists()
        # and the toast, seen wherever the Review is scrolled, names the file
        from textual.widgets._toast import Toast

        assert [n.message for n in app._notifications] == [f"Plan saved to {want}"]
        await wait_for(pilot, lambda: any(f"Plan saved to {want}" in str(t.render())
                                          for t in app.screen.query(Toast)), what="toast")
        await wait_text(pilot, "Plan saved to")  # drawn over the Review
