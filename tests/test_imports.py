"""The modules of evoband import each other without a cycle (data flows one way, see DESIGN.md).

Every import counts: at module level, inside functions and under ``TYPE_CHECKING``. The package's
``__init__`` only re-exports the public names and is not a node of the graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "evoband"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def imported_modules(path: Path) -> set[str]:
    """The evoband modules that the file at ``path`` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from .x import ..., from . import x
                names = [node.module] if node.module else [a.name for a in node.names]
            elif node.level == 0 and node.module == "evoband":  # from evoband import x
                names = [a.name for a in node.names]
            elif node.level == 0 and (node.module or "").startswith("evoband."):
                names = [node.module.removeprefix("evoband.")]
            else:
                continue
        elif isinstance(node, ast.Import):  # import evoband.x
            names = [
                a.name.removeprefix("evoband.") for a in node.names if a.name.startswith("evoband.")
            ]
        else:
            continue
        found.update(name.split(".")[0] for name in names)
    return found & set(MODULES)


def imports_torch(path: Path) -> bool:
    """Whether the file at ``path`` imports torch (or a part of it) anywhere."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import) and any(
            a.name.split(".")[0] == "torch" for a in node.names
        ):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch":
            return True
    return False


def import_graph() -> dict[str, set[str]]:
    return {name: imported_modules(PACKAGE / f"{name}.py") for name in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                return [*path[path.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep)) is not None:
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_the_graph_sees_the_package() -> None:
    graph = import_graph()
    assert {"ea", "ea_state", "hooks", "callbacks", "results", "store"} <= set(graph)
    assert "hooks" in graph["ea_state"] and "results" in graph["store"]
    assert "ea" not in graph["callbacks"] and "ea" not in graph["hooks"]


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": set(), "b": {"b"}}, ["b", "b"]),
    ],
)
def test_find_cycle(graph: dict[str, set[str]], cycle: list[str] | None) -> None:
    assert find_cycle(graph) == cycle


@pytest.mark.parametrize(
    "module", ["results", "constraints", "member", "store", "analysis", "hooks"]
)
def test_result_readers_do_not_import_the_training_stack(module: str) -> None:
    """What reads results needs no torch: the modules it imports, transitively, import none."""
    graph = import_graph()
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph[name])
    torch_users = {name for name in seen if imports_torch(PACKAGE / f"{name}.py")}
    assert not torch_users, f"{module} imports torch through {sorted(torch_users)}"


MAX_MODULE_LINES = 400
"""No module of the package is longer (issue 12): a longer one is split along a seam."""


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_no_module_is_over_the_line_limit(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.name} has {lines} lines (> {MAX_MODULE_LINES})"
