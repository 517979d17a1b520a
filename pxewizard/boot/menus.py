"""Boot menus generated from one list of boot entries.

Three menus, same entries, same default and timeout (from ``plan.boot``):

- ``pxelinux.cfg/default`` for BIOS ``pxelinux.0`` (at the tree root);
- ``efi64/pxelinux.cfg/default`` for UEFI ``syslinux.efi``, which sits in
  ``efi64/`` with its own ``ldlinux.e64`` and EFI ``*.c32`` modules, because
  those share names with the BIOS modules and syslinux looks for modules and
  its config relative to its own directory. Both configs write every path
  with syslinux's ``::`` prefix ("from the TFTP root, no path prefix"), so the
  same media paths work from either directory. Entries that exist only for one
  firmware (memtest86+ BIOS vs EFI) appear only in that firmware's menu.
- the iPXE script (``boot.ipxe``, served over HTTP) with a ``menu``/``choose``
  loop; firmware-only entries are shown with ``iseq ${platform}``.

Per-MAC defaults: when a reservation names a boot entry (``boot_entry``), the
pxelinux menus get a ``pxelinux.cfg/01-aa-bb-cc-dd-ee-ff`` copy whose DEFAULT is
that entry, and the iPXE script sets its default by ``${netX/mac}``. When that entry is
the menu's only one besides local boot, there is nothing to choose: that MAC boots it at
once (TIMEOUT 1, ``goto``) instead of waiting out the timeout; other clients keep the menu.

Several media: each medium's entries (``BootEntry.group_id``) form a submenu,
``MENU BEGIN``/``MENU END`` in pxelinux (menu.c32 opens the submenu holding the
DEFAULT label, with the same TIMEOUT: syslinux ``com32/menu/readconfig.c``) and a
``menu``/``choose`` section in iPXE; remote entries and "Boot from local disk"
stay at the top. One medium gives a flat menu, as before.

Entries that cannot boot from here (``kind`` message: a Debian CD initrd,
Windows without wimboot) are shown disabled with their notes as help text, and
in iPXE print their notes. Windows (``kind`` wimboot) boots from iPXE only.

Remote entries (kernel and initramfs at http:// URLs, e.g. an installer on a
mirror) go into the iPXE menu as they are. pxelinux.0 and syslinux.efi have no
HTTP: there they use the local copies when the entry names some, else they are
shown disabled with a note. lpxelinux.0 fetches URLs itself, so a BIOS menu for
it keeps the URLs.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import PurePosixPath

from .media import BootEntry

FIRMWARES = ("bios", "efi64")


class _Template(string.Template):
    # "$" belongs to iPXE (${platform}); "@{name}" is ours.
    delimiter = "@"


def _template(name: str) -> _Template:
    text = resources.files("pxewizard").joinpath("assets", "menus", name).read_text("utf-8")
    return _Template(text)


@dataclass(frozen=True)
class RemoteEntry:
    """A menu entry whose kernel and initramfs are http:// URLs (iPXE fetches them)."""

    id: str
    """Menu id, [a-z0-9_-]."""
    label: str
    """Text shown in the menu."""
    kernel: str
    """Kernel URL."""
    initrds: tuple[str, ...] = ()
    """Initramfs URLs, in load order."""
    cmdline: str = ""
    """Kernel command line."""
    local_kernel: str | None = None
    """Virtual path of a local copy of the kernel, for pxelinux (no HTTP there)."""
    local_initrds: tuple[str, ...] = ()
    """Virtual paths of local copies of the initramfs files, for pxelinux."""

    def __post_init__(self) -> None:
        for url in (self.kernel, *self.initrds):
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"remote entry {self.id}: {url!r} is not an http:// URL")

    def as_boot_entry(self) -> BootEntry:
        return BootEntry(id=self.id, label=self.label, kernel=self.kernel, initrds=self.initrds,
                         cmdline=self.cmdline, files=(), image_size=0, kind="remote")


@dataclass(frozen=True)
class MenuSettings:
    """What the menus share: title, default entry id, timeout in seconds."""

    title: str
    default: str | None = None
    timeout: int = 10
    per_mac: tuple[tuple[str, str], ...] = ()
    """(MAC aa:bb:cc:dd:ee:ff, entry id) pairs."""
    client_cmdlines: tuple[tuple[str, str, str], ...] = ()
    """(MAC, entry id, command line): that MAC boots that entry with its own command line
    (per-client NFS roots); in its ``01-<mac>`` file and an iPXE ``${netX/mac}`` test."""

    def cmdlines_of(self, mac: str) -> dict[str, str]:
        return {e: line for m, e, line in self.client_cmdlines if m == mac}


