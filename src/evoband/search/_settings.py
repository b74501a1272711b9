"""The settings of a search: its budget and schedule, validated when they are made."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass

from ConfigSpace import ConfigurationSpace

from ..core._errors import ConfigError
from ..core._validate import require, require_int, require_number
from ..operators._repair import smallest_config
from ..space._spaces import Config
from ..store._runs import algorithm_label
from ..training._constraints import Constraints
from ._hyperband import HyperbandSchedule


@dataclass
class SearchSettings:
    """Everything that defines a search's budget and schedule.

    Attributes:
        pop_size: members kept between generations (mu).
        num_children: children per generation without Hyperband (lambda).
        hyperband: one Hyperband iteration per generation instead of plain children.
        min_epochs, max_epochs, eta: the Hyperband budgets and halving rate.
        max_time: seconds; checked before every training job.
        max_evaluations: optional cap on evaluations (member x budget).
        eval_time_limit: seconds one evaluation may train; None derives it from the step's
            predicted cost (see :attr:`EvolutionaryOptimizer.time_limit`).
        eval_cost_share: no member is trained whose full evaluation (max_epochs on every fold)
            is predicted to take more than this share of max_time; larger children are repaired.
        seed: fixes every random decision.
        crossover_prob: chance that a child is recombined from two parents.
        tournament_size: parent selection pressure.
        random_search: children are fresh samples instead of variations of the population.
        inherit_weights: a mutated or recombined child's folds start from its (first) parent's
            trained weights (:mod:`evoband.nets._inherit`) instead of a fresh initialisation; the
            population keeps its checkpoints for that.
        async_promotion: with Hyperband, promote a member as soon as it ranks in the top
            ``1/eta`` of its rung so far and start new members whenever a worker is free,
            instead of waiting for each rung to fill (:mod:`evoband.search._async`).
        recipe_starts: the initial population starts from the space's recipes and its default
            configuration (those within the limits), the rest sampled; False: every initial
            member is sampled (an ablation; with ``random_search``, textbook random search).
        distinct_children: a child equal to a member already made (on its active
            hyperparameters) is drawn again instead of being trained a second time.
        remeasure: re-measure the best configuration under a second seed before it stands as
            the optimum, when the time left allows (its CV is then the mean over its seeds).
        predictor: deliver the final predictor (ensemble selection on out-of-fold predictions,
            :mod:`evoband.search._final`) inside ``max_time``; False: the single optimum only.
        ensemble_steps: greedy steps (picks with replacement) of the ensemble selection.
        ensemble_bags: bootstrap resamples of the training images the selection is bagged over
            (0: one selection on all of them).
        ensemble_networks: networks the predictor retrains at most (its selected members, then
            more seeds of them).
        predictor_share: the share of ``max_time`` kept for making the predictor at most (less
            when ``ensemble_networks`` retrains of the best member take less).
    """

    pop_size: int = 10
    num_children: int = 5
    hyperband: bool = True
    min_epochs: int = 4
    max_epochs: int = 32
    eta: int = 2
    max_time: float = 86400.0
    max_evaluations: int | None = None
    eval_time_limit: float | None = None
    eval_cost_share: float = 1 / 3
    seed: int = 123
    crossover_prob: float = 0.5
    tournament_size: int = 3
    random_search: bool = False
    inherit_weights: bool = False
    async_promotion: bool = False
    recipe_starts: bool = True
    distinct_children: bool = True
    remeasure: bool = True
    predictor: bool = True
    ensemble_steps: int = 25
    ensemble_bags: int = 20
    ensemble_networks: int = 32
    predictor_share: float = 0.5

    def __post_init__(self) -> None:
        require_int("pop_size", self.pop_size, low=2)
        require_int("num_children", self.num_children, low=1)
        require_int("epochs", self.max_epochs, low=1)
        # numpy's and ConfigSpace's legacy seeding takes 32 bits
        require_int("seed", self.seed, low=0, high=2**32, high_open=True)
        require_number("max_time", self.max_time, low=0, low_open=True, finite=False)
        if self.max_evaluations is not None:
            require_int("max_evaluations", self.max_evaluations, low=1)
        require_number("eval_cost_share", self.eval_cost_share, low=0, high=1, low_open=True)
        if self.eval_time_limit is not None:
            require_number("eval_time_limit", self.eval_time_limit, low=0, low_open=True)
        require_number("crossover_prob", self.crossover_prob, low=0, high=1)
        require_int("tournament_size", self.tournament_size, low=1)
        require_int("ensemble_steps", self.ensemble_steps, low=1)
        require_int("ensemble_bags", self.ensemble_bags, low=0)
        require_int("ensemble_networks", self.ensemble_networks, low=1)
        require_number(
            "predictor_share", self.predictor_share, low=0, high=1, low_open=True, high_open=True
        )
        require(
            self.hyperband or not self.async_promotion, "async_promotion", True,
            "False without Hyperband rungs", hint="Add `--hyperband True`.",
        )  # fmt: skip
        # eta and min_epochs are checked with or without Hyperband, so that a bad value never
        # reaches run.json; min_epochs <= epochs only matters with Hyperband
        top = self.max_epochs if self.hyperband else max(self.max_epochs, self.min_epochs)
        HyperbandSchedule(self.min_epochs, top, self.eta)

    @property
    def max_eval_seconds(self) -> float:
        """The predicted cost cap of one full evaluation (see ``eval_cost_share``)."""
        return self.max_time * self.eval_cost_share

    @property
    def schedule(self) -> HyperbandSchedule | None:
        """The Hyperband schedule of each generation; None without Hyperband."""
        if not self.hyperband:
            return None
        return HyperbandSchedule(self.min_epochs, self.max_epochs, self.eta)

    def lr_segments(self, bracket: int | None, up_to: int | None = None) -> tuple[int, ...]:
        """The budgets a member's LR schedule is planned over: the rungs of its Hyperband
        ``bracket`` (one cycle over ``max_epochs`` without Hyperband or bracket), those up to
        ``up_to`` epochs when given (what a member scored at that budget was trained with)."""
        schedule = self.schedule
        if schedule is not None and bracket is not None:
            budgets: tuple[int, ...] = schedule.bracket(bracket).budgets
        else:
            budgets = (self.max_epochs,)
        return tuple(b for b in budgets if up_to is None or b <= up_to)

    @property
    def algorithm(self) -> str:
        return algorithm_label(self.random_search, self.hyperband)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def check_max_params(
    space: ConfigurationSpace, constraints: Constraints, count: Callable[[Config], int]
) -> None:
    """Refuse a parameter limit below the smallest network the space can make, and a space
    whose smallest network does not fit the input (``count`` gives it ``sys.maxsize``)."""
    smallest = count(smallest_config(space, count))
    if smallest == sys.maxsize:
        raise ConfigError(
            f"Even the smallest network of the {space.name} space does not fit the input "
            "images (it pools or strides them below 1x1); allow fewer pools or strides, or use "
            "larger images."
        )
    if smallest > constraints.max_params.limit:
        raise ConfigError(
            f"The max model size {constraints.max_params.limit:,} is smaller than the smallest "
            f"network of the {space.name} space ({smallest:,} parameters); raise it."
        )
