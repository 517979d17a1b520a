"""Privileges: once every socket is bound, keep only the capabilities the enabled services
still need, and set no_new_privs (``pxewizard serve``).

Linux capabilities, the bounding set and no_new_privs belong to each *thread*; capset(2)
changes the calling thread only. So :func:`drop` reduces the calling thread, replaces
asyncio's default executor (its idle threads exit; new ones are cloned from the reduced
thread), and long-lived threads of our own (the TFTP engine) call :func:`follow` from their
loop. :func:`threads_above` reads ``/proc/self/task/*/status`` to check that none is left.

Done with ctypes on glibc (``capset``, ``prctl``), no new dependency: python-prctl and
libcap's bindings would add a compiled module for six system calls.

The process keeps uid 0 (files it writes stay root's; the systemd unit adds
``ProtectSystem=strict``), but without CAP_DAC_OVERRIDE it can no longer write or read
files it does not own unless their mode allows it, and without CAP_SYS_ADMIN, CAP_SYS_PTRACE,
CAP_SYS_MODULE ... a bug in a server is no longer a root shell's worth of power.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import errno
import os
import threading
from collections.abc import Iterator, Mapping

from .errors import PxeError

CAPS: dict[str, int] = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
    "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
    "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
}
"""The capabilities named here (linux/capability.h); higher numbers are dropped by number."""

_NAMES = {v: k for k, v in CAPS.items()}

# --- what each service needs ---------------------------------------------------------------

START_CAPS: dict[str, str] = {
    "CAP_NET_BIND_SERVICE": "bind ports below 1024 (DHCP 67, TFTP 69, HTTP 80, portmap 111)",
    "CAP_NET_RAW": "the DHCP probe before full DHCP (AF_PACKET) and SO_BINDTODEVICE",
    "CAP_NET_ADMIN": "SO_RCVBUFFORCE for the TFTP and DHCP sockets, neighbour entries",
    "CAP_SYS_NICE": "the TFTP engine thread's priority (nice -10)",
    "CAP_SYS_RESOURCE": "raise RLIMIT_NOFILE at start",
    "CAP_SETPCAP": "drop the other capabilities from the bounding set once bound",
}
"""Needed only while starting (binding, probing); dropped once every socket is bound."""


# --- the system calls ------------------------------------------------------------------------

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
PR_CAPBSET_READ, PR_CAPBSET_DROP = 23, 24
PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS = 38, 39
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_libc: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def _check(rc: int, what: str) -> int:
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return rc


def capget() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of the calling thread, as 64-bit masks."""
    hdr, data = _Header(_LINUX_CAPABILITY_VERSION_3, 0), (_Data * 2)()
    _check(libc().capget(ctypes.byref(hdr), data), "capget")
    lo, hi = data[0], data[1]
    return (lo.effective | hi.effective << 32, lo.permitted | hi.permitted << 32,
            lo.inheritable | hi.inheritable << 32)


def _capset(effective: int, permitted: int, inheritable: int) -> None:
    hdr, data = _Header(_LINUX_CAPABILITY_VERSION_3, 0), (_Data * 2)()
    for i in (0, 1):
        data[i].effective = effective >> 32 * i & 0xFFFFFFFF
        data[i].permitted = permitted >> 32 * i & 0xFFFFFFFF
        data[i].inheritable = inheritable >> 32 * i & 0xFFFFFFFF
    _check(libc().capset(ctypes.byref(hdr), data), "capset")


def _prctl(option: int, arg2: int = 0) -> int:
    return _check(libc().prctl(option, ctypes.c_ulong(arg2), ctypes.c_ulong(0),
                               ctypes.c_ulong(0), ctypes.c_ulong(0)), f"prctl({option})")


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return 40


def mask(names: object) -> int:
    m = 0
    for n in names:  # type: ignore[attr-defined]
        m |= 1 << CAPS[n]
    return m


def names(m: int) -> list[str]:
    return [_NAMES.get(i, f"cap_{i}") for i in range(64) if m >> i & 1]


# --- dropping, in every thread ---------------------------------------------------------------

_target: int | None = None
"""The capability mask every thread of this process should be reduced to (None: no drop)."""
_generation = 0
_local = threading.local()


def _apply(keep: int) -> None:
    """Reduce the calling thread to ``keep``: bounding set, ambient set, no_new_privs, then
    the effective/permitted sets (order matters: dropping from the bounding set needs
    CAP_SETPCAP, which goes last)."""
    eff, perm, _inh = capget()
    if _prctl(PR_CAPBSET_READ, CAPS["CAP_SETPCAP"]) and eff >> CAPS["CAP_SETPCAP"] & 1:
        for cap in range(last_cap() + 1):
            if not keep >> cap & 1 and _prctl(PR_CAPBSET_READ, cap):
                _prctl(PR_CAPBSET_DROP, cap)
    try:
        _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError:
        pass  # kernels before 4.3 have no ambient set
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    kept = keep & perm
    _capset(kept, kept, 0)


