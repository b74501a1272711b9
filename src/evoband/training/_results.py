"""What an evaluation produces: statuses, per-fold and overall results, and which result stands
for a member.

Plain data, no torch: the store, the constraints, the members and the analysis of runs read
results without importing the training stack.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

import numpy as np

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - Python 3.10

    class StrEnum(str, Enum):
        """:class:`enum.StrEnum` of Python 3.11: members are their string values."""

        def __str__(self) -> str:
            return str(self.value)


class Status(StrEnum):
    """How an evaluation (or one fold of it) ended; the values are what the ledger stores."""

    OK = "ok"
    DIVERGED = "diverged"
    TIMED_OUT = "timed_out"
    FAILED = "failed"
    """A resource ran out (e.g. memory): not the configuration's fault, nor a bug."""
    ERROR = "error"
    """Training raised an unexpected exception (a bug); its traceback is in the ledger."""


_STATUS_ORDER = [Status.OK, Status.TIMED_OUT, Status.DIVERGED, Status.FAILED, Status.ERROR]
"""Best to worst: the worst fold status is an evaluation's status."""


@dataclass
class FoldResult:
    """The outcome of one fold at one budget."""

    fold: int
    top3: float
    top1: float
    precision: float
    loss: float
    epochs: int
    seconds: float
    status: Status = Status.OK
    message: str = ""
    checkpoint_sha256: str = ""
    predicted: list[int] = field(default_factory=list, repr=False)
    labels: list[int] = field(default_factory=list, repr=False)
    model: Any = field(default=None, repr=False, compare=False)
    inherited_from: tuple[int, ...] = field(default=(), repr=False, compare=False)
    """The ids of the parents whose weights the fold's model started from, the first parent
    first (see :mod:`evoband.nets._inherit`); empty when it started fresh."""
    traceback: str = field(default="", repr=False, compare=False)
    """With status ``error``: the formatted traceback of the exception training raised."""
    pending_checkpoint: str = field(default="", repr=False, compare=False)
    """Where the fold wrote its checkpoint, until the one recording the fold commits it to its
    place (:func:`evoband.training._checkpoints.commit_checkpoint`); empty when there is none."""
    probabilities: np.ndarray | None = field(default=None, repr=False, compare=False)
    """The model's class probabilities (softmax) on the fold's validation images, float16,
    ``N_valid x n_classes``: the fold's out-of-fold predictions (None when it was not scored)."""

    @property
    def inherited(self) -> bool:
        """The fold's model started from parent weights."""
        return bool(self.inherited_from)

    def to_dict(self) -> dict[str, Any]:
        """The scores (predictions only when kept; ``inherited`` and ``traceback`` only when
        set; never the model)."""
        d = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("model", "probabilities", "pending_checkpoint")
        }
        if self.inherited_from:
            d["inherited"] = True
        d.pop("inherited_from")
        if not self.traceback:
            d.pop("traceback")
        if not self.predicted:
            d.pop("predicted")
            d.pop("labels")
        return d


@dataclass
class Result:
    """The outcome of one evaluation: means over folds, per-fold values and an overall status."""

    top3: float
    top1: float
    precision: float
    num_params: int
    epochs: int
    seconds: float
    status: Status
    message: str = ""
    folds: list[FoldResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == Status.OK

    @classmethod
    def from_folds(cls, folds: list[FoldResult], num_params: int, epochs: int) -> Result:
        """Means over folds; the worst fold status is the result's status."""
        n = max(len(folds), 1)
        status = max((f.status for f in folds), key=_STATUS_ORDER.index, default=Status.FAILED)
        message = "; ".join(f"fold {f.fold}: {f.message}" for f in folds if f.message)
        return cls(
            top3=sum(f.top3 for f in folds) / n,
            top1=sum(f.top1 for f in folds) / n,
            precision=sum(f.precision for f in folds) / n,
            num_params=num_params,
            epochs=epochs,
            seconds=sum(f.seconds for f in folds),
            status=status,
            message=message,
            folds=folds,
        )

    @classmethod
    def seed_mean(cls, results: list[Result]) -> Result:
        """The mean of ``ok`` results of one configuration at one budget under several seeds
        (its CV without the luck of one seed); its folds are all of theirs."""
        n = len(results)
        return cls(
            top3=sum(r.top3 for r in results) / n,
            top1=sum(r.top1 for r in results) / n,
            precision=sum(r.precision for r in results) / n,
            num_params=results[0].num_params,
            epochs=results[0].epochs,
            seconds=sum(r.seconds for r in results),
            status=Status.OK,
            message=f"mean of {n} seeds",
            folds=[f for r in results for f in r.folds],
        )

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "folds"}
        d["folds"] = [f.to_dict() for f in self.folds]
        return d


def standing_budget(statuses: Mapping[int, str]) -> int | None:
    """The budget whose result stands for a member, given the status at each budget it reached.

    Its highest budget that finished ``ok``: a continuation that timed out or diverged does not
    erase what the member showed at a lower budget. A member with no ``ok`` result is
    represented by its latest one; one with no result by None. The optimizer
    (:attr:`evoband.search._member.Member.result`) and the analysis of runs
    (:func:`evoband.store._analysis.member_results`) both pick by this rule.
    """
    if not statuses:
        return None
    finished = [budget for budget, status in statuses.items() if status == Status.OK]
    return max(finished) if finished else max(statuses)
