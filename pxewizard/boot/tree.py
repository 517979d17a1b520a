"""The boot tree of a Plan: what TFTP and HTTP serve, and what NBD/NFS export.

Built once when serving starts, from the Plan's roots, the boot media and the
boot loaders found on this system, plus generated menus held in memory.
Nothing is copied and nothing is written into the media: media files are
mapped where they lie (an .iso's files as byte ranges of the .iso).

Layout (virtual paths)::

    pxelinux.0, lpxelinux.0, ldlinux.c32,        BIOS syslinux, in the directory of
    menu.c32 vesamenu.c32 libutil.c32 libcom32.c32   dhcp.boot_files.bios (root by default)
    pxelinux.cfg/default (+ 01-<mac> files)       BIOS menu
    efi64/syslinux.efi, efi64/ldlinux.e64,       UEFI syslinux with its own modules:
    efi64/menu.c32 ... efi64/libcom32.c32         the EFI modules have the BIOS names, so
    efi64/pxelinux.cfg/default                    they need their own directory
    undionly.kpxe, ipxe.efi, snponly.efi          iPXE loaders
    boot.ipxe                                     iPXE menu (dhcp.boot_files.ipxe_script)
    sysresccd/...                                 the boot medium, at the root
    (tftp.root / http.root served below all that)

syslinux.efi reads ``pxelinux.cfg/`` and its modules relative to its own
directory, so ``dhcp.boot_files.efi_x64`` should be ``efi64/syslinux.efi``. When
it names a ``syslinux.efi`` in the same directory as the BIOS loader (the old
default ``syslinux.efi``), the EFI set still goes to ``efi64/`` and a warning says
to point efi_x64 there.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PxeError
from ..files import FileRange, FileTree, NotFound
from ..plan import NfsExport, Plan
from .cmdline import menu_entries
from .loaders import MENU_MODULES, WIMBOOT_HINT, Loaders, find_loaders, missing_message
from .media import (FILES_ONLY, LOCAL_ENTRY, BootEntry, Media, arrange, find_media,
                    host_memtest, scan_media, whole_iso_vpath)
from .menus import MenuSettings, RemoteEntry, grub_config, menu_files
from .secureboot import (GRUB_CFG_VPATH, GRUB_VPATH, MOK_VPATH, SHIM_VPATH, Chain,
                         choose_chain, pe_signed, read_head)

EFI_DIR = "efi64"


@dataclass
class BootTree:
    """Everything build_boot found and made, for serving and for the Review screen."""

    tree: FileTree
    media: Media | None
    """The first medium (the only one of a one-medium Plan)."""
    entries: list[BootEntry]
    """Final entries in menu order (local boot last)."""
    loaders: Loaders
    menus: dict[str, str]
    """Generated menu files: virtual path -> text."""
    bios_dir: str
    efi_dir: str
    warnings: list[str] = field(default_factory=list)
    """What the operator should know; nothing here stops serving."""
    all_media: list[Media] = field(default_factory=list)
    """Every medium in the menu, in order, arranged (see media.arrange)."""
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    """Places inside a boot.media folder that hold no usable medium, with the reason."""
    secure_boot: Chain | None = None
    """The signed chain UEFI x64 clients get (boot.secure_boot), None: not served."""


def plan_media(plan: Plan) -> Media | None:
    """The Plan's first boot medium (boot.media, else the first one autodetected, else None).

    A boot.media that holds nothing bootable raises PxeError naming what was looked for.
    """
    media, _skipped = plan_media_all(plan, with_host_memtest=False)
    return media[0] if media else None


def plan_media_all(plan: Plan, *, with_host_memtest: bool = True
                   ) -> tuple[list[Media], list[tuple[Path, str]]]:
    """Every medium of the Plan in menu order, arranged, and the places skipped (with why).

    boot.media unset: the first medium autodetected. memtest86+ installed on this host is
    added last when ``boot.host_memtest`` and no medium brings its own.
    """
    media: list[Media] = []
    skipped: list[tuple[Path, str]] = []
    paths = plan.boot.media_paths
    if not paths:
        media = find_media(None)[:1]
    for path in paths:
        found, skips = scan_media([Path(path)])  # an .iso is read once (media._iso_cache)
        media += found
        skipped += skips
    if with_host_memtest and plan.boot.host_memtest and media \
            and not any(e.kind == "memtest" for m in media for e in m.entries):
        extra = host_memtest()
        if extra is not None:
            media.append(extra)
    return arrange(media), skipped


def _syslinux_dirs(plan: Plan) -> tuple[str, str, list[str]]:
    """(BIOS directory, EFI directory, warnings) from the Plan's boot file names."""
    bf = plan.dhcp.boot_files
    warnings = []
    bios_dir = posixpath.dirname(bf.bios.strip("/")) \
        if posixpath.basename(bf.bios) in ("pxelinux.0", "lpxelinux.0") else ""
    efi_dir = EFI_DIR
    efi = (bf.efi_x64 or "").strip("/")
    if posixpath.basename(efi) == "syslinux.efi":
        d = posixpath.dirname(efi)
        if d and d != bios_dir:
            efi_dir = d
        else:
            warnings.append(
                f"dhcp.boot_files.efi_x64 = {bf.efi_x64!r} puts syslinux.efi beside the BIOS "
                "loader, where its modules would clash with the BIOS ones (same names): UEFI "
                f"clients would not get a menu. Set dhcp.boot_files.efi_x64 = "
                f"\"{EFI_DIR}/syslinux.efi\" (the EFI set is served from {EFI_DIR}/)")
    return bios_dir, efi_dir, warnings


