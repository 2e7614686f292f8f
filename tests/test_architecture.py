"""The package's shape, read from its own source: what may import what, no import cycle
(imports inside functions included), and nothing too long to hold in one's head.

These are the boundaries of DESIGN.md and CONTRIBUTING.md, checked on every run so that a
new module cannot quietly cross them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "ftmatrix"
MAX_MODULE_LINES = 600
MAX_DEFINITION_LINES = 150


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path) -> set[str]:
    """ftmatrix modules `name` imports anywhere in its source (functions included): a
    `from a import b` counts as importing `a.b` when that is a module, else `a`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


def area(name: str) -> str:
    """The subpackage or top-level module a module belongs to: `runner`, `config`, ..."""
    return [*name.split("."), ""][1]


GRAPH = {name: imported(name, path) for name, path in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_inside_the_package():
    assert cycles(GRAPH) == []


def reaches(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for m in GRAPH[todo.pop()] - seen:
            seen.add(m)
            todo.append(m)
    return seen


# The language, a job's schema, its identity and the run-folder contract stand alone.
PURE = [
    "ftmatrix.config",
    "ftmatrix.training",
    "ftmatrix.sections",
    "ftmatrix.bounds",
    "ftmatrix.peft_methods",
    "ftmatrix.custom",
    "ftmatrix.components",
    "ftmatrix.sft",
    "ftmatrix.identity",
    "ftmatrix.result",
    "ftmatrix.catalog",
    "ftmatrix.job",
]
PURE += [m for m in MODULES if m.startswith("ftmatrix.matrix")]


@pytest.mark.parametrize("name", PURE)
def test_pure_modules_reach_neither_runner_trainers_nor_reports(name: str):
    bad = {m for m in reaches(name) if area(m) in ("runner", "trainers", "reports", "cli")}
    assert not bad


@pytest.mark.parametrize("name", [m for m in MODULES if m.startswith("ftmatrix.trainers")])
def test_trainers_never_import_runner_reports_or_the_cli(name: str):
    bad = {m for m in GRAPH[name] if area(m) in ("runner", "reports", "cli")}
    assert not bad
    source = MODULES[name].read_text()
    assert "import typer" not in source and "from rich" not in source


@pytest.mark.parametrize("name", [m for m in MODULES if m.startswith("ftmatrix.runner")])
def test_runner_never_imports_trainers_at_module_level(name: str):
    tree = ast.parse(MODULES[name].read_text())
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = [a.name for n in top for a in n.names] + [
        n.module or "" for n in top if isinstance(n, ast.ImportFrom)
    ]
    assert not [n for n in names if n.startswith("ftmatrix.trainers")]


def test_importing_the_matrix_language_loads_no_torch_optuna_submitit_or_subprocess():
    modules = " ".join(sorted(m for m in MODULES if m.startswith("ftmatrix.matrix")))
    code = (
        "import importlib, sys\n"
        f"for m in {modules.split()!r}: importlib.import_module(m)\n"
        f"for m in {PURE!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in ('torch', 'optuna', 'submitit', 'subprocess', 'numpy')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_over_600_lines(name: str):
    assert len(MODULES[name].read_text().splitlines()) <= MAX_MODULE_LINES


def long_definitions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and node.end_lineno - node.lineno + 1 > MAX_DEFINITION_LINES
    ]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_function_or_class_over_150_lines(name: str):
    assert long_definitions(MODULES[name]) == []


def private_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [
        f"{node.module}.{a.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ftmatrix")
        for a in node.names
        if a.name.startswith("_") and not a.name.startswith("__")
    ]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_name_is_imported_across_modules(name: str):
    assert private_imports(MODULES[name]) == []


def test_one_version_source():
    import tomllib

    import ftmatrix

    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert ftmatrix.__version__.count(".") == 2
