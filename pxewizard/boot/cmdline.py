"""Kernel command lines per boot profile and stage-3 transport.

The server's literal IPv4 address is always written (``http://10.99.0.1/``),
never a loader variable such as ``${pxeserver}``: in proxyDHCP mode the
address the client got its lease from is not ours, so only the literal works
in both modes. BOOTIF is not part of these lines: pxelinux adds it with
``IPAPPEND 2`` and iPXE with ``BOOTIF=01-${netX/mac:hexhyp}`` (see menus.py).

Modern SystemRescue (archiso) has initramfs hooks for HTTP, NFS and NBD only:
there is no TFTP hook, so a Plan with the tftp transport boots it with its root
image over HTTP (the kernel and initramfs still come over TFTP) and says so in
the entry's notes. Old SystemRescueCd fetches ``sysrcd.dat`` over all four.

copytoram: HTTP (and TFTP) always copy the image into client RAM. For NFS and
NBD, ``plan.boot.copytoram`` None or False writes ``copytoram=n`` (read on
demand, the reason to pick NFS/NBD), True writes ``copytoram=y``
(``docache`` for old SystemRescueCd, ``toram`` for Debian live).

SystemRescue 6+ lines are checked against the code that reads them
(SystemRescue builds archiso v43 with its own patches):

- ``archiso_pxe_nfs`` runs ``nfsmount -o ${archiso_nfs_opt} ${archiso_nfs_srv}``
  after ``eval echo``-ing the server. ``nfsmount`` (mkinitcpio-nfs-utils, from
  klibc) knows ``port``, ``rsize``, ``wsize``, ``timeo``, ``retrans``, the
  ``ac*`` options and flags, and aborts on any other, ``mountport`` included.
  It asks the portmapper for both ports; without an answer it falls back to
  MOUNT port 627 (after ~190 s of retries) and, over TCP, fails for NFS unless
  ``port=`` is given. So: no option while our portmapper answers; without it,
  ``port=`` alone and MOUNT on 627 (else the Plan is refused).
- ``archiso_pxe_nbd`` runs ``nbd-client ${archiso_nbd_srv} -N ${archiso_nbd_name}``
  (default name ``archiso``, port 10809).
- ``archiso_pxe_http`` fetches only ``${archisobasedir}/${arch}/airootfs.sfs``:
  the medium's ``sysrescue.d/*.yaml`` are passed as ``sysrescuecfg=`` URLs
  (read by ``sysrescue-configuration.lua``, SystemRescue 9.01+, after the local
  ones, in command-line order) and its autorun scripts as ``ar_source=``.
- Every line gets ``iomem=relaxed``, as SystemRescue's own menus pass it.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from ..errors import PxeError
from .media import LOCAL_ENTRY, BootEntry, Media, whole_iso_vpath
from .roots import client_root, mode

if TYPE_CHECKING:
    from ..plan import Plan

ARCHISO_NO_TFTP = ("SystemRescue (archiso) cannot fetch its root image over TFTP (its "
                   "initramfs has HTTP, NFS and NBD hooks only): the root image goes over "
                   "HTTP, the kernel and initramfs over TFTP")


KLIBC_MOUNT_PORT = 627
"""MOUNT port klibc's nfsmount (SystemRescue's, via mkinitcpio-nfs-utils) uses when the
portmapper does not answer (``MOUNT_PORT`` in its sunrpc.h); it has no option to change it."""
KLIBC_PORTMAP_WAIT = 190
"""Seconds nfsmount spends asking an absent portmapper (50 UDP tries) before it falls back
to port 627 (measured with Debian's klibc-utils 2.0.12)."""

_SAFE_PATH = re.compile(r"^[A-Za-z0-9._/@%+-]+$")
"""Characters a path may hold on a kernel command line that a shell later reads."""
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._+-]+$")