def _for_firmware(entries: list[BootEntry], firmware: str) -> list[BootEntry]:
    want = "bios" if firmware == "bios" else "efi"
    return [e for e in entries if e.firmware in ("any", want)]


def _default(entries: list[BootEntry], wanted: str | None) -> str:
    ids = [e.id for e in entries]
    if wanted in ids:
        return wanted  # type: ignore[return-value]
    return next((e.id for e in entries if e.kind != "localboot"), ids[0] if ids else "local")


def _sx(path: str) -> str:
    """A tree path as syslinux reads it from the TFTP root (``::`` = no path prefix)."""
    return "::/" + path.lstrip("/")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _help(notes: tuple[str, ...] | list[str]) -> str:
    if not notes:
        return ""
    lines = "".join(f"  {_one_line(n)}\n" for n in notes)
    return f"  TEXT HELP\n{lines}  ENDTEXT\n"


def _boots_at_once(entries: list[BootEntry], entry: str | None) -> bool:
    """A per-MAC default naming the menu's one entry (besides local boot): nothing is left
    to choose, so that MAC boots it at once instead of waiting out the menu timeout."""
    real = [e for e in entries if e.kind != "localboot"]
    return entry is not None and len(real) == 1 and real[0].id == entry


def pxelinux_config(entries: list[BootEntry], settings: MenuSettings, *,
                    firmware: str = "bios", remote: list[RemoteEntry] | tuple = (),
                    loader: str | None = None, default: str | None = None,
                    cmdlines: dict[str, str] | None = None) -> str:
    """pxelinux.cfg text for ``firmware`` "bios" (pxelinux.0) or "efi64" (syslinux.efi);
    ``cmdlines``: entry id -> command line replacing that entry's (one client's file)."""
    if firmware not in FIRMWARES:
        raise ValueError(f"firmware {firmware!r}: use one of {FIRMWARES}")
    loader = loader or ("pxelinux.0" if firmware == "bios" else "efi64/syslinux.efi")
    http_capable = loader.endswith("lpxelinux.0")
    shown = _for_firmware(entries, firmware)
    local = [e for e in shown if e.kind == "localboot"]
    shown = [e for e in shown if e.kind != "localboot"]
    remote_entries = [r.as_boot_entry() for r in remote]
    # TIMEOUT is in tenths and 0 waits forever: 1 is "at once"
    timeout = 1 if _boots_at_once(shown + remote_entries, default) else settings.timeout * 10
    out = [_template("pxelinux_head.cfg").substitute(
        firmware="BIOS" if firmware == "bios" else "UEFI x64", loader=loader,
        default=_default(shown + local, default if default is not None else settings.default),
        timeout=timeout, title=_one_line(settings.title))]
    if cmdlines:  # one client's own lines (nfs.root_mode per-client)
        shown = [replace(e, cmdline=cmdlines[e.id]) if e.id in cmdlines else e for e in shown]
    for gid, title, members in _groups(shown):
        if not gid:
            out += [_pxelinux_entry(e) for e in members]
            continue
        body = "".join(_pxelinux_entry(e) for e in members) + _template(
            "pxelinux_back.cfg").substitute(id=f"{gid}-back")
        out.append(f"\nMENU BEGIN {gid}\n  MENU TITLE {_one_line(title)}\n"
                   + "".join(f"  {ln}\n" if ln else "\n" for ln in body.split("\n")[:-1])
                   + "MENU END\n")
    for r in remote:
        out.append(_pxelinux_remote(r, http_capable))
    for e in local:
        out.append(_pxelinux_entry(e))
    return "".join(out)


def _groups(entries: list[BootEntry]) -> list[tuple[str, str, list[BootEntry]]]:
    """Consecutive entries of one medium together: (group id, title, entries)."""
    out: list[tuple[str, str, list[BootEntry]]] = []
    for e in entries:
        if out and out[-1][0] == e.group_id:
            out[-1][2].append(e)
        else:
            out.append((e.group_id, e.group, [e]))
    return out


