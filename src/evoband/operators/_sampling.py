"""Sampling operators: fresh configurations of a space, ignoring the parents (random search)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ConfigSpace import (
    ConfigurationSpace,
)

from ..nets._family import NetworkFamily
from ..space._genotype import sample
from ..space._spaces import Config
from ._base import Variation


class RandomSampling(Variation):
    """Ignores the parents and draws a fresh configuration (random search)."""

    n_parents = 0

    def __init__(self, space: ConfigurationSpace) -> None:
        self.space = space

    def __call__(self, parents: Sequence[Config], rng: np.random.Generator) -> Config:
        return sample(self.space, rng)


class FamilySampling(Variation):
    """Ignores the parents and draws a fresh configuration the way a network family samples
    (:meth:`evoband.nets.NetworkFamily.sample`: one that fits the input, for composed spaces)."""

    n_parents = 0

    def __init__(
        self, family: NetworkFamily, space: ConfigurationSpace, input_shape: tuple[int, ...]
    ) -> None:
        self.family, self.space, self.input_shape = family, space, tuple(input_shape)

    def __call__(self, parents: Sequence[Config], rng: np.random.Generator) -> Config:
        return self.family.sample(self.space, self.input_shape, rng)
