"""Run the real `pxewizard serve --plan` inside a namespace, as a user would."""

from __future__ import annotations

import contextlib
import os
import select
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from pxewizard.events import read_jsonl

from .netns import Netns

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    proc: Any
    plan_path: Path
    jsonl: Path
    output: list[str]

    def events(self, settle: float = 0.35) -> list[dict[str, Any]]:
        """The JSONL log so far. The server writes it in batches (at most 0.2 s late), so
        first wait out one batch, then until the file has not changed for ``settle``
        seconds (at most 2 s)."""
        if settle:
            time.sleep(0.25)  # what happened just now may still sit in the 0.2 s batch
        deadline = time.monotonic() + 2.0
        while settle and time.monotonic() < deadline:
            try:
                age = time.time() - self.jsonl.stat().st_mtime
            except FileNotFoundError:
                return []
            if age >= settle:
                break
            time.sleep(min(0.1, settle - age + 0.01))
        return read_jsonl(self.jsonl) if self.jsonl.exists() else []

    def wait_event(self, pred, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ev in self.events(settle=0):
                if pred(ev):
                    return ev
            time.sleep(0.1)
        raise AssertionError(f"no matching event within {timeout} s; last events: "
                             f"{self.events()[-10:]}")

    def drain(self) -> None:
        """Read whatever the server printed so far (non-blocking; before the pump starts)."""
        out = self.proc.stdout
        while out is not None and select.select([out], [], [], 0)[0]:
            line = out.readline()
            if not line:
                break
            self.output.append(line.decode(errors="replace").rstrip("\n"))


def _pump(proc, output: list[str]) -> None:
    for raw in iter(proc.stdout.readline, b""):
        output.append(raw.decode(errors="replace").rstrip("\n"))


def write_plan(tmp: Path, plan: dict[str, Any]) -> Path:
    plan = dict(plan)
    plan.setdefault("state_dir", str(tmp / "state"))
    path = tmp / "plan.toml"
    path.write_text(tomli_w.dumps(plan))
    return path


@contextlib.contextmanager
def serve(ns: Netns, plan_path: Path, *, ready_timeout: float = 20.0,
          extra_env: dict[str, str] | None = None) -> Iterator[Served]:
    """Start `pxewizard serve --plan` in ``ns``; wait for its ready line; stop it by PID."""
    from pxewizard.plan import load_plan

    plan = load_plan(plan_path)
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", **(extra_env or {}))
    # unbuffered: select() must see every line, not leave some in a Python buffer
    proc = ns.popen(sys.executable, "-m", "pxewizard", "serve", "--plan", str(plan_path),
                    env=env, cwd=str(REPO), bufsize=0)
    served = Served(proc=proc, plan_path=plan_path, jsonl=plan.jsonl_path, output=[])
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                served.drain()
                raise AssertionError("pxewizard serve exited with "
                                     f"{proc.returncode}:\n" + "\n".join(served.output))
            if time.monotonic() > deadline:
                served.drain()
                raise AssertionError("pxewizard serve not ready in time:\n"
                                     + "\n".join(served.output))
            r, _, _ = select.select([proc.stdout], [], [], 0.2)
            if r:
                line = proc.stdout.readline().decode(errors="replace").rstrip("\n")
                served.output.append(line)
                if "ready: serving" in line:
                    break
        # keep reading: a full stdout pipe would block the server
        threading.Thread(target=_pump, args=(proc, served.output), daemon=True).start()
        yield served
    finally:
        ns.kill_all()
