"""The served file tree: one jailed view shared by TFTP, HTTP (and NBD/NFS lookups).

A :class:`FileTree` is built from three kinds of entries, looked up in this
order:

1. generated files held in memory (menus, iPXE scripts),
2. single files mapped from the boot media (``sysresccd/x86_64/airootfs.sfs``
   -> ``/run/archiso/bootmnt/sysresccd/x86_64/airootfs.sfs``), and directories
   mapped under a virtual prefix,
3. root directories served as they are.

Nothing is copied: the media stays where it lies. Every lookup is jailed:
``..`` components, NUL bytes and symlinks that lead out of their directory are
refused; a leading ``/`` or ``\\`` means the tree's root (as tftpd-hpa's
``-s``), and backslashes are separators (Windows-made clients). Files that are
not readable by others are refused like tftpd-hpa does, so a boot tree that
works here works with any server.

One code path opens every served file, for every service and every mode
(:func:`open_beneath`): ``openat2(2)`` relative to the directory the file came
from with ``RESOLVE_BENEATH`` (the kernel refuses any step out of it, whatever
is swapped in between the lookup and the open), ``O_NONBLOCK`` (a FIFO swapped
in cannot block the event loop) and an ``fstat`` check that a regular file (or
block device) was opened. Single files mapped into the tree (loaders, an NFS
root's kernels, an .iso) are opened with ``RESOLVE_NO_SYMLINKS`` too: nothing
in their place may be a link. Kernels older than 5.6 (no openat2) get the same
rules from ``O_NOFOLLOW`` opens one component at a time; links inside a root
are then refused rather than followed.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import PxeError


class TreeError(PxeError):
    """Base of lookup failures; ``code`` is a TFTP error code, ``status`` an HTTP status."""

    code = 0
    status = 500


class NotFound(TreeError):
    code = 1
    status = 404


class AccessDenied(TreeError):
    code = 2
    status = 403


_SYS_OPENAT2 = 437  # the same number on every Linux architecture (since 5.6)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _openat2(dirfd: int, rel: str, flags: int, resolve: int) -> int:
    how = _OpenHow(flags, 0, resolve)
    fd = _libc.syscall(_SYS_OPENAT2, ctypes.c_int(dirfd), os.fsencode(rel), ctypes.byref(how),
                       ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), rel)
    return int(fd)


def _probe_openat2() -> bool:
    try:
        os.close(_openat2(-100, "/", os.O_PATH | os.O_CLOEXEC, 0))  # AT_FDCWD
        return True
    except OSError:  # ENOSYS (Linux < 5.6) or EPERM (a seccomp filter without openat2)
        return False


HAVE_OPENAT2 = _probe_openat2()
"""openat2(2) works here; else :func:`open_beneath` walks with O_NOFOLLOW per component."""
_BASE_FLAGS = os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK


def _open_walk(dirfd: int, rel: str, flags: int) -> int:
    """The fallback: one O_NOFOLLOW open per component below ``dirfd`` (no link followed)."""
    parts = rel.split("/")
    cur = dirfd
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=cur)
            if cur != dirfd:
                os.close(cur)
            cur = nxt
        return os.open(parts[-1], flags | os.O_NOFOLLOW, dir_fd=cur)
    finally:
        if cur != dirfd:
            os.close(cur)


def open_beneath(jail: Path | str, rel: str, *, links: bool = False,
                 flags: int = os.O_RDONLY, block_ok: bool = True) -> int:
    """Open ``rel`` (a normalised relative path) inside the directory ``jail``; never outside.

    The one way a served file is opened (TFTP, HTTP, NBD, NFS). ``links``: symlinks that
    stay inside ``jail`` are followed (a root served as it is); otherwise any link on the
    way is refused. The descriptor is checked with ``fstat``: a regular file (or, with
    ``block_ok``, a block device), so a FIFO, socket or device swapped in is refused and,
    being opened ``O_NONBLOCK``, cannot block the caller. Raises NotFound / AccessDenied
    with the reason in words (``errno`` of the open kept as ``.errno``).
    """
    if not rel or rel.startswith("/") or "\x00" in rel \
            or any(p in ("", ".", "..") for p in rel.split("/")):
        raise AccessDenied(f"{rel!r} is not a plain relative path")
    try:
        dirfd = os.open(jail, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise NotFound(f"{rel}: the served directory {jail} is gone "
                       f"({exc.strerror})") from None
    try:
        if HAVE_OPENAT2:
            resolve = _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS
            if not links:
                resolve |= _RESOLVE_NO_SYMLINKS
            fd = _openat2(dirfd, rel, flags | _BASE_FLAGS, resolve)
        else:
            fd = _open_walk(dirfd, rel, flags | _BASE_FLAGS)
    except OSError as exc:
        raise _open_error(exc, jail, rel) from None
    finally:
        os.close(dirfd)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise NotFound(f"{rel} is a directory, not a file")
        if not (stat.S_ISREG(st.st_mode) or (block_ok and stat.S_ISBLK(st.st_mode))):
            raise AccessDenied(f"{rel} in {jail} is not a regular file (a FIFO, socket or "
                               "device is never served)")
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_dir_beneath(jail: Path | str, rel: str) -> int:
    """An ``O_PATH`` descriptor of the directory ``rel`` inside ``jail`` ('' = the jail),
    reached with no link followed and never outside (uploads: create and link in it with
    ``dir_fd``, so a directory swapped for a link after the check gains nothing)."""
    try:
        dirfd = os.open(jail, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise NotFound(f"the directory {jail} is gone ({exc.strerror})") from None
    if not rel:
        return dirfd
    flags = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
    try:
        if HAVE_OPENAT2:
            return _openat2(dirfd, rel, flags,
                            _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS | _RESOLVE_NO_SYMLINKS)
        return _open_walk(dirfd, rel, flags)
    except OSError as exc:
        raise _open_error(exc, jail, rel) from None
    finally:
        os.close(dirfd)


def _open_error(exc: OSError, jail: Path | str, rel: str) -> TreeError:
    e = exc.errno
    if e in (errno.ENOENT, errno.ENOTDIR):
        err: TreeError = NotFound(f"file not found: {rel} (in {jail})")
    elif e == errno.EXDEV:
        err = AccessDenied(f"{rel} is a link that leads out of the served directory {jail} "
                           "(or one was swapped in after the lookup): refused")
    elif e == errno.ELOOP:
        err = AccessDenied(f"{rel} in {jail} is (or passes through) a symbolic link, and "
                           "links are not followed there (one swapped in is refused): refused")
    elif e == errno.EISDIR:
        err = NotFound(f"{rel} is a directory, not a file")
    elif e in (errno.EACCES, errno.EPERM):
        err = AccessDenied(f"{rel}: permission denied in {jail}")
    else:
        err = AccessDenied(f"{rel}: cannot open in {jail}: {exc.strerror or exc}")
    err.errno = e  # type: ignore[attr-defined]
    return err


@dataclass(frozen=True)
class FileRef:
    """A file the tree resolved. Exactly one of ``data``, ``real`` and ``container`` is set."""

    path: str
    """Normalised virtual path (no leading slash)."""
    size: int
    """Size in bytes."""
    mtime: float
    """Modification time."""
    data: bytes | None = None
    """Contents of a generated file."""
    real: Path | None = None
    """Path of a file on disk."""
    container: Path | None = None
    """A file stored inside another one (a file of an unmounted .iso, see
    :meth:`FileTree.add_extent`): its ``size`` bytes start at ``offset`` of ``container``.
    ``real`` stays None so code that would read a whole file fails instead of serving the
    .iso's first bytes."""
    offset: int = 0
    """Byte offset of the file inside ``container`` (0 otherwise)."""
    jail: Path | None = None
    """Directory the file (or container) is opened in: :func:`open_beneath` never leaves it."""
    rel: str = ""
    """Its path relative to ``jail``."""
    links: bool = False
    """Symlinks inside ``jail`` are followed (a served root); False: none is (mapped files)."""
    world_readable: bool = False
    """The lookup required mode o+r; :meth:`open_fd` checks it again."""

    def location(self) -> tuple[Path, int] | None:
        """(file on disk, offset where this file's bytes start), or None for generated data.

        Servers read ``size`` bytes from there (mmap: map from the page below ``offset``)."""
        if self.real is not None:
            return self.real, 0
        if self.container is not None:
            return self.container, self.offset
        return None

    def open_fd(self) -> int:
        """Open the file on disk read-only, jailed (:func:`open_beneath`), race-free.

        The lookup checked the path, but a link, a FIFO or a directory could be swapped
        in between that check and this open; the open itself is jailed by the kernel, so
        what is opened now is checked again: a regular file (or block device) inside the
        jail, still world-readable when that is required.
        Raises AccessDenied / NotFound like the lookup does.
        """
        if self.jail is None or not self.rel:
            raise NotFound(f"{self.path} is generated, not a file on disk")
        fd = open_beneath(self.jail, self.rel, links=self.links)
        try:
            st = os.fstat(fd)
            if self.world_readable and not st.st_mode & stat.S_IROTH:
                raise AccessDenied(f"{self.path}: file must have global read permissions "
                                   f"(mode {stat.S_IMODE(st.st_mode):04o}; fix: chmod o+r "
                                   f"{self.jail / self.rel})")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def read(self) -> bytes:
        """Whole contents (small files only: menus, configs, netascii), through :meth:`open_fd`."""
        if self.data is not None:
            return self.data
        fd = self.open_fd()
        try:
            out = bytearray()
            while len(out) < self.size:
                chunk = os.pread(fd, self.size - len(out), self.offset + len(out))
                if not chunk:
                    break
                out += chunk
            return bytes(out)
        finally:
            os.close(fd)


