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
import gc
import os
import resource
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from .boot.checks import PlanProblem, plan_problems, plan_summary
from .boot.roots import prepare_client_roots
from .boot.secureboot import SHIM_VPATH, uefi_boot_files
from .boot.secureboot import summary as secure_boot_summary
from .boot.tree import build_boot, menu_outline, nbd_exports, nfs_exports
from .detect.dhcp_probe import look_before_serving
from .detect.firewall import firewall_check, plan_ports
from .detect.interfaces import check_serving_address
from .errors import PxeError, os_error_words
from .events import Event, EventBus, JsonlLog, LineBatch, LogLine, PlanLoaded, RefusalLimit
from .files import FileTree
from .insight.diagnose import HostFacts
from .insight.eventfmt import one_line
from .insight.follow import LogFollower, follow_forever, new_finding_lines
from .insight.session import InsightSession, host_facts, served_paths
from .ondisk import check_dir
from . import privileges
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
    except OSError as exc:
        # EROFS: systemd's ProtectSystem=strict makes /run read-only unless the unit asks
        # for RuntimeDirectory=pxewizard
        raise PxeError(f"cannot create the single-instance lock {path}: "
                       f"{os_error_words(exc)}",
                       f"make {RUN_DIR} writable: in a systemd unit add "
                       "`RuntimeDirectory=pxewizard` (ProtectSystem=strict leaves /run "
                       "read-only; `pxewizard export --to DIR` writes such a unit), or point "
                       "PXEWIZARD_RUN_DIR at a writable directory") from None
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


def _served(tree: FileTree, vpath: str) -> bool:
    try:
        tree.resolve(vpath)
    except PxeError:
        return False
    return True


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

    # the Secure Boot chain (boot.secure_boot) and UEFI HTTP boot (arch 16)
    efi_x64, uefi_http = uefi_boot_files(
        bf.efi_x64, bf.uefi_http, chain_served=_served(tree, SHIM_VPATH),
        http_base=plan.http_base if plan.http.enabled else None,
        served={f for f in ("snponly.efi", "ipxe.efi") if _served(tree, f)})
    policy = Policy(
        mode=Mode.FULL if d.mode is DhcpMode.full else Mode.PROXY, server_ip=plan.server_ip,
        network=plan.network, range_start=d.range_start, range_end=d.range_end,
        router=d.router, dns=tuple(d.dns), domain=d.domain, lease_time=d.lease_time,
        reservations=tuple(Reservation(mac=r.mac, ip=r.ip, hostname=r.hostname,
                                       boot_file=r.boot_file) for r in d.reservations),
        relay_pools=tuple(Pool(subnet=p.subnet, range_start=p.range_start,
                               range_end=p.range_end, router=p.router, dns=tuple(p.dns))
                          for p in d.relay_pools),
        relay_agents=tuple(d.relay_agents),
        boot=BootFiles(bios=bf.bios, efi_ia32=bf.efi_ia32, efi_x64=efi_x64,
                       efi_arm64=bf.efi_arm64, uefi_http=url(uefi_http),
                       ipxe_script=script),
        known_macs=plan.known_macs)
    # look before serving: full DHCP refuses where another DHCP server answers
    await look_before_serving(plan.interface, full=policy.mode is Mode.FULL,
                              override=d.override_existing_server, publish=bus.publish,
                              pool=(d.range_start, d.range_end) if d.range_start else None)
    return [await start_dhcp(bus=bus, policy=policy, interface=plan.interface,
                             lease_file=plan.lease_file)]


async def _start_tftp(plan: Plan, tree: FileTree, bus: EventBus) -> list[Service]:
    if not plan.tftp.enabled:
        return []

    t = plan.tftp
    return [await start_tftp(
        tree=tree, bus=bus, address=str(plan.server_ip), port=t.port, interface=plan.interface,
        allow_write=t.allow_write, write_root=t.root, max_blksize=t.max_blksize,
        windowsize=t.windowsize, timeout=t.timeout, retries=t.retries,
        max_transfers=t.max_transfers, max_per_client=t.max_per_client,
        max_lifetime=t.max_transfer_seconds, max_stall=t.max_stall_seconds)]