def _join(d: str, name: str) -> str:
    return f"{d}/{name}" if d else name


def _map_loaders(tree: FileTree, plan: Plan, loaders: Loaders, bios_dir: str,
                 efi_dir: str) -> None:
    bios = {"pxelinux.0": loaders.pxelinux, "lpxelinux.0": loaders.lpxelinux,
            "ldlinux.c32": loaders.ldlinux_c32, **loaders.bios_modules}
    for name, real in bios.items():
        if real is not None:
            tree.add_file(_join(bios_dir, name), real)
    efi = {"syslinux.efi": loaders.syslinux_efi64, "ldlinux.e64": loaders.ldlinux_e64,
           **loaders.efi64_modules}
    for name, real in efi.items():
        if real is not None:
            tree.add_file(_join(efi_dir, name), real)
    bf = plan.dhcp.boot_files
    if loaders.syslinux_efi64 is not None and bf.efi_x64 \
            and posixpath.basename(bf.efi_x64) == "syslinux.efi":
        # the plan's own name for it (the clash warning says why it should be efi64/)
        tree.add_file(bf.efi_x64, loaders.syslinux_efi64)
        if loaders.ldlinux_e64 is not None:
            tree.add_file(_join(posixpath.dirname(bf.efi_x64.strip("/")), "ldlinux.e64"),
                          loaders.ldlinux_e64)
    ipxe = {"undionly.kpxe": loaders.undionly_kpxe, "ipxe.efi": loaders.ipxe_efi,
            "snponly.efi": loaders.snponly_efi}
    for name, real in ipxe.items():
        if real is not None:
            tree.add_file(name, real)
    for wanted in (bf.bios, bf.efi_x64, bf.efi_ia32, bf.efi_arm64, bf.uefi_http):
        if wanted and posixpath.basename(wanted) in ipxe and ipxe[posixpath.basename(wanted)]:
            tree.add_file(wanted, ipxe[posixpath.basename(wanted)])  # type: ignore[arg-type]


def _map_media(tree: FileTree, media: Media) -> None:
    prefix = media.vprefix
    if media.extents is not None:
        for vpath, (offset, size) in media.extents.items():
            tree.add_extent(prefix + vpath, media.path, offset, size)
        if media.profile == "ubuntu-casper":
            # casper's url= fetches the whole .iso
            tree.add_file(whole_iso_vpath(media), media.path)
    elif media.profile in FILES_ONLY:
        # a client's root filesystem (shadow file included), /boot with its initrds, a
        # package's tree with its own pxelinux: TFTP/HTTP get the entries' files only
        for entry in media.entries:
            for vpath, _size in entry.files:
                tree.add_file(vpath, media.path / vpath[len(prefix):], jail=media.path)
    else:
        tree.add_dir(prefix.rstrip("/"), media.path)


