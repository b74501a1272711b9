"""The ledger's record of asynchronous decisions: which member was to be trained to which budget,
in the order decided, and how many results the search knew when it decided.

With asynchronous promotion (:mod:`evoband.search._async`) what the search decides depends on the
order in which results came in, which differs from run to run with several workers. The order
of the evaluations in the ledger and these decisions are enough to repeat every decision on
resume: before decision ``k`` the search had seen exactly the first ``known`` evaluations.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._ledger import RunStore
from ._schema import DECISIONS_TABLE


@dataclass(frozen=True)
class Decision:
    """Train ``member_id`` to ``epochs``, decided after the first ``known`` evaluations."""

    member_id: int
    epochs: int
    known: int


class DecisionLog:
    """Reads and appends the decisions of a run's ledger (the table is made on first use, so
    synchronous runs keep the ledger of before)."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    def record(self, decision: Decision) -> None:
        """Commit ``decision`` (before anything is trained for it)."""
        with self.store.transaction() as c:
            c.execute(DECISIONS_TABLE)
            c.execute(
                "INSERT INTO decisions (member_id, epochs, known) VALUES (?, ?, ?)",
                (decision.member_id, decision.epochs, decision.known),
            )

    def decisions(self) -> list[Decision]:
        """Every recorded decision, in the order made."""
        if not self.store._has_table("decisions"):
            return []
        rows = self.store.conn.execute(
            "SELECT member_id, epochs, known FROM decisions ORDER BY seq"
        )
        return [Decision(*row) for row in rows]

    def evaluation_order(self) -> list[tuple[int, int]]:
        """``(member_id, epochs)`` of every recorded evaluation, in the order recorded."""
        rows = self.store.conn.execute("SELECT member_id, epochs FROM evaluations ORDER BY rowid")
        return [(m, e) for m, e in rows]
