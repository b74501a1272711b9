"""Crossovers as small classes: a child of two parents, structure and training kept apart.

Each is a :class:`~evoband.operators._base.Variation` with ``n_parents = 2`` that returns a
configuration valid in its space (repaired through :func:`evoband.space._spaces.complete`). The first
parent (A) gives everything the crossover does not take from the second (B).
:class:`~evoband.operators._base.UniformCrossover` (each key from either parent) is in
:mod:`evoband.operators._base`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ConfigSpace import (
    ConfigurationSpace,
)

from ..core._errors import ConfigError
from ..space._genotype import complete
from ..space._spaces import Config
from ._base import Variation
from ._layer_items import Layer, LayerOperator

TRAINING_KEYS = (
    "optimizer",
    "learning_rate_init",
    "lr_schedule",
    "weight_decay",
    "use_weight_decay",
    "batch_size",
    "label_smoothing",
    "train_criterion",
    "aug_flip",
    "aug_shift",
)
"""Keys of how a network is trained (not what it is); those missing from a space are skipped."""


class StageSwapCrossover(LayerOperator):
    """Two-point crossover of the layer lists: a contiguous segment of A's layers is replaced by a
    contiguous, non-empty segment of B's layers.

    The child's layers are ``A[:i] + B[j:k] + A[l:]`` with the segment boundaries drawn uniformly
    among those whose layer count is within the count's bounds, preferring those that differ from
    A. Every other key comes from A. Where B has no layers the segment is empty (A loses a
    segment); where the count is inactive in either parent, the child is A.

    Args:
        space: the search space.
        count_key: the integer key that counts the layers.
        item_prefix: the prefix (or prefixes) of the per-layer keys.
        items: per layer (item), role -> key, instead of prefixes: whole items of a composed
            space's Repeat (:func:`evoband.space._keys.repeat_items`) stay together.
    """

    n_parents = 2

    def __call__(self, parents: Sequence[Config], rng: np.random.Generator) -> Config:
        a, b = parents[0], parents[1]
        layers_a, layers_b = self._layers(a), self._layers(b)
        if layers_a is None or layers_b is None:
            return dict(a)
        options = self._children(layers_a, layers_b)
        if not options:
            return dict(a)
        different = [layers for layers in options if layers != layers_a]
        pool = different or options
        layers = pool[int(rng.integers(len(pool)))]
        return self._with(a, layers, rng)

    def _children(self, layers_a: list[Layer], layers_b: list[Layer]) -> list[list[Layer]]:
        n_a, n_b = len(layers_a), len(layers_b)
        segments_b = [
            (j, k) for j in range(n_b + 1) for k in range(j, n_b + 1) if k > j or n_b == 0
        ]
        options = []
        for i in range(n_a + 1):
            for stop in range(i, n_a + 1):
                for j, k in segments_b:
                    if k == j and stop == i:
                        continue  # nothing would change
                    if self.lower <= n_a - (stop - i) + (k - j) <= self.upper:
                        options.append(layers_a[:i] + layers_b[j:k] + layers_a[stop:])
        return options


class TrainingCrossover(Variation):
    """The structure of parent A with the training hyperparameters of parent B.

    Keys in ``keys`` that B holds come from B; every other key from A (those B lacks too). Keys
    not in the space are skipped, so the default serves every shipped space.

    Args:
        space: the search space.
        keys: the training keys taken from B (at least one must be in the space).
    """

    n_parents = 2

    def __init__(self, space: ConfigurationSpace, keys: Sequence[str] = TRAINING_KEYS) -> None:
        names = (keys,) if isinstance(keys, str) else tuple(keys)
        self.keys = tuple(k for k in names if k in space)
        if not self.keys:
            raise ConfigError(
                f"TrainingCrossover: none of {', '.join(names) or 'no keys'} is in the "
                f"{space.name} space."
            )
        self.space = space

    def __call__(self, parents: Sequence[Config], rng: np.random.Generator) -> Config:
        a, b = parents[0], parents[1]
        child = dict(a)
        child.update({k: b[k] for k in self.keys if k in b})
        return complete(self.space, child, rng)


class UniformCrossover(Variation):
    """Each hyperparameter from either parent; the child's structure is repaired to be consistent."""

    n_parents = 2

    def __init__(self, space: ConfigurationSpace) -> None:
        self.space = space

    def __call__(self, parents: Sequence[Config], rng: np.random.Generator) -> Config:
        a, b = parents[0], parents[1]
        child: Config = {}
        for name in self.space:
            options = [p[name] for p in (a, b) if name in p]
            if options:
                child[name] = options[int(rng.integers(len(options)))]
        return complete(self.space, child, rng)
