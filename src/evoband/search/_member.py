"""An individual of the population: genotype, lineage, results per budget."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..space._spaces import Config
from ..training._results import Result, StrEnum, standing_budget

if TYPE_CHECKING:
    from ..training._constraints import Constraints


class Origin(StrEnum):
    """How a member was made; the values are what the ledger stores."""

    SAMPLED = "sampled"
    DEFAULT = "default"
    RECIPE = "recipe"
    MUTATED = "mutated"
    RECOMBINED = "recombined"
    REPEATED = "repeated"
    """Its first parent's configuration again, under another seed (a re-measurement)."""


@dataclass
class Member:
    """One evaluated (or to be evaluated) configuration.

    Attributes:
        member_id: unique within a run, in creation order.
        config: the genotype.
        seed: fixes the member's weight initialisation and training randomness.
        num_params: counted before training.
        origin: how it was made (:class:`Origin`).
        parents: ids of the members it was made from.
        generation: the generation that made it (0 = initial population).
        bracket: the Hyperband bracket it was made for, if any.
        results: evaluation results keyed by budget (epochs).
        checkpoint_dir: where its fold checkpoints live while it may still be trained.
    """

    member_id: int
    config: Config
    seed: int
    num_params: int
    origin: Origin = Origin.SAMPLED
    parents: tuple[int, ...] = ()
    generation: int = 0
    bracket: int | None = None
    results: dict[int, Result] = field(default_factory=dict)
    checkpoint_dir: Path | None = None

    @property
    def epochs(self) -> int:
        """Epochs trained so far (the highest evaluated budget)."""
        return max(self.results, default=0)

    @property
    def status(self) -> str:
        """The status of the result that stands for it (:attr:`result`), or ``pending``."""
        return self.result.status if self.result is not None else "pending"

    @property
    def result(self) -> Result | None:
        """The result that stands for the member (see :func:`evoband.training._results.standing_budget`):
        at its highest budget that finished ``ok``, else its latest."""
        budget = standing_budget({b: r.status for b, r in self.results.items()})
        return None if budget is None else self.results[budget]

    def to_dict(self) -> dict[str, Any]:
        """Genotype, lineage and the standing result (fold details left out), JSON-able."""
        result = self.result
        return {
            "member_id": self.member_id,
            "config": dict(self.config),
            "seed": self.seed,
            "num_params": self.num_params,
            "origin": str(self.origin),
            "parents": list(self.parents),
            "generation": self.generation,
            "bracket": self.bracket,
            "epochs": self.epochs,
            "result": None
            if result is None
            else {k: v for k, v in result.to_dict().items() if k != "folds"},
        }

    def describe(self) -> str:
        made = (
            self.origin
            if not self.parents
            else f"{self.origin} from {', '.join(map(str, self.parents))}"
        )
        return f"member {self.member_id} ({made})"


def rank_members(
    members: Iterable[Member], constraints: Constraints, budget: int | None = None
) -> list[Member]:
    """Feasibility-first order, best first (ties: older member first).

    Members are compared by their :attr:`Member.result`, or by their result at ``budget``.
    """
    return constraints.ranked(
        members,
        result=lambda m: m.results.get(budget) if budget is not None else m.result,
        member_id=lambda m: m.member_id,
    )


def best_member(members: Iterable[Member], constraints: Constraints) -> Member | None:
    """The best evaluated member (the most precise one if none is feasible); None if none is.

    A configuration re-measured under other seeds (members of origin ``repeated``) competes
    with the mean of its seeds' results (:func:`standing_result`); the member returned is the
    first of them.
    """
    evaluated = [m for m in members if m.results]
    repeats = repeats_of(evaluated)
    ranked = constraints.ranked(
        [m for m in evaluated if m.origin != Origin.REPEATED],
        result=lambda m: standing_result(m, repeats),
        member_id=lambda m: m.member_id,
    )
    return ranked[0] if ranked else None


def repeats_of(members: Iterable[Member]) -> dict[int, list[Member]]:
    """``member_id -> its re-measurements`` (members of origin ``repeated``)."""
    found: dict[int, list[Member]] = {}
    for m in members:
        if m.origin == Origin.REPEATED and m.parents:
            found.setdefault(m.parents[0], []).append(m)
    return found


def standing_result(member: Member, repeats: Mapping[int, Sequence[Member]]) -> Result | None:
    """``member``'s standing result, as the mean over its seeds when it was re-measured at that
    budget (see :meth:`Result.seed_mean`)."""
    result = member.result
    if result is None or not result.ok:
        return result
    again = [r.results.get(result.epochs) for r in repeats.get(member.member_id, ())]
    same = [r for r in again if r is not None and r.ok]
    return Result.seed_mean([result, *same]) if same else result


def population_summary(
    population: Sequence[Member], members: Iterable[Member], constraints: Constraints
) -> dict[str, Any]:
    """The scores of a generation (as the ledger's generations and ``progress.csv`` hold them).

    Average and best top-3 and precision over the population's ``ok`` results; the ids of the
    population; the best feasible top-3 and the number of feasible members among ``members``.
    """
    results = [m.result for m in population if m.result is not None and m.result.ok]
    feasible = [
        m.result for m in members if m.result is not None and constraints.feasible(m.result)
    ]
    return {
        "population": [m.member_id for m in population],
        "avg_acc": float(np.mean([r.top3 for r in results])) if results else None,
        "best_acc": max((r.top3 for r in results), default=None),
        "avg_prec": float(np.mean([r.precision for r in results])) if results else None,
        "best_prec": max((r.precision for r in results), default=None),
        "best_feasible_acc": max((r.top3 for r in feasible), default=None),
        "n_feasible": len(feasible),
    }
