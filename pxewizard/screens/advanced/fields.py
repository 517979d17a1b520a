"""The Advanced step's text fields <-> Plan data, and the Plan's problems mapped onto them.

Only the line syntax is checked here (which word is which); every value is checked by the
Plan itself (:func:`pxewizard.plan.plan_from_dict`), whose problems :func:`assign` puts next
to the field they are about, with entry numbers turned into the line numbers typed.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from typing import Any

from ...plan import Plan, problem_at

RESERVATION_SYNTAX = "MAC [IP] [entry-id] [host=NAME] [file=PATH]"
REMOTE_SYNTAX = 'ID LABEL kernel=URL [initrd=URL]... [cmdline="..."]'

_IP_SHAPED = re.compile(r"^[0-9.]+$")
_RES_KEYS = {"ip": "ip", "entry": "boot_entry", "host": "hostname", "file": "boot_file"}
_REMOTE_KEYS = {"kernel": "kernel", "initrd": "initrds", "cmdline": "cmdline",
                "local_kernel": "local_kernel", "local_initrd": "local_initrds"}
_REMOTE_LISTS = {"initrds", "local_initrds"}


def split_macs(text: str) -> list[str]:
    """``aa:.., bb:..`` or one per word: the MACs as typed (the Plan checks each)."""
    return [w for w in re.split(r"[\s,;]+", text) if w]


# --- reservations: one client a line -------------------------------------------------


def format_reservations(items: list[dict[str, Any]]) -> str:
    lines = []
    for r in items:
        words = [str(r["mac"])]
        if r.get("ip"):
            words.append(str(r["ip"]))
        entry = r.get("boot_entry")
        if entry:
            bare = not _IP_SHAPED.match(entry) and "=" not in entry and " " not in entry
            words.append(entry if bare else f"entry={entry}")
        if r.get("hostname"):
            words.append(f"host={r['hostname']}")
        if r.get("boot_file"):
            words.append(f"file={r['boot_file']}")
        lines.append(" ".join(words))
    return "\n".join(lines)


def _content_lines(text: str) -> Iterator[tuple[int, str]]:
    """Each line that holds something, with its number from 1 (blank lines and ``#``
    comments skipped): what the one-item-a-line fields read."""
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            yield n, line


def parse_reservations(text: str) -> tuple[list[dict[str, Any]], list[int], list[str]]:
    """(Plan data, the line number of each, syntax problems)."""
    items: list[dict[str, Any]] = []
    line_nos: list[int] = []
    problems: list[str] = []
    for n, line in _content_lines(text):
        words = line.split()
        item: dict[str, Any] = {"mac": words[0]}
        for w in words[1:]:
            key, eq, value = w.partition("=")
            if eq:
                if key not in _RES_KEYS:
                    problems.append(f"dhcp.reservations, line {n}: {key + '='!r} is not known; "
                                    f"write {RESERVATION_SYNTAX}")
                    continue
                item[_RES_KEYS[key]] = value
            elif _IP_SHAPED.match(w) and "ip" not in item:
                item["ip"] = w
            elif "boot_entry" not in item:
                item["boot_entry"] = w
            else:
                problems.append(f"dhcp.reservations, line {n}: {w!r} is a second entry id "
                                f"(after {item['boot_entry']!r}); write {RESERVATION_SYNTAX}")
        items.append(item)
        line_nos.append(n)
    return items, line_nos, problems


# --- remote entries: one entry a line -------------------------------------------------


def format_remote_entries(items: list[dict[str, Any]]) -> str:
    lines = []
    for e in items:
        words = [shlex.quote(str(e["id"])), shlex.quote(str(e["label"])),
                 f"kernel={shlex.quote(str(e['kernel']))}"]
        words += [f"initrd={shlex.quote(str(u))}" for u in e.get("initrds") or ()]
        if e.get("cmdline"):
            words.append(f"cmdline={shlex.quote(str(e['cmdline']))}")
        if e.get("local_kernel"):
            words.append(f"local_kernel={shlex.quote(str(e['local_kernel']))}")
        words += [f"local_initrd={shlex.quote(str(p))}" for p in e.get("local_initrds") or ()]
        lines.append(" ".join(words))
    return "\n".join(lines)


def parse_remote_entries(text: str) -> tuple[list[dict[str, Any]], list[int], list[str]]:
    """(Plan data, the line number of each, syntax problems)."""
    items: list[dict[str, Any]] = []
    line_nos: list[int] = []
    problems: list[str] = []
    for n, line in _content_lines(text):
        try:
            words = shlex.split(line)
        except ValueError:
            problems.append(f"boot.remote_entries, line {n}: a quote is not closed; "
                            f"write {REMOTE_SYNTAX}")
            continue
        item: dict[str, Any] = {"id": words[0]}
        label: list[str] = []
        for w in words[1:]:
            key, eq, value = w.partition("=")
            if eq and key in _REMOTE_KEYS:
                name = _REMOTE_KEYS[key]
                if name in _REMOTE_LISTS:
                    item.setdefault(name, []).append(value)
                else:
                    item[name] = value
            else:
                label.append(w)
        if label:
            item["label"] = " ".join(label)
        missing = [w for w, k in (("a LABEL", "label"), ("kernel=URL", "kernel"))
                   if k not in item]
        if missing:
            problems.append(f"boot.remote_entries, line {n}: {' and '.join(missing)} missing "
                            f"in {line.strip()!r}; write {REMOTE_SYNTAX}")
            continue
        items.append(item)
        line_nos.append(n)
    return items, line_nos, problems


# --- the Plan's problems, next to their field -------------------------------------------

_FIELD_OF = {
    "http.port": "http_port", "boot.extra_cmdline": "extra_cmdline",
    "dhcp.allowed_macs": "allowed_macs", "boot.loader": "loader", "dhcp.boot_files": "loader",
    "boot.secure_boot": "secure_boot",
    "dhcp.reservations": "reservations", "boot.remote_entries": "remote_entries",
}
"""Plan field (or its first two names) -> the Advanced field it is typed in."""


def assign(problems: list[str], lines: dict[str, list[int]]
           ) -> tuple[dict[str, list[str]], list[str]]:
    """The Plan's problems by field (entry N named by its line), and those of other fields."""
    out: dict[str, list[str]] = {}
    rest: list[str] = []
    for p in problems:
        where, index, after = problem_at(p)
        field = _FIELD_OF.get(where) or _FIELD_OF.get(".".join(where.split(".")[:2]))
        if field is None and where.endswith(".port") and "used by http;" in p:
            field = "http_port"  # another service's port is the one http already holds
        if field is None:
            rest.append(p)
            continue
        if index is not None:
            nos = lines.get(field, [])
            line = f"line {nos[index]}" if index < len(nos) else f"entry {index + 1}"
            p = f"{where}, {line}, {after}"
        out.setdefault(field, []).append(p)
    return out, rest