async def _start_http(plan: Plan, tree: FileTree, bus: EventBus) -> list[Service]:
    if not plan.http.enabled:
        return []

    h = plan.http
    return [await start_http(tree=tree, bus=bus, address=str(plan.server_ip), port=h.port,
                             interface=plan.interface, max_connections=h.max_connections,
                             max_per_client=h.max_per_client, header_timeout=h.header_timeout,
                             keepalive_timeout=h.keepalive_timeout)]


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
    n = plan.nbd
    return [await start_nbd(bus=bus, address=str(plan.server_ip), port=n.port,
                            oldstyle_port=n.oldstyle_port, exports=exports,
                            interface=plan.interface, max_connections=n.max_connections,
                            max_per_client=n.max_per_client, idle_timeout=n.idle_timeout)]


async def _start_nfs(plan: Plan, tree: FileTree, bus: EventBus) -> list[Service]:
    if not plan.nfs.enabled:
        return []

    def say(message: str) -> None:
        bus.publish_threadsafe(LogLine(service="nfs", level="info", message=message))

    for made in await asyncio.to_thread(prepare_client_roots, plan, say):
        bus.publish(LogLine(service="nfs", level="info", message=made))
    n = plan.nfs
    return [await start_nfs(bus=bus, address=str(plan.server_ip), nfs_port=n.nfs_port,
                            mount_port=n.mount_port, portmap=n.portmap,
                            exports=nfs_exports(plan), interface=plan.interface, udp=n.udp,
                            max_connections=n.max_connections,
                            max_reply_bytes=n.max_reply_bytes,
                            max_total_reply_bytes=n.max_total_reply_bytes)]


async def _start_ra(plan: Plan, tree: FileTree, bus: EventBus) -> list[Service]:
    if not plan.dhcp.sends_ra:
        return []
    from .plan import Ipv6Ra
    from .servers.ra import start_ra

    try:
        return [await start_ra(bus=bus, interface=plan.interface)]
    except PxeError as exc:
        if plan.dhcp.ipv6_ra is Ipv6Ra.on:
            raise
        # auto: a speed-up, not a service; IPv4 boots work without it
        bus.publish(LogLine(service="ra", level="warning",
                            message=f"no IPv6 Router Advertisements: {exc.message}"
                                    + (f"; fix: {exc.fix}" if exc.fix else "")))
        return []


async def _start_stp(plan: Plan, tree: FileTree, bus: EventBus) -> list[Service]:
    """Passive: BPDUs on the interface tell the diagnosis a port may hold clients back."""
    if plan.dhcp.mode is DhcpMode.none:
        return []
    listener = await start_stp_listener(interface=plan.interface, bus=bus)
    return [listener] if listener is not None else []


STARTERS: list[Callable[[Plan, FileTree, EventBus], Awaitable[list[Service]]]] = [
    _start_stp, _start_tftp, _start_http, _start_nbd, _start_nfs, _start_ra, _start_dhcp,
]
"""Order matters: DHCP last, so no client is sent to a server that is not up yet (the RA
responder before it: it listens for a router while DHCP probes for servers)."""

FINDINGS_EVERY = 2.0
"""Seconds between two looks at the diagnosis in headless ``serve`` (Live looks as often)."""


FD_RESERVE = 64
"""Descriptors kept free beyond every cap together (logs, leases, DNS, the UI)."""
FD_WANTED = 16384
"""The soft RLIMIT_NOFILE asked for at start (never above the hard limit)."""


def fds_needed(plan: Plan) -> int:
    """Descriptors the caps of the Plan may take at once, with the reserve."""
    n = FD_RESERVE
    if plan.tftp.enabled:
        n += plan.tftp.max_transfers * 2  # a socket and a file each
    if plan.http.enabled:
        n += plan.http.max_connections * 2
    if plan.nbd.enabled:
        n += plan.nbd.max_connections * 2
    if plan.nfs.enabled:
        n += plan.nfs.max_connections * 3 + 64  # three ports, the open-file cache
    return n


