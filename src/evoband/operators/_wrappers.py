"""Wrappers that combine and guard variation operators (mutations and crossovers alike).

Each wrapper is itself a :class:`~evoband.operators._base.Variation` with the ``n_parents`` of what it
wraps, so wrappers nest: ``WithinBudget(ChainMutation(WithProbability(AddLayer(space), 0.3),
Shield(UniformMutation(space), ["optimizer"])), budget)``. Every random choice is drawn from the
Generator passed in, so a fixed seed gives a fixed child.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from ConfigSpace import ConfigurationSpace

from ..core._errors import ConfigError
from ..core._validate import require, require_int
from ..space._genotype import complete
from ..space._spaces import Config
from ._base import Variation
from ._repair import ParamBudget

logger = logging.getLogger(__name__)


def _variation(op: object, owner: str) -> Variation:
    require(isinstance(op, Variation), "op", op, "a variation operator", owner=owner)
    assert isinstance(op, Variation)
    return op


class WithProbability(Variation):
    """Applies ``op`` with probability ``p``, else returns (a copy of) the first parent.

    One uniform number is drawn per call whatever ``p`` is, so the draws that follow do not
    depend on ``p``.
    """

    def __init__(self, op: Variation, p: float) -> None:
        self.op = _variation(op, "WithProbability")
        if isinstance(p, bool) or not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
            raise ConfigError(f"The probability is {p!r}, but must be in [0, 1].")
        self.p = float(p)
        self.n_parents = op.n_parents

    def __call__(self, parents: Sequence[Config], rng: np.random.Generator) -> Config:
        if rng.random() < self.p:
            return self.op(parents, rng)
        return dict(parents[0])


class ChainMutation(Variation):
    """Applies ``ops`` in turn: each to the previous one's child (and the other parents, if it
    takes more than one)."""

    def __init__(self, *ops: Variation) -> None:
        if not ops:
            raise ConfigError("ChainMutation needs at least one operator.")
        self.ops = tuple(_variation(op, "ChainMutation") for op in ops)
        self.n_parents = max(1, *(op.n_parents for op in self.ops))

    def __call__(self, parents: Sequence[Config], rng: np.random.Generator) -> Config:
        child = dict(parents[0])
        for op in self.ops:
            child = op([child, *parents[1:]], rng)
        return child


class FilterMutation(Variation):
    """Applies ``op`` only where ``predicate(first parent)`` holds, else returns the parent."""

    def __init__(self, op: Variation, predicate: Callable[[Config], bool]) -> None:
        self.op = _variation(op, "FilterMutation")
        if not callable(predicate):
            raise ConfigError(f"FilterMutation's predicate must be callable, not {predicate!r}.")
        self.predicate = predicate
        self.n_parents = op.n_parents

    def __call__(self, parents: Sequence[Config], rng: np.random.Generator) -> Config:
        if self.predicate(parents[0]):
            return self.op(parents, rng)
        return dict(parents[0])


class Shield(Variation):
    """``op``, with ``keys`` never changing: the child keeps the first parent's values for them
    (and their absence, where inactive in the parent), repaired to be valid.

    A child whose other changes deactivate (or activate) a shielded key cannot keep it: ``op`` is
    tried again, up to ``tries`` times, and then a ConfigError names the key (shield the key that
    controls it too, e.g. ``n_conv_layers`` beside ``n_channels_conv_2``).
    """

    def __init__(
        self,
        op: Variation,
        keys: Iterable[str],
        space: ConfigurationSpace | None = None,
        tries: int = 10,
    ) -> None:
        self.op = _variation(op, "Shield")
        self.keys = (keys,) if isinstance(keys, str) else tuple(keys)
        if not self.keys:
            raise ConfigError("Shield needs at least one key to shield.")
        found = space if space is not None else getattr(op, "space", None)
        if not isinstance(found, ConfigurationSpace):
            raise ConfigError(
                f"Shield cannot tell the space of {type(op).__name__}: pass space=... explicitly."
            )
        unknown = [k for k in self.keys if k not in found]
        if unknown:
            raise ConfigError(
                f"Shield: {', '.join(map(repr, unknown))} not in the {found.name} space."
            )
        self.space = found
        self.tries = require_int("tries", tries, low=1, owner="Shield")
        self.n_parents = op.n_parents

    def __call__(self, parents: Sequence[Config], rng: np.random.Generator) -> Config:
        parent = parents[0]
        lost: list[str] = []
        for _ in range(self.tries):
            child = self.op(parents, rng)
            for key in self.keys:
                child.pop(key, None)
                if key in parent:
                    child[key] = parent[key]
            child = complete(self.space, child, rng)
            lost = [k for k in self.keys if (k in child) != (k in parent)]
            if not lost:
                return child
        raise ConfigError(
            f"Shield cannot keep {', '.join(map(repr, lost))} of the parent: every one of "
            f"{self.tries} children of {type(self.op).__name__} changes whether it is active "
            "(shield the keys it depends on too)."
        )


class WithinBudget(Variation):
    """``op``'s child repaired into a :class:`~evoband.operators._base.ParamBudget` (parameter limit and
    cost cap); the child always fits.

    A child the budget cannot repair is made again, up to ``tries`` times; then the first parent
    that fits is returned (a copy), and a ConfigError is raised if none does.
    """

    def __init__(self, op: Variation, budget: ParamBudget, tries: int = 10) -> None:
        self.op = _variation(op, "WithinBudget")
        if not isinstance(budget, ParamBudget):
            raise ConfigError(f"WithinBudget needs a ParamBudget, not {type(budget).__name__}.")
        self.budget = budget
        self.tries = require_int("tries", tries, low=1, owner="WithinBudget")
        self.n_parents = op.n_parents

    def __call__(self, parents: Sequence[Config], rng: np.random.Generator) -> Config:
        for _ in range(self.tries):
            child = self.budget.repair(self.op(parents, rng), rng)
            if child is not None:
                return child
        for parent in parents:
            if self.budget.fits(parent):
                logger.warning(
                    "No child of %s within the budget after %d tries; keeping its parent.",
                    type(self.op).__name__,
                    self.tries,
                )
                return dict(parent)
        raise ConfigError(
            f"No child of {type(self.op).__name__} fits within {self.budget.limit:,} parameters "
            f"after {self.tries} tries, and no parent does."
        )
