"""A composed search space expanded to its positions: every key of the genotype named once.

Keys come from the position in the tree: a :class:`~evoband.space._layers.Chain`'s k-th space is
under ``b<k>_``, a Repeat's i-th item under ``r<i>_``, a Fork's k-th path under ``p<k>_``, a
Choice's k-th branch under ``c<k>_`` and a Residual's body under ``res_``; a layer setting's key
is its prefix and suffix (``b0_r2_channels``), a Repeat's count ``<prefix>count``, a Fork's
``<prefix>paths`` and a Choice's ``<prefix>choice``, unless the parameter has an explicit name.
The module of a layer is named after its prefix (``b0_r2``). Compilation
(:mod:`evoband.space._builders`) and building (:mod:`evoband.nets._plan`) both read this expansion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..core._errors import ConfigError
from ._layers import Chain, Choice, Fork, Layer, Repeat, Residual, Space
from ._params import Fixed, Indexed, IntRange, Param, Value


def module_name(prefix: str) -> str:
    """The module name of the layer at ``prefix`` (``b0_r2_`` -> ``b0_r2``; the root is ``root``)."""
    return prefix.rstrip("_") or "root"


def where(prefix: str) -> str:
    """``prefix`` for messages: ``at b0_r2_`` or ``at the root``."""
    return f"at {prefix}" if prefix else "at the root"


@dataclass(frozen=True)
class Slot:
    """One use of a parameter: the key it has in the genotype and its parameter space."""

    key: str
    param: Param

    @property
    def searched(self) -> bool:
        """Whether the genotype holds the value (everything but an unnamed Fixed)."""
        return not (isinstance(self.param, Fixed) and self.param.name is None)

    @property
    def varies(self) -> bool:
        """Whether the value differs between configurations (not a Fixed, named or not)."""
        return not isinstance(self.param, Fixed)

    def read(self, config: Mapping[str, Value]) -> Value:
        """The value in ``config``; a ConfigError naming the key if it is missing."""
        if isinstance(self.param, Fixed):
            return self.param.value
        if self.key not in config:
            raise ConfigError(
                f"The configuration lacks {self.key!r}, which its network needs; sample it from "
                "the compiled space or complete it there (evoband.space._spaces.complete)."
            )
        return config[self.key]


@dataclass(frozen=True)
class LayerNode:
    """A layer space at ``prefix`` with the slot of each setting (by key suffix)."""

    prefix: str
    layer: Layer
    slots: Mapping[str, Slot]


@dataclass(frozen=True)
class SeqNode:
    """A Chain: its spaces one after another."""

    prefix: str
    children: tuple[Node, ...]


@dataclass(frozen=True)
class CountNode:
    """A Repeat (``fork=False``) or a Fork: items up to the max; item ``i`` exists when the count
    exceeds ``i``, so the first ``low`` always do."""

    prefix: str
    count: Slot
    low: int
    items: tuple[Node, ...]
    fork: bool


@dataclass(frozen=True)
class ResidualNode:
    """A Residual around ``body``; its projection module is ``<prefix>proj``."""

    prefix: str
    body: Node


@dataclass(frozen=True)
class ChoiceNode:
    """A Choice: ``pick`` selects the branch whose label it holds."""

    prefix: str
    pick: Slot
    labels: tuple[Value, ...]
    branches: tuple[Node, ...]

    def branch(self, config: Mapping[str, Value]) -> Node:
        """The branch the configuration picks."""
        label = self.pick.read(config)
        for candidate, node in zip(self.labels, self.branches, strict=True):
            if type(candidate) is type(label) and candidate == label:
                return node
        raise ConfigError(f"{self.pick.key}={label!r} is none of the labels {list(self.labels)}.")


Node = LayerNode | SeqNode | CountNode | ResidualNode | ChoiceNode
"""A position of the expanded tree."""

Indices = tuple[tuple[str | None, int], ...]


def expand(space: Space, prefix: str = "", indices: Indices = ()) -> Node:
    """The tree of ``space`` with every setting's key; Indexed parameters made per item.

    ``indices`` are the (index name, item) pairs of the enclosing Repeats, outermost first.
    """
    if isinstance(space, Layer):
        return LayerNode(prefix, space, _layer_slots(space, prefix, indices))
    if isinstance(space, Chain):
        children = tuple(
            expand(child, f"{prefix}b{k}_", indices) for k, child in enumerate(space.spaces)
        )
        return SeqNode(prefix, children)
    if isinstance(space, Repeat):
        count = _count_slot(f"{prefix}count", space.min, space.max, space.name, space.default)
        items = tuple(
            expand(space.space, f"{prefix}r{i}_", (*indices, (space.index, i)))
            for i in range(space.max)
        )
        return CountNode(prefix, count, space.min, items, fork=False)
    if isinstance(space, Fork):
        count = _count_slot(
            f"{prefix}paths", space.min_paths, space.max_paths, space.name, space.default
        )
        items = tuple(
            expand(space.space, f"{prefix}p{k}_", indices) for k in range(space.max_paths)
        )
        return CountNode(prefix, count, space.min_paths, items, fork=True)
    if isinstance(space, Residual):
        return ResidualNode(prefix, expand(space.space, f"{prefix}res_", indices))
    if isinstance(space, Choice):
        branches = tuple(
            expand(branch, f"{prefix}c{k}_", indices) for k, branch in enumerate(space.spaces)
        )
        pick = Slot(space.name or f"{prefix}choice", space.pick)
        return ChoiceNode(prefix, pick, space.labels, branches)
    raise ConfigError(f"Not a search space {where(prefix)}: {space!r}.")


def _layer_slots(layer: Layer, prefix: str, indices: Indices) -> dict[str, Slot]:
    slots = {}
    for suffix, setting in layer.settings().items():
        key = f"{prefix}{suffix}"
        param = setting.resolve(indices, key) if isinstance(setting, Indexed) else setting
        layer.rule(suffix).check(param, f"{type(layer).__name__} setting {key}")
        slots[suffix] = Slot(param.name or key, param)
    return slots


def _count_slot(key: str, low: int, high: int, name: str | None, default: int | None) -> Slot:
    if low == high:
        return Slot(name or key, Fixed(low, name=name))
    return Slot(name or key, IntRange(low, high, name=name, default=default))