def _pxelinux_entry(e: BootEntry) -> str:
    if e.kind == "localboot":
        text = _template("pxelinux_localboot.cfg").substitute(id=e.id, label=_one_line(e.label))
    elif e.kind == "memtest":
        text = _template("pxelinux_memtest.cfg").substitute(
            id=e.id, label=_one_line(e.label), kernel=_sx(e.kernel))
        if e.cmdline:
            text += f"  APPEND {_one_line(e.cmdline)}\n"
    elif e.kind == "message":
        text = _template("pxelinux_disabled.cfg").substitute(id=e.id, label=_one_line(e.label))
    elif e.kind == "wimboot":
        text = _template("pxelinux_disabled.cfg").substitute(
            id=e.id, label=_one_line(e.label) + " (iPXE only)")
        return text + _help(["pxelinux cannot start wimboot: boot this entry from the iPXE "
                             "menu (boot.loader = ipxe, dhcp.boot_files.bios = "
                             "undionly.kpxe, efi_x64 = ipxe.efi)", *e.notes])
    else:
        text = _linux(e.id, e.label, _sx(e.kernel), [_sx(i) for i in e.initrds], e.cmdline)
    return text + _help(e.notes)


def _linux(id_: str, label: str, kernel: str, initrds: list[str], cmdline: str) -> str:
    text = _template("pxelinux_linux.cfg").substitute(
        id=id_, label=_one_line(label), kernel=kernel, initrds=",".join(initrds),
        cmdline=_one_line(cmdline))
    lines = text.split("\n")
    if not initrds:
        lines = [ln for ln in lines if not ln.startswith("  INITRD ")]
    if not cmdline.strip():
        lines = [ln for ln in lines if not ln.startswith("  APPEND ")]
    return "\n".join(lines)


def _pxelinux_remote(r: RemoteEntry, http_capable: bool) -> str:
    if http_capable:
        return _linux(r.id, r.label, r.kernel, list(r.initrds), r.cmdline) + _help(
            ["lpxelinux.0 fetches this entry's files over HTTP from " + r.kernel])
    if r.local_kernel:
        return _linux(r.id, r.label, _sx(r.local_kernel), [_sx(i) for i in r.local_initrds],
                      r.cmdline) + _help([
                          f"pxelinux has no HTTP: this entry boots the copy served here "
                          f"({r.local_kernel}) instead of {r.kernel}"])
    text = _template("pxelinux_disabled.cfg").substitute(
        id=r.id, label=_one_line(r.label) + " (iPXE only)")
    return text + _help([f"pxelinux has no HTTP and no local copy of {r.kernel} is "
                         "served: boot this entry from the iPXE menu"])


def _mac_file(mac: str) -> str:
    return "01-" + mac.lower().replace(":", "-")


def _ipxe_url(base: str, path: str) -> str:
    if path.startswith(("http://", "https://", "tftp://")):
        return path
    return base + path.lstrip("/")


def _ipxe_item(e: BootEntry) -> str:
    item = f"item {e.id} {_one_line(e.label)}"
    if e.firmware == "bios":
        item = f"iseq ${{platform}} pcbios && {item} ||"
    elif e.firmware == "efi":
        item = f"iseq ${{platform}} efi && {item} ||"
    return item + "\n"


