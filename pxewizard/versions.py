"""Our version, Python's and our dependencies' (``pxewizard --version``, the Preflight screen)."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from . import __version__


def version_text() -> str:
    """Our version, Python's, and our dependencies' (the first screen shows the same)."""
    deps = []
    for dist in ("textual", "aiohttp", "pydantic", "psutil", "pyroute2", "netifaces-plus",
                 "pycdlib", "tomli-w"):
        try:
            deps.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            deps.append(f"{dist} (missing)")
    return (f"pxewizard {__version__} on Python {platform.python_version()} "
            f"({sys.executable})\n" + ", ".join(deps))
