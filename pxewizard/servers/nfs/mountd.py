"""MOUNT v3 program: export path -> root handle, the mount list, the export list.

MNT accepts the export path or a directory below it (as knfsd does; archiso
and nfsroot= setups may name a subdirectory); the walk below the export uses
the same jail as LOOKUP, so ``/export/../etc`` is refused rather than resolved.
"""

from __future__ import annotations

import os
import stat
import time

from ...events import EventBus, SessionClosed, SessionOpened, TransferFailed
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
        self._refused_said: dict[tuple[str, str], float] = {}  # (host, path) -> when said

    REFUSED_EVERY = 30.0
    """Seconds between two events for one refused (host, path): mount.nfs retries a
    refused MNT for two minutes, the log needs it once."""

    def _refuse(self, stat_: m3.MountStat, path: str, why: str, ctx: CallContext) -> bytes:
        """The MNT error reply, and an event naming the exports that do exist."""
        host, now = ctx.peer[0], time.monotonic()
        key = (host, path[:256])
        if now - self._refused_said.get(key, -self.REFUSED_EVERY) >= self.REFUSED_EVERY:
            if len(self._refused_said) > 4096:
                self._refused_said.clear()
            self._refused_said[key] = now
            exports = ", ".join(e.path for e in self.exports) or "none"
            self.bus.publish(TransferFailed(
                service="mountd", path=path[:256], peer=ctx.peer_str, client=host,
                code=int(stat_), reason=f"MOUNT refused ({stat_.name}): {why}; exports here: "
                                        f"{exports}"))
        return m3.encode_mnt_error(stat_)

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
            if ".." in path.split("/"):
                return self._refuse(m3.MountStat.ACCES, path, "a path with '..' is never "
                                    "mounted", ctx)
            return self._refuse(m3.MountStat.NOENT, path, "no export holds this path", ctx)
        export, rest = found
        try:
            st = os.lstat(export.root)
            node = self.resolver.node(export, "", st, None)
            for name in (rest.split("/") if rest else []):
                check_name(name)
                rel = f"{node.rel}/{name}" if node.rel else name
                st = os.lstat(export.abspath(rel))
                if not stat.S_ISDIR(st.st_mode):  # a symlink is never followed
                    return self._refuse(m3.MountStat.NOTDIR, path, f"{rel} in export "
                                        f"{export.path} is not a directory", ctx)
                node = self.resolver.node(export, rel, st, node)
        except FileNotFoundError:
            return self._refuse(m3.MountStat.NOENT, path, f"export {export.path} has no "
                                f"directory {rest}", ctx)
        except (OSError, NfsError) as exc:
            return self._refuse(m3.MountStat.ACCES, path, f"cannot open it: {exc}", ctx)
        host = ctx.peer[0]
        if self.table.mount(host, path):
            self.bus.publish(SessionOpened(
                service="mountd", peer=ctx.peer_str, target=path, client=host,
                detail=f"{'rw' if export.rw else 'ro'} {export.squash} {call.cred.describe()}"))
        return m3.encode_mnt_ok(node.fh)

