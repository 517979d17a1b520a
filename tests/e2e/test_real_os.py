"""Issue 19: real boot code from Debian packages, served from ONE three-medium menu.

One ``pxewizard serve`` (SystemRescue-layout medium + Debian installer netboot
+ memtest86+, see realos.py) stays up for the module; each case boots its own
MAC, whose per-MAC pxelinux file names its entry, so no keystroke is needed:

- SeaBIOS: pxelinux.0 menu -> Debian installer kernel + initrd -> the installer's
  first dialog on ttyS0;
- OVMF: the same through syslinux.efi and the UEFI menu;
- memtest86+ BIOS (``memtest86+x64.bin``) and UEFI (``memtest86+x64.efi``) -> its
  banner on ttyS0.

Each case asserts the marker text and our TFTP events for the files that boot
fetched (its loader, its per-MAC menu, its kernel and initrd).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.serving import Served, _pump, write_plan
from tests.support.tools import require, require_root

from .conftest import _STARTED
from .harness import lab_network, serve_ours
from .realos import REAL_CASES, RealCase, boot_until, loader_files, three_media_plan


@pytest.fixture(scope="module")
def served_menu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Network + `pxewizard serve` of the three-medium Plan, shared by the cases."""
    _STARTED.append(time.monotonic())
    require_root()
    require("qemu-system-x86_64", "apt-get", "dpkg-deb")
    work = tmp_path_factory.mktemp("realos")
    plan = three_media_plan(work)
    with lab_network() as net:
        with serve_ours(net.server, write_plan(work, plan)) as served:
            # keep reading its stdout so a long run never blocks it on a full pipe
            threading.Thread(target=_pump, args=(served.proc, served.output),
                             daemon=True).start()
            served.net = net  # type: ignore[attr-defined]
            yield served


def _tftp_paths(events: list[dict[str, Any]]) -> set[str]:
    return {str(e.get("path", "")).lstrip("/") for e in events
            if e.get("kind") == "transfer_done" and e.get("service") == "tftp"}


def test_serve_prints_the_menu_it_built(served_menu: Served) -> None:
    out = "\n".join(served_menu.output)
    for text in ("menu:", "SystemRescue 11.01", "Debian 12 (bookworm) installer",
                 "Memtest86+", "Boot from local disk"):
        assert text in out, out


@pytest.mark.timeout(420)
@pytest.mark.parametrize("case", REAL_CASES, ids=[c.name for c in REAL_CASES])
def test_real_os(case: RealCase, served_menu: Served, timing) -> None:
    before = len(served_menu.events())
    result = boot_until(served_menu.net, case)  # type: ignore[attr-defined]
    ok = result.matched is not None and case.marker in result.matched
    timing.append((case.name, result.seconds, "ok" if ok else "FAILED"))
    print(f"E2E-TIMING case={case.name} firmware_start_to_marker={result.seconds:.1f}s",
          flush=True)
    tail = "\n".join(result.lines[-40:])
    assert ok, (f"{case.name}: no {case.marker!r} on the serial console after "
                f"{result.seconds:.1f} s\n--- console tail ---\n{tail}\n--- qemu stderr ---\n"
                f"{result.stderr.strip()}")
    want = loader_files(case) | set(case.files)
    deadline = time.monotonic() + 5
    while True:
        seen = _tftp_paths(served_menu.events()[before:])
        if want <= seen or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert want <= seen, (f"{case.name}: TFTP transfers missing from our events: "
                          f"{sorted(want - seen)}; seen: {sorted(seen)}")

