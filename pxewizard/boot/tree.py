"""The boot tree of a Plan: what TFTP and HTTP serve, and what NBD/NFS export.

Built once when serving starts, from the Plan's roots, the boot media and the
boot loaders found on this system, plus generated menus held in memory.
"""

from __future__ import annotations

from pathlib import Path

from ..files import FileTree
from ..plan import Plan


def build_tree(plan: Plan) -> FileTree:
    """The served tree for a Plan (roots first; media, loaders and menus are mapped in)."""
    tree = FileTree(case_insensitive=plan.tftp.case_insensitive)
    for root in (plan.tftp.root, plan.http.root):
        if root is not None and Path(root).resolve() not in tree.roots:
            tree.add_root(Path(root))
    return tree


def nbd_exports(plan: Plan) -> dict[str, Path]:
    """Export name -> file, from the Plan (the media's image when none is listed)."""
    return {e.name: e.path for e in plan.nbd.exports}


def nfs_exports(plan: Plan) -> list:
    """The Plan's NFS exports (the media's directory when none is listed)."""
    return list(plan.nfs.exports)