def raise_fd_limit(plan: Plan, publish: Callable[[Event], None]) -> int:
    """Raise the soft RLIMIT_NOFILE (systemd and shells give 1024) up to FD_WANTED, and say
    so when the caps of the Plan could still run out of descriptors. The new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, min(FD_WANTED if hard == resource.RLIM_INFINITY else hard, FD_WANTED))
    if want > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
    need = fds_needed(plan)
    if soft < need:
        publish(LogLine(service="serve", level="warning",
                        message=f"only {soft} file descriptors allowed (RLIMIT_NOFILE) but the "
                                f"caps of the plan may take {need}: lower tftp.max_transfers, "
                                "http.max_connections, nbd.max_connections or "
                                "nfs.max_connections, or raise the limit (ulimit -n, "
                                "LimitNOFILE= in the systemd unit)"))
    return soft


class LoopErrors:
    """asyncio's exception handler: errors as events, at most one a second, never stderr.

    Out of descriptors, asyncio's accept loop reports every retry with a traceback (530,226
    of them, 228 MB of stderr, in two minutes); here each kind becomes one LogLine a second
    with a count of the ones folded into it, and EMFILE/ENFILE are named for what they are.
    """

    def __init__(self, publish: Callable[[Event], None]) -> None:
        self.publish = publish
        self._last: dict[str, float] = {}
        self._folded: dict[str, int] = {}

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        exc = context.get("exception")
        msg = str(context.get("message") or "error in the event loop")
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            key = "fds"
            text = (f"out of file descriptors ({exc.strerror}): new connections wait; the "
                    "caps (tftp.max_transfers, http.max_connections...) should prevent this")
        else:
            key = msg
            text = msg + (f": {type(exc).__name__}: {exc}" if exc is not None else "")
        now = loop.time()
        if now - self._last.get(key, -1e9) < 1.0:
            self._folded[key] = self._folded.get(key, 0) + 1
            return
        self._last[key] = now
        folded = self._folded.pop(key, 0)
        if folded:
            text += f" ({folded} more like it in the last second not shown)"
        self.publish(LogLine(service="serve", level="error", message=text))


def check_files(plan: Plan) -> None:
    """The directories we write into must be ours alone (see :mod:`.ondisk`)."""
    check_dir(plan.state_dir, "state_dir")
    if plan.log.jsonl is not None:
        check_dir(plan.jsonl_path.parent, "log.jsonl", sticky_ok=True)
    if plan.dhcp.mode is DhcpMode.full and plan.dhcp.lease_file is not None:
        check_dir(plan.lease_file.parent, "dhcp.lease_file", sticky_ok=True)


async def start_plan(plan: Plan, bus: EventBus) -> Running:
    """Start everything the Plan asks for; on any failure stop what started and raise."""
    loop = asyncio.get_running_loop()
    bus.bind_loop(loop)
    loop.set_exception_handler(LoopErrors(bus.publish))
    raise_fd_limit(plan, bus.publish)
    check_serving_address(plan.interface, str(plan.server_ip), plan.prefix)
    check_files(plan)
    lock_fd = lock_interface(plan.interface)
    try:
        boot = await asyncio.to_thread(build_boot, plan)
    except BaseException:
        os.close(lock_fd)
        raise
    for warning in boot.warnings:
        bus.publish(LogLine(service="boot", level="warning", message=warning))
    for line in menu_outline(boot, plan):
        bus.publish(LogLine(service="boot", level="info", message=line))
    if plan.boot.secure_boot != "off":
        bus.publish(LogLine(service="boot", level="info", message=secure_boot_summary(
            boot.secure_boot, plan.boot.secure_boot, plan.dhcp.boot_files.efi_x64)))
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


# --- privileges: what each enabled service keeps once its sockets are bound ----------------


def kept_capabilities(plan: Plan) -> dict[str, str]:
    """The capabilities ``serve`` keeps after binding, each with the reason, for ``plan``."""
    keep: dict[str, str] = {}
    if plan.dhcp.mode == "full":
        keep["CAP_NET_ADMIN"] = ("full DHCP writes a neighbour entry (SIOCSARP, MAC -> "
                                 "offered address) before unicasting to a client that has no "
                                 "address yet and cannot answer ARP, as dnsmasq does")
    if plan.nfs.enabled:
        keep["CAP_DAC_READ_SEARCH"] = ("NFS serves a root tree whose files belong to many "
                                       "users (as knfsd, which reads them from the kernel)")
        if plan.nfs.portmap:
            keep["CAP_NET_BIND_SERVICE"] = ("NFS unregisters from the local rpcbind at stop; "
                                            "rpcbind takes UNSET only from a port below 1024")
        rw = [e for e in nfs_exports(plan) if e.rw]  # nfs.root_mode per-client adds some
        if rw:
            keep["CAP_SETUID"] = ("rw NFS: each write runs with the caller's fsuid "
                                  "(setfsuid), so the kernel's own permission checks apply")
            keep["CAP_SETGID"] = "rw NFS: the caller's fsgid and groups (setfsgid, setgroups)"
            if any(getattr(e.squash, "value", e.squash) == "no_root_squash" or e.anonuid == 0
                   for e in rw):
                why = ("rw NFS with no_root_squash (or anonuid 0): the client's root acts "
                       "as root, as on knfsd; the kernel ignores it while the fsuid is not 0")
                for cap in ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID",
                            "CAP_MKNOD"):
                    keep[cap] = why
    return keep


def start_capabilities(plan: Plan) -> dict[str, str]:
    """Every capability ``serve`` may use for ``plan`` (the systemd unit's bounding set)."""
    caps = dict(privileges.START_CAPS)
    caps.update(kept_capabilities(plan))
    return caps


def drop_privileges(plan: Plan, bus: EventBus) -> None:
    """Once every socket is bound: keep only the capabilities the Plan's services need
    (:func:`kept_capabilities` says which and why), set no_new_privs, and check
    a second later that every thread followed. ``serve`` only: the wizard may bind again."""
    if not privileges.capget()[0]:
        return  # not privileged: nothing to drop
    keep = kept_capabilities(plan)
    loop = asyncio.get_running_loop()
    kept = privileges.drop(keep, loop)
    bus.publish(LogLine(service="serve", level="info", message=(
        "privileges dropped: no_new_privs set; capabilities kept: "
        + ("; ".join(f"{n} ({keep[n]})" for n in kept) if kept else "none"))))
    m = privileges.mask(kept)

    def check() -> None:
        left = privileges.threads_above(m)
        if left:
            bus.publish(LogLine(service="serve", level="warning",
                                message="threads still holding dropped capabilities: "
                                        + ", ".join(left)))

    loop.call_later(1.0, check)


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


def _quiet_filter(printer: Callable[[Event], None]) -> Callable[[Event], None]:
    """``serve --quiet`` (the exported systemd unit): no line per packet, but what an
    operator reading the journal needs: serve's own lines (ready, stopping) and every
    warning and error; the findings are printed beside them."""
    def maybe(ev: Event) -> None:
        if isinstance(ev, LogLine) and (ev.service == "serve"
                                        or ev.level in ("warning", "error")):
            printer(ev)
    return maybe


INSIGHT_PROCESS = os.environ.get("PXW_INSIGHT_PROCESS", "1") != "0"
"""Move the timelines and findings to a forked process once the servers run (benchmarks
compare; PXW_INSIGHT_PROCESS=0 keeps them in the servers' process)."""


class _Insight:
    """Headless serve's timelines and findings. Fed from the bus while the servers start;
    once they run, the session is forked into a process of its own that goes on from the
    JSONL log (:mod:`pxewizard.insight.follow`), so the servers' thread only writes log
    lines. Where fork is refused it stays here, on the bus."""

    def __init__(self, bus: EventBus, facts: HostFacts,
                 say: Callable[[list[str]], None]) -> None:
        self.session = InsightSession(facts).attach(bus)
        self.pid: int | None = None
        self._say = say

    def fork(self, plan: Plan, log: JsonlLog, facts: HostFacts) -> None:
        """Hand the session over to a process that follows the log from here on."""
        self.session.facts = facts
        if not INSIGHT_PROCESS:
            return
        try:
            fd = os.open(plan.jsonl_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return  # no log to follow (the servers' warnings say why): stay on the bus
        log.flush()  # everything published so far is in the session and in the file
        sys.stdout.flush()
        try:
            offset = os.fstat(fd).st_size
            pid = os.fork()
        except OSError:
            os.close(fd)
            return
        if pid == 0:
            _insight_process(LogFollower(fd, offset, self.session), parent=os.getppid())
        os.close(fd)
        self.session.detach()
        self.pid = pid

    def tick(self) -> None:
        """Every FINDINGS_EVERY seconds: print new findings (when still in this process)."""
        if self.pid is None:
            lines = new_finding_lines(self.session)
            if lines:
                self._say(lines)

    async def close(self) -> None:
        """After the log's last write: the process reads it once more, prints, exits."""
        self.session.detach()
        if self.pid is None:
            self.tick()
            return
        pid, self.pid = self.pid, None
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        done = 0
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return
            if done or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        if not done:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _yield_to_servers() -> None:
    """The insight process runs at nice 19, the lowest normal priority: insight may run a
    moment late, a reply may not. It reads the log, so on a busy machine the findings come
    late, never lost. Measured with bench/dhcp.py (ours-serve, 9,000 MACs x 4, 8 in
    flight): 10,592 / 10,878 / 11,098 DORA/s at SCHED_IDLE against 9,764 / 10,145 / 9,976
    at nice 10 (p99 1.3 ms against 1.7), and nice 19 as SCHED_IDLE within the noise.
    Not SCHED_IDLE itself: on a machine others keep busy it gets a fifth of nice 19's
    share, and without CAP_SYS_NICE (dropped by then) it could never leave it."""
    with contextlib.suppress(OSError):
        os.nice(19)


def _insight_process(follower: LogFollower, *, parent: int) -> NoReturn:
    """The forked insight process: it owns the log's read descriptor and stdout, nothing
    else of the servers' (their sockets are closed here, and what it inherited is never
    collected, so no object of theirs is finalised in it)."""
    code = 0
    try:
        gc.freeze()
        _yield_to_servers()
        with contextlib.suppress(ValueError, OSError):
            signal.set_wakeup_fd(-1)  # asyncio's wake-up socket belongs to the parent
        os.closerange(3, follower.fd)
        os.closerange(follower.fd + 1, 1 << 20)

        def say(lines: list[str]) -> None:
            with contextlib.suppress(OSError):
                os.write(1, ("\n".join(lines) + "\n").encode("utf-8", "replace"))

        follow_forever(follower, say, parent=parent, findings_every=FINDINGS_EVERY)
    except BaseException:  # never a traceback, never back into the parent's code
        code = 1
    finally:
        os._exit(code)


async def serve_forever(plan: Plan, *, quiet: bool = False) -> int:
    """Headless ``serve``: events to stdout and the JSONL log until SIGINT/SIGTERM; the
    diagnosis in words as it appears (also with ``quiet``: a systemd unit's journal then
    holds the findings, not every packet)."""
    bus = EventBus(RefusalLimit(plan.log.refusals_per_second, plan.log.refusal_burst))
    log = JsonlLog(plan.jsonl_path, bus)
    printer = _StdoutPrinter()
    bus.subscribe(printer if not quiet else _quiet_filter(printer))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    # attached before the start: the timelines need the PlanLoaded event and the starts
    insight = _Insight(bus, host_facts(plan), printer.lines)
    try:
        # the files first: a refused state dir or log path gets nothing written into it
        check_files(plan)
        log.open()
        bus.subscribe(log)
        running = await start_plan(plan, bus)
    except PxeError as exc:
        insight.session.detach()
        bus.publish(LogLine(service="serve", level="error", message=str(exc)))
        log.close()
        printer.flush()
        raise
    try:
        drop_privileges(plan, bus)
    except PxeError as exc:
        insight.session.detach()
        bus.publish(LogLine(service="serve", level="error", message=str(exc)))
        await running.close()
        log.close()
        printer.flush()
        raise
    bus.publish(LogLine(service="serve", level="info",
                        message=f"ready: serving on {plan.interface} {plan.server_ip}; "
                                "Ctrl-C stops"))
    files = await asyncio.to_thread(served_paths, running.tree)
    insight.fork(plan, log, host_facts(plan, files=files, plan_problems=running.problems,
                                       firewall=firewall_check(plan_ports(plan))))
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FINDINGS_EVERY)
            insight.tick()
    finally:
        bus.publish(LogLine(service="serve", level="info", message="stopping"))
        await running.close()
        log.close()
        printer.flush()
        await insight.close()
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
