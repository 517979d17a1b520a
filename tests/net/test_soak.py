"""A short soak (CI): 50 simulated PXE clients boot in waves for about 75 s.

The same driver as ``bench/soak.py`` (200 clients, 10 minutes): DORA per MAC
over AF_PACKET, then curl fetches loader + kernel over TFTP and stage 3 over
HTTP from each client's own address. Checked: no failed boot, no address
twice (client side and lease file), the lease file holds what each client
was ACKed, memory and file descriptors steady, and the event log has one
DhcpExchange per DHCP request sent and one TransferDone per download.
"""

from __future__ import annotations

from pathlib import Path

from tests.net.hardening_support import run_soak, soak_problems
from tests.support.tools import require, require_root


def test_fifty_clients_boot_in_waves(tmp_path: Path) -> None:
    require_root()
    require("curl", "ip")
    r = run_soak(tmp_path, clients=50, duration=75, wave=25, parallel=12, sample_every=5)
    print(r.figures())
    assert r.total["boots"] >= 100, r.figures()  # at least two passes over every client
    assert soak_problems(r) == [], r.figures()  # the criteria bench/soak.py prints
