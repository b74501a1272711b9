"""Variation and selection operators on genotypes; each takes an explicit numpy Generator.

Variation operators work on plain config dicts and repair conditional structure through
:func:`evoband.space.complete`. :class:`ParamBudget` keeps children within the parameter limit
by shrinking width and depth keys; a child that cannot be repaired is discarded, never trained.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from ConfigSpace import (
    CategoricalHyperparameter,
    ConfigurationSpace,
    OrdinalHyperparameter,
)

from .files import builtin
from .space import Config, complete, fill, sample, sample_value

__all__ = [
    "COST_KEYS",
    "STRUCTURE_PREFIXES",
    "LocalMutation",
    "NeutralSelection",
    "ParamBudget",
    "RandomSampling",
    "Selection",
    "TournamentSelection",
    "UniformCrossover",
    "UniformMutation",
    "Variation",
    "neighbour",
    "plus_selection",
    "smallest_config",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

STRUCTURE_PREFIXES = (
    "n_channels_",
    "n_conv_layers",
    "n_fc_layers",
    "kernel_size",
    "convs_per_stage",
)
"""Keys that set the parameter count: the ones a repair may shrink."""

COST_KEYS = ("batch_size",)
"""Keys besides the structure that set the training cost: a cost repair may raise them."""


class Variation(ABC):
    """Makes one child genotype from one or more parent genotypes."""

    n_parents: int = 1

    @abstractmethod
    def __call__(self, parents: Sequence[Config], rng: np.random.Generator) -> Config:
        """A new valid genotype."""


class RandomSampling(Variation):
    """Ignores the parents and draws a fresh configuration (random search)."""

    n_parents = 0

    def __init__(self, space: ConfigurationSpace) -> None:
        self.space = space

    def __call__(self, parents: Sequence[Config], rng: np.random.Generator) -> Config:
        return sample(self.space, rng)


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


class Selection(ABC):
    """Picks parents from a population ranked best first."""

    @abstractmethod
    def select(self, ranked: Sequence[T], n: int, rng: np.random.Generator) -> list[T]:
        """``n`` parents (with repetition) from ``ranked`` (best first)."""


class NeutralSelection(Selection):
    """Every member equally likely."""

    def select(self, ranked: Sequence[T], n: int, rng: np.random.Generator) -> list[T]:
        return [ranked[int(i)] for i in rng.integers(len(ranked), size=n)]


class TournamentSelection(Selection):
    """The best of ``size`` members drawn at random, ``n`` times."""

    def __init__(self, size: int = 3) -> None:
        if size < 1:
            raise ValueError(f"The tournament size is {size}, but must be >= 1.")
        self.size = size

    def select(self, ranked: Sequence[T], n: int, rng: np.random.Generator) -> list[T]:
        picks = []
        for _ in range(n):
            contenders = rng.integers(len(ranked), size=min(self.size, len(ranked)))
            picks.append(ranked[int(contenders.min())])
        return picks


def plus_selection(ranked_union: Sequence[T], mu: int) -> list[T]:
    """(mu + lambda) survival: the best ``mu`` of parents and offspring, already ranked together."""
    return list(ranked_union[:mu])


class ParamBudget:
    """Keeps genotypes within a parameter limit (and optionally a cost cap) by repairing them.

    A child over the parameter limit has width and depth keys shrunk; one over the cost cap has
    structure keys shrunk or its batch size raised (fewer, larger steps), until it fits. A child
    the input is too small for counts as oversized (``count`` gives it ``sys.maxsize``): shrinking
    its depth keys makes it fit.

    Args:
        space: the search space.
        count: genotype -> parameter count (on the meta device).
        limit: the largest allowed count.
        max_tries: repair steps before the child is given up.
        cost: genotype -> predicted seconds of a full evaluation (None: no cost cap).
        cost_limit: the largest allowed predicted seconds.
        keys: the structure keys a repair may shrink (integer or ordinal hyperparameters, e.g.
            :meth:`evoband.family.NetworkFamily.structure_keys` of a composed space); None: the
            keys that start with :data:`STRUCTURE_PREFIXES` (the shipped spaces').
    """

    def __init__(
        self,
        space: ConfigurationSpace,
        count: Callable[[Config], int],
        limit: int,
        max_tries: int = 30,
        cost: Callable[[Config], float] | None = None,
        cost_limit: float = float("inf"),
        keys: Sequence[str] | None = None,
    ) -> None:
        self.space, self.count, self.limit, self.max_tries = space, count, limit, max_tries
        self.cost, self.cost_limit = cost, cost_limit
        self.keys = None if keys is None else frozenset(keys)
        self.discarded = 0

    def _structure(self, key: str) -> bool:
        return key.startswith(STRUCTURE_PREFIXES) if self.keys is None else key in self.keys

    def _over_cost(self, config: Config) -> bool:
        return self.cost is not None and self.cost(config) > self.cost_limit

    def fits(self, config: Config) -> bool:
        """Whether ``config`` is within the parameter limit and the cost cap."""
        return self.count(config) <= self.limit and not self._over_cost(config)

    def repair(self, config: Config, rng: np.random.Generator) -> Config | None:
        """``config`` if it fits, else a repaired variant that fits, else None (counted)."""
        for _ in range(self.max_tries):
            if self.count(config) > self.limit:
                keys = [k for k in sorted(config) if self._structure(k)]
            elif self._over_cost(config):
                keys = [k for k in sorted(config) if self._structure(k) or k in COST_KEYS]
            else:
                return config
            if not keys:
                break  # nothing left to shrink
            name = str(rng.choice(keys))
            value = (
                self._grow(name, config[name], rng)
                if name in COST_KEYS
                else self._shrink(name, config[name], rng)
            )
            config = complete(self.space, {**config, name: value}, rng)
        if self.fits(config):
            return config
        self.discarded += 1
        what = f"{self.limit:,} parameters" + (
            "" if self.cost is None else f" or {self.cost_limit:.0f} s of training"
        )
        logger.warning(
            "Discarded a child that stays above %s after %d repair steps (%d discarded so far).",
            what,
            self.max_tries,
            self.discarded,
        )
        return None

    def _shrink(self, name: str, value: Any, rng: np.random.Generator) -> Any:
        hp = self.space[name]
        if isinstance(hp, OrdinalHyperparameter):
            i = list(hp.sequence).index(value)
            return builtin(hp.sequence[int(rng.integers(i + 1))])
        upper = float(hp.to_vector(value))
        return builtin(hp.to_value(rng.uniform(0.0, upper)))

    def _grow(self, name: str, value: Any, rng: np.random.Generator) -> Any:
        hp = self.space[name]
        lower = float(hp.to_vector(value))
        return builtin(hp.to_value(rng.uniform(lower, 1.0)))


def smallest_config(space: ConfigurationSpace, count: Callable[[Config], int]) -> Config:
    """A configuration with (close to) the fewest parameters the space allows.

    Numeric and ordinal keys at their lower bound; each categorical key set, one at a time, to
    the choice that gives the fewest parameters (keys it activates at their lower bound too).
    """

    def lowest(values: Config) -> Config:
        return fill(space, values, lambda name: _lowest_value(space[name]))

    config = lowest({})
    for name in list(config):
        hp = space[name]
        if isinstance(hp, CategoricalHyperparameter) and name in config:
            config = min((lowest({**config, name: builtin(c)}) for c in hp.choices), key=count)
    return config


def _lowest_value(hp: Any) -> Any:
    if isinstance(hp, OrdinalHyperparameter):
        return builtin(hp.sequence[0])
    if isinstance(hp, CategoricalHyperparameter):
        return builtin(hp.default_value)
    return builtin(hp.to_value(0.0))
