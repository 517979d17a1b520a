"""Files pxewizard writes (state dir, event log, lease file, the saved Plan), opened so that
another local user cannot redirect or read them.

Rules (README "Safety and security"):

- a directory we write into is owned by us (or root) and writable by nobody else; the
  state dir must not even be sticky-world-writable (``/tmp`` style), a directory given
  for one file (``log.jsonl``, ``dhcp.lease_file``) may be, as the file itself is then
  checked;
- files are opened with ``O_NOFOLLOW`` and must be regular files of ours: a planted
  ``events.jsonl -> /etc/shadow`` is refused, not appended to;
- temporary files are created with ``O_CREAT | O_EXCL`` under an unpredictable name, so a
  pre-created ``plan.toml.tmp`` (mode 0666, someone else's) gains nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

from .errors import PxeError, os_error_words


def check_dir(path: Path, field: str, *, sticky_ok: bool = False, create: bool = True) -> None:
    """Refuse a directory another user could plant links or files in; create it (0750)."""
    if create:
        try:
            path.mkdir(mode=0o750, parents=True, exist_ok=True)
        except OSError as exc:
            raise PxeError(f"{field}: cannot create {path}: {exc.strerror}",
                           f"create it as root (`install -d -m 0750 {path}`) or set {field} "
                           "to another directory") from None
    try:
        st = os.stat(path)
    except OSError as exc:
        raise PxeError(f"{field}: cannot use {path}: {exc.strerror}",
                       f"set {field} to a directory of yours") from None
    me = os.geteuid()
    if not stat.S_ISDIR(st.st_mode):
        raise PxeError(f"{field}: {path} is not a directory", f"set {field} to a directory")
    fix = (f"`chown {me}:{os.getegid()} {path} && chmod 0750 {path}`, or set {field} to a "
           "directory only you can write")
    if st.st_uid not in (me, 0):
        raise PxeError(f"{field}: {path} belongs to uid {st.st_uid}, not to us (uid {me}): "
                       "its owner could plant links that make us write elsewhere", fix)
    writable_by_others = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable_by_others and not (sticky_ok and st.st_mode & stat.S_ISVTX):
        raise PxeError(f"{field}: {path} is writable by other users (mode "
                       f"{stat.S_IMODE(st.st_mode):04o}): they could plant links or files "
                       "that we would follow", fix)


def open_private(path: Path, flags: int, mode: int, *, field: str = "") -> int:
    """``os.open`` that never follows a final symlink and accepts only a regular file of
    ours; a file of ours that others may write gets ``mode`` back."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        # ELOOP from O_NOFOLLOW; EACCES when fs.protected_symlinks refuses first
        if exc.errno == errno.ELOOP or os.path.islink(path):
            raise PxeError(f"{field + ': ' if field else ''}{path} is a symbolic link; "
                           "pxewizard does not write through links",
                           f"remove the link (`rm {path}`) or choose another path") from None
        raise PxeError(f"{field + ': ' if field else ''}cannot open {path}: "
                       f"{os_error_words(exc)}",
                       "check the directory's owner and mode, or choose another path") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        os.close(fd)
        raise PxeError(f"{field + ': ' if field else ''}{path} is not a regular file owned by "
                       f"uid {os.geteuid()} (owner uid {st.st_uid})",
                       f"move it away (`mv {path} {path}.old`) and start again")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH | stat.S_IROTH):
        os.fchmod(fd, mode)
    return fd


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``path`` through a fresh temporary file (O_CREAT|O_EXCL, random name, ``mode``)
    renamed over it: a reader sees the old or the new content, never half of it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with open(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)  # rename(2) replaces a symlink at ``path``, never its target
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise

__all__ = ["check_dir", "open_private", "write_atomic"]
