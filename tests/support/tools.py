"""Finding third-party peers. In CI a missing peer fails the test; locally it skips."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(*tools: str) -> None:
    """Fail (CI) or skip (elsewhere) unless every tool is on PATH (or is an existing path)."""
    missing = [t for t in tools if not (shutil.which(t) or os.path.exists(t))]
    if missing:
        msg = f"peer tool(s) missing: {', '.join(missing)} (.ci/run installs them)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)


def require_root() -> None:
    if os.geteuid() != 0:
        msg = "needs root (network namespaces)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)


def running(pid: int) -> bool:
    """The process exists and is not a zombie (an exited child its parent has not reaped:
    tmux with remain-on-exit, or an orphan before init reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
