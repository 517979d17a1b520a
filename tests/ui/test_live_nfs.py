"""Issue 23: per-client NFS activity (bytes read / written) on the Live screen's Clients tab."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from textual.widgets import DataTable

from pxewizard.events import NfsActivity

from .helpers import wait_for
from .test_live import MAC, SIZE, boot_events, plan_for, to_live


async def test_clients_tab_shows_nfs_bytes_per_client(wizard: Any, servers: Any,
                                                      tmp_path: Path) -> None:
    app = wizard(plan=plan_for(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        live = await to_live(pilot)
        ts = time.time()
        servers.bus.publish_many(boot_events(ts) + [
            NfsActivity(ts=ts, client="10.99.0.100", read=3 << 20, written=4096)])
        await pilot.press("2")
        table = live.query_one("#clients-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1, what="client row")
        await wait_for(pilot, lambda: str(table.get_row_at(0)[0]) == MAC
                       and "3.0 MiB / 4.0 KiB" in str(table.get_row_at(0)[-1]),
                       what="NFS column")
        log = "\n".join(str(x) for x in live.log_lines)
        assert "nfs_activity" not in log  # totals go to the table, not the log
