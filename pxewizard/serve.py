"""Run a Plan: build the boot tree, start every enabled server, stop them cleanly.

This is the one way servers are started, by ``pxewizard serve`` and by the
wizard's Live screen alike. Each ``_start_*`` below maps the Plan onto one
server's keyword arguments; servers never see the Plan itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from .boot.checks import PlanProblem, plan_problems, plan_summary
from .boot.tree import build_boot, nbd_exports, nfs_exports
from .detect.dhcp_probe import look_before_serving
from .detect.firewall import firewall_check, plan_ports
from .detect.interfaces import check_serving_address
from .errors import PxeError
from .events import Event, EventBus, JsonlLog, LineBatch, LogLine, PlanLoaded
from .files import FileTree
from .insight.diagnose import format_finding
from .insight.eventfmt import one_line
from .insight.session import InsightSession, host_facts, served_paths
from .plan import DhcpMode, Plan, load_plan
from .proto.dhcp import BootFiles, Mode, Policy, Pool, Reservation
from .servers.base import Service
from .servers.dhcp import start_dhcp
from .servers.http import start_http
from .servers.nbd import start_nbd
from .servers.nfs import start_nfs
from .servers.stp import start_stp_listener
from .servers.tftp import start_tftp


@dataclass
class Running:
    """The services of a running Plan."""

    plan: Plan
    tree: FileTree
    services: list[Service] = field(default_factory=list)
    lock_fd: int | None = None
    """The single-instance lock on the interface (see :func:`lock_interface`)."""
    problems: list[PlanProblem] = field(default_factory=list)
    """What the plan-time checks found (boot.checks), for the diagnosis' facts."""

    async def close(self) -> None:
        for svc in reversed(self.services):
            with contextlib.suppress(Exception):
                await svc.close()
        self.services.clear()
        if self.lock_fd is not None:
            os.close(self.lock_fd)  # closing the descriptor releases the flock
            self.lock_fd = None


RUN_DIR = Path(os.environ.get("PXEWIZARD_RUN_DIR", "/run/pxewizard"))
"""Where the per-interface lock files live (the environment variable is for tests)."""


def lock_path(interface: str) -> Path:
    """The lock file of ``interface`` in this network namespace.

    Interface names repeat across network namespaces (every test namespace has
    its own ``pxe0``), so the namespace's inode is part of the name; a second
    instance with another state_dir or Plan file still finds the same lock.
    """
    try:
        ns = os.stat("/proc/self/ns/net").st_ino
    except OSError:
        ns = 0
    return RUN_DIR / f"{interface}.net{ns}.lock"


