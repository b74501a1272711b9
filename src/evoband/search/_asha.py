"""Asynchronous successive halving (ASHA): which member to promote, from the results each rung
has so far, without waiting for a rung to fill.

A member is promoted from rung ``i`` as soon as it ranks in the top ``1/eta`` of the results
rung ``i`` has at that moment (and its training there finished ``ok``); higher rungs are served
first. Pure bookkeeping: the search (:mod:`evoband.search._async`) trains and ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ._member import Member
from ._steps import finished_ok

Rank = Callable[[Sequence[Member], int], list[Member]]


class RungLadder:
    """The rungs' results so far and who was promoted from each.

    Args:
        budgets: the rungs' epochs, increasing; the last is the top rung.
        eta: the halving rate: the top ``1/eta`` of a rung are promoted.
    """

    def __init__(self, budgets: Sequence[int], eta: int) -> None:
        self.budgets = tuple(budgets)
        self.eta = eta
        self.finished: list[list[Member]] = [[] for _ in self.budgets]
        self._promoted: list[set[int]] = [set() for _ in self.budgets]

    @property
    def top(self) -> int:
        """The top rung's budget."""
        return self.budgets[-1]

    def rung_of(self, budget: int) -> int:
        """The rung that trains to ``budget`` epochs."""
        return self.budgets.index(budget)

    def add(self, member: Member, budget: int) -> None:
        """``member`` has a result at ``budget``."""
        self.finished[self.rung_of(budget)].append(member)

    def next_promotion(self, rank: Rank) -> tuple[Member, int] | None:
        """The member to train next and its new budget, or None when no promotion is due.

        ``rank(members, budget)`` orders members best first by their results at ``budget``.
        The member is marked as promoted.
        """
        for rung in range(len(self.budgets) - 2, -1, -1):
            budget = self.budgets[rung]
            ranked = rank(self.finished[rung], budget)
            for member in ranked[: len(ranked) // self.eta]:
                if member.member_id not in self._promoted[rung] and finished_ok(member, budget):
                    self._promoted[rung].add(member.member_id)
                    return member, self.budgets[rung + 1]
        return None

    def unlikely(self, budget: int, rank: Rank, keep: int) -> list[Member]:
        """Members of ``budget``'s rung (below the top) ranked after the best ``keep`` that are
        not promoted: their checkpoints can go (one promoted later retrains from scratch)."""
        rung = self.rung_of(budget)
        if budget == self.top:
            return []
        waiting = [m for m in self.finished[rung] if m.member_id not in self._promoted[rung]]
        return rank(waiting, budget)[keep:]
