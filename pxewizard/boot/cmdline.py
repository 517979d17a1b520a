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
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PxeError

if TYPE_CHECKING:
    from ..plan import Plan
    from .media import BootEntry, Media

ARCHISO_NO_TFTP = ("SystemRescue (archiso) cannot fetch its root image over TFTP (its "
                   "initramfs has HTTP, NFS and NBD hooks only): the root image goes over "
                   "HTTP, the kernel and initramfs over TFTP")


def nfs_path(media: Media, plan: Plan) -> str:
    """The path clients mount for this medium: the export that holds it."""
    if media.is_iso:
        raise PxeError(f"the nfs transport needs the boot medium as a directory; {media.path} "
                       "is an ISO file and NFS exports directories",
                       f"mount it (mount -o loop,ro {media.path} /mnt/iso) and set boot.media "
                       "to /mnt/iso, or choose the http or nbd transport")
    return str(Path(media.path).resolve())


def _nfs_options(plan: Plan) -> list[str]:
    """port/mountport when a client could not find our servers through the portmapper."""
    n = plan.nfs
    if n.portmap and n.nfs_port == 2049:
        return []
    return [f"port={n.nfs_port}", f"mountport={n.mount_port}"]


def _copytoram(plan: Plan, yes: str, no: str) -> str:
    return yes if plan.boot.copytoram else no


def _archiso(media: Media, entry: BootEntry, plan: Plan, ip: str) -> tuple[list[str], list[str]]:
    t = plan.boot.transport.value
    notes: list[str] = []
    args = ["ip=dhcp"]
    if t == "tftp":
        notes.append(ARCHISO_NO_TFTP)
        if not plan.http.enabled and not plan.boot.external_http:
            notes.append("http is disabled: set http.enabled = true or the root image "
                         "cannot be fetched")
        t = "http"
    if t == "http":
        args.append(f"archiso_http_srv={plan.http_base}{media.vprefix}")
        if plan.boot.copytoram is False:
            notes.append("HTTP always copies the root image to RAM; copytoram = false "
                         "has no effect")
    elif t == "nfs":
        args.append(f"archiso_nfs_srv={ip}:{nfs_path(media, plan)}")
        opts = _nfs_options(plan)
        if opts:
            args.append("archiso_nfs_opt=" + ",".join(opts))
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
        from .media import whole_iso_vpath

        return ["ip=dhcp", f"url={plan.http_base}{whole_iso_vpath(media)}"], notes
    notes.append("Ubuntu's casper fetches a whole .iso over HTTP (url=): set boot.media to "
                 "the .iso, or use the nfs transport")
    return ["ip=dhcp"], notes


def _nfsroot(media: Media, entry: BootEntry, plan: Plan, ip: str) -> tuple[list[str], list[str]]:
    notes: list[str] = []
    if plan.boot.transport.value != "nfs" or not plan.nfs.enabled:
        notes.append("an NFS root needs the nfs transport and nfs.enabled = true")
    path = nfs_path(media, plan)
    opts = ["vers=3", "nolock"] + _nfs_options(plan)
    if media.flavour == "dracut":
        return [f"root=nfs:{ip}:{path}:{','.join(opts)}", "rw", "ip=dhcp"], notes
    # initramfs-tools (and the kernel's own nfsroot when there is no initramfs)
    return ["root=/dev/nfs", f"nfsroot={ip}:{path},{','.join(opts)}", "ip=dhcp", "rw"], notes


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


def kernel_cmdline(entry: BootEntry, media: Media, plan: Plan) -> tuple[str, list[str]]:
    """(final command line, notes) of one entry for the Plan's transport and server."""
    if entry.kind == "memtest":
        return " ".join(p for p in (entry.cmdline, _memtest_args(plan)) if p), []
    if entry.kind in ("localboot", "message", "wimboot"):
        return entry.cmdline, []
    if entry.kind == "remote":
        return " ".join(p for p in (entry.cmdline, plan.boot.extra_cmdline.strip()) if p), []
    ip = str(plan.server_ip)
    make = _PROFILE_ARGS.get(media.profile)
    args, notes = make(media, entry, plan, ip) if make else ([], [])
    parts = [entry.cmdline, *args, plan.boot.extra_cmdline.strip()]
    return " ".join(p for p in parts if p), notes


def finish_entry(entry: BootEntry, media: Media, plan: Plan) -> BootEntry:
    """The entry with its final command line and any transport notes added."""
    line, notes = kernel_cmdline(entry, media, plan)
    return replace(entry, cmdline=line, notes=entry.notes + tuple(notes))