def _check_path(path: str) -> str:
    """``path`` as it goes on a command line, or a PxeError naming the characters in the way."""
    if _SAFE_PATH.match(path):
        return path
    bad = sorted({c for c in path if not _SAFE_PATH.match(c)})
    shown = " ".join("space" if c == " " else repr(c) for c in bad)
    raise PxeError(f"boot.media: the path {path!r} holds characters a kernel command line "
                   f"cannot carry ({shown}): the kernel splits its command line at spaces and "
                   "initramfs scripts read it with a shell (SystemRescue evals archiso_nfs_srv)",
                   "use a directory whose path has only letters, digits and . _ - / (rename "
                   "or move it), or bind-mount it: mkdir /srv/bootmedia && mount --bind "
                   f"'{path}' /srv/bootmedia, then set boot.media = \"/srv/bootmedia\"")


def nfs_path(media: Media, plan: Plan) -> str:
    """The path clients mount for this medium: the export that holds it."""
    if media.is_iso:
        raise PxeError(f"the nfs transport needs the boot medium as a directory; {media.path} "
                       "is an ISO file and NFS exports directories",
                       f"mount it (mount -o loop,ro {media.path} /mnt/iso) and set boot.media "
                       "to /mnt/iso, or choose the http or nbd transport")
    return _check_path(str(Path(media.path).resolve()))


def _nfs_options(plan: Plan) -> list[str]:
    """port/mountport when a client could not find our servers through the portmapper
    (the kernel's nfsroot= and mount.nfs know both)."""
    n = plan.nfs
    if n.portmap and n.nfs_port == 2049:
        return []
    return [f"port={n.nfs_port}", f"mountport={n.mount_port}"]


def _archiso_nfs_opt(plan: Plan, notes: list[str]) -> str | None:
    """``archiso_nfs_opt`` for klibc's nfsmount, which knows ``port`` but not ``mountport``."""
    n = plan.nfs
    if n.portmap:
        return None  # nfsmount asks our portmapper for both ports, moved or not
    if n.mount_port != KLIBC_MOUNT_PORT:
        raise PxeError(f"nfs.mount_port: {n.mount_port} cannot be reached by SystemRescue with "
                       "nfs.portmap = false: its nfsmount has no option for the MOUNT port "
                       "(mountport= makes it abort) and without a portmapper it uses port "
                       f"{KLIBC_MOUNT_PORT}",
                       "set nfs.portmap = true (recommended), or nfs.mount_port = "
                       f"{KLIBC_MOUNT_PORT}")
    notes.append(f"nfs.portmap is false: SystemRescue's nfsmount asks port 111 for the MOUNT "
                 f"port and uses {KLIBC_MOUNT_PORT} only after its retries run out (about "
                 f"{KLIBC_PORTMAP_WAIT} s per boot); set nfs.portmap = true for a quick boot")
    # without a portmapper, NFS over TCP needs its port given even when it is 2049
    return f"port={n.nfs_port}"


def _nbd_name(media: Media, plan: Plan) -> str | None:
    """The export SystemRescue must ask for when it is not ``archiso`` (archiso_nbd_name)."""
    names = [e.name for e in plan.nbd.exports]
    if not names or "archiso" in names:
        return None
    if len(names) > 1:
        raise PxeError(f"nbd.exports: none is named \"archiso\" ({', '.join(names)}), and "
                       "SystemRescue boots one export, the one its command line names",
                       "name the export that holds the SystemRescue ISO \"archiso\"")
    name = names[0]
    if not _SAFE_NAME.match(name):
        raise PxeError(f"nbd.exports: the export name {name!r} cannot go on SystemRescue's "
                       "command line (archiso_nbd_name= is passed to nbd-client unquoted)",
                       "use letters, digits and . _ + - only, or the name \"archiso\"")
    return name


def _medium_files(media: Media, vdir: str) -> list[str]:
    """Names of the regular files directly in ``vdir`` of the medium (sorted, bytewise)."""
    if media.extents is not None:
        prefix = f"{vdir}/" if vdir else ""
        names = [v[len(prefix):] for v in media.extents if v.startswith(prefix)]
        return sorted(n for n in names if n and "/" not in n)
    d = Path(media.path) / vdir
    try:
        return sorted(n for n in os.listdir(d) if (d / n).is_file())
    except OSError:
        return []


