"""Issue 18, the operator's path on screen: keys that cannot be trapped, a status line that
fits 80 columns, config-file lookups that are misses, not failures."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from textual.widgets import ContentSwitcher, Input

from .helpers import screen_lines, wait_for, wait_text
from .test_live import SIZE, plan_for, to_live


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
        ev = TransferFailed(ts=t, service="tftp", path="pxelinux.cfg/0A63", reason="file not found",
                            code=1, cause=FailCause.not_found, peer="10.99.0.100:2071")
        assert "miss pxelinux.cfg/0A63" in describe(ev) and "FAIL" not in describe(ev)
        # a real missing file still is a failure
        servers.bus.publish(TransferFailed(ts=t, service="tftp", path="pxelinux.0",
                                           reason="file not found", code=1,
                                           cause=FailCause.not_found, peer="10.99.0.100:2072"))
        await wait_text(pilot, "FAIL pxelinux.0", "failed 1")
