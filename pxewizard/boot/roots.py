"""One NFS root tree, many diskless clients (``nfs.root_mode``).

- ``shared-rw`` (the default, as before): the tree is exported as the Plan says and every
  client mounts it; two clients writing one tree corrupt each other.
- ``ro-overlay``: the tree is exported read-only; each client's initramfs puts a tmpfs
  overlay over it (initramfs-tools ``overlayroot=tmpfs``, dracut
  ``rd.live.overlay.overlayfs=1``, see ``cmdline.py``). Changes live in client RAM.
- ``per-client``: every listed MAC gets ``<state_dir>/roots/<aa-bb-cc-dd-ee-ff>``, a copy of
  the tree made at start when missing (``cp -a --reflink=auto``: instant on btrfs/XFS, a
  plain copy elsewhere), exported read-write; its pxelinux ``01-<mac>`` file and the iPXE
  script's ``${netX/mac}`` test point its command line there. Unlisted MACs boot the tree
  read-only with the overlay, as in ``ro-overlay``. A copy is never refreshed from the
  tree once made: delete it to start that client afresh.

The directory name is the MAC in iPXE's ``${netX/mac:hexhyp}`` form.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PxeError

if TYPE_CHECKING:
    from ..plan import NfsExport, Plan


def hexhyp(mac: str) -> str:
    """``aa:bb:cc:dd:ee:ff`` -> ``aa-bb-cc-dd-ee-ff`` (iPXE's ``${netX/mac:hexhyp}``)."""
    return mac.lower().replace(":", "-")


def roots_dir(plan: Plan) -> Path:
    """Where per-client roots live."""
    return Path(plan.state_dir).resolve() / "roots"


def client_root(plan: Plan, mac: str) -> Path:
    """The writable root of one MAC (per-client mode)."""
    return roots_dir(plan) / hexhyp(mac)


def mode(plan: Plan) -> str:
    return str(plan.nfs.root_mode.value)


def base_root(plan: Plan) -> Path | None:
    """The shared root tree: boot.media when it is a directory."""
    media = plan.boot.media
    if media is None or not Path(media).is_dir():
        return None
    return Path(media).resolve()


def make_client_root(base: Path, dest: Path) -> bool:
    """Copy ``base`` to ``dest`` unless it exists; True when a copy was made.

    The copy goes to ``dest.partial`` first and is renamed into place, so an interrupted
    copy is redone at the next start instead of being served half made.
    """
    if dest.is_dir():
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(dest.parent, 0o755)  # clients look up their root through it
    partial = dest.with_name(dest.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    cp = shutil.which("cp")
    if cp is None:
        raise PxeError("cannot make per-client roots: no cp command on this system",
                       "install coreutils, or set nfs.root_mode = \"ro-overlay\"")
    proc = subprocess.run([cp, "-a", "--reflink=auto", "--", str(base), str(partial)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        err = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        raise PxeError(f"nfs.root_mode per-client: copying {base} to {dest} failed ({err})",
                       f"free space under {dest.parent} (state_dir), or set "
                       "nfs.root_mode = \"ro-overlay\"")
    os.rename(partial, dest)
    return True


def prepare_client_roots(plan: Plan, say: Callable[[str], None] | None = None) -> list[str]:
    """Make the missing per-client roots; a message per root made (per-client mode only).
    ``say`` hears, before each copy, which one starts (a big tree takes a while)."""
    if mode(plan) != "per-client":
        return []
    base = base_root(plan)
    if base is None:
        raise PxeError("nfs.root_mode: per-client needs boot.media to be the root tree (a "
                       f"directory); it is {plan.boot.media}",
                       "set boot.media to the directory holding the clients' root")
    made = []
    for mac in plan.nfs_clients:
        dest = client_root(plan, mac)
        if say is not None and not dest.is_dir():
            say(f"making the root of {mac}: copying {base} to {dest} (once per client)")
        if make_client_root(base, dest):
            made.append(f"made the root of {mac}: {dest} (a copy of {base})")
    return made


def root_exports(plan: Plan, exports: list[NfsExport]) -> list[NfsExport]:
    """The NFS exports for the Plan's root mode, from the exports it would have otherwise.

    ro-overlay and per-client: the tree is exported read-only (an export of it in the Plan
    keeps its squash; the default is no_root_squash, since a root tree holds root-only
    files its clients' root must read); per-client adds each client's root, read-write,
    no_root_squash.
    """
    from ..plan import NfsExport, Squash

    m = mode(plan)
    base = base_root(plan)
    if m == "shared-rw" or base is None:
        return exports
    out: list[NfsExport] = []
    seen = False
    for e in exports:
        if Path(e.path).resolve() == base:
            seen = True
            if e.path == base and not plan.nfs.exports:  # the implicit export
                e = e.model_copy(update={"squash": Squash.no_root_squash})
            e = e.model_copy(update={"rw": False})
        out.append(e)
    if not seen:
        out.append(NfsExport(path=base, squash=Squash.no_root_squash))
    if m == "per-client":
        out += [NfsExport(path=client_root(plan, mac), rw=True, squash=Squash.no_root_squash)
                for mac in plan.nfs_clients]
    return out
