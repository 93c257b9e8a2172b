"""The import graph of the project's packages: layered, without cycles, no hidden imports.

Layers, top to bottom: the application (``apgcfg``), ``workers``, ``connectors``,
``config_core``. A module may import from its own layer and the ones below, never above, and
every import is at module level (an import inside a function is how cycles hide).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LAYERS = ["config_core", "connectors", "workers", "apgcfg"]
"""Bottom first: each may import only itself and what comes before it."""


def modules() -> dict[str, Path]:
    """Every module of the layered packages: dotted name → file."""
    found = {}
    for package in LAYERS:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported project module, line, at module level) for each import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(node) for node in tree.body}
    type_checking = {id(n) for node in tree.body if isinstance(node, ast.If)
                     and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        for name in _names(node, known):
            found.append((name, node.lineno, id(node) in top))
    return found


def _names(node: ast.AST, known: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if _project(alias.name)]
    if isinstance(node, ast.ImportFrom) and node.module and _project(node.module):
        return [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known
                else node.module for alias in node.names]
    return []


def _project(name: str) -> bool:
    return name.split(".")[0] in LAYERS


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {target for target, _, _ in imports(path, known) if target != name}
            for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_import_graph__project_modules__no_cycle() -> None:
    assert cycles(graph()) == []


def test_import_graph__every_import__points_down_or_sideways() -> None:
    upward = []
    for name, targets in graph().items():
        rank = LAYERS.index(name.split(".")[0])
        upward += [f"{name} -> {t}" for t in targets if LAYERS.index(t.split(".")[0]) > rank]
    assert upward == []


def test_import_graph__config_core__imports_no_worker_module() -> None:
    edges = graph()
    assert [f"{n} -> {t}" for n, ts in edges.items() if n.startswith("config_core")
            for t in ts if t.startswith("workers")] == []


def test_imports__project_modules__all_at_module_level() -> None:
    known = modules()
    hidden = [f"{path.relative_to(ROOT)}:{line} imports {target}"
              for path in known.values() for target, line, at_top in imports(path, known)
              if not at_top]
    assert hidden == []


def test_cycles__a_known_cycle__is_found() -> None:
    # Given a graph with a cycle of three and a dead end
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    # Then the cycle is reported, and only it
    assert cycles(edges) == [["a", "b", "c"]]