def normalize(request: str) -> str:
    """Client path -> virtual path, or raise AccessDenied.

    ``\\`` is a separator, leading separators mean the root, ``.`` and empty
    components vanish, ``..`` and NUL are refused.
    """
    if "\x00" in request:
        raise AccessDenied(f"path {request!r} contains a NUL byte")
    parts = []
    for part in request.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise AccessDenied(f"path {request!r} goes up with '..': refused, "
                               "nothing outside the served root is readable")
        parts.append(part)
    return "/".join(parts)


def _jailed(real: Path, jail: Path | None) -> tuple[Path, str]:
    """(jail directory, normalised path inside it) of a file mapped into the tree.

    With a jail, ``real`` is taken as written below it (never resolved: a link in it is
    what the jail must refuse); without, ``real`` is resolved now, once."""
    if jail is not None:
        try:
            rel = Path(os.path.abspath(real)).relative_to(os.path.abspath(jail)).as_posix()
        except ValueError:
            raise AccessDenied(f"{real} is not inside {jail}") from None
        return Path(os.path.realpath(jail)), normalize(rel)
    resolved = Path(os.path.realpath(real))
    return resolved.parent, resolved.name


class FileTree:
    """Generated files, mapped files and directories, and plain roots, all jailed."""

    def __init__(self, roots: list[Path] | None = None, *, case_insensitive: bool = False,
                 require_world_readable: bool = True) -> None:
        self._memory: dict[str, tuple[bytes, float]] = {}
        self._files: dict[str, tuple[Path, str]] = {}  # vpath -> (jail, path inside it)
        self._extents: dict[str, tuple[Path, str, int, int]] = {}  # -> (jail, .iso, off, size)
        self._dirs: list[tuple[str, Path]] = []  # (virtual prefix, real dir), longest prefix first
        self.roots: list[Path] = [Path(r).resolve() for r in roots or []]
        self.case_insensitive = case_insensitive
        self.require_world_readable = require_world_readable

    # --- building ---------------------------------------------------------------

    def add_bytes(self, vpath: str, data: bytes | str, mtime: float | None = None) -> None:
        """A generated file (menu, script)."""
        if isinstance(data, str):
            data = data.encode()
        self._memory[normalize(vpath)] = (data, time.time() if mtime is None else mtime)

    def add_file(self, vpath: str, real: Path, jail: Path | None = None) -> None:
        """Map one real file (from the media or a loader directory) at a virtual path.

        ``jail``: the directory it must stay inside (an NFS root's kernels: the root, which
        clients may write to), opened with no link followed anywhere below it. Without
        one, ``real`` is resolved now (the operator's own loaders may be links) and jailed
        to the directory it resolves into; a link put in its place later is refused.
        """
        self._files[normalize(vpath)] = _jailed(Path(real), jail)

    def add_extent(self, vpath: str, real: Path, offset: int, size: int) -> None:
        """Map ``size`` bytes at ``offset`` of a real file (a file inside an unmounted .iso:
        ISO 9660 stores each file as one contiguous extent, so nothing is copied)."""
        jail, rel = _jailed(Path(real), None)
        self._extents[normalize(vpath)] = (jail, rel, offset, size)

    def add_dir(self, vprefix: str, real: Path) -> None:
        """Map a real directory under a virtual prefix ('' = at the root)."""
        self._dirs.append((normalize(vprefix), Path(real).resolve()))
        self._dirs.sort(key=lambda d: -len(d[0]))

    def add_root(self, real: Path) -> None:
        self.roots.append(Path(real).resolve())

    # --- lookup -----------------------------------------------------------------

    def resolve(self, request: str) -> FileRef:
        """Find a file; raises NotFound or AccessDenied with a message in words."""
        vpath = normalize(request)
        if not vpath:
            raise NotFound("no file name given")
        key = self._key(vpath)
        hit = self._memory.get(key)
        if hit is not None:
            return FileRef(path=key, size=len(hit[0]), mtime=hit[1], data=hit[0])
        mapped = self._files.get(key)
        if mapped is not None:
            return self._stat(key, mapped[0], mapped[1], links=False)
        extent = self._extents.get(key)
        if extent is not None:
            ref = self._stat(key, extent[0], extent[1], links=False)
            return FileRef(path=key, size=extent[3], mtime=ref.mtime,
                           container=extent[0] / extent[1], offset=extent[2], jail=extent[0],
                           rel=extent[1], world_readable=ref.world_readable)
        for prefix, rdir in self._dirs:
            if prefix == "" or key == prefix or key.startswith(prefix + "/"):
                rest = key[len(prefix):].lstrip("/")
                found = self._lookup_in(rdir, rest)
                if found is not None:
                    ref = self._stat_or_none(key, rdir, found)
                    if ref is not None:
                        return ref
        for root in self.roots:
            found = self._lookup_in(root, key)
            if found is not None:
                ref = self._stat_or_none(key, root, found)
                if ref is not None:
                    return ref
        raise NotFound(f"file not found: {vpath}")

    def _stat_or_none(self, vpath: str, jail: Path, rel: str) -> FileRef | None:
        """A root's file, or None when the root has no such name (the next root may)."""
        try:
            return self._stat(vpath, jail, rel, links=True)
        except NotFound as exc:
            if getattr(exc, "errno", None) in (errno.ENOENT, errno.ENOTDIR):
                return None
            raise

    def _key(self, vpath: str) -> str:
        if not self.case_insensitive:
            return vpath
        low = vpath.lower()
        for table in (self._memory, self._files, self._extents):  # type: ignore[attr-defined]
            for k in table:
                if k.lower() == low:
                    return k
        return vpath

    def _lookup_in(self, root: Path, rel: str) -> str | None:
        """The path below ``root`` to open (case matched when asked); None: not there."""
        if not rel:
            return None
        if not self.case_insensitive:
            return rel
        cur, out = root, []
        for part in rel.split("/"):
            try:
                names = os.listdir(cur)
            except OSError:
                return None
            match = part if part in names else \
                next((n for n in names if n.lower() == part.lower()), None)
            if match is None:
                return None
            out.append(match)
            cur = cur / match
        return "/".join(out)

    def _stat(self, vpath: str, jail: Path, rel: str, *, links: bool) -> FileRef:
        """Open the file the jailed way (as every server will), fstat it, close it."""
        fd = open_beneath(jail, rel, links=links)
        try:
            st = os.fstat(fd)
            size = os.lseek(fd, 0, os.SEEK_END) if stat.S_ISBLK(st.st_mode) else st.st_size
        finally:
            os.close(fd)
        if self.require_world_readable and not st.st_mode & stat.S_IROTH:
            raise AccessDenied(f"{vpath}: file must have global read permissions "
                               f"(mode {stat.S_IMODE(st.st_mode):04o}; fix: chmod o+r "
                               f"{jail / rel})")
        return FileRef(path=vpath, size=size, mtime=st.st_mtime, real=jail / rel, jail=jail,
                       rel=rel, links=links, world_readable=self.require_world_readable)

    # --- listing (Review screen, export) ------------------------------------------

    def entries(self) -> list[tuple[str, int, str]]:
        """(virtual path, size, origin) of generated and mapped files, sorted."""
        out = [(k, len(v[0]), "generated") for k, v in self._memory.items()]
        for k, (jail, rel) in self._files.items():
            real = jail / rel
            try:
                out.append((k, real.stat().st_size, str(real)))
            except OSError:
                out.append((k, -1, f"{real} (missing)"))
        out += [(k, size, f"{jail / iso}@{offset}")
                for k, (jail, iso, offset, size) in self._extents.items()]
        return sorted(out)

    def sources(self) -> list[tuple[str, Path]]:
        """Mapped directories and roots, as (virtual prefix, real directory)."""
        return list(self._dirs) + [("", r) for r in self.roots]
