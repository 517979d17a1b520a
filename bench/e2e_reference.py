#!/usr/bin/env python3
"""e2e boots through our servers and through dnsmasq + nginx: time to marker, and the ratio.

Each case of tests/e2e boots real firmware (SeaBIOS + iPXE ROM, OVMF) twice
per round: once through ``pxewizard serve --plan`` and once through the
reference, dnsmasq (DHCP + TFTP) and nginx (HTTP), with qemu-nbd for the NBD
case. Both serve the same files and the same generated menus (the reference
tree is written out from ``build_boot(plan)``), so only the servers differ.
The two runs of a round alternate, so load from other work on the machine hits
both alike; the figure per case is the median over rounds.

    python3 bench/e2e_reference.py                 # every case, 1 round
    python3 bench/e2e_reference.py --rounds 3 -k bios_pxelinux_tftp

Needs root (network namespaces) and installs its peers with apt-get when they
are missing (dnsmasq-base, nginx-light, qemu-utils, plus what tests/e2e needs).
Not run by CI. Targets (ours/reference): <= 0.6 where an iPXE client (QEMU's BIOS ROM,
OVMF with QEMU's iPXE EFI driver) boots its iPXE menu with full DHCP: our Router
Advertisement ends the ~16 s wait for an IPv6 router that dnsmasq leaves it in; <= 1.0
for the rest (the same 16 s is saved under pxelinux too, but its TFTP kernel load
weighs more there; OVMF's own PXE; proxyDHCP, where we send no RA by default).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PEERS = {"dnsmasq": "dnsmasq-base", "nginx": "nginx-light", "qemu-nbd": "qemu-utils",
         "qemu-system-x86_64": "qemu-system-x86", "busybox": "busybox-static",
         "nbd-client": "nbd-client"}


def ensure_peers() -> None:
    missing = sorted({pkg for tool, pkg in PEERS.items() if not shutil.which(tool)})
    if missing:
        print(f"installing {' '.join(missing)} with apt-get", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
                       check=True)


def target(case) -> float:
    """The ratio this case must reach (see the module's docstring)."""
    ipxe_client = case.firmware == "bios" or case.romfile is None
    return 0.6 if ipxe_client and case.loader == "ipxe" and case.dhcp == "full" else 1.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", dest="only", action="append",
                    help="run only cases whose name contains this (repeatable)")
    ap.add_argument("--rounds", type=int, default=1, help="boots per server per case")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per boot")
    args = ap.parse_args()
    ensure_peers()

    from tests.e2e.cases import CASES, check, prepare, reference_supported, run_ours, run_reference
    from tests.e2e.guest import build_guest

    guest = build_guest()
    cases = [c for c in CASES if not args.only or any(k in c.name for k in args.only)]
    rows = []
    started = time.monotonic()
    for case in cases:
        why = reference_supported(case)
        if why:
            print(f"{case.name}: reference skipped: {why}", flush=True)
        ours: list[float] = []
        ref: list[float] = []
        for rnd in range(args.rounds):
            for who in ("ours", "reference") if rnd % 2 == 0 else ("reference", "ours"):
                if who == "reference" and why:
                    continue
                with tempfile.TemporaryDirectory(prefix="pxwb-e2e-") as tmp:
                    prep = prepare(case, guest, Path(tmp))
                    run = run_ours if who == "ours" else run_reference
                    b = run(prep, timeout=args.timeout)
                    try:
                        check(b)
                    except AssertionError as exc:
                        print(f"{case.name} [{who}] FAILED:\n{exc}", flush=True)
                        continue
                    (ours if who == "ours" else ref).append(b.result.seconds)
        o = statistics.median(ours) if ours else None
        r = statistics.median(ref) if ref else None
        rows.append((case.name, o, r, target(case)))
    print()
    print(f"{'case':<24} {'ours s':>8} {'ref s':>8} {'ours/ref':>9} {'target':>7}")
    for name, o, r, want in rows:
        ratio = f"{o / r:9.2f}" if o and r else f"{'-':>9}"
        verdict = ("" if not (o and r) else " ok" if o / r <= want else " MISSED")
        print(f"{name:<24} {o if o else float('nan'):8.1f} {r if r else float('nan'):8.1f} "
              f"{ratio} {'<= ' + format(want, '.1f'):>7}{verdict}")
    both = [(o, r) for _, o, r, _ in rows if o and r]
    if both:
        so, sr = sum(o for o, _ in both), sum(r for _, r in both)
        print(f"{'total (both ran)':<24} {so:8.1f} {sr:8.1f} {so / sr:9.2f}")
    print(f"bench wall time {time.monotonic() - started:.0f} s; time = firmware start -> "
          "guest marker, median of rounds", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
