"""Parent selection and (mu + lambda) survival on a population ranked best first."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..core._validate import require_int
from ._base import Selection, T


class NeutralSelection(Selection):
    """Every member equally likely."""

    def select(self, ranked: Sequence[T], n: int, rng: np.random.Generator) -> list[T]:
        return [ranked[int(i)] for i in rng.integers(len(ranked), size=n)]


class TournamentSelection(Selection):
    """The best of ``size`` members drawn at random, ``n`` times."""

    def __init__(self, size: int = 3) -> None:
        self.size = require_int("size", size, low=1, owner="TournamentSelection")

    def select(self, ranked: Sequence[T], n: int, rng: np.random.Generator) -> list[T]:
        picks = []
        for _ in range(n):
            contenders = rng.integers(len(ranked), size=min(self.size, len(ranked)))
            picks.append(ranked[int(contenders.min())])
        return picks


def plus_selection(ranked_union: Sequence[T], mu: int) -> list[T]:
    """(mu + lambda) survival: the best ``mu`` of parents and offspring, already ranked together."""
    return list(ranked_union[:mu])
