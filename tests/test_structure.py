"""The house rules of `ssd/`, read from its source text (nothing is imported or run): every module at most
400 lines, and an import graph without circles or back-arrows.

The graph has an arrow A -> B for every module B that an import statement in A names, wherever the
statement stands (a function's lazy import counts: it runs as soon as the function does). A registry's
"module:Class" strings are not imports (ssd/registry.py looks them up by name, lazily). A module importing
itself by name (the runner hands Hydra its task by importable name) is not a circle.

The forbidden arrows hold through any chain: `ssd.report.tables -> ssd.run -> ssd.decoders` would make the
reports depend on the decoders as surely as importing them directly.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SSD = Path(__file__).resolve().parent.parent / "ssd"
MAX_LINES = 400
# (importer, imported, why): module prefixes, matched at a dot boundary; the importer's own package aside.
FORBIDDEN = (
    ("ssd.results", "ssd.decoders", "run folders and their summaries hold for any decoder"),
    ("ssd.models", "ssd.decoders", "a model computes forwards; decoders drive it"),
    ("ssd.models", "ssd.benchmarks", "a model knows no task"),
    ("ssd.decoders", "ssd.benchmarks", "a decoder sees token ids, not tasks"),
    ("ssd.decoders", "ssd.run", "the runner drives decoders, not the other way"),
    ("ssd.report", "ssd.models", "reports are derived from run folders only"),
    ("ssd.report", "ssd.decoders", "reports are derived from run folders only"),
    ("ssd.sandbox", "ssd", "the sandbox stands alone (ssd.errors aside): it is audited on its own"),
)
ALLOWED = {"ssd.sandbox": ("ssd.sandbox", "ssd.errors")}


def module_name(path: Path) -> str:
    parts = path.relative_to(SSD.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SSD.rglob("*.py"))}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ssd that `path`'s import statements name (`from p import m` names p.m if that is a
    module, else p)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
    return {m for m in found if within(m, "ssd") and m != name}


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def chain(edges: dict[str, set[str]], start: str, target: str) -> list[str] | None:
    """The shortest import chain from `start` to the module `target` (breadth first), or None."""
    seen, frontier = {start: [start]}, [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges.get(v, ())):
                if w in seen:
                    continue
                seen[w] = [*seen[v], w]
                if w == target:
                    return seen[w]
                nxt.append(w)
        frontier = nxt
    return None


def back_arrows(edges: dict[str, set[str]]) -> list[str]:
    """One line per forbidden dependency: the rule, why, and the import chain that breaks it."""
    found = []
    for importer, imported, why in FORBIDDEN:
        allowed = ALLOWED.get(importer, (importer,))
        for name in sorted(n for n in edges if within(n, importer)):
            reach = {w: chain(edges, name, w) for w in edges if within(w, imported)}
            bad = sorted(
                (c for w, c in reach.items() if c and not any(within(w, a) for a in allowed)), key=len
            )
            if bad:
                found.append(f"{importer} must not import {imported} ({why}): {' -> '.join(bad[0])}")
    return found


def test_every_module_is_at_most_400_lines() -> None:
    long = {
        str(p.relative_to(SSD.parent)): n
        for p in modules().values()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split each along what it holds): {long}"


def test_the_import_graph_has_no_circles() -> None:
    found = circles(graph())
    assert not found, f"import circles (break each by moving what both sides need below them): {found}"


def test_no_module_imports_against_the_layering() -> None:
    found = back_arrows(graph())
    assert not found, "\n".join(found)


def test_the_graph_sees_what_the_source_imports() -> None:
    """The reading itself: known arrows are found, lazy (in-function) and package imports included."""
    edges = graph()
    assert "ssd.results.runfolder" in edges["ssd.run"] and "ssd.results.summary" in edges["ssd.run"]
    assert "ssd.decoders" in edges["ssd.run"]  # `from ssd.decoders import DECODERS` inside _parts
    assert "ssd.sandbox" in edges["ssd.benchmarks.humaneval"]
    assert "ssd.run" not in edges["ssd.run"]  # its own name, for Hydra: not an arrow


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"ssd.report.tables": {"ssd.run"}, "ssd.run": {"ssd.decoders"}, "ssd.decoders": set()}, "ssd.run"),
        ({"ssd.results.timing": {"ssd.decoders"}, "ssd.decoders": set()}, "ssd.results.timing"),
        ({"ssd.sandbox.grader": {"ssd.config"}, "ssd.config": set()}, "ssd.config"),
    ],
    ids=["through the runner", "direct", "sandbox beyond errors"],
)
def test_a_back_arrow_is_reported_with_its_chain(edges: dict[str, set[str]], expected: str) -> None:
    (line,) = back_arrows(edges)
    assert "must not import" in line and expected in line


def test_a_circle_is_found_and_a_clean_graph_passes() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []
    assert back_arrows({"ssd.sandbox.grader": {"ssd.errors"}, "ssd.errors": set()}) == []
