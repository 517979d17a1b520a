"""The wizard's screens, one folder per step; :func:`make` builds one by name (lazily)."""

from __future__ import annotations

import importlib
from typing import Any

_SCREENS = {
    "preflight": "preflight.screen:PreflightScreen",
    "interface": "interface.screen:InterfaceScreen",
    "dhcp_scan": "dhcp_scan.screen:DhcpScanScreen",
    "dhcp_mode": "dhcp_mode.screen:DhcpModeScreen",
    "media": "media.screen:MediaScreen",
    "transport": "transport.screen:TransportScreen",
    "review": "review.screen:ReviewScreen",
    "live": "live.screen:LiveScreen",
}


def make(name: str) -> Any:
    """A new screen instance for step ``name`` (its module is imported on first use)."""
    module, cls = _SCREENS[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)()
