"""Persisting the population: ``population.json`` rewritten after every generation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..search._hooks import BaseCallback, SearchView
from ..search._member import Member
from ..store._exports import write_population


class Persist(BaseCallback):
    """Makes the population durable: ``population.json`` in the run directory, after every
    generation and when the search ends (AutoFlux's ``persist``; use the instance :data:`persist`).

    The file holds the generation, the evaluations so far, the constraints and the population,
    best first, each member with its configuration, lineage and standing result. The ledger and
    its exports (``opt_cfg.json``, ``automl_run.json``, ...) are written by the search itself
    after every evaluation; together they make a stopped run resumable from its run directory.
    """

    def on_generation_end(
        self, search: SearchView, generation: int, population: Sequence[Member]
    ) -> None:
        if not search.replaying:
            self.write(search, population)

    def on_run_end(self, search: SearchView, best: Member | None) -> None:
        self.write(search, search.population)

    @staticmethod
    def write(search: SearchView, population: Sequence[Member]) -> Path:
        """Write ``population.json`` for ``search`` now; return its path."""
        return write_population(
            search.run_dir,
            {
                "generation": search.generation,
                "n_evaluations": search.n_evaluations,
                "elapsed": search.elapsed,
                "constraints": {c.name: c.describe() for c in search.constraints.all},
                "best": None if search.best is None else search.best.member_id,
                "population": [{**m.to_dict(), "feasible": search.feasible(m)} for m in population],
            },
        )


persist = Persist()
"""The :class:`Persist` callback: ``fit(..., callbacks=[persist])``."""
