"""An individual of the population: genotype, lineage, results per budget."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .space import Config
from .target import Result

SAMPLED, DEFAULT, RECIPE, MUTATED, RECOMBINED = "sampled", "default", "recipe", "mutated", "recombined"


@dataclass
class Member:
    """One evaluated (or to be evaluated) configuration.

    Attributes:
        member_id: unique within a run, in creation order.
        config: the genotype.
        seed: fixes the member's weight initialisation and training randomness.
        num_params: counted before training.
        origin: sampled / default / recipe / mutated / recombined.
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
    origin: str = SAMPLED
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
        """The status of its latest evaluation, or ``pending``."""
        return self.result.status if self.result is not None else "pending"

    @property
    def result(self) -> Result | None:
        """The result that stands for the member: at the highest budget that finished ``ok``.

        A continuation that timed out or diverged does not erase what the member showed at a
        lower budget; a member with no ``ok`` result is represented by its latest one.
        """
        if not self.results:
            return None
        finished = [budget for budget, r in self.results.items() if r.ok]
        return self.results[max(finished) if finished else self.epochs]

    def describe(self) -> str:
        made = self.origin if not self.parents else f"{self.origin} from {', '.join(map(str, self.parents))}"
        return f"member {self.member_id} ({made})"
