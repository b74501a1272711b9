"""The Hyperband bracket schedule: a small pure object that can be printed and serialised."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TypeVar

from ..core._validate import require_int

T = TypeVar("T")


@dataclass(frozen=True)
class Bracket:
    """One successive-halving bracket: how many members reach each rung, at which budget."""

    s: int
    n_members: tuple[int, ...]
    budgets: tuple[int, ...]

    def rungs(self) -> str:
        """Its rungs as ``members x epochs``, e.g. ``8x4  4x8  2x16  1x32``."""
        return "  ".join(f"{n}x{r}" for n, r in zip(self.n_members, self.budgets, strict=True))

    def epochs_cost(self) -> int:
        """Epochs trained per fold when every promoted member continues from its checkpoint."""
        cost, previous = 0, 0
        for n, budget in zip(self.n_members, self.budgets, strict=True):
            cost += n * (budget - previous)
            previous = budget
        return cost


@dataclass(frozen=True)
class HyperbandSchedule:
    """Brackets s = s_max..0 for budgets ``min_epochs``..``max_epochs`` with halving rate ``eta``.

    Rung ``i`` of bracket ``s`` trains ``min_epochs * eta**(s_max - s + i)`` epochs, except the last
    rung of every bracket, which is exactly ``max_epochs``. Bracket ``s`` starts
    ``ceil((s_max + 1) / (s + 1) * eta**s)`` members and keeps ``floor(n / eta**i)`` at rung ``i``.
    """

    min_epochs: int
    max_epochs: int
    eta: int

    def __post_init__(self) -> None:
        require_int("eta", self.eta, low=2, owner="Hyperband")
        require_int("min_epochs", self.min_epochs, low=1, owner="Hyperband")
        require_int("max_epochs", self.max_epochs, low=1, owner="Hyperband")
        require_int(
            "min_epochs", self.min_epochs, high=self.max_epochs, owner="Hyperband",
            hint="Lower it, or raise the epochs.",
        )  # fmt: skip

    @property
    def s_max(self) -> int:
        s = 0
        while self.min_epochs * self.eta ** (s + 1) <= self.max_epochs:
            s += 1
        return s

    def bracket(self, s: int) -> Bracket:
        s_max = self.s_max
        n = math.ceil((s_max + 1) / (s + 1) * self.eta**s)
        budgets = [self.min_epochs * self.eta ** (s_max - s + i) for i in range(s)] + [
            self.max_epochs
        ]
        members = [max(1, n // self.eta**i) for i in range(s + 1)]
        return Bracket(s, tuple(members), tuple(budgets))

    def initial_bracket(self, n: int) -> Bracket:
        """The bracket an initial population of ``n`` climbs: the most aggressive bracket's rungs,
        ``floor(n / eta**i)`` members (at least one) at rung ``i``."""
        top = self.bracket(self.s_max)
        members = tuple(max(1, n // self.eta**i) for i in range(len(top.budgets)))
        return Bracket(top.s, members, top.budgets)

    @property
    def brackets(self) -> list[Bracket]:
        """Brackets in the order one Hyperband iteration runs them: most aggressive first."""
        return [self.bracket(s) for s in range(self.s_max, -1, -1)]

    def epochs_cost(self) -> int:
        """Epochs per fold of one whole iteration (one generation)."""
        return sum(b.epochs_cost() for b in self.brackets)

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "brackets": [asdict(b) for b in self.brackets]}

    def __str__(self) -> str:
        lines = [
            f"Hyperband schedule: epochs {self.min_epochs}..{self.max_epochs}, eta {self.eta}, s_max {self.s_max}"
        ]
        for b in self.brackets:
            lines.append(
                f"  bracket s={b.s}: {b.rungs()}   (members x epochs; {b.epochs_cost()} epochs per fold)"
            )
        lines.append(f"  one generation: {self.epochs_cost()} epochs per fold")
        return "\n".join(lines)


def promote(
    ranked: Sequence[T], finished_ok: Callable[[T], bool], n_next: int
) -> tuple[list[T], list[T]]:
    """Successive halving at one rung: who goes on to the next rung, and who is done.

    Args:
        ranked: the rung's members, best first (feasibility-first at the rung's budget).
        finished_ok: whether a member's training at this rung finished ``ok`` (a timed-out,
            diverged or failed member is never promoted, however it ranks).
        n_next: places on the next rung (0 at the last rung).

    Returns:
        (promoted: the best ``n_next`` that finished ok, in rank order; released: all others,
        in rank order: their checkpoints can go).
    """
    promoted = [m for m in ranked if finished_ok(m)][: max(n_next, 0)]
    return promoted, [m for m in ranked if m not in promoted]