def ipxe_script(entries: list[BootEntry], settings: MenuSettings, *, base: str,
                remote: list[RemoteEntry] | tuple = ()) -> str:
    """The iPXE menu script; ``base`` is the URL prefix of tree paths (ends with '/')."""
    all_entries = [e for e in entries if e.kind != "localboot"]
    all_entries += [r.as_boot_entry() for r in remote]
    all_entries += [e for e in entries if e.kind == "localboot"]
    default = _default(all_entries, settings.default)
    groups = _groups(all_entries)
    grouped = any(gid for gid, _t, _m in groups)
    group_of = {e.id: f"menu-{e.group_id}" for e in all_entries if e.group_id}
    per_mac_pairs = [(mac, entry) for mac, entry in settings.per_mac
                     if any(e.id == entry for e in all_entries)]
    if grouped:
        lines = [f"set entry-default {default}"]
        for mac, entry in per_mac_pairs:
            lines.append(f"iseq ${{netX/mac}} {mac} && set menu-default "
                         f"{group_of.get(entry, entry)} ||")
            lines.append(f"iseq ${{netX/mac}} {mac} && set entry-default {entry} ||")
        per_mac = "\n".join(lines)
        default = group_of.get(default, default)
    else:
        # a per-MAC default that is the menu's one entry boots at once (grouped menus hold
        # several media, so never one entry)
        per_mac = "\n".join(f"iseq ${{netX/mac}} {mac} && goto {entry} ||"
                            if _boots_at_once(all_entries, entry) else
                            f"iseq ${{netX/mac}} {mac} && set menu-default {entry} ||"
                            for mac, entry in per_mac_pairs)
    out = [_template("ipxe_head.ipxe").substitute(
        base=base, default=default, per_mac=per_mac, title=_one_line(settings.title))]
    for gid, title, members in groups:
        if gid:
            out.append(f"item menu-{gid} {_one_line(title)} >\n")
        else:
            out += [_ipxe_item(e) for e in members]
    timeout = f"--timeout {settings.timeout * 1000} " if settings.timeout else ""
    out.append(_template("ipxe_tail.ipxe").substitute(timeout=timeout))
    for gid, title, members in groups:
        if not gid:
            continue
        out.append(f"\n:menu-{gid}\nmenu {_one_line(title)}\n")
        out += [_ipxe_item(e) for e in members]
        out.append("item start < Back\n")
        out.append(f"choose {timeout}--default ${{entry-default}} target || goto start\n"
                   "goto ${target}\n")
    for e in all_entries:
        if e.kind == "localboot":
            out.append(_template("ipxe_localboot.ipxe").substitute(id=e.id))
            continue
        if e.kind == "message":
            said = "".join(f"echo {_one_line(n)}\n" for n in e.notes)
            out.append(f"\n:{e.id}\necho {_one_line(e.label)}\n{said}"
                       "prompt Press a key for the menu\ngoto start\n")
            continue
        if e.kind == "wimboot":
            initrds = "\n".join(f"initrd {_ipxe_url(base, i)} {n}"
                                 for i, n in zip(e.initrds, e.names))
            out.append(f"\n:{e.id}\nkernel {_ipxe_url(base, e.kernel)}\n{initrds}\n"
                       "boot || goto failed\n")
            continue
        args = [f"initrd={PurePosixPath(i).name}" for i in e.initrds]
        own = [(m, line) for m, eid, line in settings.client_cmdlines if eid == e.id]
        if own:  # per-client lines: chosen by MAC at boot, the shared line otherwise
            out.append(f"\n:{e.id}\nset pxw-args {_one_line(e.cmdline)}\n" + "".join(
                f"iseq ${{netX/mac}} {m} && set pxw-args {_one_line(line)} ||\n"
                for m, line in own))
            args.append("${pxw-args}")
        elif e.cmdline:
            args.append(_one_line(e.cmdline))
        if e.kind == "linux":
            args.append("BOOTIF=01-${netX/mac:hexhyp}")
        initrds = "\n".join(f"initrd {_ipxe_url(base, i)}" for i in e.initrds)
        text = _template("ipxe_linux.ipxe").substitute(
            id=e.id, kernel=_ipxe_url(base, e.kernel),
            cmdline="".join(" " + a for a in args), initrds=initrds)
        if not initrds:
            text = text.replace("\n\nboot ||", "\nboot ||")
        if own:  # the label went above the per-client tests
            text = text.replace(f"\n:{e.id}\n", "", 1)
        out.append(text)
    return "".join(out)


def menu_files(entries: list[BootEntry], settings: MenuSettings, *, base: str,
               ipxe_path: str | None = "boot.ipxe", efi_dir: str = "efi64",
               bios_loader: str = "pxelinux.0", remote: list[RemoteEntry] | tuple = ()
               ) -> dict[str, str]:
    """Every generated menu file: virtual path -> text."""
    files: dict[str, str] = {}
    efi_loader = f"{efi_dir}/syslinux.efi" if efi_dir else "syslinux.efi"
    for firmware, prefix, loader in (("bios", "", bios_loader),
                                     ("efi64", f"{efi_dir}/" if efi_dir else "", efi_loader)):
        files[f"{prefix}pxelinux.cfg/default"] = pxelinux_config(
            entries, settings, firmware=firmware, remote=remote, loader=loader)
        defaults = dict(settings.per_mac)
        macs = list(dict.fromkeys([m for m, _ in settings.per_mac]
                                  + [m for m, _, _ in settings.client_cmdlines]))
        for mac in macs:
            files[f"{prefix}pxelinux.cfg/{_mac_file(mac)}"] = pxelinux_config(
                entries, settings, firmware=firmware, remote=remote, loader=loader,
                default=defaults.get(mac), cmdlines=settings.cmdlines_of(mac))
    if ipxe_path:
        files[ipxe_path.lstrip("/")] = ipxe_script(entries, settings, base=base, remote=remote)
    return files


