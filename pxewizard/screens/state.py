"""What the wizard found and built, beside the operator's answers (:mod:`.draft`).

One typed record the app owns and every step reads (``screen.state``): detection
results that later steps reuse, and the Plan that Review built and Live runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the Plan model and the detectors load after the first screen is up
    from ..boot.media import Media
    from ..detect.host import HostFacts
    from ..detect.interfaces import InterfaceInfo
    from ..detect.ports import PortStatus
    from ..plan import Plan


@dataclass
class WizardState:
    """Facts found once and reused by later steps (None: not looked at yet)."""

    host: HostFacts | None = None
    """Root, RAM, loaders, name servers (Preflight)."""
    ports: list[PortStatus] | None = None
    """The ports we may need and who holds them (Preflight)."""
    interfaces: list[InterfaceInfo] | None = None
    """This machine's interfaces (Interface step)."""
    media_found: list[Media] | None = None
    """Media found by autodetection (Boot media step)."""
    plan: Plan | None = None
    """The Plan Review built from the draft, which Live runs (None: not valid yet)."""
