"""MOUNT v3 program: export path -> root handle, the mount list, the export list.

MNT accepts the export path or a directory below it (as knfsd does; archiso
and nfsroot= setups may name a subdirectory); the walk below the export uses
the same jail as LOOKUP, so ``/export/../etc`` is refused rather than resolved.
"""

from __future__ import annotations

import os
import stat

from ...events import EventBus, SessionClosed, SessionOpened
from ...proto import mount3 as m3
from ...proto.nfs3 import NfsError
from ...proto.rpc import Call
from .handles import Export, Resolver, check_name
from .transport import CallContext, Results


class MountProgram:
    prog = m3.MOUNT_PROG
    low = m3.MOUNT_VERS
    high = m3.MOUNT_VERS
    # Only v3: v1/v2 carry NFSv2's 32-byte handles. A v1/v2 caller gets PROG_MISMATCH (3, 3),
    # which tells mount.nfs and klibc's nfsmount to use vers=3.

    def __init__(self, exports: list[Export], resolver: Resolver, bus: EventBus) -> None:
        self.exports = exports
        self.resolver = resolver
        self.bus = bus
        self.table = m3.MountTable()

    def find(self, dirpath: str) -> tuple[Export, str] | None:
        """The export holding ``dirpath`` and the path below it ('' for the export itself)."""
        norm = os.path.normpath("/" + dirpath.strip()) if dirpath.strip() else "/"
        if norm.startswith("//"):
            norm = norm[1:]
        if any(p == ".." for p in dirpath.split("/")):
            return None  # never let MNT climb, even where normpath would make it harmless
        best: tuple[Export, str] | None = None
        for e in self.exports:
            for name in {e.path, e.root}:
                if norm == name or norm.startswith(name.rstrip("/") + "/"):
                    rest = norm[len(name):].strip("/")
                    if best is None or len(rest) < len(best[1]):
                        best = (e, rest)
        return best

    async def dispatch(self, call: Call, ctx: CallContext) -> Results | None:
        proc = call.proc
        if proc == m3.MountProc.NULL:
            return [b""]
        host = ctx.peer[0]
        if proc == m3.MountProc.MNT:
            path = m3.pull_dirpath(call.args)
            return [self._mnt(path, call, ctx)]
        if proc == m3.MountProc.UMNT:
            path = m3.pull_dirpath(call.args)
            if self.table.unmount(host, path):
                self.bus.publish(SessionClosed(service="mountd", peer=ctx.peer_str, target=path,
                                               reason="unmounted", client=host))
            return [b""]
        if proc == m3.MountProc.UMNTALL:
            for path in self.table.unmount_all(host):
                self.bus.publish(SessionClosed(service="mountd", peer=ctx.peer_str, target=path,
                                               reason="unmounted (all)", client=host))
            return [b""]
        if proc == m3.MountProc.DUMP:
            return [m3.encode_mountlist(self.table.entries())]
        if proc == m3.MountProc.EXPORT:
            return [m3.encode_exports((e.path, ["*"]) for e in self.exports)]
        return None

    def _mnt(self, path: str, call: Call, ctx: CallContext) -> bytes:
        found = self.find(path)
        if found is None:
            return m3.encode_mnt_error(m3.MountStat.NOENT if ".." not in path.split("/")
                                       else m3.MountStat.ACCES)
        export, rest = found
        try:
            st = os.lstat(export.root)
            node = self.resolver.node(export, "", st, None)
            for name in (rest.split("/") if rest else []):
                check_name(name)
                rel = f"{node.rel}/{name}" if node.rel else name
                st = os.lstat(export.abspath(rel))
                if not stat.S_ISDIR(st.st_mode):  # a symlink is never followed
                    return m3.encode_mnt_error(m3.MountStat.NOTDIR)
                node = self.resolver.node(export, rel, st, node)
        except FileNotFoundError:
            return m3.encode_mnt_error(m3.MountStat.NOENT)
        except (OSError, NfsError):
            return m3.encode_mnt_error(m3.MountStat.ACCES)
        host = ctx.peer[0]
        if self.table.mount(host, path):
            self.bus.publish(SessionOpened(
                service="mountd", peer=ctx.peer_str, target=path, client=host,
                detail=f"{'rw' if export.rw else 'ro'} {export.squash} {call.cred.describe()}"))
        return m3.encode_mnt_ok(node.fh)