def lock_interface(interface: str) -> int:
    """Take the single-instance lock of ``interface``; a PxeError naming the holder if taken.

    flock(2) on a file under /run: the kernel drops it when the holder exits,
    even by ``kill -9``, so a stale file never blocks a restart.
    """
    path = lock_path(interface)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except PermissionError:  # not root: a per-user directory still guards this user
        path = Path(tempfile.gettempdir()) / f"pxewizard-{os.getuid()}" / path.name
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise PxeError(f"cannot lock {path}: {exc.strerror}") from None
        raise PxeError(f"another pxewizard (pid {holder}) is already serving on interface "
                       f"{interface}; two servers on one segment would answer every client "
                       "twice",
                       f"stop it first (`kill {holder}`, or quit its wizard), or serve on "
                       f"another interface (lock file: {path})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


async def _start_dhcp(plan: Plan, tree: FileTree, bus: EventBus) -> list[Service]:
    if plan.dhcp.mode is DhcpMode.none:
        return []

    d, bf = plan.dhcp, plan.dhcp.boot_files

    def url(path: str | None) -> str | None:
        if not path or path.startswith(("http://", "https://")):
            return path
        return plan.http_base + path.lstrip("/")

    # iPXE gets its script over HTTP; with no HTTP server at all, the bare path makes it
    # fetch the script over TFTP from next-server instead of a dead URL.
    http_up = plan.http.enabled or plan.boot.external_http
    script = url(bf.ipxe_script) if http_up else bf.ipxe_script

    policy = Policy(
        mode=Mode.FULL if d.mode is DhcpMode.full else Mode.PROXY, server_ip=plan.server_ip,
        network=plan.network, range_start=d.range_start, range_end=d.range_end,
        router=d.router, dns=tuple(d.dns), domain=d.domain, lease_time=d.lease_time,
        reservations=tuple(Reservation(mac=r.mac, ip=r.ip, hostname=r.hostname,
                                       boot_file=r.boot_file) for r in d.reservations),
        relay_pools=tuple(Pool(subnet=p.subnet, range_start=p.range_start,
                               range_end=p.range_end, router=p.router, dns=tuple(p.dns))
                          for p in d.relay_pools),
        boot=BootFiles(bios=bf.bios, efi_ia32=bf.efi_ia32, efi_x64=bf.efi_x64,
                       efi_arm64=bf.efi_arm64, uefi_http=url(bf.uefi_http),
                       ipxe_script=script))
    # look before serving: full DHCP refuses where another DHCP server answers
    await look_before_serving(plan.interface, full=policy.mode is Mode.FULL,
                              override=d.override_existing_server, publish=bus.publish)
    return [await start_dhcp(bus=bus, policy=policy, interface=plan.interface,
                             lease_file=plan.lease_file)]


async def _start_tftp(plan: Plan, tree: FileTree, bus: EventBus) -> list[Service]:
    if not plan.tftp.enabled:
        return []

    t = plan.tftp
    return [await start_tftp(
        tree=tree, bus=bus, address=str(plan.server_ip), port=t.port, interface=plan.interface,
        allow_write=t.allow_write, write_root=t.root, max_blksize=t.max_blksize,
        windowsize=t.windowsize, timeout=t.timeout, retries=t.retries)]


async def _start_http(plan: Plan, tree: FileTree, bus: EventBus) -> list[Service]:
    if not plan.http.enabled:
        return []

    return [await start_http(tree=tree, bus=bus, address=str(plan.server_ip),
                             port=plan.http.port, interface=plan.interface)]


async def _start_nbd(plan: Plan, tree: FileTree, bus: EventBus) -> list[Service]:
    if not plan.nbd.enabled:
        return []

    exports = nbd_exports(plan)
    if not exports:  # NBD on, but not the transport and the medium has no image to export
        bus.publish(LogLine(service="nbd", level="warning",
                            message="NBD is enabled but there is nothing to export (no "
                                    "nbd.exports and the boot medium is not an image); "
                                    "the NBD server is not started"))
        return []
    return [await start_nbd(bus=bus, address=str(plan.server_ip), port=plan.nbd.port,
                            oldstyle_port=plan.nbd.oldstyle_port, exports=exports,
                            interface=plan.interface)]


async def _start_nfs(plan: Plan, tree: FileTree, bus: EventBus) -> list[Service]:
    if not plan.nfs.enabled:
        return []

    n = plan.nfs
    return [await start_nfs(bus=bus, address=str(plan.server_ip), nfs_port=n.nfs_port,
                            mount_port=n.mount_port, portmap=n.portmap,
                            exports=nfs_exports(plan), interface=plan.interface)]


async def _start_stp(plan: Plan, tree: FileTree, bus: EventBus) -> list[Service]:
    """Passive: BPDUs on the interface tell the diagnosis a port may hold clients back."""
    if plan.dhcp.mode is DhcpMode.none:
        return []
    listener = await start_stp_listener(interface=plan.interface, bus=bus)
    return [listener] if listener is not None else []


STARTERS: list[Callable[[Plan, FileTree, EventBus], Awaitable[list[Service]]]] = [
    _start_stp, _start_tftp, _start_http, _start_nbd, _start_nfs, _start_dhcp,
]
"""Order matters: DHCP last, so no client is sent to a server that is not up yet."""

FINDINGS_EVERY = 2.0
"""Seconds between two looks at the diagnosis in headless ``serve`` (Live looks as often)."""


async def start_plan(plan: Plan, bus: EventBus) -> Running:
    """Start everything the Plan asks for; on any failure stop what started and raise."""
    bus.bind_loop(asyncio.get_running_loop())
    check_serving_address(plan.interface, str(plan.server_ip), plan.prefix)
    lock_fd = lock_interface(plan.interface)
    try:
        boot = await asyncio.to_thread(build_boot, plan)
    except BaseException:
        os.close(lock_fd)
        raise
    for warning in boot.warnings:
        bus.publish(LogLine(service="boot", level="warning", message=warning))
    # the Plan's mode, command lines and KERNEL .bin lines go into the log, so a replay
    # judges with them even after a clean stop removed the services
    bus.publish(PlanLoaded(**plan_summary(plan, boot)))  # type: ignore[arg-type]
    tree = boot.tree
    running = Running(plan=plan, tree=tree, lock_fd=lock_fd,
                      problems=plan_problems(plan, boot))
    try:
        for starter in STARTERS:
            running.services.extend(await starter(plan, tree, bus))
    except BaseException:
        await running.close()
        raise
    return running


class _StdoutPrinter:
    """Events as lines on stdout, written in batches (a flood must not cost a write each)."""

    def __init__(self, delay: float = 0.1) -> None:
        self._batch = LineBatch(self._write, delay=delay)

    def __call__(self, ev: Event) -> None:
        self._batch.add(one_line(ev))

    def lines(self, lines: list[str]) -> None:
        for line in lines:
            self._batch.add(line)

    def flush(self) -> None:
        self._batch.flush()

    @staticmethod
    def _write(lines: list[str]) -> None:
        with contextlib.suppress(BrokenPipeError, ValueError, OSError):
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()


async def serve_forever(plan: Plan, *, quiet: bool = False) -> int:
    """Headless ``serve``: events to stdout and the JSONL log until SIGINT/SIGTERM."""
    bus = EventBus()
    log = JsonlLog(plan.jsonl_path, bus)
    bus.subscribe(log)
    printer = _StdoutPrinter()
    if not quiet:
        bus.subscribe(printer)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    # attached before the start, so it sees the PlanLoaded event
    session = InsightSession(host_facts(plan)).attach(bus)
    try:
        running = await start_plan(plan, bus)
    except PxeError as exc:
        session.detach()
        bus.publish(LogLine(service="serve", level="error", message=str(exc)))
        log.close()
        printer.flush()
        raise
    bus.publish(LogLine(service="serve", level="info",
                        message=f"ready: serving on {plan.interface} {plan.server_ip}; "
                                "Ctrl-C stops"))
    firewall = firewall_check(plan_ports(plan))
    session.facts = host_facts(plan, plan_problems=running.problems, firewall=firewall)
    if not quiet:
        files = await asyncio.to_thread(served_paths, running.tree)
        session.facts = host_facts(plan, files=files, plan_problems=running.problems,
                                   firewall=firewall)
    try:
        while not quiet:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FINDINGS_EVERY)
            # what the diagnosis rules see, once per finding, as it appears
            printer.lines([line for f in session.new_findings()
                           for line in format_finding(f, with_evidence=False)])
            if stop.is_set():
                break
        await stop.wait()
    finally:
        session.detach()
        bus.publish(LogLine(service="serve", level="info", message="stopping"))
        await running.close()
        log.close()
        printer.flush()
    return 0


def cli_serve(args: object) -> int:
    plan = load_plan(args.plan)  # type: ignore[attr-defined]
    try:
        return asyncio.run(serve_forever(plan, quiet=getattr(args, "quiet", False)))
    except KeyboardInterrupt:
        return 130
    finally:
        sys.stdout.flush()
