"""The house rules of ../shared/DESIGN.md, drawn from the code's own imports: each layer
imports only the layers below it, no module imports the package face from below, no import
circle (lazy imports count: they are arrows too), and no file grows past its size limit.

Oracle: the layer table of DESIGN.md, written out by hand below; every module's imports are
read with ``ast`` (nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: DESIGN.md's layers, bottom (0) to top; a unit may import its own layer or lower ones.
LAYER = {
    "_core": 0, "_native": 0, "_tokens": 0, "radix_cache": 0, "tree": 0, "kernels": 0,
    "outputs": 0,
    "policy": 1, "checkpoint": 1,
    "engine": 2,
    "protocols": 3,
    "search": 4,
    "reward": 5, "tasks": 5,
    "learn": 6,
    "experiments": 7, "viz": 7, "demo": 7, "evaluate": 7,  # the last two: moved-module aliases
    "cli": 8, "__main__": 8,
    "testing": 9,  # reference models and toys for tests: nothing in the product imports them
}


def _modules(root: Path) -> dict[str, Path]:
    mods = {}
    pkg = root / "o1search"
    for f in sorted(pkg.rglob("*.py")):
        if "kernels" in f.relative_to(pkg).parts[:1]:
            continue  # the kernels/ symlink of a dev build
        parts = list(f.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = f
    return mods


def _imports(mod: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported module or module.name) of every import statement, at any depth."""
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                m = ".".join(base + ([node.module] if node.module else []))
            else:
                m = node.module or ""
            out += [(node.lineno, f"{m}.{a.name}") for a in node.names]
    return [(n, t) for n, t in out if t.split(".")[0] == "o1search"]


def _resolve(target: str, mods: dict[str, Path]) -> str:
    """The module an import lands in: ``o1search.a.b.Name`` -> ``o1search.a.b``."""
    if _unit(target) in ("_core", "kernels"):  # the extension; kernels/ is a separate tree
        return "o1search." + _unit(target)
    while target not in mods and target != "o1search":
        target = target.rpartition(".")[0]
    return target


def _unit(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def _graph(root: Path = ROOT) -> tuple[dict[str, set[str]], list[str]]:
    mods = _modules(root)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    problems = []
    for mod, path in mods.items():
        unit = _unit(mod)
        if unit not in LAYER and mod != "o1search":
            problems.append(f"{mod}: not in the layer table (add it to DESIGN.md and here)")
            continue
        for line, target in _imports(mod, path):
            dep = _resolve(target, mods)
            if dep == mod:
                continue
            if mod != "o1search":
                if dep == "o1search" and LAYER[unit] < LAYER["cli"]:
                    problems.append(f"{mod}:{line} imports the package face ({target}) from "
                                    "below; import the module that defines it")
                dunit = _unit(dep)
                if dunit in LAYER and LAYER[dunit] > LAYER[unit]:
                    problems.append(f"{mod}:{line} ({unit}, layer {LAYER[unit]}) imports "
                                    f"{target} ({dunit}, layer {LAYER[dunit]}): an upward arrow")
            if dep in mods:
                graph[mod].add(dep)
    return graph, problems


def test_every_import_points_down_the_layers():
    _, problems = _graph()
    assert not problems, "\n".join(problems)


def test_no_import_circle():
    graph, _ = _graph()
    # A package's __init__ re-exporting its submodules is not a circle of ideas; a
    # submodule importing its own package's face back would be, so both stay in the graph.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_the_checker_sees_an_upward_arrow(tmp_path):
    """The rule above can fail: a lazy import of learn inside search is reported."""
    fake = tmp_path / "o1search"
    (fake / "search").mkdir(parents=True)
    (fake / "learn").mkdir()
    for p in ("__init__.py", "search/__init__.py", "learn/__init__.py"):
        (fake / p).write_text("")
    (fake / "search" / "bad.py").write_text("def f():\n    from o1search.learn.sft import x\n")
    (fake / "learn" / "sft.py").write_text("from o1search.search.bad import f\n")
    graph, problems = _graph(tmp_path)
    assert any("o1search.search.bad:2" in p and "upward" in p for p in problems), problems
    assert graph["o1search.search.bad"] == {"o1search.learn.sft"}
    assert graph["o1search.learn.sft"] == {"o1search.search.bad"}


@pytest.mark.parametrize("folder,limit,exempt", [
    ("o1search", 600, ("testing",)),
    ("csrc/bindings", 300, ()),
])
def test_no_file_past_its_size_limit(folder, limit, exempt):
    base = ROOT / folder
    over = []
    for f in sorted(base.rglob("*")):
        rel = f.relative_to(base)
        if not f.is_file() or f.suffix not in (".py", ".cc", ".h") or rel.parts[0] in exempt:
            continue
        if "kernels" in rel.parts[:1]:
            continue
        n = len(f.read_text(encoding="utf-8").splitlines())
        if n > limit:
            over.append(f"{folder}/{rel}: {n} lines")
    assert not over, f"over {limit} lines (split by idea): {over}"
