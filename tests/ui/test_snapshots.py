"""Snapshots of screens whose content the test controls (fake detection, a fixed Plan).

Regenerate after an intended change: ``pytest tests/ui/test_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from typing import Any

import pytest

from pxewizard.app import make_app
from pxewizard.plan import plan_from_dict

from .fakes import FakeDetector, seen_server
from .helpers import wait_for

SIZE = (80, 25)


class NoServers:
    async def __call__(self, plan: Any, bus: Any) -> Any:
        raise AssertionError("snapshots never start servers")


def app_for(linux: bool = True, **kw: Any) -> Any:
    kw.setdefault("base", {"state_dir": "/nonexistent/pxw-state"})
    return make_app(kw.pop("detector", FakeDetector(servers=[seen_server()])),
                    linux_console=linux, start_plan=NoServers(), probe_timeout=0.01,
                    plan_path="plan.toml", lab=False, export=False, **kw)


async def settle(pilot: Any) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: not any(w.is_running for w in app.workers), what="workers")
    await pilot.pause()


def steps(*names: str) -> Any:
    """A run_before that goes forward through the named steps, waiting for each."""

    async def run(pilot: Any) -> None:
        await settle(pilot)
        for name in names:
            await pilot.press("ctrl+n")
            await wait_for(pilot, lambda n=name: getattr(pilot.app.screen, "STEP", "") == n)
            await settle(pilot)

    return run


@pytest.mark.parametrize("linux", [True, False], ids=["linux-console", "full-colour"])
def test_preflight(snap_compare: Any, linux: bool) -> None:
    assert snap_compare(app_for(linux), terminal_size=SIZE, run_before=steps())


def test_interface(snap_compare: Any) -> None:
    assert snap_compare(app_for(), terminal_size=SIZE, run_before=steps("interface"))


def test_dhcp_scan_found_a_server(snap_compare: Any) -> None:
    assert snap_compare(app_for(), terminal_size=SIZE,
                        run_before=steps("interface", "dhcp_scan"))


def test_dhcp_mode_proxy_preselected(snap_compare: Any) -> None:
    assert snap_compare(app_for(), terminal_size=SIZE,
                        run_before=steps("interface", "dhcp_scan", "dhcp_mode"))


def test_media(snap_compare: Any) -> None:
    assert snap_compare(app_for(), terminal_size=SIZE,
                        run_before=steps("interface", "dhcp_scan", "dhcp_mode", "media"))


def test_transport_with_ram_figures(snap_compare: Any) -> None:
    assert snap_compare(app_for(), terminal_size=SIZE,
                        run_before=steps("interface", "dhcp_scan", "dhcp_mode", "media",
                                         "transport"))


def test_review_of_a_fixed_plan(snap_compare: Any) -> None:
    plan = plan_from_dict({"interface": "pxe0", "server_ip": "10.99.0.1",
                           "state_dir": "/nonexistent/pxw-state",
                           "dhcp": {"mode": "full", "range_start": "10.99.0.100",
                                    "range_end": "10.99.0.150", "dns": ["10.99.0.1"]},
                           "boot": {"media": "/nonexistent/pxw-media", "transport": "nbd",
                                    "copytoram": False},
                           "nbd": {"enabled": True}})
    assert snap_compare(app_for(plan=plan), terminal_size=SIZE, run_before=steps())


def test_advanced_settings_of_a_plan(snap_compare: Any, monkeypatch: Any) -> None:
    from pxewizard.boot.loaders import Loaders
    from pxewizard.screens.advanced import screen as advanced

    # the same picture on a machine with or without the signed chain: here it is missing
    monkeypatch.setattr(advanced, "find_loaders", lambda: Loaders())
    plan = plan_from_dict({"interface": "pxe0", "server_ip": "10.99.0.1",
                           "state_dir": "/nonexistent/pxw-state",
                           "dhcp": {"mode": "proxy", "allowed_macs": ["52:54:00:12:34:56"],
                                    "reservations": [{"mac": "52:54:00:12:34:57",
                                                      "boot_entry": "sysresccd"}]},
                           "boot": {"media": "/nonexistent/pxw-media",
                                    "extra_cmdline": "setkmap=de rootpass=s3cret"},
                           "http": {"port": 8080}})

    async def run(pilot: Any) -> None:
        await settle(pilot)
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: getattr(pilot.app.screen, "STEP", "") == "advanced")
        await settle(pilot)

    assert snap_compare(app_for(plan=plan), terminal_size=SIZE, run_before=run)
