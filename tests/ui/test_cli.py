"""`pxewizard`, `pxewizard --plan F` and `pxewizard wizard --state-dir D` reach make_app right."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pxewizard import app as app_module
from pxewizard.cli import main
from pxewizard.plan import plan_from_dict, save_plan


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    seen: list[Any] = []

    def run(self: Any, *a: Any, **kw: Any) -> int:
        seen.append(self)
        return 0

    monkeypatch.setattr(app_module.PxeWizardApp, "run", run)
    return seen


def test_plan_opens_review(runs: list[Any], tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    save_plan(plan_from_dict({"interface": "eth0", "server_ip": "10.0.0.1",
                              "state_dir": str(tmp_path)}), path)
    for argv in (["--plan", str(path)], ["wizard", "--plan", str(path)]):
        assert main(argv) == 0
        app = runs.pop()
        assert app.step == "review" and app.config.plan.interface == "eth0"
        assert app.draft.plan_path == str(path)


def test_state_dir_for_a_new_plan(runs: list[Any], tmp_path: Path) -> None:
    assert main(["wizard", "--state-dir", str(tmp_path / "st")]) == 0
    app = runs.pop()
    assert app.step == "preflight"
    assert app.draft.base["state_dir"] == str((tmp_path / "st").resolve())
    assert main([]) == 0 and runs.pop().step == "preflight"


def test_a_bad_plan_is_refused_in_words(runs: list[Any], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('interface = "eth0"\nserver_ip = "10.0.0.0"\n')
    assert main(["--plan", str(path)]) == 2
    assert "network or broadcast address" in capsys.readouterr().err
    assert runs == []
