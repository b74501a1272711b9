"""Ensembles scored on a test split: averaged softmax outputs against their best member."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..core._validate import is_int, require
from ..training._metrics import Metrics, compute_metrics


@dataclass(frozen=True)
class EnsembleResult:
    """The test scores of an ensemble next to those of its best member.

    Attributes:
        member_ids: the members averaged, best first.
        metrics: the ensemble's scores on the test split (loss: the NLL of the averaged outputs).
        best_single: the scores of the first (best) of them alone.
        probabilities: the averaged softmax outputs, ``N_test x n_classes``.
        num_params: the trainable parameters of all its networks together (what a parameter
            limit on the ensemble as one model counts).
    """

    member_ids: tuple[int, ...]
    metrics: Metrics
    best_single: Metrics
    probabilities: torch.Tensor
    num_params: int

    def format(self) -> str:
        e, b = self.metrics, self.best_single
        return (
            f"Ensemble of {len(self.member_ids)} members {list(self.member_ids)} "
            f"({self.num_params:,} parameters): test top-3 "
            f"{e.top3:.4f}, precision {e.precision:.4f} (best single member: top-3 {b.top3:.4f}, "
            f"precision {b.precision:.4f})"
        )


def ensemble_size(k: int | str, population_size: int) -> int:
    """How many members ``k`` asks for: an int >= 1, or ``"half"`` of the population (rounded up).

    Raises:
        ConfigError: ``k`` is neither.
    """
    if k == "half":
        return max(1, math.ceil(population_size / 2))
    ok = is_int(k) and int(k) >= 1
    require(ok, "k", k, "an int >= 1 or 'half'", owner="the ensemble size")
    return int(k)


def combine(
    member_ids: Sequence[int],
    probabilities: Sequence[torch.Tensor],
    labels: torch.Tensor,
    num_params: int,
) -> EnsembleResult:
    """The ensemble of members' softmax outputs on one test split (the first member is the best).

    Args:
        member_ids: the members, best first.
        probabilities: each member's softmax outputs, ``N_test x n_classes``, in the same order.
        labels: the test labels.
        num_params: the members' trainable parameters together.
    """
    averaged = torch.stack(list(probabilities)).mean(dim=0)

    def score(p: torch.Tensor) -> Metrics:
        loss = torch.nn.functional.nll_loss(p.clamp_min(1e-12).log(), labels)
        return compute_metrics(p, labels, float(loss))

    return EnsembleResult(
        tuple(member_ids), score(averaged), score(probabilities[0]), averaged, num_params
    )
