"""What the builders know of a composed space's keys (see :mod:`evoband.space._tree`): which
keys set the size of its networks, and a canonical description of the whole tree.

* :func:`size_keys`: the searched widths (``Conv`` channels, ``Dense`` units), counts (a
  ``Repeat``'s count, a ``Fork``'s paths) and kernel sizes: the keys a parameter repair
  (:class:`evoband.operators._base.ParamBudget`) shrinks, as it shrinks ``n_channels_*``,
  ``n_conv_layers``, ... of the shipped spaces.
* :func:`describe`: every position with its layer kind, keys and parameter spaces, as JSON-able
  data: two spaces with the same description build the same networks from the same
  configurations (a run's fingerprint, :mod:`evoband.search._space`, is made from it).
* :func:`repeat_items`: the keys of each item of a ``Repeat`` (or ``Fork``) by role, for the
  layer operators (:class:`evoband.operators._mutations.AddLayer`, ...) to shift whole items.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..core._errors import ConfigError
from ._layers import SPACE_TYPES, Space
from ._shipped import SpaceDefinition
from ._tree import ChoiceNode, CountNode, LayerNode, Node, ResidualNode, SeqNode, Slot, expand

SIZE_SUFFIXES = {"conv": ("channels", "kernel"), "dense": ("units",)}
"""The layer settings (by key suffix) whose larger values make a layer larger."""


def _size_slots(node: Node) -> list[Slot]:
    if isinstance(node, LayerNode):
        suffixes = SIZE_SUFFIXES.get(node.layer.KIND, ())
        return [slot for suffix, slot in node.slots.items() if suffix in suffixes]
    if isinstance(node, SeqNode):
        return [slot for child in node.children for slot in _size_slots(child)]
    if isinstance(node, CountNode):
        return [node.count, *(slot for item in node.items for slot in _size_slots(item))]
    if isinstance(node, ResidualNode):
        return _size_slots(node.body)
    return [slot for branch in node.branches for slot in _size_slots(branch)]


def size_keys(space: Space) -> tuple[str, ...]:
    """The keys of the searched widths, counts and kernel sizes of ``space``, each once, in
    tree order (a key shared by name appears where it is first used)."""
    keys = [slot.key for slot in _size_slots(expand(space)) if slot.varies]
    return tuple(dict.fromkeys(keys))


def _slot(slot: Slot) -> list[str]:
    return [slot.key, repr(slot.param)]


def _describe(node: Node) -> dict[str, Any]:
    if isinstance(node, LayerNode):
        slots = {suffix: _slot(slot) for suffix, slot in node.slots.items()}
        return {"layer": node.layer.KIND, "at": node.prefix, "slots": slots}
    if isinstance(node, SeqNode):
        return {"chain": [_describe(child) for child in node.children], "at": node.prefix}
    if isinstance(node, CountNode):
        return {
            "fork" if node.fork else "repeat": [_describe(item) for item in node.items],
            "at": node.prefix,
            "count": _slot(node.count),
            "min": node.low,
        }
    if isinstance(node, ResidualNode):
        return {"residual": _describe(node.body), "at": node.prefix}
    assert isinstance(node, ChoiceNode)
    return {
        "choice": [_describe(branch) for branch in node.branches],
        "at": node.prefix,
        "pick": _slot(node.pick),
    }


def describe(space: Space) -> dict[str, Any]:
    """The expanded tree of ``space`` as JSON-able data (parameters by their ``repr``)."""
    return _describe(expand(space))


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, SeqNode):
        return node.children
    if isinstance(node, CountNode):
        return node.items
    if isinstance(node, ResidualNode):
        return (node.body,)
    return node.branches if isinstance(node, ChoiceNode) else ()


def _slots(node: Node) -> list[Slot]:
    """Every slot of the subtree at ``node``, in tree order."""
    if isinstance(node, LayerNode):
        own: list[Slot] = list(node.slots.values())
    elif isinstance(node, CountNode):
        own = [node.count]
    else:
        own = [node.pick] if isinstance(node, ChoiceNode) else []
    return own + [slot for child in _children(node) for slot in _slots(child)]


def _count_nodes(node: Node, count_key: str) -> list[CountNode]:
    found = [node] if isinstance(node, CountNode) and node.count.key == count_key else []
    return found + [n for child in _children(node) for n in _count_nodes(child, count_key)]


def repeat_items(space: Space | SpaceDefinition, count_key: str) -> list[dict[str, str]]:
    """The keys of each item of the Repeat (or Fork) counted by ``count_key``, by role.

    One dict per item (all ``max`` items), role -> key, for every hyperparameter of the item
    (layer settings, nested counts and their items, choice picks, residual bodies; a key used
    twice in an item counted once). The role is the key's position in the item's tree order
    (``"0"``, ``"1"``, ...), so role ``j`` is the same setting in every item. Keys shared by
    name between items (``kernel_size`` of every stage) belong to no single item and are left
    out. Repeats that share the count's name are one list: item ``i`` holds the keys of item
    ``i`` of each. For :class:`evoband.operators._mutations.LayerOperator`'s ``items``::

        space = Repeat(Dense(IntRange(8, 64), OneOf(["relu", "gelu"])), 1, 3, name="depth")
        repeat_items(space, "depth")
        # [{"0": "r0_units", "1": "r0_act"}, {"0": "r1_units", "1": "r1_act"}, ...]
    """
    network = space if isinstance(space, SPACE_TYPES) else space.network
    nodes = _count_nodes(expand(network), count_key)
    if not nodes:
        raise ConfigError(
            f"No Repeat or Fork of the space is counted by {count_key!r}; give its count's key "
            "(its name=..., else <prefix>count or <prefix>paths, see evoband.space._tree)."
        )
    per_item = [
        list(dict.fromkeys(s.key for item in items for s in _slots(item) if s.varies))
        for items in zip(*(node.items for node in nodes), strict=True)
    ]
    if len({len(keys) for keys in per_item}) > 1:
        raise ConfigError(
            f"The items of {count_key!r} have different numbers of settings "
            f"({[len(keys) for keys in per_item]}); their Indexed parameters must match."
        )
    uses = Counter(key for keys in per_item for key in keys)
    shared = {j for keys in per_item for j, key in enumerate(keys) if uses[key] > 1}
    return [{str(j): key for j, key in enumerate(keys) if j not in shared} for keys in per_item]
