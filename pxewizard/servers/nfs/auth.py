"""Who a caller is on an export: AUTH_SYS ids after squashing, and the permission checks.

The server runs as root and does every file operation itself, so it must
apply what the kernel would apply to the client's user: the /etc/exports
squash options (exports(5)) and the owner/group/other mode bits, with the two
exceptions knfsd makes for NFS semantics (the owner may always read and write
a file it holds open, which the client already checked at open time).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from ...proto.nfs3 import (
    ACCESS_DELETE,
    ACCESS_EXECUTE,
    ACCESS_EXTEND,
    ACCESS_LOOKUP,
    ACCESS_MODIFY,
    ACCESS_READ,
    NfsError,
    Stat,
    access_bits,
)
from ...proto.rpc import AuthFlavor, Credentials


@dataclass(frozen=True)
class Ids:
    """The effective identity of a call on one export."""

    uid: int
    gid: int
    gids: frozenset[int]

    @property
    def root(self) -> bool:
        return self.uid == 0

    def groups(self) -> frozenset[int]:
        return self.gids | {self.gid}


def squash_ids(cred: Credentials, squash: str, anonuid: int, anongid: int) -> Ids:
    """Map credentials through an export's squash option (exports(5)).

    - AUTH_NONE callers are anonymous.
    - ``all_squash``: every uid and gid becomes anonuid/anongid.
    - ``root_squash`` (the default): uid 0 becomes anonuid, gid 0 (primary or
      supplementary) becomes anongid; everyone else keeps their ids.
    - ``no_root_squash``: ids are used as sent.
    """
    if cred.flavor != AuthFlavor.AUTH_SYS or cred.uid is None or cred.gid is None:
        return Ids(anonuid, anongid, frozenset())
    if squash == "all_squash":
        return Ids(anonuid, anongid, frozenset())
    uid, gid, gids = cred.uid, cred.gid, frozenset(cred.gids)
    if squash == "root_squash":
        if uid == 0:
            uid = anonuid
        if gid == 0:
            gid = anongid
        if 0 in gids:
            gids = (gids - {0}) | {anongid}
    return Ids(uid, gid, gids)


def bits(st: os.stat_result, ids: Ids) -> int:
    """rwx (4/2/1) the caller holds on this object."""
    return access_bits(st.st_mode, st.st_uid, st.st_gid, ids.uid, ids.groups())


def may_read(st: os.stat_result, ids: Ids) -> None:
    """READ: read permission, or ownership (knfsd's owner override)."""
    if ids.uid != st.st_uid and not bits(st, ids) & 4:
        raise NfsError(Stat.ACCES, "no read permission")


def may_write(st: os.stat_result, ids: Ids) -> None:
    """WRITE and truncating SETATTR: write permission, or ownership."""
    if ids.uid != st.st_uid and not bits(st, ids) & 2:
        raise NfsError(Stat.ACCES, "no write permission")


def may_search(st: os.stat_result, ids: Ids) -> None:
    """LOOKUP in a directory: execute (search) permission."""
    if not bits(st, ids) & 1:
        raise NfsError(Stat.ACCES, "no search permission on the directory")


def may_list(st: os.stat_result, ids: Ids) -> None:
    """READDIR: read permission on the directory."""
    if not bits(st, ids) & 4:
        raise NfsError(Stat.ACCES, "no read permission on the directory")


def may_change_dir(st: os.stat_result, ids: Ids) -> None:
    """Create, remove or rename entries: write and search permission on the directory."""
    if bits(st, ids) & 3 != 3:
        raise NfsError(Stat.ACCES, "no write permission on the directory")


def may_delete(dir_st: os.stat_result, victim: os.stat_result, ids: Ids) -> None:
    """Removing/renaming away an entry: directory write permission, and the sticky bit rule."""
    may_change_dir(dir_st, ids)
    if dir_st.st_mode & stat.S_ISVTX and not ids.root and \
            ids.uid not in (dir_st.st_uid, victim.st_uid):
        raise NfsError(Stat.ACCES, "sticky directory: only the owner may remove this entry")


def access_mask(st: os.stat_result, ids: Ids, rw: bool) -> int:
    """ACCESS3 result bits for an object (RFC 1813 section 3.3.4)."""
    b = bits(st, ids)
    is_dir = stat.S_ISDIR(st.st_mode)
    out = 0
    if b & 4:
        out |= ACCESS_READ
    if b & 1:
        out |= ACCESS_LOOKUP if is_dir else ACCESS_EXECUTE
    if rw and (b & 2 or (not is_dir and ids.uid == st.st_uid)):
        out |= ACCESS_MODIFY | ACCESS_EXTEND
        if is_dir:
            out |= ACCESS_DELETE
    return out
