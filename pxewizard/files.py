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
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import PxeError
from .events import FailCause


class TreeError(PxeError):
    """Base of lookup failures; ``code`` is a TFTP error code, ``status`` an HTTP status,
    ``cause`` what the servers put in their TransferFailed event."""

    code = 0
    status = 500
    cause = FailCause.refused


class NotFound(TreeError):
    code = 1
    status = 404
    cause = FailCause.not_found


class AccessDenied(TreeError):
    code = 2
    status = 403


class NotReadable(AccessDenied):
    """The file exists but may not be read (mode, permission denied)."""

    cause = FailCause.permission


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
    """Directory the file was found in; :meth:`open_fd` checks the opened file is inside it."""
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
        """Open the file on disk read-only, race-free against the jail.

        The lookup checked the path, but a link or a directory could be swapped between
        that check and this open (a symlink race). So the check is made again on what was
        actually opened: the kernel's name for the descriptor must lie inside the jail, and
        the file must still be a world-readable regular file (or block device).
        Raises AccessDenied / NotFound like the lookup does.
        """
        loc = self.location()
        if loc is None:
            raise NotFound(f"{self.path} is generated, not a file on disk")
        try:
            fd = os.open(loc[0], os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"file not found: {self.path} (it vanished)") from None
        except OSError as exc:
            denied = NotReadable if isinstance(exc, PermissionError) else AccessDenied
            raise denied(f"{self.path}: cannot open: {exc.strerror or exc}") from None
        try:
            st = os.fstat(fd)
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
                raise AccessDenied(f"{self.path} is not a regular file")
            if self.jail is not None:
                opened = Path(os.readlink(f"/proc/self/fd/{fd}"))
                if not _inside(opened, self.jail):
                    raise AccessDenied(f"{self.path} was swapped for a link out of {self.jail} "
                                       "after it was looked up: refused")
            if self.world_readable and not st.st_mode & stat.S_IROTH:
                raise NotReadable(f"{self.path}: file must have global read permissions")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def read(self) -> bytes:
        """Whole contents (small files only: menus, configs)."""
        if self.data is not None:
            return self.data
        if self.container is not None:
            with open(self.container, "rb") as fh:
                fh.seek(self.offset)
                return fh.read(self.size)
        assert self.real is not None
        return self.real.read_bytes()


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


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


class FileTree:
    """Generated files, mapped files and directories, and plain roots, all jailed."""

    def __init__(self, roots: list[Path] | None = None, *, case_insensitive: bool = False,
                 require_world_readable: bool = True) -> None:
        self._memory: dict[str, tuple[bytes, float]] = {}
        self._files: dict[str, Path] = {}
        self._extents: dict[str, tuple[Path, int, int]] = {}  # vpath -> (.iso, offset, size)
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

    def add_file(self, vpath: str, real: Path) -> None:
        """Map one real file (from the media or a loader directory) at a virtual path."""
        self._files[normalize(vpath)] = Path(real)

    def add_extent(self, vpath: str, real: Path, offset: int, size: int) -> None:
        """Map ``size`` bytes at ``offset`` of a real file (a file inside an unmounted .iso:
        ISO 9660 stores each file as one contiguous extent, so nothing is copied)."""
        self._extents[normalize(vpath)] = (Path(real), offset, size)

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
        real = self._files.get(key)
        if real is not None:
            return self._stat(key, real, None)
        extent = self._extents.get(key)
        if extent is not None:
            ref = self._stat(key, extent[0], None)
            return FileRef(path=key, size=extent[2], mtime=ref.mtime, container=extent[0],
                           offset=extent[1])
        for prefix, rdir in self._dirs:
            if prefix == "" or key == prefix or key.startswith(prefix + "/"):
                rest = key[len(prefix):].lstrip("/")
                found = self._lookup_in(rdir, rest)
                if found is not None:
                    return self._stat(key, found, rdir)
        for root in self.roots:
            found = self._lookup_in(root, key)
            if found is not None:
                return self._stat(key, found, root)
        raise NotFound(f"file not found: {vpath}")

    def _key(self, vpath: str) -> str:
        if not self.case_insensitive:
            return vpath
        low = vpath.lower()
        for table in (self._memory, self._files, self._extents):
            for k in table:
                if k.lower() == low:
                    return k
        return vpath

    def _lookup_in(self, root: Path, rel: str) -> Path | None:
        if not rel:
            return None
        cand = root / rel
        if os.path.lexists(cand):
            return cand
        if not self.case_insensitive:
            return None
        cur = root
        for part in rel.split("/"):
            try:
                names = os.listdir(cur)
            except OSError:
                return None
            match = next((n for n in names if n.lower() == part.lower()), None)
            if match is None:
                return None
            cur = cur / match
        return cur

    def _stat(self, vpath: str, real: Path, jail: Path | None) -> FileRef:
        if jail is not None:
            resolved = Path(os.path.realpath(real))
            if not _inside(resolved, jail):
                raise AccessDenied(f"{vpath} is a link that leads out of the served directory "
                                   f"{jail}: refused")
        try:
            st = os.stat(real)
        except FileNotFoundError:
            raise NotFound(f"file not found: {vpath} (a dangling link or a file that "
                           f"vanished: {real})") from None
        except PermissionError:
            raise NotReadable(f"{vpath}: permission denied reading {real}") from None
        except OSError as exc:  # a link loop (ELOOP), a name too long...: refused, in words
            raise AccessDenied(f"{vpath}: cannot read {real}: {exc.strerror or exc}") from None
        if stat.S_ISDIR(st.st_mode):
            raise NotFound(f"{vpath} is a directory, not a file")
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            raise AccessDenied(f"{vpath} is not a regular file")
        if self.require_world_readable and not st.st_mode & stat.S_IROTH:
            raise NotReadable(f"{vpath}: file must have global read permissions "
                              f"(mode {stat.S_IMODE(st.st_mode):04o}; fix: chmod o+r {real})")
        size = st.st_size
        if stat.S_ISBLK(st.st_mode):
            with open(real, "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
        return FileRef(path=vpath, size=size, mtime=st.st_mtime, real=real, jail=jail,
                       world_readable=self.require_world_readable)

    # --- listing (Review screen, export) ------------------------------------------

    def entries(self) -> list[tuple[str, int, str]]:
        """(virtual path, size, origin) of generated and mapped files, sorted."""
        out = [(k, len(v[0]), "generated") for k, v in self._memory.items()]
        for k, real in self._files.items():
            try:
                out.append((k, real.stat().st_size, str(real)))
            except OSError:
                out.append((k, -1, f"{real} (missing)"))
        out += [(k, size, f"{iso}@{offset}") for k, (iso, offset, size) in self._extents.items()]
        return sorted(out)

    def sources(self) -> list[tuple[str, Path]]:
        """Mapped directories and roots, as (virtual prefix, real directory)."""
        return list(self._dirs) + [("", r) for r in self.roots]
