"""Startup of the wizard to its first screen, TERM=linux 80x25 in tmux, N runs.

    python3 bench/ui_startup.py [N]

Prints each run's time from process start to the first painted screen (logged
by the app itself) and the median. No network is touched: the first screen
appears before any detection runs (the detection results fill it in afterwards).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.ui.tmux import tmux_session  # noqa: E402


def one(tmp: Path, i: int) -> float:
    log = tmp / f"ui{i}.log"
    argv = ["env", "TERM=linux", f"PYTHONPATH={REPO}", f"PXEWIZARD_UI_LOG={log}",
            sys.executable, "-m", "pxewizard", "wizard", "--state-dir", str(tmp / "state")]
    with tmux_session(argv) as tm:
        tm.wait_for("Step 1/8: Preflight", timeout=20)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if log.exists() and "first screen" in log.read_text():
                break
            time.sleep(0.05)
        tm.send("C-q")
    line = next(ln for ln in log.read_text().splitlines() if "first screen" in ln)
    return float(line.split("first screen ")[1].split()[0])


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    with tempfile.TemporaryDirectory() as d:
        runs = [one(Path(d), i) for i in range(n)]
    print("runs (s): " + " ".join(f"{r:.3f}" for r in runs))
    print(f"first screen after process start: median {statistics.median(runs):.3f} s, "
          f"min {min(runs):.3f} s, max {max(runs):.3f} s over {n} runs")


if __name__ == "__main__":
    main()
