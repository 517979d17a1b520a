"""Portmapper version 2 (RFC 1833 section 3): program number -> port, sans-I/O.

Clients (libnfs, mount.nfs, the kernel's NFS root code) ask port 111 where
MOUNT and NFS listen. :class:`PortmapTable` is the table and the answers to
NULL, SET, UNSET, GETPORT and DUMP; the adapter owns the sockets. CALLIT is
not offered (it is an amplification vector and nothing we serve needs it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from .xdr import Reader, Writer

PMAP_PROG = 100000
PMAP_VERS = 2
PMAP_PORT = 111

IPPROTO_TCP = 6
IPPROTO_UDP = 17


class PmapProc(IntEnum):
    NULL = 0
    SET = 1
    UNSET = 2
    GETPORT = 3
    DUMP = 4
    CALLIT = 5


@dataclass(frozen=True, order=True)
class Mapping:
    """RFC 1833 ``struct mapping``."""

    prog: int
    vers: int
    prot: int
    port: int

    def push(self, w: Writer) -> None:
        w.push_u32(self.prog).push_u32(self.vers).push_u32(self.prot).push_u32(self.port)

    @classmethod
    def pull(cls, r: Reader) -> "Mapping":
        return cls(r.pull_u32(), r.pull_u32(), r.pull_u32(), r.pull_u32())


class PortmapTable:
    """The registered mappings and the answers to each procedure (results only, no RPC header)."""

    def __init__(self, mappings: list[Mapping] | None = None) -> None:
        self.mappings: set[Mapping] = set(mappings or [])
        self.mappings.add(Mapping(PMAP_PROG, PMAP_VERS, IPPROTO_TCP, PMAP_PORT))
        self.mappings.add(Mapping(PMAP_PROG, PMAP_VERS, IPPROTO_UDP, PMAP_PORT))

    def getport(self, prog: int, vers: int, prot: int) -> int:
        """RFC 1833: the port, or 0 when the program/version/protocol is not registered."""
        for m in self.mappings:
            if (m.prog, m.vers, m.prot) == (prog, vers, prot):
                return m.port
        return 0

    def handle(self, proc: int, args: Reader, *, local: bool) -> bytes | None:
        """Results of one procedure; None when ``proc`` is not offered (PROC_UNAVAIL).

        ``local``: the call came from this machine; only such callers may SET/UNSET
        (as rpcbind does), so a client on the wire cannot redirect others' mounts.
        """
        w = Writer()
        if proc == PmapProc.NULL:
            return b""
        if proc == PmapProc.SET:
            m = Mapping.pull(args)
            ok = local and self.getport(m.prog, m.vers, m.prot) == 0
            if ok:
                self.mappings.add(m)
            return bytes(w.push_bool(ok))
        if proc == PmapProc.UNSET:
            m = Mapping.pull(args)
            gone = {x for x in self.mappings if (x.prog, x.vers) == (m.prog, m.vers)
                    and x.prog != PMAP_PROG} if local else set()
            self.mappings -= gone
            return bytes(w.push_bool(bool(gone)))
        if proc == PmapProc.GETPORT:
            m = Mapping.pull(args)
            return bytes(w.push_u32(self.getport(m.prog, m.vers, m.prot)))
        if proc == PmapProc.DUMP:
            # pmaplist: a linked list of optional entries (RFC 1833 section 3.1).
            for m in sorted(self.mappings):
                w.push_bool(True)
                m.push(w)
            w.push_bool(False)
            return bytes(w)
        return None


def encode_set_args(prog: int, vers: int, prot: int, port: int) -> bytes:
    """Arguments of PMAPPROC_SET / UNSET / GETPORT (a mapping)."""
    w = Writer()
    Mapping(prog, vers, prot, port).push(w)
    return bytes(w)


def parse_dump(r: Reader) -> list[Mapping]:
    out = []
    while r.pull_bool():
        out.append(Mapping.pull(r))
    return out
