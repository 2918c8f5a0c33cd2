"""The shape docs/architecture.md describes, checked: which package may import which, no import
cycle (imports inside functions count: they only hide a cycle), no Airflow below the Airflow layer,
and no long function outside the sample generator's data tables."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dc2tasks

ROOT = Path(dc2tasks.__file__).resolve().parent

BASE = {"catalogue", "names", "private"}
"""Single modules of pure data and rules (the product catalogue, name rules, private files) every
layer may use; they import nothing of dc2tasks."""
# package -> the dc2tasks packages its modules may import besides its own
ALLOWED: dict[str, set[str]] = {
    "catalogue": set(),
    "names": set(),
    "private": set(),
    "products": BASE,
    "slurm": BASE - {"catalogue"},
    "install": BASE | {"products", "slurm"},
    "runs": BASE | {"products", "slurm", "install"},
    "sample": BASE | {"products"},
    "airflow": BASE | {"products", "slurm", "install", "runs"},
    "service": BASE | {"products", "slurm", "install", "runs", "sample"},
    "cli": BASE | {"products", "slurm", "install", "runs", "sample", "service"},
}
NO_AIRFLOW = tuple(p for p in ALLOWED if p != "airflow")
LONG_FUNCTION_EXEMPT = {"dc2tasks.sample.columns"}  # the sample's column tables are data
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    parts = ("dc2tasks", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts).removesuffix(".__init__")


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}


def _imports(module: str, tree: ast.AST) -> Iterator[str]:
    """Every module (ours or not) this one imports, at any depth of its code."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:  # a submodule by name, else a name the package (re-)exports
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        graph[module] = set(_imports(module, ast.parse(path.read_text())))
    return graph


GRAPH = _graph()


def _layer(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_each_package_imports_only_the_layers_below_it() -> None:
    assert set(ALLOWED) == {_layer(m) for m in MODULES if m != "dc2tasks"}, "a package without a layer"
    wrong = []
    for module, imports in sorted(GRAPH.items()):
        layer = _layer(module)
        for target in sorted(imports):
            if target.startswith("dc2tasks.") and _layer(target) not in ALLOWED[layer] | {layer}:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(wrong)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle() -> None:
    ours = {m: {t for t in ts if t in MODULES and t != m} for m, ts in GRAPH.items()}
    assert _cycles(ours) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_airflow_below_the_airflow_layer() -> None:
    named = [
        f"{m} imports {t}"
        for m, ts in sorted(GRAPH.items())
        if _layer(m) in NO_AIRFLOW
        for t in sorted(ts)
        if t == "airflow" or t.startswith("airflow.")
    ]
    assert not named, "\n".join(named)
    # and at run time: importing every module of those layers loads no airflow module
    modules = sorted(m for m in MODULES if _layer(m) in NO_AIRFLOW)
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(n for n in sys.modules if n == 'airflow' or n.startswith('airflow.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_no_function_over_80_lines() -> None:
    long = []
    for module, path in sorted(MODULES.items()):
        if module in LONG_FUNCTION_EXEMPT:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {lines} lines")
    assert not long, "\n".join(long)


def test_docs_architecture_shows_these_layers() -> None:
    doc = (ROOT.parent / "docs" / "architecture.md").read_text()
    table = doc.split("<!-- imports:begin -->\n")[1].split("<!-- imports:end -->")[0]
    shown = {}
    for line in table.splitlines()[2:]:
        package, allowed = (c.strip().strip("`") for c in line.strip("|").split("|"))
        shown[package] = set() if allowed == "nothing of dc2tasks" else set(allowed.split(", "))
    assert shown == ALLOWED