def _medium_text(media: Media, vpath: str, limit: int = 65536) -> str:
    try:
        if media.extents is not None:
            offset, size = media.extents[vpath]
            with open(media.path, "rb") as fh:
                fh.seek(offset)
                data = fh.read(min(size, limit))
        else:
            with open(Path(media.path) / vpath, "rb") as fh:
                data = fh.read(limit)
    except (OSError, KeyError):
        return ""
    return data.decode("utf-8", "replace")


_YAML = re.compile(r".[Yy][Aa][Mm][Ll]$")  # sysrescue-configuration.lua's own pattern
_AUTORUN = re.compile(r"^autorun[0-9A-F]?$")  # sysrescue-autorun's suffixes


def _http_medium_args(media: Media, plan: Plan, notes: list[str]) -> list[str]:
    """What archiso's HTTP hook leaves behind (it fetches airootfs.sfs only), as arguments:
    the YAML configuration and the autorun scripts; a note for SRM modules."""
    base = plan.http_base + media.vprefix  # the medium's own folder when it is not the first
    args = []
    configs = [n for n in _medium_files(media, "sysrescue.d") if _YAML.search(n)]
    args += [f"sysrescuecfg={base}sysrescue.d/{quote(n)}" for n in configs]
    extra = plan.boot.extra_cmdline
    if not re.search(r"(^|\s)ar_source=", extra) and not any(
            "ar_source" in _medium_text(media, f"sysrescue.d/{n}") for n in configs):
        for vdir in ("autorun", ""):
            if any(_AUTORUN.match(n) for n in _medium_files(media, vdir)):
                args.append(f"ar_source={base}{vdir + '/' if vdir else ''}")
                break
    srms = [n for n in _medium_files(media, "sysresccd") if n.endswith(".srm")]
    if srms:
        notes.append(f"the SRM modules on the medium ({', '.join(srms)}) are not loaded over "
                     "HTTP (archiso's HTTP hook fetches airootfs.sfs only): use the nfs or nbd "
                     f"transport, or set late_load_srm: \"{base}sysresccd/{quote(srms[0])}\" "
                     "in a sysrescue.d YAML file")
    return args


def _copytoram(plan: Plan, yes: str, no: str) -> str:
    return yes if plan.boot.copytoram else no


def _archiso(media: Media, entry: BootEntry, plan: Plan, ip: str) -> tuple[list[str], list[str]]:
    t = plan.boot.transport.value
    notes: list[str] = []
    args = ["iomem=relaxed", "ip=dhcp"]
    if t == "tftp":
        if not plan.http.enabled and not plan.boot.external_http:
            raise PxeError("boot.transport: tftp cannot boot SystemRescue 6+ with HTTP "
                           "disabled: archiso has no TFTP hook, its root image (airootfs.sfs) "
                           "is fetched over HTTP",
                           "set http.enabled = true (or boot.external_http), or choose the "
                           "http, nfs or nbd transport")
        notes.append(ARCHISO_NO_TFTP)
        t = "http"
    if t == "http":
        args.append(f"archiso_http_srv={plan.http_base}{media.vprefix}")
        args += _http_medium_args(media, plan, notes)
        if plan.boot.copytoram is False:
            notes.append("HTTP always copies the root image to RAM; copytoram = false "
                         "has no effect")
    elif t == "nfs":
        args.append(f"archiso_nfs_srv={ip}:{nfs_path(media, plan)}")
        opt = _archiso_nfs_opt(plan, notes)
        if opt:
            args.append(f"archiso_nfs_opt={opt}")
        args.append(_copytoram(plan, "copytoram=y", "copytoram=n"))
    elif t == "nbd":
        if media.nbd_source is None and not plan.nbd.exports:
            raise PxeError(f"the nbd transport exports the whole ISO image, and {media.path} "
                           "is a directory with no block device under it",
                           "set boot.media to the .iso file, or list the ISO (or device) in "
                           "nbd.exports with name \"archiso\"")
        if plan.nbd.port != 10809:
            notes.append(f"archiso's nbd-client connects to port 10809; nbd.port is "
                         f"{plan.nbd.port}")
        args.append(f"archiso_nbd_srv={ip}")
        name = _nbd_name(media, plan)
        if name is not None:
            args.append(f"archiso_nbd_name={name}")
        args.append(_copytoram(plan, "copytoram=y", "copytoram=n"))
    return args, notes