def _wimboot(entries: list[BootEntry], tree: FileTree, loaders: Loaders) -> list[BootEntry]:
    """Windows entries: wimboot served at the root, or the entry says what is missing."""
    from dataclasses import replace

    if not any(e.kind == "wimboot" for e in entries):
        return entries
    if loaders.wimboot is not None:
        tree.add_file("wimboot", loaders.wimboot)
        return entries
    return [replace(e, kind="message", label=e.label + ": needs wimboot",
                    notes=e.notes + (WIMBOOT_HINT,)) if e.kind == "wimboot" else e
            for e in entries]


def _loader_warnings(tree: FileTree, plan: Plan, loaders: Loaders, bios_dir: str,
                     efi_dir: str) -> list[str]:
    """A message per boot file the Plan hands out that the tree cannot serve."""
    bf = plan.dhcp.boot_files
    needed: list[tuple[str, str]] = []  # (virtual path, loader name)
    for wanted in (bf.bios, bf.efi_x64, bf.efi_ia32, bf.efi_arm64, bf.uefi_http):
        if wanted:
            needed.append((wanted, posixpath.basename(wanted)))
    if posixpath.basename(bf.bios) in ("pxelinux.0", "lpxelinux.0"):
        needed += [(_join(bios_dir, "ldlinux.c32"), "ldlinux.c32")]
        needed += [(_join(bios_dir, m), m) for m in MENU_MODULES if m != "vesamenu.c32"]
    if bf.efi_x64 and posixpath.basename(bf.efi_x64) == "syslinux.efi":
        needed += [(_join(efi_dir, "syslinux.efi"), "syslinux.efi"),
                   (_join(efi_dir, "ldlinux.e64"), "ldlinux.e64")]
        needed += [(_join(efi_dir, m), f"efi64/{m}") for m in MENU_MODULES
                   if m != "vesamenu.c32"]
    out, seen = [], set()
    for vpath, name in needed:
        if vpath in seen:
            continue
        seen.add(vpath)
        try:
            tree.resolve(vpath)
        except NotFound:
            out.append(f"{vpath}: " + missing_message(name, loaders.searched)
                       + " (or put it in tftp.root)")
        except PxeError:
            pass
    return out


def _remote_entries(plan: Plan, remote: tuple[RemoteEntry, ...] | list[RemoteEntry]
                    ) -> list[RemoteEntry]:
    out = list(remote)
    for r in getattr(plan.boot, "remote_entries", None) or ():
        if isinstance(r, RemoteEntry):
            out.append(r)
        else:  # a Plan model with the same field names
            # the Plan's extra parameters apply to every entry, remote ones too
            line = " ".join(p for p in (r.cmdline, plan.boot.extra_cmdline.strip()) if p)
            out.append(RemoteEntry(id=r.id, label=r.label, kernel=r.kernel,
                                   initrds=tuple(r.initrds), cmdline=line,
                                   local_kernel=getattr(r, "local_kernel", None),
                                   local_initrds=tuple(getattr(r, "local_initrds", ()) or ())))
    return out


def ipxe_base(plan: Plan) -> str:
    """URL prefix iPXE fetches tree files from: our HTTP (or external_http), else TFTP."""
    if plan.http.enabled or plan.boot.external_http:
        return plan.http_base
    port = "" if plan.tftp.port == 69 else f":{plan.tftp.port}"
    return f"tftp://{plan.server_ip}{port}/"


