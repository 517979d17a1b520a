"""The import rules of ARCHITECTURE.md, checked on the source (no module is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "pxewizard"

# layer -> the layers of ours it may import at run time (itself always)
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "units": set(),
    "safetext": set(),
    "ondisk": {"errors"},
    "privileges": {"errors"},
    "versions": {"pxewizard"},
    "events": {"errors", "ondisk"},
    "proto": set(),
    "plan": {"errors", "ondisk"},
    "files": {"errors", "events"},
    "boot": {"errors", "files", "plan"},
    "detect": {"errors", "events", "proto", "boot", "versions"},
    "servers": {"errors", "events", "proto", "files", "detect", "ondisk", "privileges"},
    "insight": {"events", "units", "safetext", "boot.loaders"},
    "serve": {"errors", "events", "proto", "files", "plan", "boot", "detect", "servers",
              "insight", "ondisk", "privileges", "safetext"},
    "commands": {"errors", "events", "units", "safetext", "plan", "boot", "detect",
                 "insight", "serve", "privileges"},
    "ui_bridge": {"events"},
    "screens": {"errors", "events", "units", "safetext", "ondisk", "plan", "boot", "detect",
                "insight", "serve", "commands", "ui_bridge"},
    "app": {"screens", "errors", "events", "plan", "boot", "detect", "serve"},
    "cli": {"errors", "versions"},
    "__main__": {"cli"},
}
# what a layer may also name for type hints only (under ``if TYPE_CHECKING:``)
TYPES_ONLY: dict[str, set[str]] = {
    "insight": {"plan", "files"},
    "screens": {"app"},
}
# third-party packages only some layers may use
UI_ONLY = ("textual", "rich")
UI_LAYERS = {"screens", "app", "ui_bridge"}


def _module(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "pxewizard"
    if parts[1] == "boot" and len(parts) > 2 and parts[2] == "loaders":
        return "boot.loaders"
    return parts[1]


def _imports(path: Path) -> list[tuple[str, bool, int]]:
    """(absolute module, type-only, line) of every import in the file, nested ones too."""
    module = _module(path)
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                for n in ast.walk(sub):
                    type_only.add(id(n))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in type_only, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[:None if is_pkg else -1]
                base = base[:len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            for a in node.names:
                full = f"{name}.{a.name}"
                target = full if (PKG.parent / full.replace(".", "/")).with_suffix(".py").exists() \
                    or (PKG.parent / full.replace(".", "/")).is_dir() else name
                out.append((target, id(node) in type_only, node.lineno))
    return out


SOURCES = sorted(PKG.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_down(path: Path) -> None:
    layer = _layer(_module(path))
    own = {"boot", "boot.loaders"} if layer in ("boot", "boot.loaders") else {layer}
    allowed = ALLOWED.get(layer, ALLOWED.get(layer.split(".")[0], set()))
    bad = []
    for target, type_only, line in _imports(path):
        top = target.split(".")[0]
        if top in UI_ONLY and layer not in UI_LAYERS:
            bad.append(f"line {line}: {target} (Textual/Rich belong to the UI layers)")
        if top != "pxewizard":
            continue
        to = _layer(target)
        ok = to in own or to in allowed or (to == "boot.loaders" and "boot" in allowed) \
            or (type_only and to in TYPES_ONLY.get(layer, set()))
        if not ok:
            bad.append(f"line {line}: {target} ({layer} may not import {to})")
    assert not bad, "\n".join(bad)


def test_proto_imports_nothing_of_ours() -> None:
    for path in (PKG / "proto").rglob("*.py"):
        for target, _, line in _imports(path):
            assert not target.startswith("pxewizard") or target.startswith("pxewizard.proto"), \
                f"{path.name}:{line} imports {target}"


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for path in SOURCES:
        graph[_module(path)] = {t for t, type_only, _ in _imports(path)
                                if t.startswith("pxewizard") and not type_only}
    state: dict[str, int] = {}

    def visit(m: str, trail: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            if n == m or n not in graph:
                continue
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(n):]
                                                                   + [n]))
            if n not in state:
                visit(n, trail + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
