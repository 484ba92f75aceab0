"""No import cycles inside ``mepipe/`` (module-level and function-level imports alike).

Every module of the package is parsed with :mod:`ast` (nothing is imported). An edge ``a -> b`` is any
``import``/``from ... import`` statement in ``a`` naming module ``b`` of the package, wherever the
statement sits (module body, function, method, ``try``). Not counted:

* imports under ``if TYPE_CHECKING:`` (never executed; only type checkers read them);
* the implicit import of parent packages (``import mepipe.train.config`` runs ``mepipe/train/__init__``
  first, but that package is already being imported when a child imports it back, which is the usual
  re-export pattern and not a cycle).

``from pkg import name`` counts as an import of ``pkg.name`` when that is a module, else of ``pkg``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "mepipe"


def module_names(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """``{"mepipe.train.config": path, "mepipe.train": path/__init__.py, ...}``."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """``module -> set of package modules it imports`` (see the module docstring for what counts)."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in _runtime_imports(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                targets = [
                    f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix for a in node.names
                ]
            for t in targets:
                # `import mepipe.a.b` names mepipe.a.b; keep the deepest module of the package it names
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    graph[name].add(t)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected component with more than one module, as a sorted list (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return sorted(out)


def one_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A concrete path ``a -> b -> ... -> a`` through a component (for the failure message)."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    while True:
        nxt = sorted(w for w in graph[path[-1]] if w in members)
        back = [w for w in nxt if w == start]
        if back and len(path) > 1:
            return [*path, start]
        fresh = [w for w in nxt if w not in seen]
        if not fresh:
            return [*path, *back[:1]] if back else path
        path.append(fresh[0])
        seen.add(fresh[0])


def test_the_cycle_finder_finds_a_function_level_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub import b\n")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import c\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import x\n    import pkg.c\n")
    (pkg / "c.py").write_text("from .sub import b\n")
    graph = import_graph(module_names(tmp_path, "pkg"))
    assert graph["pkg.a"] == set()  # TYPE_CHECKING only
    assert graph["pkg.sub.b"] == {"pkg.a", "pkg.c"}
    assert graph["pkg.c"] == {"pkg.sub.b"}
    assert find_cycles(graph) == [["pkg.c", "pkg.sub.b"]]


def test_mepipe_has_no_import_cycles() -> None:
    graph = import_graph(module_names())
    assert len(graph) > 50 and "mepipe.train.config" in graph
    cycles = find_cycles(graph)
    report = "\n".join(" -> ".join(one_cycle(graph, c)) + f"   (modules: {', '.join(c)})" for c in cycles)
    assert not cycles, f"import cycles in mepipe/:\n{report}"
