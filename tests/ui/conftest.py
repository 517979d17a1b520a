"""UI fixtures: the wizard app on fake detection, and key helpers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pxewizard.app import PxeWizardApp, make_app
from pxewizard.events import EventBus, LogLine, ServiceStarted

from .fakes import FakeDetector


class FakeRunning:
    """What start_plan returns; records that Live closed it."""

    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class FakeServers:
    """A start_plan that starts nothing and says so on the bus (screens never open sockets)."""

    def __init__(self) -> None:
        self.plans: list[Any] = []
        self.bus: EventBus | None = None
        self.running: list[FakeRunning] = []

    async def __call__(self, plan: Any, bus: EventBus) -> FakeRunning:
        self.plans.append(plan)
        self.bus = bus
        bus.publish(ServiceStarted(service="tftp", address=str(plan.server_ip), port=69))
        bus.publish(LogLine(service="serve", level="info", message="fake servers up"))
        r = FakeRunning()
        self.running.append(r)
        return r


@pytest.fixture
def servers() -> FakeServers:
    return FakeServers()


@pytest.fixture
def wizard(tmp_path: Path, servers: FakeServers) -> Callable[..., PxeWizardApp]:
    """make_app on a FakeDetector with a temporary state_dir; keywords go to make_app."""

    def build(detector: FakeDetector | None = None, **kw: Any) -> PxeWizardApp:
        kw.setdefault("linux_console", True)
        kw.setdefault("start_plan", servers)
        kw.setdefault("probe_timeout", 0.2)
        kw.setdefault("base", {"state_dir": str(tmp_path / "state")})
        kw.setdefault("plan_path", str(tmp_path / "plan.toml"))
        kw.setdefault("lab", False)
        kw.setdefault("export", False)
        return make_app(detector or FakeDetector(), **kw)

    return build
