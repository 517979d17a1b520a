"""MOUNT protocol version 3 (RFC 1813 section 5): codecs and the mount table, sans-I/O.

MNT turns an export path into the root file handle; UMNT/UMNTALL and DUMP
keep the advisory list of who mounted what (``showmount -a``); EXPORT lists
the exports (``showmount -e``, ``nfs-ls -D``). Which handle a path gets is the
NFS side's business: the adapter passes a function in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum, IntEnum

from .rpc import AuthFlavor
from .xdr import Reader, Writer

MOUNT_PROG = 100005
MOUNT_VERS = 3
MNTPATHLEN = 1024
MNTNAMLEN = 255
FHSIZE3 = 64


class MountProc(IntEnum):
    NULL = 0
    MNT = 1
    DUMP = 2
    UMNT = 3
    UMNTALL = 4
    EXPORT = 5


class MountStat(IntEnum):
    """RFC 1813 section 5.1.5 ``mountstat3``."""

    OK = 0
    PERM = 1
    NOENT = 2
    IO = 5
    ACCES = 13
    NOTDIR = 20
    INVAL = 22
    NAMETOOLONG = 63
    NOTSUPP = 10004
    SERVERFAULT = 10006


def pull_dirpath(r: Reader) -> str:
    """``dirpath`` argument of MNT and UMNT; ValueError when over MNTPATHLEN."""
    return r.pull_string(MNTPATHLEN)


def encode_mnt_ok(fh: bytes, flavors: Iterable[int] = (AuthFlavor.AUTH_SYS, AuthFlavor.AUTH_NONE)
                  ) -> bytes:
    """``mountres3`` with MNT3_OK: the root handle and the auth flavors we accept."""
    w = Writer().push_u32(MountStat.OK).push_opaque(fh)
    fl = list(flavors)
    w.push_u32(len(fl))
    for f in fl:
        w.push_u32(f)
    return bytes(w)


def encode_mnt_error(stat: MountStat) -> bytes:
    return bytes(Writer().push_u32(stat))


def encode_exports(exports: Iterable[tuple[str, Iterable[str]]]) -> bytes:
    """``exports``: linked list of (directory, groups) (RFC 1813 section 5.2.5)."""
    w = Writer()
    for path, groups in exports:
        w.push_bool(True).push_string(path)
        for g in groups:
            w.push_bool(True).push_string(g)
        w.push_bool(False)
    w.push_bool(False)
    return bytes(w)


def encode_mountlist(entries: Iterable[tuple[str, str]]) -> bytes:
    """``mountlist``: linked list of (hostname, directory) (RFC 1813 section 5.2.2)."""
    w = Writer()
    for host, path in entries:
        w.push_bool(True).push_string(host).push_string(path)
    w.push_bool(False)
    return bytes(w)


# --- client side, for tests -----------------------------------------------------------


@dataclass
class MntResult:
    status: int
    fh: bytes = b""
    flavors: tuple[int, ...] = ()


def parse_mnt_result(r: Reader) -> MntResult:
    st = r.pull_u32()
    if st != MountStat.OK:
        return MntResult(st)
    fh = r.pull_opaque(FHSIZE3)
    n = r.pull_u32()
    return MntResult(st, fh, tuple(r.pull_u32() for _ in range(n)))


def parse_exports(r: Reader) -> list[tuple[str, list[str]]]:
    out = []
    while r.pull_bool():
        path = r.pull_string(MNTPATHLEN)
        groups = []
        while r.pull_bool():
            groups.append(r.pull_string(MNTNAMLEN))
        out.append((path, groups))
    return out


def parse_mountlist(r: Reader) -> list[tuple[str, str]]:
    out = []
    while r.pull_bool():
        out.append((r.pull_string(MNTNAMLEN), r.pull_string(MNTPATHLEN)))
    return out


# --- the mount table ------------------------------------------------------------------


class MountState(Enum):
    UNMOUNTED = "unmounted"
    MOUNTED = "mounted"


class MountError(Exception):
    """An impossible mount-table transition (a bug, not a client error)."""


# Rules: (state, event) -> next state. A repeated MNT is legal (clients remount);
# a UMNT of something not mounted is a no-op for the client but no transition here.
TRANSITIONS: dict[tuple[MountState, str], MountState] = {
    (MountState.UNMOUNTED, "mnt"): MountState.MOUNTED,
    (MountState.MOUNTED, "mnt"): MountState.MOUNTED,
    (MountState.MOUNTED, "umnt"): MountState.UNMOUNTED,
}


class MountTable:
    """Who mounted which export (advisory, RFC 1813 section 5.2.2: DUMP may be stale)."""

    def __init__(self) -> None:
        self._state: dict[tuple[str, str], MountState] = {}

    def state(self, host: str, path: str) -> MountState:
        return self._state.get((host, path), MountState.UNMOUNTED)

    def _go(self, host: str, path: str, event: str) -> MountState:
        cur = self.state(host, path)
        nxt = TRANSITIONS.get((cur, event))
        if nxt is None:
            raise MountError(f"{event} from {cur.value} for {host}:{path}")
        if nxt is MountState.UNMOUNTED:
            self._state.pop((host, path), None)
        else:
            self._state[(host, path)] = nxt
        return nxt

    def mount(self, host: str, path: str) -> bool:
        """Record a mount; True when it is new (an event is worth publishing)."""
        new = self.state(host, path) is MountState.UNMOUNTED
        self._go(host, path, "mnt")
        return new

    def unmount(self, host: str, path: str) -> bool:
        """Forget a mount; True when it existed."""
        if self.state(host, path) is MountState.UNMOUNTED:
            return False
        self._go(host, path, "umnt")
        return True

    def unmount_all(self, host: str) -> list[str]:
        paths = [p for (h, p) in self._state if h == host]
        for p in paths:
            self._go(host, p, "umnt")
        return paths

    def entries(self) -> list[tuple[str, str]]:
        return sorted(self._state)
