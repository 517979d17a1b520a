"""Errors a human can act on.

Every error that can reach an operator carries what went wrong and what to do
about it. The CLI and the UI print ``str(err)``; nothing below them prints.
"""

from __future__ import annotations


class PxeError(Exception):
    """An error with a message and a fix, meant for the operator's eyes."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        if self.fix:
            return f"{self.message}\n  fix: {self.fix}"
        return self.message


class PlanError(PxeError):
    """The Plan is invalid; ``problems`` lists one line per bad field."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        where = f" in {source}" if source else ""
        body = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"the plan{where} is not valid:\n{body}")


class PortInUse(PxeError):
    """A port we must bind is held by another process."""

    def __init__(self, proto: str, address: str, port: int, holder: str | None) -> None:
        self.proto, self.address, self.port, self.holder = proto, address, port, holder
        who = f"held by {holder}" if holder else "already in use"
        fix = (
            f"stop {holder} (or give this service another port in the plan)"
            if holder
            else "stop the program using it, or give this service another port in the plan"
        )
        super().__init__(f"cannot bind {proto.upper()} {address}:{port}: {who}", fix)


class NeedsRoot(PxeError):
    """An operation needs root privileges."""


def os_error_words(exc: BaseException) -> str:
    """An OSError (or an SQLite error) in words with its errno name, so a full disk reads
    ``no space left on device (ENOSPC)`` and not SQLite's ``database or disk is full``."""
    import errno as _errno

    if isinstance(exc, OSError) and exc.errno:
        name = _errno.errorcode.get(exc.errno, str(exc.errno))
        return f"{(exc.strerror or str(exc)).lower()} ({name})"
    code = getattr(exc, "sqlite_errorname", "")
    if code == "SQLITE_FULL":
        return "no space left on device (ENOSPC): the disk is full"
    if code in ("SQLITE_IOERR", "SQLITE_IOERR_WRITE", "SQLITE_IOERR_FSYNC"):
        return f"input/output error (EIO): {exc}"
    if code == "SQLITE_READONLY" or code.startswith("SQLITE_READONLY"):
        return f"read-only file system or file (EROFS/EACCES): {exc}"
    return str(exc) or type(exc).__name__
