"""Issue 23: the Transport step offers nfs.root_mode when the medium is an NFS root tree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pxewizard.boot.media import find_media
from pxewizard.plan import Transport
from tests.data.boot import fixtures as fx

from .fakes import FakeDetector
from .helpers import screen_text, wait_for
from .test_wizard import SIZE, choose_radio, next_to, to_dhcp_mode, type_text


async def test_root_mode_for_an_nfs_root_tree(wizard: Any, tmp_path: Path) -> None:
    root = fx.make_nfsroot(tmp_path / "root", fx.INITRAMFS_TOOLS_NFS + [
        "scripts/init-bottom/", "scripts/init-bottom/overlayroot"])
    app = wizard(FakeDetector(media_=find_media(root)))
    async with app.run_test(size=SIZE) as pilot:
        await to_dhcp_mode(pilot)
        await next_to(pilot, "media")
        await wait_for(pilot, lambda: app.state.media_found is not None, what="media")
        await next_to(pilot, "transport")
        roots = app.screen.query_one("#roots")
        assert not roots.display  # HTTP: no NFS root
        await choose_radio(pilot, "transport", 2)
        await wait_for(pilot, lambda: roots.display, what="root modes shown")
        assert "a writable copy per MAC" in screen_text(app)
        await pilot.press("tab", "tab")
        await choose_radio(pilot, "root-mode", 2)
        await pilot.press("tab")
        await type_text(pilot, "52:54:00:23:00:0a, 52-54-00-23-00-0B")
        await next_to(pilot, "review")
        plan = app.state.plan
        assert plan is not None and plan.boot.transport is Transport.nfs
        assert plan.nfs.root_mode.value == "per-client"
        assert plan.nfs.clients == ["52:54:00:23:00:0a", "52:54:00:23:00:0b"]
