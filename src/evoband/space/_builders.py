"""Composable search spaces: write a space from blocks, compile it to a ConfigSpace space.

The one import for composing spaces: the parameter spaces (:mod:`evoband.space._params`), the
layer and architecture spaces (:mod:`evoband.space._layers`) and :func:`compile_space`. The
genotype stays a flat config dict valid in the compiled ``ConfigurationSpace``; its keys are
explained in :mod:`evoband.space._tree`. Networks are built by :mod:`evoband.nets._composed`::

    stage = Chain(Repeat(Conv(IntRange(8, 64, log=True), OneOf([3, 5]), "relu"), 1, 2), Pool())
    space = Chain(Repeat(stage, 1, 3), GlobalPool(), Dense(IntRange(16, 128), "relu"))
    compiled = compile_space(space, name="small-cnn", seed=0)

Conditions: item ``i`` of a Repeat (or path ``i`` of a Fork) is active when the count exceeds
``i``; a Choice branch's keys when the choice holds its label. Each key is conditioned only on
its innermost structural parent (ConfigSpace deactivates the children of inactive parents). A
parameter shared by name is active where the innermost guard common to all of its uses holds (a
union of counts or labels of the same parent where its uses part there), never an OR of
conditions on different parents: :func:`evoband.space._spaces.is_active` treats a hyperparameter with an
inactive parent as inactive, so such a condition would never fire there. A shared parameter may
thus be active in a configuration that uses it nowhere (e.g. one shared by two branches of
different Choices).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ConfigSpace import (
    ConfigurationSpace,
    EqualsCondition,
    GreaterThanCondition,
    InCondition,
)
from ConfigSpace.conditions import Condition

from ..core._errors import ConfigError
from ._layers import (
    Space,
)
from ._params import Param, Value
from ._tree import ChoiceNode, CountNode, LayerNode, Node, ResidualNode, SeqNode, Slot, expand


@dataclass(frozen=True)
class Above:
    """A guard: active when the count ``key`` exceeds ``threshold``."""

    key: str
    threshold: int


@dataclass(frozen=True)
class Among:
    """A guard: active when the choice ``key`` holds one of ``values`` (of its ``labels``)."""

    key: str
    values: tuple[Value, ...]
    labels: tuple[Value, ...]


Guard = Above | Among
GuardPath = tuple[Guard, ...]
"""The guards from the root down to one use of a parameter (all must hold for it to be used)."""


def _same_value(a: Value, b: Value) -> bool:
    return type(a) is type(b) and a == b


def _union(heads: Sequence[Guard]) -> Guard | None:
    """One guard that holds when any of ``heads`` (guards of one parent) does; None if there is
    none narrower than the parent being active."""
    first = heads[0]
    if any(h.key != first.key or type(h) is not type(first) for h in heads):
        return None
    if isinstance(first, Above):
        return Above(first.key, min(h.threshold for h in heads if isinstance(h, Above)))
    assert isinstance(first, Among)
    chosen = [v for h in heads if isinstance(h, Among) for v in h.values]
    values = tuple(x for x in first.labels if any(_same_value(x, v) for v in chosen))
    return None if len(values) == len(first.labels) else Among(first.key, values, first.labels)


def common_guard(paths: Sequence[GuardPath]) -> Guard | None:
    """The innermost guard implied by every path: the condition of a parameter used at each of
    ``paths`` (None: unconditional). It may be wider than "any use is active", never narrower."""
    innermost: Guard | None = None
    depth = 0
    while True:
        if any(len(path) <= depth for path in paths):
            return innermost  # one use is active wherever the guards so far hold
        heads = [path[depth] for path in paths]
        if any(head != heads[0] for head in heads):
            return _union(heads) or innermost
        innermost = heads[0]
        depth += 1


class _Uses:
    """The searched parameters of a space by key, with the guard paths of their uses."""

    def __init__(self) -> None:
        self.params: dict[str, Param] = {}
        self.paths: dict[str, list[GuardPath]] = {}
        self.positional: set[str] = set()

    def add(self, slot: Slot, path: GuardPath) -> None:
        if not slot.searched:
            return
        key, param = slot.key, slot.param
        known = self.params.get(key)
        if known is None:
            self.params[key] = param
            if param.name is None:
                self.positional.add(key)
        elif param.name is None or key in self.positional:
            raise ConfigError(
                f"The name {key!r} is also the key of a parameter at that position; "
                "choose another name."
            )
        elif known != param:
            raise ConfigError(
                f"The name {key!r} is given to two different parameters, {known!r} and "
                f"{param!r}; use one object for both or give them distinct names."
            )
        self.paths.setdefault(key, []).append(path)

    def visit(self, node: Node, path: GuardPath) -> None:
        if isinstance(node, LayerNode):
            for slot in node.slots.values():
                self.add(slot, path)
        elif isinstance(node, SeqNode):
            for child in node.children:
                self.visit(child, path)
        elif isinstance(node, CountNode):
            self.add(node.count, path)
            for i, item in enumerate(node.items):
                guarded = i >= node.low and node.count.varies
                self.visit(item, (*path, Above(node.count.key, i)) if guarded else path)
        elif isinstance(node, ResidualNode):
            self.visit(node.body, path)
        elif isinstance(node, ChoiceNode):
            self.add(node.pick, path)
            for label, branch in zip(node.labels, node.branches, strict=True):
                self.visit(branch, (*path, Among(node.pick.key, (label,), node.labels)))


def _condition(space: ConfigurationSpace, key: str, guard: Guard) -> Condition:
    child, parent = space[key], space[guard.key]
    if isinstance(guard, Above):
        return GreaterThanCondition(child, parent, guard.threshold)
    if len(guard.values) == 1:
        return EqualsCondition(child, parent, guard.values[0])
    return InCondition(child, parent, list(guard.values))


def compile_space(
    space: Space, *, name: str = "blocks", seed: int | None = None, extra: Sequence[Param] = ()
) -> ConfigurationSpace:
    """The ConfigSpace space of ``space``: one hyperparameter per searched key, with conditions.

    ``extra`` are named parameter spaces that are no part of the network (learning rate, batch
    size, ...): unconditional hyperparameters, ignored when a network is built.
    """
    uses = _Uses()
    uses.visit(expand(space), ())
    for param in extra:
        if not isinstance(param, Param) or param.name is None:
            raise ConfigError(
                f"compile_space(extra=...) takes named parameter spaces, not {param!r}; e.g. "
                "FloatRange(1e-4, 0.1, log=True, name='learning_rate_init')."
            )
        uses.add(Slot(param.name, param), ())
    compiled = ConfigurationSpace(name=name, seed=seed)
    try:
        hyperparameters = [param.hyperparameter(key) for key, param in uses.params.items()]
        compiled.add([hp for hp in hyperparameters if hp is not None])
        guards = {key: common_guard(paths) for key, paths in uses.paths.items()}
        compiled.add(
            [_condition(compiled, key, guard) for key, guard in guards.items() if guard is not None]
        )
    except (ValueError, TypeError) as exc:  # e.g. a count's name reused inside its own items
        raise ConfigError(f"The space {name!r} cannot be compiled: {exc}.") from exc
    return compiled
