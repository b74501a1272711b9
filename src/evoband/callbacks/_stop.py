"""Stopping a search early when a target score is reached."""

from __future__ import annotations

from ..core._errors import ConfigError
from ..search._hooks import BaseCallback, SearchView
from ..search._member import Member
from ..training._results import Result


class StopAtTarget(BaseCallback):
    """Ends the search (cleanly, as its time budget does) once a feasible member reaches a target.

    Args:
        top3: the CV top-3 accuracy to reach, if any.
        precision: the CV precision to reach, if any. With both, both must be reached.
    """

    def __init__(self, top3: float | None = None, precision: float | None = None) -> None:
        if top3 is None and precision is None:
            raise ConfigError("StopAtTarget needs a target: pass top3, precision or both.")
        self.top3 = top3
        self.precision = precision

    def on_evaluation(self, search: SearchView, member: Member, result: Result) -> None:
        if not search.constraints.feasible(result):
            return
        if self.top3 is not None and result.top3 < self.top3:
            return
        if self.precision is not None and result.precision < self.precision:
            return
        search.request_stop(
            f"{member.describe()} reached top-3 {result.top3:.4f}, precision {result.precision:.4f}"
        )
