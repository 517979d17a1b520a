"""Command line: ``pxewizard`` (the wizard) and its headless subcommands.

Every subcommand lives in its own module and is imported only when used, so
``pxewizard --version`` and ``--help`` stay fast. Errors meant for the
operator (:class:`PxeError`) are printed as words with their fix, never as a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from .errors import PxeError
from .versions import version_text

# subcommand -> "module:function"; the function takes the parsed args and returns an exit code
COMMANDS: dict[str, str] = {
    "wizard": "pxewizard.app:cli_wizard",
    "serve": "pxewizard.serve:cli_serve",
    "probe": "pxewizard.detect.dhcp_probe:cli_probe",
    "doctor": "pxewizard.commands.doctor:cli_doctor",
    "replay": "pxewizard.commands.doctor:cli_replay",
    "lab": "pxewizard.commands.lab:cli_lab",
    "export": "pxewizard.commands.export:cli_export",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pxewizard",
        description="Turn this machine into a PXE boot server. Without a subcommand, "
                    "start the wizard.")
    p.add_argument("--version", action="store_true", help="print versions and exit")
    p.add_argument("--plan", dest="wizard_plan", metavar="FILE",
                   help="open the wizard at Review with this Plan (same as `wizard --plan`)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    w = sub.add_parser("wizard", help="the interactive wizard (the default)")
    w.add_argument("--plan", help="start from this Plan file instead of detecting")
    w.add_argument("--state-dir", help="state directory of a new Plan (default /var/lib/pxewizard)")

    s = sub.add_parser("serve", help="run a Plan headless until Ctrl-C")
    s.add_argument("--plan", required=True, help="Plan file (TOML)")
    s.add_argument("--quiet", action="store_true", help="print only findings (diagnoses), not every event, to stdout")

    pr = sub.add_parser("probe", help="list the DHCP servers answering on an interface")
    pr.add_argument("interface", help="interface to probe, e.g. eth0")
    pr.add_argument("--timeout", type=float, default=None,
                    help="seconds to listen (default: as long as serve's own probe, 6)")
    pr.add_argument("--json", action="store_true", help="print JSON")

    d = sub.add_parser("doctor", help="check this host and a Plan for known PXE pitfalls")
    d.add_argument("--plan", help="Plan file to check")
    d.add_argument("--log", help="JSONL event log to diagnose")
    d.add_argument("--client-ram", type=int, metavar="MIB",
                   help="RAM of the clients in MiB, checked against the plan's estimate")
    d.add_argument("--no-probe", action="store_true",
                   help="do not send a DHCP DISCOVER to look for other DHCP servers")
    d.add_argument("--no-checksum", action="store_true",
                   help="do not verify the root image against its .sha512/.md5")
    d.add_argument("--json", action="store_true", help="print JSON")
    d.add_argument("--verbose", action="store_true", help="print whole timelines")

    rp = sub.add_parser("replay", help="rebuild per-client timelines and findings from a "
                        "saved JSONL event log (for bug reports)")
    rp.add_argument("log", help="JSONL event log (state_dir/events.jsonl)")

    lab = sub.add_parser("lab", help="boot a QEMU virtual client against the running servers")
    lab.add_argument("--plan", required=True, help="Plan file of the running server")
    lab.add_argument("--firmware", choices=["bios", "uefi"], default="bios",
                     help="bios: SeaBIOS + the NIC's iPXE ROM; uefi: OVMF (default bios)")
    lab.add_argument("--memory", default="1024", help="VM RAM in MiB (default 1024)")
    lab.add_argument("--timeout", type=float, default=0, help="stop after N seconds (0: never)")
    lab.add_argument("--nic", choices=["virtio-net-pci", "e1000", "rtl8139"],
                     default="virtio-net-pci", help="emulated NIC (default virtio-net-pci)")
    lab.add_argument("--no-rom", action="store_true",
                     help="no iPXE option ROM on the NIC: with --firmware uefi, OVMF's own "
                          "PXE boots (like most real UEFI machines)")

    e = sub.add_parser("export", help="write a Plan as configuration for production servers")
    e.add_argument("--plan", required=True, help="Plan file")
    e.add_argument("--to", required=True, help="output directory")
    e.add_argument("--format", action="append", help="dnsmasq, isc-dhcpd, kea, tftpd-hpa, "
                   "nginx, nbd-server, nfs-exports, systemd (repeatable; default all)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # the reader went away (`pxewizard ... | head`): exit quietly, as a filter should
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(version_text())
        return 0
    command = args.command or "wizard"
    if command == "wizard" and not hasattr(args, "plan"):
        args.plan = None
    module_name, func_name = COMMANDS[command].split(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        return int(func(args) or 0)
    except PxeError as exc:
        print(f"pxewizard: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
