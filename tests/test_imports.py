"""No import cycle among tss's own modules, counting every import: at module level and inside
functions (a lazy import hides a dependency; a cycle makes the import order matter)."""

from __future__ import annotations

import ast
from pathlib import Path

TSS = Path(__file__).resolve().parents[1] / "tss"


def modules(root: Path = TSS) -> dict[str, Path]:
    """Dotted module name -> file, packages by their __init__.py."""
    out = {}
    for f in root.rglob("*.py"):
        parts = f.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def imports(name: str, mods: dict[str, Path]) -> set[str]:
    """The tss modules that ``name`` imports anywhere in its file (``from .x import y`` counts as
    the module ``x.y`` when that is a module, else as ``x``)."""
    f = mods[name]
    package = name if f.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(f.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in mods and t != name}
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first search (each reported once per back edge)."""
    found, state, stack = [], {}, []

    def visit(v):
        state[v] = "open"
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == "open":
                found.append(stack[stack.index(w):] + [w])
            elif w not in state:
                visit(w)
        stack.pop()
        state[v] = "done"

    for v in sorted(graph):
        if v not in state:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_sees_relative_and_lazy_imports():
    mods = modules()
    assert "tss.results" in imports("tss.reproduction", mods)  # from . import results
    assert "tss.stats" in imports("tss.results", mods)


def test_no_import_cycle_among_tss_modules():
    mods = modules()
    graph = {m: imports(m, mods) for m in mods}
    assert cycles(graph) == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles(graph))
