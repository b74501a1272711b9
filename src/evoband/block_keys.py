"""What the builders know of a composed space's keys (see :mod:`evoband.block_tree`): which
keys set the size of its networks, and a canonical description of the whole tree.

* :func:`size_keys`: the searched widths (``Conv`` channels, ``Dense`` units), counts (a
  ``Repeat``'s count, a ``Fork``'s paths) and kernel sizes: the keys a parameter repair
  (:class:`evoband.operators.ParamBudget`) shrinks, as it shrinks ``n_channels_*``,
  ``n_conv_layers``, ... of the shipped spaces.
* :func:`describe`: every position with its layer kind, keys and parameter spaces, as JSON-able
  data: two spaces with the same description build the same networks from the same
  configurations (a run's fingerprint, :mod:`evoband.search_space`, is made from it).
"""

from __future__ import annotations

from typing import Any

from .block_layers import Space
from .block_tree import ChoiceNode, CountNode, LayerNode, Node, ResidualNode, SeqNode, Slot, expand

__all__ = ["SIZE_SUFFIXES", "describe", "size_keys"]

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