def build_boot(plan: Plan, *, remote: tuple[RemoteEntry, ...] | list[RemoteEntry] = (),
               loaders: Loaders | None = None) -> BootTree:
    """Media, loaders and menus for the Plan, mapped into one FileTree."""
    tree = FileTree(case_insensitive=plan.tftp.case_insensitive)
    warnings: list[str] = []
    loaders = loaders if loaders is not None else find_loaders()
    bios_dir, efi_dir, w = _syslinux_dirs(plan)
    warnings += w
    _map_loaders(tree, plan, loaders, bios_dir, efi_dir)
    all_media, skipped = plan_media_all(plan)
    media = all_media[0] if all_media else None
    if media is None:
        entries = [LOCAL_ENTRY]
        warnings.append("no boot medium found (boot.media unset, nothing autodetected): the "
                        "menus offer local boot only")
        title = "pxewizard"
    else:
        for m in all_media:
            _map_media(tree, m)
            warnings += list(m.warnings)
        entries = _wimboot(menu_entries(all_media, plan), tree, loaders)
        for e in entries:
            warnings += [f"{e.id}: {n}" for n in e.notes]
        title = f"pxewizard: {media.label}" if len(all_media) == 1 else \
            f"pxewizard: {len(all_media)} systems"
    warnings += [f"boot.media: skipped {p}: {why}" for p, why in skipped]
    remotes = _remote_entries(plan, remote)
    ids = [e.id for e in entries] + [r.id for r in remotes]
    if plan.boot.default is not None and plan.boot.default not in ids:
        warnings.append(f"boot.default: {plan.boot.default!r} is not a menu entry (entries: "
                        f"{', '.join(ids)}); the first entry is the default")
    per_mac = tuple((r.mac, r.boot_entry) for r in plan.dhcp.reservations
                    if getattr(r, "boot_entry", None))
    default = plan.menu_default
    if plan.boot.default is None and default is not None and default not in ids:
        warnings.append(f"dhcp.mode = {plan.dhcp.mode.value}: any PC of the LAN that "
                        "network-boots may get this menu, but boot.entries leaves out "
                        f"{default!r} (Boot from local disk), so they boot the first entry "
                        "after the timeout; add it, or set boot.default")
    from .cmdline import client_cmdlines

    settings = MenuSettings(title=title, default=default, timeout=plan.boot.timeout,
                            per_mac=per_mac, client_cmdlines=client_cmdlines(
                                entries, media, plan) if media is not None else ())
    menus = menu_files(entries, settings, base=ipxe_base(plan),
                       ipxe_path=plan.dhcp.boot_files.ipxe_script, efi_dir=efi_dir,
                       bios_loader=_join(bios_dir, posixpath.basename(plan.dhcp.boot_files.bios)),
                       remote=remotes)
    for vpath, text in menus.items():
        tree.add_bytes(_join(bios_dir, vpath) if vpath.startswith("pxelinux.cfg/") else vpath,
                       text)
    chain, w = choose_chain(plan.boot.secure_boot, loaders)
    warnings += w
    if chain is not None:
        menus[GRUB_CFG_VPATH] = _map_chain(tree, chain, entries, settings, remotes)
    for root in (plan.tftp.root, plan.http.root):
        if root is not None and Path(root).resolve() not in tree.roots:
            tree.add_root(Path(root))
    warnings += _loader_warnings(tree, plan, loaders, bios_dir, efi_dir)
    return BootTree(tree=tree, media=media, entries=entries, loaders=loaders, menus=menus,
                    bios_dir=bios_dir, efi_dir=efi_dir, warnings=warnings,
                    all_media=all_media, skipped=skipped, secure_boot=chain)


def _unsigned(tree: FileTree, entries: list[BootEntry]) -> set[str]:
    """Ids of entries whose kernel in the tree is not an Authenticode-signed PE image."""
    out = set()
    for e in entries:
        if e.kind not in ("linux", "memtest") or not e.kernel:
            continue
        try:
            loc = tree.resolve(e.kernel).location()
        except PxeError:
            continue
        if loc is not None and not pe_signed(read_head(*loc)):
            out.add(e.id)
    return out


def _map_chain(tree: FileTree, chain: Chain, entries: list[BootEntry],
               settings: MenuSettings, remotes: list[RemoteEntry]) -> str:
    """Serve shim, GRUB (as the grubx64.efi shim asks for beside itself), MokManager and
    grub.cfg; returns the grub.cfg text."""
    tree.add_file(SHIM_VPATH, chain.shim)
    tree.add_file(GRUB_VPATH, chain.grub)
    if chain.mok is not None:
        tree.add_file(MOK_VPATH, chain.mok)
    text = grub_config(entries, settings, remote=remotes, unsigned=_unsigned(tree, entries))
    tree.add_bytes(GRUB_CFG_VPATH, text)
    return text


def build_tree(plan: Plan) -> FileTree:
    """The served tree for a Plan: loaders, media, generated menus, then the Plan's roots."""
    return build_boot(plan).tree


