"""Mutations as small classes: one focused change of a genotype each.

Every mutation is a :class:`~evoband.operators._base.Variation` of one parent: it takes the space and an
explicit numpy Generator, returns a configuration valid in the space (repaired through
:func:`evoband.space._spaces.complete`), and changes the parent whenever the parent allows a change.
A mutation that cannot apply (its key is inactive, or a count is at its bound) returns a copy of
the parent. Wrappers that combine and guard mutations are in :mod:`evoband.operators._wrappers`.

Structure changes (:class:`AddLayer`, :class:`RemoveLayer`) shift whole items (layers) of a
count: the keys of item ``i`` move to item ``i + 1`` (or ``i - 1``), so that the other items keep
their values and their order. An item's keys are per-index keys (``n_channels_conv_0``,
``n_channels_conv_1``, ...: ``prefix + str(i)`` for each prefix), or given per item as role ->
key maps (``items=``), e.g. every key of a composed space's ``Repeat`` item from
:func:`evoband.space._keys.repeat_items` (see :mod:`evoband.operators._layer_items`, whose
:func:`layer_values` and :func:`with_layers` read and write such a list of layers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from ConfigSpace import (
    CategoricalHyperparameter,
    ConfigurationSpace,
    Constant,
    OrdinalHyperparameter,
    UniformFloatHyperparameter,
    UniformIntegerHyperparameter,
)

from ..core._errors import ConfigError
from ..core._files import builtin
from ..space._genotype import complete, sample_value
from ..space._spaces import Config
from ._base import Variation
from ._layer_items import Layer, LayerOperator, hyperparameter


class AddLayer(LayerOperator):
    """Inserts a layer at a random position; the other layers keep their values, in order.

    The new layer copies the values of the layer before it (of the layer after it when inserted
    first), so that the layers around it see the shapes they saw before and the network's
    function changes little; with ``items`` a whole item is copied (every key of a composed
    space's Repeat item). At the count's upper bound (or where the count is inactive) it
    returns the parent unchanged. Works for ``n_fc_layers`` / ``n_channels_fc_`` too.
    """

    def __call__(self, parents: Sequence[Config], rng: np.random.Generator) -> Config:
        parent = parents[0]
        layers = self._layers(parent)
        if layers is None or len(layers) >= self.upper:
            return dict(parent)
        pos = int(rng.integers(len(layers) + 1))
        new: Layer = dict(layers[pos - 1] if pos > 0 else layers[0]) if layers else {}
        layers.insert(pos, new)
        return self._with(parent, layers, rng)


class RemoveLayer(LayerOperator):
    """Removes a random layer (a whole item); the other layers keep their values, in order.

    At the count's lower bound (or where the count is inactive) it returns the parent unchanged.
    """

    def __call__(self, parents: Sequence[Config], rng: np.random.Generator) -> Config:
        parent = parents[0]
        layers = self._layers(parent)
        if layers is None or len(layers) <= self.lower:
            return dict(parent)
        del layers[int(rng.integers(len(layers)))]
        return self._with(parent, layers, rng)


class WidthMutation(Variation):
    """Scales one width key by a relative factor in ``[1 - rel_step, 1 + rel_step]``.

    The value is rounded (integer keys) and clipped to the key's bounds; where that gives the
    parent's value, it moves one step (integer keys) in the factor's direction, or the other way
    at a bound.

    Args:
        space: the search space.
        keys: a prefix (every numeric key that starts with it) or a sequence of key names.
        rel_step: the largest relative change, in ``(0, 1)``.
    """

    def __init__(
        self,
        space: ConfigurationSpace,
        keys: str | Sequence[str] = "n_channels_",
        rel_step: float = 0.25,
    ) -> None:
        if not 0.0 < rel_step < 1.0:
            raise ConfigError(f"The relative step is {rel_step}, but must be 0 < rel_step < 1.")
        if isinstance(keys, str):
            names = [name for name in space if name.startswith(keys)]
        else:
            names = [hyperparameter(space, name, "WidthMutation").name for name in keys]
        numeric = (UniformIntegerHyperparameter, UniformFloatHyperparameter)
        bad = [name for name in names if not isinstance(space[name], numeric)]
        if not names or bad:
            raise ConfigError(
                f"WidthMutation needs numeric keys of the {space.name} space; "
                + (f"{', '.join(bad)} are not numeric." if bad else f"none match {keys!r}.")
            )
        self.space, self.keys, self.rel_step = space, tuple(names), rel_step

    def __call__(self, parents: Sequence[Config], rng: np.random.Generator) -> Config:
        child = dict(parents[0])
        active = [k for k in self.keys if k in child]
        if not active:
            return child
        key = active[int(rng.integers(len(active)))]
        hp: Any = self.space[key]
        lower, upper = hp.lower, hp.upper
        old = child[key]
        factor = 1.0 + rng.uniform(-self.rel_step, self.rel_step)
        direction = 1 if factor >= 1.0 else -1
        if isinstance(hp, UniformIntegerHyperparameter):
            new: Any = int(np.clip(round(old * factor), lower, upper))
            if new == old:
                if not lower <= old + direction <= upper:
                    direction = -direction
                new = int(np.clip(old + direction, lower, upper))
        else:
            new = float(np.clip(old * factor, lower, upper))
            if new == old:  # at a bound: the other way
                new = float(np.clip(old / factor, lower, upper))
        child[key] = new
        return complete(self.space, child, rng)


class ToggleMutation(Variation):
    """A different value of one categorical (boolean included) or ordinal key.

    Any other choice, uniformly; with ``adjacent`` an ordinal key steps to a neighbouring value.
    Where the key is inactive it returns the parent unchanged. For structure switches such as
    ``use_BN`` or a residual edge of a composable space.
    """

    key: str = ""

    def __init__(
        self, space: ConfigurationSpace, key: str | None = None, adjacent: bool = False
    ) -> None:
        key = key if key is not None else self.key
        if not key:
            raise ConfigError(f"{type(self).__name__} needs the key to change.")
        hp = hyperparameter(space, key, type(self).__name__)
        if isinstance(hp, CategoricalHyperparameter):
            values = [builtin(c) for c in hp.choices]
        elif isinstance(hp, OrdinalHyperparameter):
            values = [builtin(v) for v in hp.sequence]
        elif isinstance(hp, Constant):
            values = [builtin(hp.value)]
        else:
            raise ConfigError(
                f"{type(self).__name__}: {key!r} must be categorical or ordinal, "
                f"not {type(hp).__name__}."
            )
        if len(values) < 2:
            raise ConfigError(f"{type(self).__name__}: {key!r} has one value; it cannot change.")
        self.space, self.key, self.values = space, key, values
        self.adjacent = adjacent and isinstance(hp, OrdinalHyperparameter)

    def __call__(self, parents: Sequence[Config], rng: np.random.Generator) -> Config:
        child = dict(parents[0])
        if self.key not in child:
            return child
        i = self.values.index(child[self.key])
        if self.adjacent:
            options = [self.values[j] for j in (i - 1, i + 1) if 0 <= j < len(self.values)]
        else:
            options = self.values[:i] + self.values[i + 1 :]
        child[self.key] = options[int(rng.integers(len(options)))]
        return complete(self.space, child, rng)


class KernelMutation(ToggleMutation):
    """The kernel size steps to a neighbouring value (3 <-> 5 <-> 7)."""

    key = "kernel_size"

    def __init__(self, space: ConfigurationSpace, key: str | None = None) -> None:
        super().__init__(space, key, adjacent=True)


class ActivationMutation(ToggleMutation):
    """Another activation function (``activation``: only in spaces that search it)."""

    key = "activation"


class OptimizerMutation(ToggleMutation):
    """Another optimizer (``optimizer``)."""

    key = "optimizer"


class CountMutation(Variation):
    """One integer count one step up or down within its bounds (ordinal: a neighbouring value).

    For ``convs_per_stage``, the number of fork paths or repeats of a composable space, and the
    like. Where the key is inactive it returns the parent unchanged; keys the new count activates
    are drawn from their priors.
    """

    def __init__(self, space: ConfigurationSpace, key: str) -> None:
        hp = hyperparameter(space, key, "CountMutation")
        if isinstance(hp, UniformIntegerHyperparameter):
            values = list(range(int(hp.lower), int(hp.upper) + 1))
        elif isinstance(hp, OrdinalHyperparameter):
            values = [builtin(v) for v in hp.sequence]
        else:
            raise ConfigError(
                f"CountMutation: {key!r} must be an integer or ordinal, not {type(hp).__name__}."
            )
        if len(values) < 2:
            raise ConfigError(f"CountMutation: {key!r} has one value; it cannot change.")
        self.space, self.key, self.values = space, key, values

    def __call__(self, parents: Sequence[Config], rng: np.random.Generator) -> Config:
        child = dict(parents[0])
        if self.key not in child:
            return child
        i = self.values.index(child[self.key])
        options = [self.values[j] for j in (i - 1, i + 1) if 0 <= j < len(self.values)]
        child[self.key] = options[int(rng.integers(len(options)))]
        return complete(self.space, child, rng)


class LearningRateMutation(Variation):
    """A log-scale step of the learning rate: times ``10 ** d``, ``|d|`` in ``[step / 4, step]``.

    The direction is random; clipped to the key's bounds, and the other way where the bound
    leaves the value unchanged.

    Args:
        space: the search space.
        step: the largest step in decades (0.5: at most about x3.2 or /3.2).
        key: the learning-rate key (a float).
    """

    def __init__(
        self, space: ConfigurationSpace, step: float = 0.5, key: str = "learning_rate_init"
    ) -> None:
        if not (math.isfinite(step) and step > 0.0):
            raise ConfigError(f"The learning-rate step is {step} decades, but must be > 0.")
        hp = hyperparameter(space, key, "LearningRateMutation")
        if not isinstance(hp, UniformFloatHyperparameter) or hp.lower <= 0.0:
            raise ConfigError(
                f"LearningRateMutation: {key!r} must be a positive float, not {type(hp).__name__}."
            )
        self.space, self.step, self.key = space, step, key
        self.lower, self.upper = float(hp.lower), float(hp.upper)

    def __call__(self, parents: Sequence[Config], rng: np.random.Generator) -> Config:
        child = dict(parents[0])
        if self.key not in child:
            return child
        old = float(child[self.key])
        sign = 1.0 if rng.random() < 0.5 else -1.0
        size = rng.uniform(0.25 * self.step, self.step)
        new = float(np.clip(old * 10.0 ** (sign * size), self.lower, self.upper))
        if new == old:
            new = float(np.clip(old * 10.0 ** (-sign * size), self.lower, self.upper))
        child[self.key] = new
        return complete(self.space, child, rng)


class UniformMutation(Variation):
    """Resamples ``k`` randomly chosen active hyperparameters from their priors."""

    def __init__(self, space: ConfigurationSpace, k: int = 1) -> None:
        self.space, self.k = space, k

    def __call__(self, parents: Sequence[Config], rng: np.random.Generator) -> Config:
        child = dict(parents[0])
        names = sorted(child)
        for name in rng.choice(names, size=min(self.k, len(names)), replace=False):
            child[str(name)] = sample_value(self.space, str(name), rng)
        return complete(self.space, child, rng)


class LocalMutation(Variation):
    """A neighbour step on one active hyperparameter.

    Numeric: a Gaussian step of ``sigma`` in the normalised (log-scale where the prior is log)
    vector space; ordinal: an adjacent value; categorical: another choice.
    """

    def __init__(self, space: ConfigurationSpace, sigma: float = 0.15) -> None:
        self.space, self.sigma = space, sigma

    def __call__(self, parents: Sequence[Config], rng: np.random.Generator) -> Config:
        child = dict(parents[0])
        name = str(rng.choice(sorted(child)))
        child[name] = neighbour(self.space, name, child[name], rng, self.sigma)
        return complete(self.space, child, rng)


def neighbour(
    space: ConfigurationSpace, name: str, value: Any, rng: np.random.Generator, sigma: float = 0.15
) -> Any:
    """A value next to ``value`` for hyperparameter ``name`` (different whenever possible)."""
    hp = space[name]
    if isinstance(hp, OrdinalHyperparameter):
        seq = list(hp.sequence)
        i = seq.index(value)
        steps = [j for j in (i - 1, i + 1) if 0 <= j < len(seq)]
        return builtin(seq[int(rng.choice(steps))]) if steps else value
    if isinstance(hp, CategoricalHyperparameter):
        others = [c for c in hp.choices if c != value]
        return builtin(others[int(rng.integers(len(others)))]) if others else value
    vector = float(hp.to_vector(value))
    for _ in range(10):
        new = builtin(hp.to_value(np.clip(vector + rng.normal(0.0, sigma), 0.0, 1.0)))
        if new != value:
            return new
    if isinstance(value, int):  # a narrow integer range: the adjacent value
        steps = [v for v in (value - 1, value + 1) if hp.legal_value(v)]
        return steps[int(rng.integers(len(steps)))] if steps else value
    return value
