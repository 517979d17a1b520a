"""Reading what a Textual app shows, as text (for assertions on glyphs and words)."""

from __future__ import annotations

from typing import Any


def screen_lines(app: Any) -> list[str]:
    """The current screen as it is drawn, one string per terminal row."""
    update = app.screen._compositor.render_full_update()
    return ["".join(seg.text for seg in strip) for strip in update.strips]


def screen_text(app: Any) -> str:
    return "\n".join(screen_lines(app))


async def wait_for(pilot: Any, pred: Any, timeout: float = 5.0, what: str = "") -> None:
    """Let the app run until ``pred()`` is true (workers finish, messages are handled)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        await pilot.pause()
        if pred():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}:\n"
                                 + screen_text(pilot.app))
        await pilot.pause(0.02)


async def wait_text(pilot: Any, *texts: str, timeout: float = 5.0) -> str:
    """Wait until every ``text`` is on screen (spaces normalised); returns the screen text."""
    def shown() -> bool:
        flat = " ".join(screen_text(pilot.app).split())
        return all(" ".join(t.split()) in flat for t in texts)

    await wait_for(pilot, shown, timeout=timeout, what=" & ".join(texts))
    return screen_text(pilot.app)
