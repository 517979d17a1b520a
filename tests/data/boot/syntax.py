"""Small syntax checkers for the menus we generate: syslinux config and iPXE script.

They follow the syntax as the real parsers read it (syslinux's
``com32/elflink/ldlinux/readconfig.c`` keywords, iPXE's script rules: one
command per line, ``:label`` lines, ``&&``/``||`` chains, ``goto`` needs an
existing label) and check that every file a menu names resolves in the served
FileTree, the way the loader would ask for it.
"""

from __future__ import annotations

import re
from posixpath import basename

from pxewizard.files import FileTree, TreeError

GLOBAL = {"DEFAULT", "UI", "PROMPT", "TIMEOUT", "MENU", "LABEL", "SERIAL", "INCLUDE",
          "PATH", "ONTIMEOUT", "TOTALTIMEOUT", "NOESCAPE", "ALLOWOPTIONS", "DISPLAY"}
IN_LABEL = {"MENU", "LINUX", "KERNEL", "INITRD", "APPEND", "IPAPPEND", "SYSAPPEND",
            "LOCALBOOT", "COM32", "TEXT", "LABEL"}
BOOTERS = {"LINUX", "KERNEL", "LOCALBOOT", "COM32", "MENU EXIT"}


def _resolve(tree: FileTree, prefix: str, path: str) -> None:
    """Resolve ``path`` as syslinux asks for it: ``::`` = from the TFTP root."""
    vpath = path[2:] if path.startswith("::") else prefix + path
    tree.resolve(vpath)  # raises NotFound / AccessDenied


def check_pxelinux(text: str, tree: FileTree | None = None, prefix: str = "") -> list[str]:
    """Problems in a syslinux config (empty list: fine). ``prefix``: the loader's directory."""
    problems: list[str] = []
    labels: dict[str, set[str]] = {}
    current: str | None = None
    default = None
    in_help = False
    depth = 0
    for n, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if in_help:
            if line == "ENDTEXT":
                in_help = False
            continue
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        kw = word.upper()
        if kw == "MENU" and rest.split()[:1] in (["BEGIN"], ["END"]):
            # a submenu (readconfig.c: "menu begin" records the pending label first)
            if rest.startswith("BEGIN"):
                depth += 1
                if not re.fullmatch(r"BEGIN [A-Za-z0-9_.-]+", rest.strip()):
                    problems.append(f"line {n}: bad MENU BEGIN tag {rest!r}")
            else:
                depth -= 1
                if depth < 0:
                    problems.append(f"line {n}: MENU END without MENU BEGIN")
            current = None
            continue
        if kw != word:
            problems.append(f"line {n}: keyword {word!r} should be upper case")
        allowed = IN_LABEL if current else GLOBAL
        if kw not in allowed:
            problems.append(f"line {n}: {word} not allowed {'in a LABEL' if current else 'here'}")
            continue
        if kw == "LABEL":
            current = rest.strip()
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", current):
                problems.append(f"line {n}: bad label {current!r}")
            if current in labels:
                problems.append(f"line {n}: label {current} defined twice")
            labels[current] = set()
            continue
        if kw == "DEFAULT":
            default = rest.strip()
        elif kw == "TIMEOUT" and not rest.strip().isdigit():
            problems.append(f"line {n}: TIMEOUT needs tenths of a second, got {rest!r}")
        elif kw == "UI" and tree is not None:
            try:
                _resolve(tree, prefix, rest.strip())
            except TreeError as exc:
                problems.append(f"line {n}: UI module: {exc}")
        elif kw == "TEXT":
            if rest.strip() != "HELP":
                problems.append(f"line {n}: TEXT must be TEXT HELP")
            in_help = True
        elif kw == "IPAPPEND" and rest.strip() not in ("1", "2", "3"):
            problems.append(f"line {n}: IPAPPEND takes 1, 2 or 3")
        elif kw == "MENU" and current is None and not rest.startswith(("TITLE ", "HIDDEN")):
            problems.append(f"line {n}: unexpected MENU {rest}")
        if current is not None:
            key = f"MENU {rest.split()[0]}" if kw == "MENU" else kw
            if key in labels[current]:
                problems.append(f"line {n}: {key} twice in LABEL {current}")
            labels[current].add(key)
            if kw in ("LINUX", "KERNEL") and tree is not None:
                try:
                    _resolve(tree, prefix, rest.strip())
                except TreeError as exc:
                    problems.append(f"line {n}: kernel: {exc}")
            if kw == "INITRD" and tree is not None:
                for item in rest.strip().split(","):
                    try:
                        _resolve(tree, prefix, item)
                    except TreeError as exc:
                        problems.append(f"line {n}: initrd: {exc}")
            if kw == "APPEND" and len(rest) > 2047:
                problems.append(f"line {n}: APPEND longer than the kernel's 2048 bytes")
    if in_help:
        problems.append("TEXT HELP without ENDTEXT")
    if depth:
        problems.append(f"{depth} MENU BEGIN without MENU END")
    for label, keys in labels.items():
        booters = keys & BOOTERS
        if len(booters) != 1 and "MENU DISABLE" not in keys:
            problems.append(f"LABEL {label}: needs exactly one of LINUX/KERNEL/LOCALBOOT/COM32")
        if "MENU LABEL" not in keys:
            problems.append(f"LABEL {label}: no MENU LABEL")
    if default is None:
        problems.append("no DEFAULT")
    elif default not in labels:
        problems.append(f"DEFAULT {default} names no LABEL")
    return problems


