"""The wizard's screens, one folder per step; :data:`STEPS` is their order, :func:`make`
builds one by name (its module is imported on first use: the first screen must be up fast)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from textual.screen import Screen


class Step(NamedTuple):
    """One step of the wizard."""

    name: str
    """Step id (``preflight`` ...), also the screen's ``STEP``."""
    title: str
    """Shown in the step line."""
    screen: str
    """``module:Class`` of its screen, relative to this package."""


STEPS: tuple[Step, ...] = (
    Step("preflight", "Preflight", "preflight.screen:PreflightScreen"),
    Step("interface", "Interface", "interface.screen:InterfaceScreen"),
    Step("dhcp_scan", "DHCP scan", "dhcp_scan.screen:DhcpScanScreen"),
    Step("dhcp_mode", "DHCP mode", "dhcp_mode.screen:DhcpModeScreen"),
    Step("media", "Boot media", "media.screen:MediaScreen"),
    Step("transport", "Transport", "transport.screen:TransportScreen"),
    Step("review", "Review", "review.screen:ReviewScreen"),
    Step("live", "Live", "live.screen:LiveScreen"),
)
"""The steps in order."""

SIDE_STEPS: dict[str, tuple[Step, str]] = {
    "advanced": (Step("advanced", "Advanced settings", "advanced.screen:AdvancedScreen"),
                 "review"),
}
"""Screens off the flow: name -> (the step, the step it is opened from and returns to)."""


def step_index(name: str) -> int:
    """Position of ``name`` in the flow (a side step: the position of its parent)."""
    if name in SIDE_STEPS:
        name = SIDE_STEPS[name][1]
    return [s.name for s in STEPS].index(name)


def step_title(name: str) -> str:
    """"Review", or "Review > Advanced settings" for a side step."""
    if name in SIDE_STEPS:
        step, parent = SIDE_STEPS[name]
        return f"{STEPS[step_index(parent)].title} > {step.title}"
    return STEPS[step_index(name)].title


def make(name: str, **inputs: object) -> Screen[object]:
    """A new screen instance for step ``name``, given its ``inputs`` (Live: ``setup``)."""
    step = SIDE_STEPS[name][0] if name in SIDE_STEPS else STEPS[step_index(name)]
    module, cls = step.screen.split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)(**inputs)  # type: ignore[no-any-return]
