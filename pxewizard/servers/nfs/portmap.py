"""The portmapper on port 111, or registration with the rpcbind already running there.

Clients that are not told the ports (``nfs-ls nfs://server/path``, a plain
``mount server:/path``) ask port 111 first. When nothing holds it we answer
ourselves (portmap v2 over TCP and UDP). When rpcbind holds it we register
our programs with PMAPPROC_SET over loopback, as knfsd's daemons do, and
remove them again with PMAPPROC_UNSET when we stop.
"""

from __future__ import annotations

import os
import socket
import struct

from ...proto import portmap as pm
from ...proto.rpc import AuthFlavor, encode_auth_sys, encode_call, parse_reply
from .transport import CallContext, Results


class PortmapProgram:
    prog = pm.PMAP_PROG
    low = pm.PMAP_VERS
    high = pm.PMAP_VERS

    def __init__(self, table: pm.PortmapTable) -> None:
        self.table = table

    async def dispatch(self, call, ctx: CallContext) -> Results | None:  # type: ignore[no-untyped-def]
        res = self.table.handle(call.proc, call.args, local=ctx.local)
        return None if res is None else [res]


def _reserved_udp_socket() -> socket.socket:
    """A loopback UDP socket on a privileged port: rpcbind trusts SET/UNSET from those."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for port in range(1023, 600, -1):
        try:
            s.bind(("127.0.0.1", port))
            return s
        except OSError:
            continue
    s.bind(("127.0.0.1", 0))
    return s


def rpcbind_call(proc: int, mapping: pm.Mapping, timeout: float = 1.0,
                 port: int = pm.PMAP_PORT) -> bool | None:
    """One SET/UNSET to the local rpcbind (blocking; run it in a thread). None: no answer."""
    s = _reserved_udp_socket()
    try:
        s.settimeout(timeout)
        xid = struct.unpack(">I", os.urandom(4))[0]
        args = pm.encode_set_args(mapping.prog, mapping.vers, mapping.prot, mapping.port)
        cred = (AuthFlavor.AUTH_SYS, encode_auth_sys(os.geteuid(), os.getegid()))
        s.sendto(encode_call(xid, pm.PMAP_PROG, pm.PMAP_VERS, proc, args, cred=cred),
                 ("127.0.0.1", port))
        for _ in range(4):
            data = s.recv(512)
            rep = parse_reply(data)
            if rep.xid == xid:
                return rep.accepted and rep.stat == 0 and rep.body.pull_bool()
        return None
    except (OSError, ValueError):
        return None
    finally:
        s.close()


def register(mappings: list[pm.Mapping], port: int = pm.PMAP_PORT) -> list[str]:
    """Register each mapping with the running rpcbind; the problems, in words (empty: all done).

    An old registration of the same program (a previous run, knfsd) is removed first.
    """
    problems = []
    for prog, vers in sorted({(m.prog, m.vers) for m in mappings}):
        rpcbind_call(pm.PmapProc.UNSET, pm.Mapping(prog, vers, 0, 0), port=port)
    for m in mappings:
        ok = rpcbind_call(pm.PmapProc.SET, m, port=port)
        if not ok:
            proto = "tcp" if m.prot == pm.IPPROTO_TCP else "udp"
            problems.append(f"program {m.prog} v{m.vers}/{proto} port {m.port}: "
                            + ("no answer" if ok is None else "refused"))
    return problems


def unregister(mappings: list[pm.Mapping], port: int = pm.PMAP_PORT) -> None:
    for prog, vers in sorted({(m.prog, m.vers) for m in mappings}):
        rpcbind_call(pm.PmapProc.UNSET, pm.Mapping(prog, vers, 0, 0), timeout=0.5, port=port)