IPXE_COMMANDS = {"set", "menu", "item", "choose", "goto", "kernel", "initrd", "boot", "echo",
                 "prompt", "exit", "iseq", "isset", "chain", "imgfree", "shell", "sleep"}


def check_ipxe(text: str, tree: FileTree | None = None, base: str = "") -> list[str]:
    """Problems in an iPXE script (empty list: fine)."""
    problems: list[str] = []
    lines = text.split("\n")
    if lines[0] != "#!ipxe":
        problems.append("first line must be #!ipxe")
    labels: set[str] = set()
    gotos: list[tuple[int, str]] = []
    items: list[str] = []
    initrd_names: list[str] = []
    kernel_args: list[tuple[int, list[str]]] = []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(":"):
            label = line[1:]
            if label in labels:
                problems.append(f"line {n}: label {label} twice")
            labels.add(label)
            if kernel_args:
                pass
            continue
        for cmd in re.split(r"\s*(?:&&|\|\|)\s*", line):
            if not cmd:
                continue
            words = cmd.split()
            if words[0] not in IPXE_COMMANDS:
                problems.append(f"line {n}: unknown command {words[0]!r}")
                continue
            if words[0] == "goto":
                gotos.append((n, words[1]))
            elif words[0] == "item":
                items.append(words[1])
            elif words[0] in ("kernel", "initrd", "chain"):
                url = words[1]
                if tree is not None:
                    if not url.startswith(base):
                        problems.append(f"line {n}: {url} is not under {base}")
                    else:
                        try:
                            tree.resolve(url[len(base):])
                        except TreeError as exc:
                            problems.append(f"line {n}: {exc}")
                if words[0] == "initrd":
                    initrd_names.append(basename(url))
                else:
                    kernel_args.append((n, words[2:]))
    for n, target in gotos:
        if target == "${target}":
            missing = [i for i in items if i not in labels]
            if missing:
                problems.append(f"line {n}: menu items without a label: {missing}")
        elif target not in labels:
            problems.append(f"line {n}: goto {target}: no such label")
    for n, args in kernel_args:
        for a in args:
            if a.startswith("initrd=") and a[7:] not in initrd_names:
                problems.append(f"line {n}: {a} names no initrd")
    return problems
