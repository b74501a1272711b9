"""Items of a count (layers of a stack, items of a composed space's ``Repeat``) as lists: the
base of the operators that insert, remove or swap whole items (:class:`evoband.operators._mutations.AddLayer`,
:class:`evoband.operators._mutations.RemoveLayer`, :class:`evoband.operators._crossovers.StageSwapCrossover`).

An item's keys are per-index keys (``n_channels_conv_0``, ``n_channels_conv_1``, ...:
``prefix + str(i)`` for each prefix), or given per item as role -> key maps (``items=``), e.g.
every key of a ``Repeat`` item from :func:`evoband.space._keys.repeat_items`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from ConfigSpace import ConfigurationSpace, UniformIntegerHyperparameter

from ..core._errors import ConfigError
from ..space._genotype import complete
from ..space._spaces import Config
from ._base import Variation


def hyperparameter(space: ConfigurationSpace, key: str, what: str) -> Any:
    """``space[key]``; a ConfigError naming ``what`` needs it if the space has no such key."""
    if key not in space:
        raise ConfigError(f"{what}: {key!r} is not a hyperparameter of the {space.name} space.")
    return space[key]


Layer = dict[str, Any]
"""One layer's values, keyed by role: its prefix (``{"n_channels_conv_": 64}``) or the role of
an ``items`` map."""

ItemKeys = Sequence[str] | Sequence[Mapping[str, str]]
"""The keys of the items: prefixes (item ``i`` is ``{prefix: prefix + str(i)}``) or, per item, a
role -> key map (role ``j`` is the same setting in every item)."""


def _prefixes(item_prefix: str | Sequence[str]) -> tuple[str, ...]:
    prefixes = (item_prefix,) if isinstance(item_prefix, str) else tuple(item_prefix)
    if not prefixes or not all(isinstance(p, str) and p for p in prefixes):
        raise ConfigError(f"The item prefixes are {item_prefix!r}, but must be non-empty strings.")
    return prefixes


def _item_keys(items: ItemKeys, n: int) -> list[Mapping[str, str]]:
    """The role -> key maps of the first ``n`` items."""
    if all(isinstance(item, str) for item in items):
        return [{p: f"{p}{i}" for p in items if isinstance(p, str)} for i in range(n)]
    maps = [item for item in items if not isinstance(item, str)]
    if len(maps) < n:
        raise ConfigError(f"There are {n} items, but the keys of only {len(maps)} are given.")
    return maps[:n]


def layer_values(config: Config, count_key: str, items: ItemKeys) -> list[Layer]:
    """The layers of ``config`` in order: for each of its ``config[count_key]`` items, the values
    of its keys (``prefix + str(i)`` for each prefix, or an ``items`` map's) that ``config`` holds,
    by role."""
    return [
        {role: config[key] for role, key in keys.items() if key in config}
        for keys in _item_keys(items, int(config[count_key]))
    ]


def with_layers(
    space: ConfigurationSpace,
    config: Config,
    count_key: str,
    items: ItemKeys,
    layers: Sequence[Layer],
    rng: np.random.Generator,
) -> Config:
    """``config`` with its layers replaced by ``layers`` (the count set to their number), repaired.

    Every key of every item is dropped (with prefixes: every key that starts with one), then each
    layer's values are written under the keys of its new index. Values that are illegal there,
    and missing ones, are drawn from the priors.
    """
    if all(isinstance(item, str) for item in items):
        prefixes = tuple(item for item in items if isinstance(item, str))
        out = {k: v for k, v in config.items() if not k.startswith(prefixes)}
    else:
        owned = {key for item in _item_keys(items, len(items)) for key in item.values()}
        out = {k: v for k, v in config.items() if k not in owned}
    out[count_key] = len(layers)
    for keys, layer in zip(_item_keys(items, len(layers)), layers, strict=True):
        for role, value in layer.items():
            key = keys.get(role)
            if key is not None and key in space and space[key].legal_value(value):
                out[key] = value
    return complete(space, out, rng)


class LayerOperator(Variation):
    """Base of the operators on a list of layers (items): ``count_key`` is an integer count, and
    every prefix in ``item_prefix`` has a per-index key (``prefix + str(i)``) for each possible
    layer. With ``items`` (per item, role -> key, e.g. from
    :func:`evoband.space._keys.repeat_items`), those are the items' keys and ``item_prefix`` is
    not used; there must be one map per possible layer."""

    def __init__(
        self,
        space: ConfigurationSpace,
        count_key: str = "n_conv_layers",
        item_prefix: str | Sequence[str] = "n_channels_conv_",
        *,
        items: Sequence[Mapping[str, str]] | None = None,
    ) -> None:
        what = type(self).__name__
        hp = hyperparameter(space, count_key, what)
        if not isinstance(hp, UniformIntegerHyperparameter):
            raise ConfigError(
                f"{what}: {count_key!r} must be an integer count, not {type(hp).__name__}."
            )
        self.space, self.count_key = space, count_key
        self.lower, self.upper = int(hp.lower), int(hp.upper)
        if items is None:
            self.prefixes = _prefixes(item_prefix)
            self.items: ItemKeys = self.prefixes
            wanted = [f"{p}{i}" for p in self.prefixes for i in range(self.upper)]
        else:
            maps = [dict(item) for item in items]
            self.prefixes, self.items = (), maps
            wanted = [key for item in maps for key in item.values()]
            if len(maps) < self.upper:
                raise ConfigError(
                    f"{what}: {count_key!r} goes up to {self.upper}, but items= gives the keys "
                    f"of {len(maps)} items; give one role -> key map per item."
                )
        missing = [key for key in wanted if key not in space]
        if missing:
            raise ConfigError(
                f"{what}: {count_key!r} goes up to {self.upper}, but the space has no "
                f"{', '.join(map(repr, missing))}."
            )

    def _layers(self, parent: Config) -> list[Layer] | None:
        if self.count_key not in parent:
            return None
        return layer_values(parent, self.count_key, self.items)

    def _with(self, parent: Config, layers: Sequence[Layer], rng: np.random.Generator) -> Config:
        return with_layers(self.space, parent, self.count_key, self.items, layers, rng)