def follow() -> None:
    """Apply the process's drop to the calling thread if it has not been yet (cheap: call it
    from a long-lived thread's loop)."""
    if _target is None or getattr(_local, "generation", 0) == _generation:
        return
    _local.generation = _generation  # once: a refusal is not retried on every pass
    with contextlib.suppress(OSError):  # serve's check of every thread reports it in words
        _apply(_target)


def drop(keep: Mapping[str, str], loop: asyncio.AbstractEventLoop | None = None) -> list[str]:
    """Reduce this thread to ``keep`` (names -> reasons) and make every other thread follow;
    returns the names kept. A PxeError in words when the kernel refuses."""
    global _target, _generation
    m = mask(keep)
    try:
        _apply(m)
    except OSError as exc:
        raise PxeError(f"cannot drop privileges: {exc}",
                       "run on Linux with capabilities (a container may forbid capset or "
                       "prctl); report it if it happens on a plain host") from None
    _target, _generation = m, _generation + 1
    _local.generation = _generation
    if loop is not None:
        # asyncio.to_thread's pool threads were cloned before the drop: replace the pool,
        # its idle threads exit; new ones are cloned from this reduced thread
        old = getattr(loop, "_default_executor", None)
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(
            thread_name_prefix="pxw-io"))
        if old is not None:
            old.shutdown(wait=False)
    return names(m & capget()[1])


# --- acting as an NFS caller ---------------------------------------------------------------

_SYS_SETGROUPS = {"x86_64": 116, "aarch64": 159, "riscv64": 159, "ppc64le": 81,
                  "s390x": 206}
"""setgroups(2) by number: glibc's wrapper changes every thread of the process (as POSIX
wants); the raw system call changes the calling thread only, which is what we need."""


def _setgroups(groups: list[int]) -> None:
    nr = _SYS_SETGROUPS.get(os.uname().machine)
    if nr is None:
        raise OSError(errno.ENOSYS, "setgroups: unknown system call number on this machine")
    arr = (ctypes.c_uint32 * max(1, len(groups)))(*groups)
    _check(libc().syscall(ctypes.c_long(nr), ctypes.c_size_t(len(groups)), arr), "setgroups")


@contextlib.contextmanager
def acting_as(uid: int, gid: int, groups: frozenset[int] | list[int]) -> Iterator[None]:
    """Run the body with filesystem uid/gid and groups of a caller, in this thread only, so
    the kernel's own permission checks apply to what it does (as knfsd does per request).

    While the fsuid is not 0 the kernel also masks CAP_CHOWN, CAP_DAC_*, CAP_FOWNER ... from
    the effective set, and gives them back when it returns to 0. The body must not yield
    to the event loop (other requests would run with this identity)."""
    lc = libc()
    old_uid, old_gid, old_groups = os.geteuid(), os.getegid(), os.getgroups()
    _setgroups(sorted(groups)[:64])
    try:
        lc.setfsgid(ctypes.c_uint32(gid))
        lc.setfsuid(ctypes.c_uint32(uid))
        if lc.setfsuid(ctypes.c_uint32(0xFFFFFFFF)) != uid or \
                lc.setfsgid(ctypes.c_uint32(0xFFFFFFFF)) != gid:
            raise OSError(errno.EPERM, "setfsuid/setfsgid refused (CAP_SETUID/CAP_SETGID)")
        if uid != 0:
            # Paths are walked from /, but knfsd reaches an object by its handle, never
            # checking the caller against the export's ancestors (often 0700, e.g. /root):
            # CAP_DAC_READ_SEARCH back in the effective set lets the walk through. It grants
            # no write: creating, linking, removing, chmod/chown still need the caller's rights.
            eff, perm, inh = capget()
            bit = 1 << CAPS["CAP_DAC_READ_SEARCH"]
            if perm & bit and not eff & bit:
                _capset(eff | bit, perm, inh)
        yield
    finally:
        lc.setfsuid(ctypes.c_uint32(old_uid))
        lc.setfsgid(ctypes.c_uint32(old_gid))
        _setgroups(old_groups)


def thread_status(pid: int | str = "self") -> dict[str, dict[str, str]]:
    """``/proc/PID/task/*/status`` fields per thread id (CapEff, CapBnd, NoNewPrivs ...)."""
    out: dict[str, dict[str, str]] = {}
    base = f"/proc/{pid}/task"
    for tid in os.listdir(base):
        try:
            with open(f"{base}/{tid}/status") as fh:
                out[tid] = dict(ln.rstrip("\n").split(":\t", 1) for ln in fh if ":\t" in ln)
        except OSError:
            continue
    return out


def threads_above(keep_mask: int) -> list[str]:
    """Threads of this process that still hold (or could regain) more than ``keep_mask``."""
    bad = []
    for tid, st in thread_status().items():
        eff, bnd = int(st.get("CapEff", "0"), 16), int(st.get("CapBnd", "0"), 16)
        if eff & ~keep_mask or bnd & ~keep_mask or st.get("NoNewPrivs", "0").strip() != "1":
            bad.append(f"{st.get('Name', '?').strip()} ({tid})")
    return bad


__all__ = ["CAPS", "START_CAPS", "acting_as", "capget", "drop", "follow", 
           "mask", "names", "thread_status", "threads_above"]
