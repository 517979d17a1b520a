#!/usr/bin/env python3
"""Soak: simulated PXE clients boot in waves against `pxewizard serve` for minutes.

    sudo python3 bench/soak.py [--clients 200] [--minutes 10] [--wave 50] [--parallel 16]

Topology: a server namespace (pxe0 10.99.0.1/24) and a client namespace
(eth0) joined by a veth pair (``pxwt-*``, removed at the end). The real
``pxewizard serve --plan`` runs full DHCP (pool of 241), TFTP and HTTP over a
root of test files. ``--clients`` distinct MACs boot in waves of ``--wave``:
DORA over an AF_PACKET socket per MAC (broadcast flag, as PXE ROMs), then
curl fetches a 96 KiB loader and a 2 MiB kernel over TFTP and an 8 MiB
stage 3 over HTTP from the client's own address (``--parallel`` at once),
again and again until the time is up (see tests/net/hardening_support.py).

Printed, and checked (exit 1 if one fails):

* no failed boot, no DHCP failure, no address ACKed to two MACs (client
  side) and none in two rows of the lease file; every MAC's lease file row
  is the address it was ACKed;
* memory steady: server RSS at the end within 25 MiB of the first sample
  (taken after the first wave);
* file descriptors not growing: the end count within 4 of the first sample;
* event log complete: one DhcpExchange per DISCOVER/REQUEST sent, one
  TransferDone per TFTP and HTTP download made.

The machine may be shared with other work: figures of time vary, the checks
do not.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.net.hardening_support import run_soak, soak_problems  # noqa: E402

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--wave", type=int, default=50)
    ap.add_argument("--parallel", type=int, default=16)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pxw-soak-") as tmp:
        r = run_soak(Path(tmp), clients=a.clients, duration=a.minutes * 60, wave=a.wave,
                     parallel=a.parallel, sample_every=10,
                     progress=lambda p: print(f"  wave {p['wave']:4d} t={p['t']:6.1f}s "
                                              f"acked {p['acked']}/{p['clients']} "
                                              f"failed {p['failed']}", flush=True))
    print(r.figures())
    print(f"RSS samples (MiB): {' '.join(f'{x:.1f}' for x in r.rss_mib)}")
    print(f"fd samples: {' '.join(str(x) for x in r.fds)}")
    print(f"events: {r.events}")
    bad = soak_problems(r)
    for p in bad:
        print(f"FAIL: {p}")
    print("PASS" if not bad else "FAILED")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
