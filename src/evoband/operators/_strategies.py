"""Evolution strategies: which members survive, and which become parents.

Each strategy is a :class:`~evoband.operators._base.Selection`: ``select(ranked, n, rng)`` picks ``n``
items from a population ranked best first (evoband's one ranking,
:func:`evoband.search._member.rank_members`), drawing every random choice from ``rng``. A strategy also
knows how many it picks by itself (``size``, None where it has no number of its own), and
:meth:`Strategy.survivors` picks that many: ``EliteSelection(2).survivors(ranked, rng)`` are the
best two. :class:`~evoband.operators._base.TournamentSelection` of :mod:`evoband.operators._base` is the
tournament; :class:`CombinedSelection` joins strategies, e.g. two elites and the rest by
tournament::

    CombinedSelection(EliteSelection(2), (TournamentSelection(3), None)).select(ranked, 10, rng)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from ..core._errors import ConfigError
from ..core._validate import require, require_int
from ._base import Selection
from ._selection import plus_selection

T = TypeVar("T")


def _picks(n: Any, owner: str, allow_none: bool = True) -> int | None:
    """A number of picks: an int >= 0 (or None, where the selection needs none)."""
    if n is None and allow_none:
        return None
    return require_int("n", n, low=0, owner=owner)


def _pickable(ranked: Sequence[Any], n: int, owner: str) -> None:
    _picks(n, owner, allow_none=False)
    require(n == 0 or len(ranked) > 0, "n", n, "0 for an empty population", owner=owner)


class Strategy(Selection):
    """A selection with a number of picks of its own (``size``; None: it has none)."""

    size: int | None = None

    def survivors(self, ranked: Sequence[T], rng: np.random.Generator) -> list[T]:
        """``size`` picks from ``ranked`` (best first); ConfigError without a size."""
        if self.size is None:
            raise ConfigError(f"{type(self).__name__} has no size: use select(ranked, n, rng).")
        return self.select(ranked, self.size, rng)


class EliteSelection(Strategy):
    """The best ones, in rank order, no random draw.

    ``select(ranked, n, rng)`` is the best ``n``; asked for more than there are, it starts again
    from the best (parents may repeat). :meth:`survivors` never repeats: the best
    ``min(size, len(ranked))``.
    """

    def __init__(self, n: int | None = None) -> None:
        self.size = _picks(n, "EliteSelection")

    def select(self, ranked: Sequence[T], n: int, rng: np.random.Generator) -> list[T]:
        _pickable(ranked, n, "EliteSelection")
        return [ranked[i % len(ranked)] for i in range(n)]

    def survivors(self, ranked: Sequence[T], rng: np.random.Generator) -> list[T]:
        if self.size is None:
            raise ConfigError("EliteSelection has no size: use select(ranked, n, rng).")
        return self.select(ranked, min(self.size, len(ranked)), rng)


class PlusStrategy(EliteSelection):
    """(mu + lambda) survival, as the course's optimizer does it: the best ``mu`` of parents and
    offspring ranked together (:func:`evoband.operators._base.plus_selection`)."""

    def __init__(self, mu: int) -> None:
        require_int("mu", mu, low=1, owner="PlusStrategy")
        super().__init__(mu)
        self.mu = int(mu)

    def survivors(self, ranked: Sequence[T], rng: np.random.Generator) -> list[T]:
        return plus_selection(ranked, self.mu)

    def survive(
        self,
        parents: Sequence[T],
        offspring: Sequence[T],
        rank: Callable[[list[T]], list[T]],
    ) -> list[T]:
        """The best ``mu`` of ``parents + offspring`` by ``rank`` (a function that orders a list
        best first, e.g. ``lambda ms: rank_members(ms, constraints)``)."""
        return plus_selection(rank([*parents, *offspring]), self.mu)


def sus_weights(fitness: Sequence[float]) -> np.ndarray:
    """Selection weights (summing to 1) for fitness values, robust to any values.

    NaN and ``-inf`` count as the lowest finite value, ``+inf`` as the highest. Negative values
    are shifted so that the lowest is 0 (the worst then gets no share); all-equal (or all
    non-finite) values give equal weights.
    """
    values = np.asarray(fitness, dtype=float)
    if values.size == 0:
        return values
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.full(values.size, 1.0 / values.size)
    low, high = float(finite.min()), float(finite.max())
    values = np.where(np.isposinf(values), high, values)
    values = np.where(np.isfinite(values), values, low)
    if low < 0.0:
        values = values - low
    total = float(values.sum())
    if not total > 0.0 or not math.isfinite(total):
        return np.full(values.size, 1.0 / values.size)
    return values / total


class SUSSelection(Strategy):
    """Stochastic universal sampling: ``n`` evenly spaced pointers, one random offset, over the
    members' shares of the fitness (see :func:`sus_weights`).

    Each member is picked ``floor`` or ``ceil`` of ``n`` times its share, so the picks follow the
    fitness with the least spread; they are returned in rank order.

    Args:
        fitness: item -> fitness, higher is better (for members e.g.
            ``evoband.operators._fitness.member_fitness(NanGuard(TopK(3), 0.0))``).
        n: the number of survivors (``size``), if it is used for survival.
    """

    def __init__(self, fitness: Callable[[Any], float], n: int | None = None) -> None:
        if not callable(fitness):
            raise ConfigError(f"SUSSelection's fitness must be callable, not {fitness!r}.")
        self.fitness = fitness
        self.size = _picks(n, "SUSSelection")

    def select(self, ranked: Sequence[T], n: int, rng: np.random.Generator) -> list[T]:
        _pickable(ranked, n, "SUSSelection")
        if n == 0:
            return []
        weights = sus_weights([self.fitness(item) for item in ranked])
        edges = np.cumsum(weights)
        edges[-1] = 1.0  # no pointer beyond the end through rounding
        pointers = (rng.uniform(0.0, 1.0) + np.arange(n)) / n
        picks = np.searchsorted(edges, pointers, side="right")
        return [ranked[int(min(i, len(ranked) - 1))] for i in picks]


Part = tuple[Selection, int | None]


class CombinedSelection(Strategy):
    """Several selections joined: each picks its count, in the order given.

    Each part is ``(selection, count)`` or a :class:`Strategy` with a size (its size is its
    count). One count may be None: that part picks the rest of ``n``. Without such a part the
    counts must add up to ``n`` (their sum is the ``size``).
    """

    def __init__(self, *parts: Part | Strategy) -> None:
        if not parts:
            raise ConfigError("CombinedSelection needs at least one part.")
        self.parts: list[Part] = [self._part(part) for part in parts]
        rest = [i for i, (_, count) in enumerate(self.parts) if count is None]
        if len(rest) > 1:
            raise ConfigError("CombinedSelection: only one part may take the rest (count None).")
        self.fixed = sum(count or 0 for _, count in self.parts)
        self.size = None if rest else self.fixed

    @staticmethod
    def _part(part: Part | Strategy) -> Part:
        if isinstance(part, Strategy):
            if part.size is None:
                raise ConfigError(
                    f"CombinedSelection: {type(part).__name__} has no size; pass (it, count)."
                )
            return part, part.size
        if not (isinstance(part, tuple) and len(part) == 2 and isinstance(part[0], Selection)):
            raise ConfigError(
                f"CombinedSelection: each part is (selection, count) or a sized strategy, not {part!r}."
            )
        return part[0], _picks(part[1], "CombinedSelection")

    def _counts(self, n: int) -> list[int]:
        if self.size is not None and n != self.size:
            raise ConfigError(
                f"CombinedSelection: its counts add up to {self.size}, but {n} were asked for "
                "(give one part the count None to take the rest)."
            )
        if n < self.fixed:
            raise ConfigError(
                f"CombinedSelection: its fixed counts add up to {self.fixed}, more than the "
                f"{n} asked for."
            )
        return [n - self.fixed if count is None else count for _, count in self.parts]

    def select(self, ranked: Sequence[T], n: int, rng: np.random.Generator) -> list[T]:
        _pickable(ranked, n, "CombinedSelection")
        picks: list[T] = []
        for (selection, _), count in zip(self.parts, self._counts(n), strict=True):
            picks.extend(selection.select(ranked, count, rng))
        return picks

    def survivors(self, ranked: Sequence[T], rng: np.random.Generator) -> list[T]:
        """Each part's survivors for its count (elites never repeat)."""
        if self.size is None:
            raise ConfigError("CombinedSelection has a part without a count: use select().")
        picks: list[T] = []
        for selection, count in self.parts:
            if isinstance(selection, EliteSelection):
                picks.extend(selection.select(ranked, min(count or 0, len(ranked)), rng))
            else:
                picks.extend(selection.select(ranked, count or 0, rng))
        return picks
