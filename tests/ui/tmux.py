"""A private tmux server (its own socket) that runs one program at a fixed size."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence


class Tmux:
    """One detached session on a tmux server of our own (``-L pxwt-...``)."""

    def __init__(self, socket_name: str) -> None:
        self.socket = socket_name
        self.session = "wizard"
        self.captures: list[str] = []
        """Every screen captured, for the glyph check."""

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-u", "-L", self.socket, *args], check=check,
                              capture_output=True, text=True, timeout=20)

    def start(self, argv: Sequence[str], width: int = 80, height: int = 25) -> None:
        cmd = " ".join(_quote(a) for a in argv)
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", self.session, "-x", str(width),
                  "-y", str(height), cmd)
        self.tmux("set-option", "-t", self.session, "remain-on-exit", "on")

    def pane_pid(self) -> int | None:
        r = self.tmux("display-message", "-p", "-t", self.session, "#{pane_pid}", check=False)
        return int(r.stdout.strip()) if r.stdout.strip().isdigit() else None

    def capture(self) -> str:
        text = self.tmux("capture-pane", "-p", "-t", self.session).stdout
        self.captures.append(text)
        return text

    def send(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.session, *keys)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", self.session, "-l", text)

    def wait_for(self, *needles: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.capture()
            flat = " ".join(screen.split())
            if all(" ".join(n.split()) in flat for n in needles):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"not on screen within {timeout} s: {needles}\n{screen}")
            time.sleep(0.05)

    def wait_dead(self, timeout: float = 30.0) -> str:
        """Wait until the program has exited; its exit status ('' when tmux has not reaped it)."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.tmux("list-panes", "-t", self.session, "-F",
                          "#{pane_dead} #{pane_dead_status}", check=False)
            dead, _, status = r.stdout.strip().partition(" ")
            if dead == "1":
                return status.strip()
            if time.monotonic() > deadline:
                raise AssertionError(f"still running after {timeout} s:\n{self.capture()}")
            time.sleep(0.1)

    def kill(self) -> None:
        pid = self.pane_pid()
        if pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        self.tmux("kill-server", check=False)


def _quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


@contextlib.contextmanager
def tmux_session(argv: Sequence[str], width: int = 80, height: int = 25) -> Iterator[Tmux]:
    t = Tmux(f"pxwt-ui-{secrets.token_hex(3)}")
    t.start(argv, width, height)
    try:
        yield t
    finally:
        t.kill()
