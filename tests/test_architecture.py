"""The layering of docs/architecture.md, enforced on the source (as napari's import-linter contracts
do, with the standard library's parser instead of another dependency): every ``import`` counts, at
module level or inside a function, because a lazy import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("prdit", "prdit_app")
GUI_LIBRARIES = ("PySide6", "pyqtgraph", "vtk", "vtkmodules", "prdit_app")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports (absolute names; ``from x import y`` counts y when y is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            out.update(
                f"{module}.{alias.name}" for alias in node.names if f"{module}.{alias.name}" in MODULES
            )
    return out


IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}


def _internal(name: str) -> set[str]:
    return {m for m in IMPORTS[name] if m in MODULES and m != name and not name.startswith(m + ".")}


def _in(module: str, *layers: str) -> bool:
    return any(module == layer or module.startswith(layer + ".") for layer in layers)


def test_no_import_cycles():
    graph = {name: _internal(name) for name in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
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
                cycles.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    assert not cycles, f"import cycles: {cycles}"


def test_the_engine_imports_no_gui():
    bad = {
        name: sorted(m for m in IMPORTS[name] if _in(m, *GUI_LIBRARIES))
        for name in MODULES
        if _in(name, "prdit")
    }
    assert not {k: v for k, v in bad.items() if v}, "prdit must not import Qt, pyqtgraph, VTK or prdit_app"


# (lower layer, modules it must not import): the engine's subpackages in their order
ENGINE_ORDER = [
    ("prdit.volume", ("prdit.data", "prdit.models", "prdit.diffusion", "prdit.training", "prdit.sampling",
                      "prdit.checkpoint", "prdit.metrics", "prdit.export", "prdit.cli")),
    ("prdit.data", ("prdit.models", "prdit.diffusion", "prdit.training", "prdit.sampling", "prdit.checkpoint",
                    "prdit.metrics", "prdit.cli")),
    ("prdit.models", ("prdit.training", "prdit.sampling", "prdit.checkpoint", "prdit.metrics", "prdit.export",
                      "prdit.cli")),
    ("prdit.diffusion", ("prdit.training", "prdit.sampling", "prdit.checkpoint", "prdit.metrics",
                         "prdit.cli")),
    ("prdit.checkpoint", ("prdit.training", "prdit.sampling", "prdit.metrics", "prdit.cli")),
    ("prdit.training", ("prdit.sampling", "prdit.metrics", "prdit.cli")),
    ("prdit.metrics", ("prdit.training", "prdit.cli")),
    ("prdit.sampling", ("prdit.training", "prdit.cli")),
    ("prdit.export", ("prdit.training", "prdit.cli")),
]  # fmt: skip


@pytest.mark.parametrize(("layer", "forbidden"), ENGINE_ORDER, ids=[layer for layer, _ in ENGINE_ORDER])
def test_engine_layers_import_only_downwards(layer, forbidden):
    bad = {
        name: sorted(m for m in _internal(name) if _in(m, *forbidden)) for name in MODULES if _in(name, layer)
    }
    assert not {k: v for k, v in bad.items() if v}


def test_views_do_not_import_panels_and_only_the_cli_imports_the_cli():
    views = {n: sorted(m for m in _internal(n) if _in(m, "prdit_app.panels")) for n in MODULES
             if _in(n, "prdit_app.views")}  # fmt: skip
    assert not {k: v for k, v in views.items() if v}, "views must not import panels"
    cli_users = {n for n in MODULES if not _in(n, "prdit.cli", "prdit.__main__") and any(
        _in(m, "prdit.cli") for m in _internal(n))}  # fmt: skip
    assert not cli_users, f"only the CLI imports prdit.cli: {sorted(cli_users)}"