def _legacy(media: Media, entry: BootEntry, plan: Plan, ip: str) -> tuple[list[str], list[str]]:
    t = plan.boot.transport.value
    image = media.image_vpath or "sysrcd.dat"
    notes: list[str] = []
    if t == "http":
        args = [f"netboot={plan.http_base}{image}"]
    elif t == "tftp":
        args = [f"netboot=tftp://{ip}/{image}"]
    elif t == "nfs":
        args = [f"netboot=nfs://{ip}:{nfs_path(media, plan)}"]
    else:
        port = plan.nbd.oldstyle_port
        if port is None:
            raise PxeError("old SystemRescueCd speaks only the oldstyle NBD handshake "
                           "(netboot=nbd://IP:PORT) and nbd.oldstyle_port is not set",
                           "set nbd.oldstyle_port (e.g. 10810), or use the http transport")
        args = [f"netboot=nbd://{ip}:{port}"]
    if t in ("nfs", "nbd") and plan.boot.copytoram:
        args.append("docache")
    args.append("dodhcp")
    return args, notes


def _debian_live(media: Media, entry: BootEntry, plan: Plan,
                 ip: str) -> tuple[list[str], list[str]]:
    t = plan.boot.transport.value
    notes: list[str] = []
    if t == "nbd":
        notes.append("Debian live-boot has no NBD root: the squashfs goes over HTTP")
        t = "http"
    if t == "http":
        args = [f"fetch={plan.http_base}{media.image_vpath}"]
    elif t == "tftp":
        args = [f"fetch=tftp://{ip}/{media.image_vpath}"]
    else:
        args = ["netboot=nfs", f"nfsroot={ip}:{nfs_path(media, plan)}"]
        if plan.boot.copytoram:
            args.append("toram")
    return args, notes


def _casper(media: Media, entry: BootEntry, plan: Plan, ip: str) -> tuple[list[str], list[str]]:
    t = plan.boot.transport.value
    notes: list[str] = []
    if t == "nfs":
        return ["netboot=nfs", f"nfsroot={ip}:{nfs_path(media, plan)}", "ip=dhcp"], notes
    if t != "http":
        notes.append(f"Ubuntu's casper has no {t.upper()} root: HTTP is used")
    if media.is_iso:
        # percent-encoded: a space in the file name would split the command line
        return ["ip=dhcp", f"url={plan.http_base}{quote(whole_iso_vpath(media))}"], notes
    notes.append("Ubuntu's casper fetches a whole .iso over HTTP (url=): set boot.media to "
                 "the .iso, or use the nfs transport")
    return ["ip=dhcp"], notes


OVERLAY_ARGS = {"dracut": "rd.live.overlay.overlayfs=1", "initramfs-tools": "overlayroot=tmpfs"}
"""The argument that makes each initramfs put a tmpfs overlay over a read-only root: dracut's
90overlayfs module reads rd.live.overlay.overlayfs (newer dracut-ng also rd.overlay, and
keeps the old name); Debian's overlayroot package reads overlayroot= in init-bottom."""


