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


LAZY_ALLOWED = {"tss.cli"}  # each command imports what it runs: `python -m tss --help` stays at 0.1 s


def lazy_imports(name: str, mods: dict[str, Path]) -> list[str]:
    """The imports of tss's own modules that sit inside a function of ``name``, as source lines."""
    out = []
    for fn in ast.walk(ast.parse(mods[name].read_text())):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for n in ast.walk(fn):
                if isinstance(n, ast.ImportFrom) and (n.level or (n.module or "").split(".")[0] == "tss"):
                    out.append(f"{name}:{n.lineno}: {ast.unparse(n)}")
                elif isinstance(n, ast.Import) and any(a.name.split(".")[0] == "tss" for a in n.names):
                    out.append(f"{name}:{n.lineno}: {ast.unparse(n)}")
    return out


def test_lazy_import_finder_sees_a_function_level_import(tmp_path):
    (tmp_path / "tss").mkdir()
    (tmp_path / "tss" / "a.py").write_text("import numpy\n\ndef f():\n    from . import b\n    import numpy\n")
    assert lazy_imports("tss.a", modules(tmp_path / "tss")) == ["tss.a:4: from . import b"]


def test_tss_modules_import_each_other_at_the_top():
    """A lazy import hides a dependency from the reader; only the command line keeps them, for speed."""
    mods = modules()
    found = [line for m in sorted(mods) if m not in LAZY_ALLOWED for line in lazy_imports(m, mods)]
    assert found == [], "\n".join(found)
