"""Variation and selection operators on genotypes; each takes an explicit numpy Generator.

Variation operators work on plain config dicts and repair conditional structure through
:func:`evoband.space._spaces.complete`. :class:`ParamBudget` keeps children within the parameter limit
by shrinking width and depth keys; a child that cannot be repaired is discarded, never trained.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from ..space._spaces import Config

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


class Selection(ABC):
    """Picks parents from a population ranked best first."""

    @abstractmethod
    def select(self, ranked: Sequence[T], n: int, rng: np.random.Generator) -> list[T]:
        """``n`` parents (with repetition) from ``ranked`` (best first)."""
