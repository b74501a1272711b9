"""The callback interface of a search: the hooks, and the read-only view of the search they get.

The optimizer (:mod:`evoband.ea`) depends on this module only; the callbacks themselves
(progress bar, figures) live in :mod:`evoband.callbacks`. A callback is any object with the four
hooks of :class:`Callback`; subclass :class:`BaseCallback` to get no-op defaults and override
the hooks you need.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

from .constraints import Constraints
from .member import Member, best_member
from .results import Result
from .settings import SearchSettings

__all__ = ["BaseCallback", "Callback", "CbAll", "SearchView"]


@dataclass(frozen=True)
class SearchView:
    """What a callback may read of a search, as it stands when the hook is called.

    The optimizer builds one for every hook call. The members are the optimizer's own objects:
    read them, do not change them.

    Attributes:
        settings: budgets and schedule.
        constraints: the search's constraints.
        run_dir: the run directory (its ledger, exports and ``figures/``).
        generation: the current generation (0 = initial population).
        members: every member made so far, in creation order.
        population: the surviving population, best first (as of the last generation's end).
        n_evaluations: evaluations so far, replayed ones included.
        elapsed: seconds spent on the run, over all sessions.
        replaying: every evaluation so far was replayed from the ledger (a resumed run catching
            up with where it stopped).
    """

    settings: SearchSettings
    constraints: Constraints
    run_dir: Path
    generation: int
    members: tuple[Member, ...]
    population: tuple[Member, ...]
    n_evaluations: int
    elapsed: float
    replaying: bool

    @cached_property
    def best(self) -> Member | None:
        """The member the search would return now (see :func:`evoband.member.best_member`)."""
        return best_member(self.members, self.constraints)


class Callback(Protocol):
    """Hooks the optimizer calls as a search goes, in the order they are given.

    A hook must not change the search; an exception raised in one stops the search (the run can
    be resumed).
    """

    def on_run_start(self, search: SearchView) -> None:
        """Before the first evaluation (also on resume)."""

    def on_evaluation(self, search: SearchView, member: Member, result: Result) -> None:
        """After each evaluation (replayed ones included)."""

    def on_generation_end(
        self, search: SearchView, generation: int, population: Sequence[Member]
    ) -> None:
        """After each generation, with the surviving population (best first)."""

    def on_run_end(self, search: SearchView, best: Member | None) -> None:
        """When the search stops, for whatever reason."""


class BaseCallback:
    """A :class:`Callback` whose hooks do nothing; override the ones you need."""

    def on_run_start(self, search: SearchView) -> None:
        return None

    def on_evaluation(self, search: SearchView, member: Member, result: Result) -> None:
        return None

    def on_generation_end(
        self, search: SearchView, generation: int, population: Sequence[Member]
    ) -> None:
        return None

    def on_run_end(self, search: SearchView, best: Member | None) -> None:
        return None


class CbAll(BaseCallback):
    """Several callbacks as one, called in order."""

    def __init__(self, *callbacks: Callback) -> None:
        self.callbacks = callbacks

    def on_run_start(self, search: SearchView) -> None:
        for cb in self.callbacks:
            cb.on_run_start(search)

    def on_evaluation(self, search: SearchView, member: Member, result: Result) -> None:
        for cb in self.callbacks:
            cb.on_evaluation(search, member, result)

    def on_generation_end(
        self, search: SearchView, generation: int, population: Sequence[Member]
    ) -> None:
        for cb in self.callbacks:
            cb.on_generation_end(search, generation, population)

    def on_run_end(self, search: SearchView, best: Member | None) -> None:
        for cb in self.callbacks:
            cb.on_run_end(search, best)