# --- GRUB (the Secure Boot chain: shim -> signed GRUB -> grub/grub.cfg) -------------------

_GRUB_PLAIN = frozenset(string.ascii_letters + string.digits + "_./:=,+@%-")


def _gq(text: str) -> str:
    """One GRUB word: bare when safe, else single-quoted (GRUB expands no ``$`` there)."""
    if text and all(ch in _GRUB_PLAIN for ch in text):
        return text
    return "'" + text.replace("'", "'\\''") + "'"


def _grub_path(path: str) -> str:
    """A tree path from the server GRUB was loaded from; an http:// URL as GRUB's
    ``(http,host)/path`` device."""
    if path.startswith("http://"):
        host, _, rest = path[len("http://"):].partition("/")
        return f"(http,{host})/{rest}"
    return "/" + path.lstrip("/")


def _grub_entry(e: BootEntry, unsigned: frozenset[str] | set[str], indent: str) -> str:
    label = _one_line(e.label)
    body: list[str]
    if e.kind == "localboot":
        # exit hands the machine back to the firmware, which tries its next boot option
        body = ["exit"]
    elif e.kind in ("message", "wimboot") or (e.kind == "remote"
                                              and e.kernel.startswith("https://")):
        why = list(e.notes)
        if e.kind == "wimboot":
            label += " (iPXE only)"
            why.insert(0, "GRUB cannot start wimboot: boot this entry from the iPXE menu")
        elif e.kind == "remote":
            label += " (iPXE only)"
            why.insert(0, f"GRUB has no https: boot {e.kernel} from the iPXE menu")
        body = [f"echo {_gq(_one_line(n))}" for n in why or [label]]
        body.append("sleep --interruptible 30")
    else:
        if e.id in unsigned:
            label += f" ({'needs Secure Boot off'})"
        body = [" ".join(["linux", _gq(_grub_path(e.kernel))]
                         + [_gq(w) for w in e.cmdline.split()])]
        if e.initrds:
            body.append(" ".join(["initrd"] + [_gq(_grub_path(i)) for i in e.initrds]))
    inner = "".join(f"{indent}\t{line}\n" for line in body)
    return f"{indent}menuentry {_gq(label)} --id {_gq(e.id)} {{\n{inner}{indent}}}\n"


def grub_config(entries: list[BootEntry], settings: MenuSettings, *,
                remote: list[RemoteEntry] | tuple = (),
                unsigned: frozenset[str] | set[str] = frozenset(),
                note: str = "sb/shimx64.efi") -> str:
    """grub.cfg for the signed GRUB (UEFI x64): the UEFI entries of the pxelinux menu,
    same ids, default, timeout and command lines; one submenu per medium; local boot by
    ``exit``. ``unsigned``: ids whose kernel has no Authenticode signature (their label
    says "needs Secure Boot off"). Paths are absolute on the server GRUB came from
    (TFTP or HTTP), so one file serves both."""
    shown = _for_firmware(entries, "efi64")
    local = [e for e in shown if e.kind == "localboot"]
    shown = [e for e in shown if e.kind != "localboot"]
    shown += [r.as_boot_entry() for r in remote]
    default = _default(shown + local, settings.default)
    group_of = {e.id: e.group_id for e in shown if e.group_id}

    def target(entry_id: str) -> str:
        gid = group_of.get(entry_id)
        return f"{gid}>{entry_id}" if gid else entry_id

    timeout = settings.timeout if settings.timeout else -1
    out = [f"# Generated by pxewizard for UEFI x64 clients ({note} -> signed GRUB); "
           "rewritten at every start.\n",
           f"set default={_gq(target(default))}\n", f"set timeout={timeout}\n",
           "set timeout_style=menu\n"]
    for mac, entry in settings.per_mac:
        if any(e.id == entry for e in shown + local):
            out.append(f"if [ \"$net_default_mac\" = {_gq(mac.lower())} ]; then "
                       f"set default={_gq(target(entry))}; fi\n")
    for gid, title, members in _groups(shown):
        if not gid:
            out += ["\n" + _grub_entry(e, unsigned, "") for e in members]
            continue
        inner = "".join(_grub_entry(e, unsigned, "\t") for e in members)
        out.append(f"\nsubmenu {_gq(_one_line(title))} --id {_gq(gid)} {{\n{inner}}}\n")
    out += ["\n" + _grub_entry(e, unsigned, "") for e in local]
    return "".join(out)
