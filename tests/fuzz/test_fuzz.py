"""Bounded atheris runs of every harness in this folder (CI: 22 s each, about 2.5 min in all).

Each harness runs as its own process (libFuzzer owns the process and exits
when done): ``python3 tests/fuzz/fuzz_X.py -max_total_time=N corpus/``. A
non-zero exit is a crash or a broken invariant; the failure message carries
the harness's traceback and the crashing input in base64, which replays with
``python3 tests/fuzz/fuzz_X.py crash-file``.

``PXW_FUZZ_SECONDS`` changes the time per harness (longer campaigns:
``PXW_FUZZ_SECONDS=600 pytest tests/fuzz``, or run the scripts directly).
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.tools import IN_CI

HERE = Path(__file__).resolve().parent
HARNESSES = sorted(p.stem for p in HERE.glob("fuzz_*.py"))
SECONDS = int(os.environ.get("PXW_FUZZ_SECONDS", "22"))

pytestmark = pytest.mark.fuzz


def _need_atheris() -> None:
    if platform.machine() != "x86_64":
        pytest.skip("atheris wheels exist for x86_64 only")
    try:
        import atheris  # noqa: F401
    except ImportError:
        msg = "atheris is not installed (pip install 'atheris>=2.3')"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)


def run_harness(script: Path, tmp: Path, *flags: str, timeout: float) -> tuple[int, str, int]:
    """Run one harness; (exit code, output, executions)."""
    corpus = tmp / "corpus"
    corpus.mkdir(exist_ok=True)
    env = dict(os.environ, PXW_FUZZ_TMP=str(tmp), PYTHONHASHSEED="0")
    proc = subprocess.run([sys.executable, str(script), *flags, f"-artifact_prefix={tmp}/",
                           str(corpus)], capture_output=True, text=True, errors="replace",
                          timeout=timeout, cwd=tmp, env=env)
    out = proc.stdout + proc.stderr
    m = re.search(r"Done (\d+) runs", out) or re.findall(r"#(\d+)\s", out)
    runs = int(m.group(1)) if isinstance(m, re.Match) else (int(m[-1]) if m else 0)
    return proc.returncode, out, runs


def _report(out: str, tmp: Path) -> str:
    crash = "\n".join(f"{p.name}: {p.read_bytes()[:512]!r}" for p in tmp.glob("crash-*"))
    keep = [ln for ln in out.splitlines() if not ln.startswith(("#", '"', "INFO", "WARNING"))]
    return "\n".join(keep[-60:]) + ("\ncrashing input:\n" + crash if crash else "")


@pytest.mark.parametrize("name", HARNESSES)
def test_harness_runs_clean(name: str, tmp_path: Path) -> None:
    _need_atheris()
    rc, out, runs = run_harness(HERE / f"{name}.py", tmp_path, f"-max_total_time={SECONDS}",
                                timeout=SECONDS + 120)
    assert rc == 0, f"{name} crashed after {runs} executions:\n{_report(out, tmp_path)}"
    assert runs > 100, f"{name} barely ran ({runs} executions):\n{_report(out, tmp_path)}"
    print(f"{name}: {runs} executions in {SECONDS} s, no crash")


def test_a_crash_is_reported(tmp_path: Path) -> None:
    """The runner sees a crash: a harness that breaks on a byte its seed carries."""
    _need_atheris()
    script = tmp_path / "fuzz_selftest.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(HERE)!r})
        from _common import check, main

        def one_input(data: bytes) -> None:
            check(b"!" not in data, "found the bang")

        main(one_input, [b"abc!"])
    """))
    rc, out, _ = run_harness(script, tmp_path, "-runs=50", timeout=60)
    assert rc != 0 and "found the bang" in out
    assert list(tmp_path.glob("crash-*")), "no crash file written"