# --- what Review says about them -------------------------------------------------------


def summary_lines(plan: Plan) -> list[str]:
    """The Advanced settings that differ from the defaults, one line each (nothing hidden)."""
    b, d = plan.boot, plan.dhcp
    out = []
    if plan.http.port != 80:
        out.append(f"HTTP port {plan.http.port}")
    if b.extra_cmdline:
        out.append(f"Kernel command line + {b.extra_cmdline}")
    if d.allowed_macs:
        out.append("Answers only " + ", ".join(d.allowed_macs)
                   + (" and the reserved MACs" if d.reservations else ""))
    for r in d.reservations:
        what = [str(r.ip) if r.ip else "", f"entry {r.boot_entry}" if r.boot_entry else "",
                f"host {r.hostname}" if r.hostname else "",
                f"file {r.boot_file}" if r.boot_file else ""]
        out.append(f"Reserved {r.mac}: " + (", ".join(w for w in what if w) or "known client"))
    if b.loader != "pxelinux":
        f = d.boot_files
        out.append(f"Loader {b.loader}: BIOS {f.bios}, UEFI {f.efi_x64}")
    if b.secure_boot != "off":
        out.append(f"Secure Boot {b.secure_boot}: UEFI x64 clients get shim -> GRUB"
                   + (" where installed" if b.secure_boot == "auto" else ""))
    for e in b.remote_entries:
        out.append(f"Remote entry {e.id} \"{e.label}\": {e.kernel}")
    return out
