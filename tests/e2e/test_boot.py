"""Real firmware PXE-boots through `pxewizard serve`: one test per boot path.

Run one case by name: ``pytest tests/e2e -k bios_nfs``. Each boot prints an
``E2E-TIMING`` line (firmware start -> marker); the session summary lists them
all with the e2e wall time.
"""

from __future__ import annotations

import pytest

from .cases import CASES, Case, check, check_path, prepare, run_ours


@pytest.mark.timeout(420)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_boot(case: Case, guest, timing, tmp_path) -> None:
    prep = prepare(case, guest, tmp_path)
    b = run_ours(prep)
    ok = b.printed_sha == prep.stage3_sha
    timing.append((case.name, b.result.seconds, "ok" if ok else "FAILED"))
    check(b)
    check_path(case, b)
