"""Fitness as objects: each maps a :class:`~evoband.training._results.Result` (or None) to a float, higher
is better.

The basic ones read one field of the result and return NaN where there is no result;
:class:`NanGuard` turns NaN, infinities and failed evaluations into a fixed value, and
:class:`TimedOutPenalty` lowers the score of an evaluation that ran out of time. They compose::

    NanGuard(TimedOutPenalty(TopK(3), 0.5), 0.0, keep=[Status.TIMED_OUT])

scores an ok result by its top-3 accuracy, a timed-out one by half of it, anything else by 0.
:func:`member_fitness` applies a fitness to the result that stands for a member, e.g. as the
fitness of :class:`evoband.operators._strategies.SUSSelection`.

Fitness here is for selection among members; the one ranking of evoband (feasibility first,
:meth:`evoband.training._constraints.Constraints.rank_key`) is unchanged by it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from ..core._errors import ConfigError
from ..core._validate import require_number
from ..training._results import Result, Status


class Scored(Protocol):
    """Anything with a result that stands for it: a search's member."""

    @property
    def result(self) -> Result | None: ...


FitnessFn = Callable[[Result | None], float]
"""Anything that scores a result: a :class:`Fitness` or a plain function."""

NAN = float("nan")


class Fitness(ABC):
    """Maps a result (or None: not evaluated) to a float; higher is better."""

    @abstractmethod
    def __call__(self, result: Result | None) -> float:
        """The score of ``result``."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class TopK(Fitness):
    """Top-``k`` accuracy (``k`` is 1 or 3) of the result, in [0, 1]; NaN without a result."""

    def __init__(self, k: int = 3) -> None:
        if k not in (1, 3) or isinstance(k, bool):
            raise ConfigError(f"TopK: k is {k!r}, but must be 1 or 3 (the results hold those).")
        self.k = k

    def __call__(self, result: Result | None) -> float:
        if result is None:
            return NAN
        return float(result.top1 if self.k == 1 else result.top3)


class Precision(Fitness):
    """The result's (macro) precision, in [0, 1]; NaN without a result."""

    def __call__(self, result: Result | None) -> float:
        return NAN if result is None else float(result.precision)


class Size(Fitness):
    """Fewer parameters is better: ``-num_params / scale`` (<= 0); NaN without a result.

    With ``scale`` the parameter limit, a network within it scores in [-1, 0].
    """

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = require_number("scale", scale, low=0, low_open=True, owner="Size")

    def __call__(self, result: Result | None) -> float:
        return NAN if result is None else -float(result.num_params) / self.scale


class TrainTime(Fitness):
    """Faster training is better: ``-seconds / scale`` (<= 0, seconds summed over folds); NaN
    without a result."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = require_number("scale", scale, low=0, low_open=True, owner="TrainTime")

    def __call__(self, result: Result | None) -> float:
        return NAN if result is None else -float(result.seconds) / self.scale


class Aggregate(Fitness):
    """The weighted sum ``sum(weight * fitness(result))`` over ``{fitness: weight, ...}``.

    Pairs ``[(fitness, weight), ...]`` are accepted too (to use one fitness object twice). NaN
    if any part is NaN (guard the parts, or the sum, with :class:`NanGuard`).
    """

    def __init__(
        self, weights: Mapping[FitnessFn, float] | Iterable[tuple[FitnessFn, float]]
    ) -> None:
        pairs = list(weights.items() if isinstance(weights, Mapping) else weights)
        if not pairs:
            raise ConfigError("Aggregate needs at least one fitness with a weight.")
        for fitness, weight in pairs:
            if not callable(fitness):
                raise ConfigError(f"Aggregate: {fitness!r} is not a fitness (not callable).")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise ConfigError(
                    f"Aggregate: the weight of {fitness!r} is {weight!r}, not a number."
                )
            if not math.isfinite(weight):
                raise ConfigError(f"Aggregate: the weight of {fitness!r} is {weight}, not finite.")
        self.parts = [(fitness, float(weight)) for fitness, weight in pairs]

    def __call__(self, result: Result | None) -> float:
        return float(sum(weight * fitness(result) for fitness, weight in self.parts))


class NanGuard(Fitness):
    """``fitness(result)``, but ``value`` where there is no result, where the result's status is
    not ok (nor in ``keep``), or where the score is NaN or infinite.

    Args:
        fitness: the guarded fitness.
        value: the score of what is guarded against (a finite number, usually the worst score).
        keep: statuses besides ``ok`` whose (finite) scores are kept, e.g. ``[Status.TIMED_OUT]``
            under a :class:`TimedOutPenalty`.
    """

    def __init__(self, fitness: FitnessFn, value: float, keep: Iterable[Status] = ()) -> None:
        if not callable(fitness):
            raise ConfigError(f"NanGuard: {fitness!r} is not a fitness (not callable).")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"NanGuard: the value is {value!r}, but must be a number.")
        if not math.isfinite(value):
            raise ConfigError(f"NanGuard: the value is {value}, but must be finite.")
        try:
            self.keep = frozenset({Status.OK, *(Status(s) for s in keep)})
        except ValueError as exc:
            raise ConfigError(f"NanGuard: {exc}; statuses are {', '.join(Status)}.") from exc
        self.fitness, self.value = fitness, float(value)

    def __call__(self, result: Result | None) -> float:
        if result is None or result.status not in self.keep:
            return self.value
        score = float(self.fitness(result))
        return score if math.isfinite(score) else self.value


class TimedOutPenalty(Fitness):
    """``fitness(result)``, lowered for a result that timed out: a score ``s >= 0`` becomes
    ``s * factor``, a negative one ``s / factor`` (``-inf`` with factor 0). Other results keep
    their score.

    Args:
        fitness: the penalised fitness.
        factor: in [0, 1]; 1 leaves timed-out results as they are.
    """

    def __init__(self, fitness: FitnessFn, factor: float) -> None:
        if not callable(fitness):
            raise ConfigError(f"TimedOutPenalty: {fitness!r} is not a fitness (not callable).")
        if isinstance(factor, bool) or not (
            isinstance(factor, (int, float)) and 0.0 <= factor <= 1.0
        ):
            raise ConfigError(f"TimedOutPenalty: the factor is {factor!r}, but must be in [0, 1].")
        self.fitness, self.factor = fitness, float(factor)

    def __call__(self, result: Result | None) -> float:
        score = float(self.fitness(result))
        if result is None or result.status != Status.TIMED_OUT or math.isnan(score):
            return score
        if score >= 0.0:
            return score * self.factor
        return score / self.factor if self.factor > 0.0 else -math.inf


def member_fitness(fitness: FitnessFn) -> Callable[[Scored], float]:
    """``member -> fitness(member.result)``: a fitness of the result that stands for a member."""

    def score(member: Scored) -> float:
        return float(fitness(member.result))

    return score
