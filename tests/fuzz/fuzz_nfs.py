#!/usr/bin/env python3
"""Fuzz NFSv3 and MOUNTv3 procedure decoding and dispatch: ``python3 tests/fuzz/fuzz_nfs.py``.

One input is one call: a procedure byte, a flags byte (MOUNT or NFS program,
AUTH_SYS or AUTH_NONE, whether the arguments start with a real handle: the
export's root, a file or a directory, so the fuzzer gets past the handle
check) and the argument bytes. The call is encoded as a client would, parsed
with ``parse_call`` and dispatched to the real :class:`NfsProgram` /
:class:`MountProgram` over a small read-only export in a temporary directory
(the same objects the sockets feed).

Expected: ``ValueError`` (GARBAGE_ARGS) and :class:`RpcDenied`. Anything else
out of ``dispatch`` is a crash (on the wire it would be SYSTEM_ERR and an
error line). Invariants checked: the result starts with a status the RFC
defines (nfsstat3 / mountstat3); the read-only export is never changed.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

from _common import check, instrumented, main

with instrumented():
    from pxewizard.events import EventBus
    from pxewizard.proto import mount3 as m3
    from pxewizard.proto import nfs3 as n3
    from pxewizard.proto.rpc import AuthFlavor, RpcDenied, encode_auth_sys, encode_call, \
        parse_call
    from pxewizard.proto.xdr import Reader, Writer
    from pxewizard.servers.nfs.handles import Export, Resolver
    from pxewizard.servers.nfs.mountd import MountProgram
    from pxewizard.servers.nfs.nfsd import NfsProgram
    from pxewizard.servers.nfs.transport import CallContext

TMP = Path(tempfile.mkdtemp(prefix="pxw-fuzz-nfs-", dir=os.environ.get("PXW_FUZZ_TMP")))
ROOT = TMP / "export"
(ROOT / "dir" / "sub").mkdir(parents=True)
(ROOT / "file.bin").write_bytes(bytes(range(256)) * 20)
(ROOT / "dir" / "a.txt").write_text("hello\n")
(ROOT / "escape").symlink_to("/etc")
(ROOT / "dir" / "up").symlink_to("../../..")
(TMP / "outside.txt").write_text("secret")
SNAPSHOT = sorted((p, (ROOT / p).lstat().st_mtime_ns) for p in
                  (str(q.relative_to(ROOT)) for q in ROOT.rglob("*")))

EXPORT = Export.from_config(SimpleNamespace(path=ROOT, rw=False, squash="root_squash",
                                            anonuid=65534, anongid=65534))
BUS = EventBus()
RESOLVER = Resolver([EXPORT])
NFSD = NfsProgram([EXPORT], RESOLVER, BUS, clock=lambda: 1000.0)
MOUNTD = MountProgram([EXPORT], RESOLVER, BUS)
CTX = CallContext(peer=("10.99.0.7", 800), proto="tcp", local=False)
LOOP = asyncio.new_event_loop()
NFS_STATS = {s.value for s in n3.Stat}
MOUNT_STATS = {s.value for s in m3.MountStat}


def _call(prog: int, proc: int, args: bytes, cred: tuple[int, bytes]) -> bytes | None:
    rec = encode_call(0x1234, prog, 3, proc, args, cred=cred)
    try:
        call = parse_call(rec)
        program = NFSD if prog == n3.NFS_PROG else MOUNTD
        results = LOOP.run_until_complete(program.dispatch(call, CTX))
    except (ValueError, RpcDenied):
        return None
    return None if results is None else b"".join(bytes(r) for r in results)


def _handles() -> list[bytes]:
    root = m3.parse_mnt_result(Reader(_call(m3.MOUNT_PROG, 1, bytes(
        Writer().push_string(EXPORT.path)), (AuthFlavor.AUTH_NONE, b"")) or b"")).fh
    out = [root]
    for name in ("file.bin", "dir"):
        res = _call(n3.NFS_PROG, n3.Proc.LOOKUP, bytes(Writer().push_opaque(root)
                                                       .push_string(name)),
                    (AuthFlavor.AUTH_NONE, b""))
        r = Reader(res or b"\0\0\0\1")
        if r.pull_u32() == 0:
            out.append(r.pull_opaque(64))
    return out


HANDLES = _handles()
COUNT = [0]


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    proc, flags, body = data[0] % 24, data[1], data[2:]
    mount = bool(flags & 1)
    cred = (AuthFlavor.AUTH_SYS, encode_auth_sys((flags >> 1 & 1) * 1000, 0, (0,))) \
        if flags & 2 else (AuthFlavor.AUTH_NONE, b"")
    which = (flags >> 2) & 3
    if which and not mount:
        body = bytes(Writer().push_opaque(HANDLES[(which - 1) % len(HANDLES)])) + body
    res = _call(m3.MOUNT_PROG if mount else n3.NFS_PROG, proc % 6 if mount else proc, body,
                cred)
    if res and (mount and proc % 6 in (1,) or not mount and proc):
        st = Reader(res).pull_u32()
        check(st in (MOUNT_STATS if mount else NFS_STATS), f"status {st} is not defined")
    COUNT[0] += 1
    if COUNT[0] % 256 == 0:
        now = sorted((p, (ROOT / p).lstat().st_mtime_ns) for p in
                     (str(q.relative_to(ROOT)) for q in ROOT.rglob("*")))
        check(now == SNAPSHOT, "the read-only export changed")


def seeds() -> list[bytes]:
    w = Writer
    return [
        bytes((1, 4)),                                                 # GETATTR root
        bytes((3, 4)) + bytes(w().push_string("file.bin")),            # LOOKUP
        bytes((3, 12)) + bytes(w().push_string("up")),                 # LOOKUP in dir
        bytes((4, 8)) + bytes(w().push_u32(0x3F)),                     # ACCESS file
        bytes((6, 8)) + bytes(w().push_u64(0).push_u32(4096)),         # READ file
        bytes((16, 4)) + bytes(w().push_u64(0).push_fixed(bytes(8)).push_u32(4096)),
        bytes((17, 4)) + bytes(w().push_u64(0).push_fixed(bytes(8)).push_u32(512)
                               .push_u32(4096)),                       # READDIRPLUS
        bytes((19, 4)), bytes((18, 4)), bytes((20, 4)), bytes((5, 4)),
        bytes((7, 8)) + bytes(w().push_u64(0).push_u32(3).push_u32(2).push_opaque(b"abc")),
        bytes((8, 6)) + bytes(w().push_string("new").push_u32(0)),     # CREATE (ROFS)
        bytes((1, 1)) + bytes(w().push_string(EXPORT.path)),           # MNT
        bytes((5, 1)), bytes((2, 1)), bytes((3, 3)) + bytes(w().push_string("/x")),
    ]


if __name__ == "__main__":
    main(one_input, seeds())
    sys.exit(0)