def nbd_exports(plan: Plan) -> dict[str, Path | FileRange]:
    """Export name -> file, from the Plan, else the medium's: ``archiso`` = the ISO (or the
    block device under the running medium) for SystemRescue, ``sysrcd`` = sysrcd.dat for old
    SystemRescueCd (oldstyle NBD serves the first export), read from inside the .iso when
    the medium is one (its initramfs mounts the image itself, not the ISO)."""
    if plan.nbd.exports:
        return {e.name: e.path for e in plan.nbd.exports}
    if not plan.nbd.enabled:
        return {}
    all_media, _skipped = plan_media_all(plan, with_host_memtest=False)
    if not all_media:
        return {}
    media = all_media[0]
    out: dict[str, Path | FileRange] = {}
    for m in all_media:  # the first medium that can use each export name gets it
        if m.profile == "sysrescue-legacy" and m.image is not None:
            if m.extents is not None and m.image_vpath in m.extents:
                offset, size = m.extents[m.image_vpath]  # sysrcd.dat inside the .iso
                out.setdefault("sysrcd", FileRange(m.path, offset, size, m.image_vpath))
            else:
                out.setdefault("sysrcd", m.image)
        elif m.profile == "sysrescue-archiso" and m.nbd_source is not None:
            out.setdefault("archiso", m.nbd_source)
    if out:
        return out
    if media.nbd_source is not None:
        return {"archiso": media.nbd_source}
    if plan.boot.transport.value == "nbd":
        raise PxeError(f"nothing to export over NBD: {media.path} is a directory and NBD "
                       "exports a whole disk image (SystemRescue reads the ISO itself)",
                       "set boot.media to the .iso, or list it in nbd.exports")
    return {}


def nfs_exports(plan: Plan) -> list[NfsExport]:
    """The Plan's NFS exports, else the medium's directory, read-only; then changed for
    nfs.root_mode (roots.root_exports: the tree read-only, per-client roots added)."""
    from .roots import root_exports

    return root_exports(plan, _plan_nfs_exports(plan))


def _plan_nfs_exports(plan: Plan) -> list[NfsExport]:
    if plan.nfs.exports:
        return list(plan.nfs.exports)
    if not plan.nfs.enabled:
        return []
    paths = plan.boot.media_paths
    if len(paths) == 1 and paths[0].is_dir():
        # no need to look inside again (an NFS root's initramfs check takes a while)
        return [NfsExport(path=Path(paths[0]).resolve())]
    media, _skipped = plan_media_all(plan, with_host_memtest=False)
    out: list[NfsExport] = []
    for m in media:
        if not m.is_iso and m.profile not in ("memtest", "debian-iso") \
                and all(Path(m.path).resolve() != e.path for e in out):
            out.append(NfsExport(path=Path(m.path).resolve()))
    return out


def menu_outline(bt: BootTree, plan: Plan) -> list[str]:
    """The menu as text lines, medium by medium with its profile, stage-3 needs and client
    RAM (for ``serve``'s output, doctor and the wizard)."""
    from .ram import ram_estimate

    transport = plan.boot.transport.value
    ids = [e.id for e in bt.entries]
    default = plan.boot.default if plan.boot.default in ids else \
        next((e.id for e in bt.entries if e.kind != "localboot"), "local")
    n = len(bt.all_media)
    out = [f"menu: {n} {'medium' if n == 1 else 'media'}, default {default}, timeout "
           f"{plan.boot.timeout} s"]
    by_group: dict[str, list[BootEntry]] = {}
    for e in bt.entries:
        by_group.setdefault(e.group_id, []).append(e)
    width = max((len(e.id) for e in bt.entries), default=5)
    for m in bt.all_media:
        entries = by_group.get(m.key, []) if n > 1 else \
            [e for e in bt.entries if e.kind != "localboot"]
        linux = next((e for e in entries if e.kind in ("linux", "memtest")), None)
        need = ""
        if linux is not None:
            ram = ram_estimate(m, linux, transport, plan.boot.copytoram)
            need = f"; client RAM about {ram.needed_mib} MiB"
        where = f"/{m.vprefix}" if m.vprefix else "/"
        out.append(f"  {m.label} [{m.profile}] from {m.path}, served at {where}{need}")
        for e in entries:
            fw = "" if e.firmware == "any" else f" ({e.firmware} only)"
            kind = {"message": " (cannot boot from here: see the warnings)",
                    "wimboot": " (iPXE)"}.get(e.kind, "")
            out.append(f"    {e.id:<{width}}  {e.label}{fw}{kind}")
    for e in bt.entries:
        if e.kind in ("localboot", "remote") or (not bt.all_media and e.kind != "localboot"):
            out.append(f"  {e.id:<{width}}  {e.label}")
    for r in plan.dhcp.reservations:
        if getattr(r, "boot_entry", None):
            out.append(f"  per-MAC default: {r.mac} -> {r.boot_entry}")
    return out