def _overlay_note(media: Media) -> str | None:
    """Why the tree's initramfs will not (or may not) put the overlay over its NFS root."""
    have, flavour = media.overlay, media.flavour
    if have in ("overlayroot", "dracut-overlayfs"):
        return None
    if have == "dracut-overlayfs-block":
        return ("nfs.root_mode: this dracut's overlayfs module hooks only the mount stage "
                "(made for block-device roots; dracut-ng adds pre-pivot hooks for network "
                "roots), so the RAM overlay may not be put over the NFS root: update dracut in "
                "the tree and rebuild with `dracut --add overlayfs --force`, or use "
                "nfs.root_mode = \"per-client\"")
    if flavour == "dracut":
        fix = ("rebuild it in the tree with `dracut --add overlayfs --force` (dracut-ng with "
               "the network-root hooks)")
    elif flavour == "initramfs-tools":
        fix = ("install Debian's overlayroot package in the tree (chroot TREE apt-get install "
               "overlayroot) and run update-initramfs -u there")
    else:
        fix = ("use an initramfs-tools image with the overlayroot package or a dracut image "
               "with the overlayfs module")
    return ("nfs.root_mode: the tree's initramfs has no root overlay (no "
            "scripts/init-bottom/overlayroot, no dracut overlayfs hooks), so clients get the "
            f"root read-only with nothing writable and most services fail: {fix}, or use "
            "nfs.root_mode = \"per-client\"")


def _nfsroot(media: Media, entry: BootEntry, plan: Plan, ip: str,
             client: str | None = None) -> tuple[list[str], list[str]]:
    """The NFS root line; ``client`` (a MAC, per-client mode) mounts that client's own root."""

    notes: list[str] = []
    if plan.boot.transport.value != "nfs" or not plan.nfs.enabled:
        notes.append("an NFS root needs the nfs transport and nfs.enabled = true")
    root_mode = mode(plan)
    if client is not None:
        path = _check_path(str(client_root(plan, client)))
        writable, overlay = True, False
    else:
        path = nfs_path(media, plan)
        writable = root_mode == "shared-rw"
        overlay = not writable
    opts = ["vers=3", "nolock"] + _nfs_options(plan)
    flavour = "dracut" if media.flavour == "dracut" else "initramfs-tools"
    rw = "rw" if writable else "ro"
    if flavour == "dracut":
        args = [f"root=nfs:{ip}:{path}:{','.join(opts)}", rw, "ip=dhcp"]
    else:
        # initramfs-tools (and the kernel's own nfsroot when there is no initramfs)
        args = ["root=/dev/nfs", f"nfsroot={ip}:{path},{','.join(opts)}", "ip=dhcp", rw]
    if root_mode != "shared-rw" and client is None and any(
            e.rw and Path(e.path).resolve() == Path(path) for e in plan.nfs.exports):
        notes.append(f"nfs.exports: {path} says rw, and nfs.root_mode {root_mode} serves it "
                     "read-only (each client writes to its RAM overlay or its own copy)")
    if overlay:
        args.append(OVERLAY_ARGS[flavour])
        note = _overlay_note(media)
        if note:
            notes.append(note)
    return args, notes


def _debian_installer(media: Media, entry: BootEntry, plan: Plan,
                      ip: str) -> tuple[list[str], list[str]]:
    # as the netboot tree's own pxelinux.cfg/default: "vga=788 --- quiet"; what follows
    # "---" (the Plan's extra options too) is also written into the installed system
    return ["---", "quiet"], []


def _redhat(media: Media, entry: BootEntry, plan: Plan, ip: str) -> tuple[list[str], list[str]]:
    notes: list[str] = []
    if plan.boot.transport.value != "http":
        notes.append("anaconda fetches its installer image over HTTP (inst.stage2/inst.repo "
                     "name our HTTP server whatever the transport)")
    if not plan.http.enabled and not plan.boot.external_http:
        notes.append("http is disabled: set http.enabled = true or anaconda cannot fetch "
                     "its installer image")
    # dracut's anaconda modules: inst.repo= a whole repository (DVD), inst.stage2= a tree
    # holding images/install.img only (boot.iso); both read .treeinfo at that URL
    key = media.flavour or "inst.stage2"
    return ["ip=dhcp", f"{key}={plan.http_base}{media.vprefix}"], notes


