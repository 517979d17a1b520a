"""Tests and benchmarks run the project's interpreter, never whatever ``python3`` is on PATH.

A fresh machine's system python3 has none of our dependencies (psutil, pydantic ...):
a client namespace running ``python3 -c 'from pxewizard ...'`` fails there.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
BARE = re.compile(r"""(?:run|popen|client|Popen|check_output|check_call)\(\s*\[?\s*["']python3?["']""")


def test_no_bare_python_in_subprocess_calls() -> None:
    hits = []
    for folder in ("tests", "bench"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if BARE.search(line):
                    hits.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not hits, "use sys.executable, not a bare python3:\n" + "\n".join(hits)
