"""Constraints and the one ranking used everywhere (rungs, survival, the returned optimum).

Ranking is feasibility first: feasible results by top-3 accuracy descending, then infeasible ones
by precision descending, then failed / diverged / timed-out ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ..core._errors import ConfigError
from ..core._validate import require_number
from ._results import Result

T = TypeVar("T")


class Constraint(ABC):
    """A hard constraint. ``before_training`` ones are checked on the parameter count alone."""

    name: str = "constraint"
    before_training: bool = False

    @abstractmethod
    def satisfied(self, result: Result) -> bool:
        """Whether ``result`` meets the constraint."""

    def describe(self) -> str:
        return self.name


class MaxParams(Constraint):
    """At most ``limit`` trainable parameters; known before training."""

    name = "max_params"
    before_training = True

    def __init__(self, limit: int) -> None:
        require_number("max_params", limit, low=1)
        self.limit = int(limit)

    def satisfied(self, result: Result) -> bool:
        return result.num_params <= self.limit

    def allows(self, num_params: int) -> bool:
        """Whether a network of ``num_params`` parameters may be trained at all."""
        return num_params <= self.limit

    def describe(self) -> str:
        return f"num_params <= {self.limit:,}"


class MinPrecision(Constraint):
    """CV precision of at least ``limit``; known only after training."""

    name = "min_precision"

    def __init__(self, limit: float) -> None:
        require_number("min_precision", limit, low=0, high=1, low_open=True)
        self.limit = float(limit)

    def satisfied(self, result: Result) -> bool:
        return result.precision >= self.limit

    def describe(self) -> str:
        return f"precision >= {self.limit:g}"


@dataclass
class Constraints:
    """The constraints of a search: max parameters and min precision.

    ``extra`` is refused: the ledger, the run's exports and the final predictor's selection know
    these two constraints only, so a further one would rank members but not the predictor.
    """

    max_params: MaxParams
    min_precision: MinPrecision
    extra: Sequence[Constraint] = ()

    def __post_init__(self) -> None:
        if self.extra:
            names = ", ".join(c.describe() for c in self.extra)
            raise ConfigError(
                f"Constraints takes max_params and min_precision only, not also {names}: a "
                "search, its ledger and its final predictor know those two; drop `extra` and "
                "filter the returned population instead."
            )

    @classmethod
    def of(cls, max_params: float, min_precision: float) -> Constraints:
        return cls(MaxParams(int(max_params)), MinPrecision(float(min_precision)))

    @property
    def all(self) -> list[Constraint]:
        return [self.max_params, self.min_precision, *self.extra]

    def violated(self, result: Result) -> list[Constraint]:
        """The constraints ``result`` breaks."""
        return [c for c in self.all if not c.satisfied(result)]

    def feasible(self, result: Result) -> bool:
        """A successful evaluation that meets every constraint."""
        return result.ok and not self.violated(result)

    def verdict(self, result: Result) -> str:
        """``feasible``, the status of a result that is not ok, or the constraints it violates."""
        if self.feasible(result):
            return "feasible"
        if not result.ok:
            return result.status
        return "violates " + ", ".join(c.describe() for c in self.violated(result))

    def rank_key(self, result: Result | None) -> tuple[int, float]:
        """Sort key, smaller is better: (group, -score). No result sorts last."""
        if result is None:
            return (3, 0.0)
        if not result.ok:
            return (2, -result.precision)
        if self.feasible(result):
            return (0, -result.top3)
        return (1, -result.precision)

    def ranked(
        self,
        items: Iterable[T],
        result: Callable[[T], Result | None],
        member_id: Callable[[T], int],
    ) -> list[T]:
        """``items`` in the one ranking order of evoband, best first.

        By :meth:`rank_key` of each item's result, ties to the older member (the smaller
        ``member_id``). Members (:func:`evoband.search._member.rank_members`) and ledger rows
        (:func:`evoband.store._analysis.rank`) are ranked by it.
        """
        return sorted(items, key=lambda item: (self.rank_key(result(item)), member_id(item)))
