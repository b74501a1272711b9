"""Making the genotypes of new members: the initial population's starting points, fresh samples
and children of the population, all within the parameter limit and the cost cap.

Every choice is drawn from the RNG passed in, so the genotypes a search makes depend only on its
seed and on the recorded results (see :mod:`evoband.search._optimizer`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from ConfigSpace import ConfigurationSpace

from ..operators._base import Selection, Variation
from ..operators._crossovers import UniformCrossover
from ..operators._mutations import LocalMutation, UniformMutation
from ..operators._repair import ParamBudget
from ..operators._sampling import RandomSampling
from ..operators._selection import TournamentSelection
from ..space._genotype import default_config
from ..space._spaces import Config, recipes
from ..training._constraints import MaxParams
from ._member import Member, Origin
from ._settings import SearchSettings

logger = logging.getLogger(__name__)

CHILD_TRIES = 10
"""Variations tried before a child that cannot be repaired into the limits is sampled afresh."""


class Breeder:
    """Makes genotypes: starting points, fresh samples and children of ranked parents.

    Args:
        space: the search space.
        param_budget: keeps genotypes within the parameter limit and the cost cap.
        max_params: the parameter limit (for messages).
        settings: the crossover probability, tournament size and whether children are fresh
            samples (random search) instead of variations of the population.
        selection: parent selection (tournament by default).
        mutations: variation operators applied to one parent, chosen uniformly (by default
            uniform and local mutation).
        crossover: recombination of two parents (uniform crossover by default).
        starts: known good configurations the initial population starts from (default: the
            :data:`evoband.space._spaces.RECIPES` valid in ``space``).
        sampler: draws fresh configurations (default: :class:`RandomSampling` of ``space``).
    """

    def __init__(
        self,
        space: ConfigurationSpace,
        param_budget: ParamBudget,
        max_params: MaxParams,
        settings: SearchSettings,
        *,
        selection: Selection | None = None,
        mutations: Sequence[Variation] | None = None,
        crossover: Variation | None = None,
        starts: Sequence[Config] | None = None,
        sampler: Variation | None = None,
    ) -> None:
        self.space = space
        self.param_budget = param_budget
        self.max_params = max_params
        self.selection = selection or TournamentSelection(settings.tournament_size)
        self.mutations = (
            list(mutations)
            if mutations is not None
            else [UniformMutation(space), LocalMutation(space)]
        )
        self.crossover = crossover or UniformCrossover(space)
        self.crossover_prob = settings.crossover_prob
        self.random_search = settings.random_search
        self.sampler = sampler or RandomSampling(space)
        self.recipes = list(starts) if starts is not None else recipes(space)
        self.recipe_starts = settings.recipe_starts

    def starts(self, n: int) -> list[tuple[Config, Origin]]:
        """Up to ``n`` starting points: the recipes, then the space's default, that fit the limits.

        Duplicates are skipped; no randomness is drawn. Empty when the settings turn the
        recipe starts off.
        """
        found: list[tuple[Config, Origin]] = []
        if not self.recipe_starts:
            return found
        candidates = [(dict(c), Origin.RECIPE) for c in self.recipes]
        for config, origin in [*candidates, (default_config(self.space), Origin.DEFAULT)]:
            if (
                len(found) < n
                and config not in [c for c, _ in found]
                and self.param_budget.fits(config)
            ):
                found.append((config, origin))
        return found

    def sample(self, rng: np.random.Generator) -> Config:
        """A fresh sample of the space, repaired into the limits (resampled until one fits)."""
        while True:
            config = self.param_budget.repair(self.sampler([], rng), rng)
            if config is not None:
                return config

    def child(
        self, usable: Sequence[Member], rng: np.random.Generator
    ) -> tuple[Config, Origin, tuple[int, ...]]:
        """A child of ``usable`` (ranked best first): its genotype, origin and parents' ids.

        Recombined from two parents with ``crossover_prob``, else mutated from one; a fresh
        sample with random search, without usable parents, or when :data:`CHILD_TRIES`
        variations all stay outside the limits.
        """
        if self.random_search or not usable:
            return self.sample(rng), Origin.SAMPLED, ()
        for _ in range(CHILD_TRIES):
            if len(usable) >= 2 and rng.random() < self.crossover_prob:
                first = self.selection.select(usable, 1, rng)[0]
                parents = [
                    first,
                    self.selection.select([m for m in usable if m is not first], 1, rng)[0],
                ]
                config = self.crossover([p.config for p in parents], rng)
                origin = Origin.RECOMBINED
            else:
                parents = self.selection.select(usable, 1, rng)
                mutation = self.mutations[int(rng.integers(len(self.mutations)))]
                config = mutation([parents[0].config], rng)
                origin = Origin.MUTATED
            repaired = self.param_budget.repair(config, rng)
            if repaired is not None:
                return repaired, origin, tuple(dict.fromkeys(p.member_id for p in parents))
        logger.warning(
            "No child within %s after %d tries; sampling a fresh one.",
            self.max_params.describe(),
            CHILD_TRIES,
        )
        return self.sample(rng), Origin.SAMPLED, ()
