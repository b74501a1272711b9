"""Repair: keeping genotypes within a parameter limit and a cost cap by shrinking them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from ConfigSpace import (
    CategoricalHyperparameter,
    ConfigurationSpace,
    OrdinalHyperparameter,
)

from ..core._files import builtin
from ..space._genotype import complete, fill
from ..space._spaces import Config
from ._base import COST_KEYS, STRUCTURE_PREFIXES

logger = logging.getLogger(__name__)


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
            :meth:`evoband.nets._family.NetworkFamily.structure_keys` of a composed space); None: the
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