_PROFILE_ARGS = {
    "sysrescue-archiso": _archiso,
    "sysrescue-legacy": _legacy,
    "debian-live": _debian_live,
    "ubuntu-casper": _casper,
    "nfsroot": _nfsroot,
    "debian-installer": _debian_installer,
    "redhat-installer": _redhat,
}


def _memtest_args(plan: Plan) -> str:
    """memtest86+ reads ``console=ttyS<x>,<baud>`` as Linux does: the Plan's serial console
    (from extra_cmdline) is passed on, nothing else."""
    return " ".join(w for w in plan.boot.extra_cmdline.split() if w.startswith("console=ttyS"))


def kernel_cmdline(entry: BootEntry, media: Media, plan: Plan,
                   client: str | None = None) -> tuple[str, list[str]]:
    """(final command line, notes) of one entry for the Plan's transport and server;
    ``client``: the line of that MAC's own root (NFS root, nfs.root_mode per-client)."""
    if entry.kind == "memtest":
        return " ".join(p for p in (entry.cmdline, _memtest_args(plan)) if p), []
    if entry.kind in ("localboot", "message", "wimboot"):
        return entry.cmdline, []
    if entry.kind == "remote":
        return " ".join(p for p in (entry.cmdline, plan.boot.extra_cmdline.strip()) if p), []
    ip = str(plan.server_ip)
    if client is not None and media.profile == "nfsroot":
        args, notes = _nfsroot(media, entry, plan, ip, client=client)
    else:
        make = _PROFILE_ARGS.get(media.profile)
        args, notes = make(media, entry, plan, ip) if make else ([], [])
    parts = [entry.cmdline, *args, plan.boot.extra_cmdline.strip()]
    return " ".join(p for p in parts if p), notes


def client_cmdlines(entries: list[BootEntry], media: Media,
                    plan: Plan) -> tuple[tuple[str, str, str], ...]:
    """(MAC, entry id, command line) of every listed MAC's own root (nfs.root_mode
    per-client, NFS-root media), for its pxelinux ``01-<mac>`` file and the iPXE test."""
    if media.profile != "nfsroot" or plan.nfs.root_mode.value != "per-client":
        return ()
    raw = {e.id: e for e in media.entries}
    out = []
    for mac in plan.nfs_clients:
        for e in entries:
            if e.kind == "linux" and e.id in raw:
                out.append((mac, e.id, kernel_cmdline(raw[e.id], media, plan, client=mac)[0]))
    return tuple(out)


def finish_entry(entry: BootEntry, media: Media, plan: Plan) -> BootEntry:
    """The entry with its final command line and any transport notes added."""
    line, notes = kernel_cmdline(entry, media, plan)
    return replace(entry, cmdline=line, notes=entry.notes + tuple(notes))


def entries_for(media: Media, plan: Plan) -> list[BootEntry]:
    """The medium's entries made final for the Plan: transport, server address, extra options.

    Filters and orders them by ``plan.boot.entries`` when set (unknown ids raise PxeError
    naming the ids that exist). Local boot stays last.
    """
    entries = [finish_entry(e, media, plan) for e in media.entries]
    return _picked(entries, plan, str(media.path))


def menu_entries(media: list[Media], plan: Plan) -> list[BootEntry]:
    """Final entries of several arranged media (:func:`.media.arrange`) in menu order, local
    boot once at the end; ``plan.boot.entries`` filters and orders them as for one medium."""
    if len(media) == 1:
        return entries_for(media[0], plan)
    entries = [finish_entry(e, m, plan) for m in media for e in m.entries] + [LOCAL_ENTRY]
    return _picked(entries, plan, ", ".join(str(m.path) for m in media))


def _picked(entries: list[BootEntry], plan: Plan, where: str) -> list[BootEntry]:
    wanted = plan.boot.entries
    if wanted is None:
        return entries
    known = {e.id: e for e in entries}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise PxeError(f"boot.entries: {', '.join(unknown)} not found on {where}; "
                       f"entries there: {', '.join(known)}",
                       "use ids from that list, or leave boot.entries unset")
    return [known[w] for w in wanted]
