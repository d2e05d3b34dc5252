"""The layers contract, read from the source: who may import whom, and no import cycles.

    hub → flows → workflows → connectors, mappings → canonical, store
                  worker (beside workflows: may import workflows, connectors, mappings, store)

A lower layer importing a higher one couples what should be replaceable (a connector that knew
the store could not be tested or shipped alone; a workflow that knew flows would change with every
flow-file feature), and an import cycle makes import order matter. The rules are checked on every
``import`` in every module, also those inside functions (a lazy import is still a dependency) and
under ``TYPE_CHECKING``; cycles are checked on the imports that run when a module is imported.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PACKAGES = ("canonical", "connectors", "mappings", "workflows", "worker", "store", "simulators", "hub", "flows")

FORBIDDEN: dict[str, frozenset[str]] = {
    # importer package → packages it must not import
    "flows": frozenset({"hub"}),
    "workflows": frozenset({"hub", "flows", "worker"}),
    "worker": frozenset({"hub", "flows"}),
    "connectors": frozenset({"hub", "flows", "workflows", "worker", "store", "simulators"}),
    "mappings": frozenset({"hub", "flows", "workflows", "worker"}),
    "canonical": frozenset({"hub", "flows", "workflows", "worker", "connectors", "mappings"}),
    "store": frozenset({"hub", "flows", "workflows", "worker", "connectors", "mappings"}),
    "simulators": frozenset({"connectors"}),
}

KNOWN_VIOLATIONS: dict[str, str] = {
    # "importer imports target": why it is tolerated for now. A fixed one must be removed from here
    # (the test fails when an entry no longer happens), so this list only ever shrinks.
}


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    target: str  # dotted module name (a module or package of this project)
    line: int
    at_import_time: bool  # module level, not in a function and not under TYPE_CHECKING


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def _resolve(name: str) -> str | None:
    """The longest prefix of ``name`` that is a module or package of this project."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules():
            return candidate
        parts.pop()
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(name: str) -> Iterator[Import]:
    path = modules()[name]
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))

    def visit(node: ast.AST, eager: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from visit(child, False)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    yield from visit(ast.Module(body=[stmt], type_ignores=[]), False)
                for stmt in child.orelse:
                    yield from visit(ast.Module(body=[stmt], type_ignores=[]), eager)
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    target = _resolve(alias.name)
                    if target:
                        yield Import(name, target, child.lineno, eager)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (child.level - 1)]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module or ""
                for alias in child.names:
                    target = _resolve(f"{module}.{alias.name}".lstrip(".")) or _resolve(module)
                    if target:
                        yield Import(name, target, child.lineno, eager)
            else:
                yield from visit(child, eager)

    yield from visit(tree, True)


@cache
def all_imports() -> tuple[Import, ...]:
    return tuple(i for name in modules() for i in imports_of(name))


def layer_violations() -> list[str]:
    """Every import that breaks a rule, as ``path:line: importer imports target (rule)``."""
    problems = []
    for imp in all_imports():
        src, dst = imp.importer.split(".")[0], imp.target.split(".")[0]
        if dst in FORBIDDEN.get(src, frozenset()):
            where = modules()[imp.importer].relative_to(ROOT)
            problems.append(f"{where}:{imp.line}: {imp.importer} imports {imp.target} ({src} must not import {dst})")
    return problems


def _key(problem: str) -> str:
    """``importer imports target``: the part of a problem that stays when lines move."""
    return problem.split(": ", 1)[1].split(" (", 1)[0]


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph() -> dict[str, set[str]]:
    """Import-time edges; importing ``a.b.c`` imports the packages ``a`` and ``a.b`` first, except
    those the importer is inside (a submodule is always imported after its package has started)."""
    graph: dict[str, set[str]] = {name: set() for name in modules()}
    for imp in all_imports():
        if not imp.at_import_time:
            continue
        mine = set(_ancestors(imp.importer))
        for target in [*_ancestors(imp.target), imp.target]:
            if target != imp.importer and target not in mine and target in graph:
                graph[imp.importer].add(target)
    return graph


def import_cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each as one cycle path."""
    graph = import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def connect(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_cycle_path(graph, set(c)) for c in components]


def _cycle_path(graph: dict[str, set[str]], members: set[str]) -> list[str]:
    """One concrete cycle through a strongly connected component, for the report."""
    start = min(members)
    path, seen = [start], {start}
    node = start
    while True:
        nxt = sorted(n for n in graph[node] if n in members)
        back = [n for n in nxt if n == start]
        if back and len(path) > 1:
            return [*path, start]
        fresh = [n for n in nxt if n not in seen]
        if not fresh:
            return [*path, *(n for n in nxt[:1])]
        node = fresh[0]
        path.append(node)
        seen.add(node)


# -- the contract ---------------------------------------------------------------------------------
def test_every_package_is_parsed() -> None:
    found = {name.split(".")[0] for name in modules()}
    assert found == set(PACKAGES)
    assert all_imports(), "no imports found: the parser is broken"


def test_lower_layers_do_not_import_higher_ones() -> None:
    problems = [p for p in layer_violations() if _key(p) not in KNOWN_VIOLATIONS]
    assert not problems, "layer violations:\n" + "\n".join(problems)


def test_known_violations_still_exist() -> None:
    """A violation that was fixed is taken off the list, so that it cannot come back unnoticed."""
    seen = {_key(p) for p in layer_violations()}
    gone = sorted(set(KNOWN_VIOLATIONS) - seen)
    assert not gone, "fixed, remove from KNOWN_VIOLATIONS: " + ", ".join(gone)


def test_no_import_cycles() -> None:
    cycles = import_cycles()
    assert not cycles, "import cycles:\n" + "\n".join(" → ".join(c) for c in cycles)


# -- the checker itself ---------------------------------------------------------------------------
def test_the_checker_sees_package_lazy_and_type_checking_imports() -> None:
    found = {(i.target, i.at_import_time) for i in all_imports() if i.importer == "flows"}
    assert ("flows.model", True) in found  # `from flows.model import ...` in flows/__init__.py
    lazy = {(i.importer, i.target) for i in all_imports() if not i.at_import_time}
    assert ("flows.model", "store") in lazy  # under TYPE_CHECKING in flows/model.py
    assert ("hub.runtime", "hub.api") in lazy  # inside HubRuntime.start


def test_the_checker_resolves_relative_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "canonical"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from . import models\n")
    (pkg / "models.py").write_text("from .. import hub\nfrom ..hub import cli\n")
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "__init__.py").write_text("")
    (tmp_path / "hub" / "cli.py").write_text("")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "PACKAGES", ("canonical", "hub"))
    modules.cache_clear()
    all_imports.cache_clear()
    try:
        found = {(i.importer, i.target) for i in all_imports()}
        assert found == {("canonical", "canonical.models"), ("canonical.models", "hub"),
                         ("canonical.models", "hub.cli")}
        assert len(layer_violations()) == 2
    finally:
        modules.cache_clear()
        all_imports.cache_clear()


def test_the_cycle_finder_reports_a_path(monkeypatch: pytest.MonkeyPatch) -> None:
    graph = {"a": {"b"}, "b": {"c", "d"}, "c": {"a"}, "d": set(), "e": {"f"}, "f": {"e"}}
    monkeypatch.setitem(globals(), "import_graph", lambda: graph)
    assert sorted(import_cycles()) == [["a", "b", "c", "a"], ["e", "f", "e"]]
