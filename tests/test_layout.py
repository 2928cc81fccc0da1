"""The shape of the code: modules of one job and a bounded size, dependencies pointing one way."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("api", "ledger", "projections")
MAX_LINES = 600
HTTP_PACKAGES = ("fastapi", "starlette")


def modules() -> Iterator[tuple[str, Path]]:
    """(dotted name, path) of every module of the packages."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            yield name, path


def imported(path: Path) -> set[str]:
    """Every module name an import statement of the file names, anywhere in it (under
    TYPE_CHECKING too): ``from a.b import c`` names both ``a.b`` and ``a.b.c``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_module_is_over_600_lines() -> None:
    over = {
        str(path.relative_to(ROOT)): length
        for _, path in modules()
        if (length := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert over == {}


def test_no_route_module_imports_another() -> None:
    routes = {name for name, _ in modules() if name.startswith("api.routes.")}
    found = {
        name: sorted(imported(path) & (routes - {name}))
        for name, path in modules()
        if name.startswith("api.routes.") and imported(path) & (routes - {name})
    }
    assert found == {}


@pytest.mark.parametrize("package", ["ledger", "projections"])
def test_no_http_types_below_the_api(package: str) -> None:
    found = {
        name: sorted(n for n in imported(path) if n.split(".")[0] in HTTP_PACKAGES)
        for name, path in modules()
        if name.split(".")[0] == package and any(n.split(".")[0] in HTTP_PACKAGES for n in imported(path))
    }
    assert found == {}


def test_the_modules_import_one_another_without_a_cycle() -> None:
    known = dict(modules())
    graph = {name: {n for n in imported(path) if n in known and n != name} for name, path in known.items()}
    cycles: list[list[str]] = []
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in visiting:
            cycles.append([*visiting[visiting.index(name) :], name])
            return
        if name in done:
            return
        visiting.append(name)
        for dependency in sorted(graph[name]):
            visit(dependency)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
    assert cycles == []
