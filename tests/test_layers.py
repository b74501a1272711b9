"""The layer contract: a module of evoband imports only from its own layer or the layers below,
its modules import each other without a cycle, and what reads results needs no torch.

Lowest first: core, space, nets, training, store, execution, operators, search, report,
callbacks, then the top (``fit``, the fitted population, its ensemble, the CLI helpers and the
package's ``__init__``). Every import counts, also those inside functions and under
``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "evoband"
LAYERS = (
    "core",
    "space",
    "nets",
    "training",
    "store",
    "execution",
    "operators",
    "search",
    "report",
    "callbacks",
)
TOP = len(LAYERS)


def layer_of(module: str) -> int:
    """The layer of a dotted module name inside evoband (``search._state`` -> search's)."""
    head = module.split(".", 1)[0]
    return LAYERS.index(head) if head in LAYERS else TOP


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module inside evoband) of every relative or ``evoband.`` import."""
    here = module_name(path).split(".") if module_name(path) else []
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = [*base, *(node.module.split(".") if node.module else [])]
                names = [a.name for a in node.names] if not node.module else [""]
                for name in names:
                    found.append((node.lineno, ".".join([*target, name] if name else target)))
            elif node.module and node.module.startswith("evoband."):
                found.append((node.lineno, node.module.removeprefix("evoband.")))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("evoband."):
                    found.append((node.lineno, alias.name.removeprefix("evoband.")))
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p) or "evoband")
def test_no_module_imports_from_a_layer_above_its_own(path: Path) -> None:
    own = layer_of(module_name(path)) if module_name(path) else TOP
    upward = [
        f"line {line}: {target} ({LAYERS[layer_of(target)] if layer_of(target) < TOP else 'top'})"
        for line, target in imported_modules(path)
        if layer_of(target) > own
    ]
    assert not upward, f"{module_name(path)} imports from above its layer: {upward}"


def test_every_subpackage_is_a_layer_and_says_its_job() -> None:
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages - {"cli"} == set(LAYERS)
    for name in packages:
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
        assert doc and len(doc) > 40, f"evoband.{name} has no docstring saying its job"


def test_package_inits_only_hand_names_on() -> None:
    """A package's ``__init__`` imports and lists names (``__all__``); it defines nothing."""
    for path in PACKAGE.rglob("__init__.py"):
        tree = ast.parse(path.read_text())
        defined = [
            type(node).__name__
            for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef)
        ]
        assert not defined, f"{path.relative_to(PACKAGE)} defines {defined}"
        names = [
            node
            for node in tree.body
            if isinstance(node, ast.Assign)
            and any(getattr(t, "id", "") == "__all__" for t in node.targets)
        ]
        assert names, f"{path.relative_to(PACKAGE)} has no __all__"


def test_implementation_modules_are_private() -> None:
    public = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py" and not p.name.startswith("_")
    ]
    assert not public, f"public implementation modules: {public}"


def import_graph() -> dict[str, set[str]]:
    """Module -> the evoband modules it imports (package ``__init__`` files only hand names on
    and are no nodes)."""
    modules = {module_name(p): p for p in MODULES if p.name != "__init__.py"}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {target for _, target in imported_modules(path)}
        # "from ._x import name" names module _x; "from . import _x" names it as package._x
        graph[name] = {t if t in modules else t.rsplit(".", 1)[0] for t in targets} & set(modules)
    return graph


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
    assert {"search._optimizer", "search._hooks", "training._results", "store._ledger"} <= set(
        graph
    )
    assert "search._hooks" in graph["search._state"]
    assert "training._results" in graph["store._ledger"]


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


@pytest.mark.parametrize(
    "module",
    ["training._results", "training._constraints", "search._member", "store._ledger",
     "store._analysis", "search._hooks"],
)  # fmt: skip
def test_result_readers_do_not_import_the_training_stack(module: str) -> None:
    """What reads results needs no torch: the modules it imports, transitively, import none."""
    graph = import_graph()
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph[name])
    paths = {module_name(p): p for p in MODULES}
    torch_users = {name for name in seen if imports_torch(paths[name])}
    assert not torch_users, f"{module} imports torch through {sorted(torch_users)}"


def test_every_error_evoband_raises_is_an_evoband_error() -> None:
    """A caller who catches EvobandError catches everything evoband raises on bad input or a
    failed run; the only built-in errors raised are those a protocol demands (marked)."""
    pattern = re.compile(r"raise (ValueError|TypeError|RuntimeError|KeyError|IndexError)\b")
    found = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line) and "# protocol:" not in line
    ]
    assert not found, found


def test_given_values_are_validated_in_one_place() -> None:
    """No private ``_check_*`` helper of its own outside the validator (evoband.core._validate),
    whose one message shape every refused value speaks."""
    found = [
        f"{path.relative_to(PACKAGE)}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "_validate.py"
        for line in path.read_text().splitlines()
        if re.match(r"\s*def _check_", line)
    ]
    assert not found, found
