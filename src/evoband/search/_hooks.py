"""The callback interface of a search: the hooks, and the read-only view of the search they get.

The optimizer (:mod:`evoband.search._optimizer`) depends on this module only; the callbacks themselves
(progress bar, figures) live in :mod:`evoband.callbacks._callbacks`. A callback is any object with the four
hooks of :class:`Callback`; subclass :class:`BaseCallback` to get no-op defaults and override
the hooks you need.

A callback may end the search: :meth:`SearchView.request_stop` stops it before its next
evaluation, as the end of its time budget does (the run's ``stopped_by`` names the callback).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Protocol

from ..training._constraints import Constraints
from ..training._results import Result
from ._member import Member, best_member
from ._settings import SearchSettings


@dataclass
class StopRequest:
    """A callback's request that the search stop, shared by every view of one search.

    Attributes:
        reason: why (empty: no stop was requested).
        by: the class name of the callback that asked (filled in by :class:`CbAll`).
    """

    reason: str = ""
    by: str = ""

    def __bool__(self) -> bool:
        return bool(self.reason)

    def describe(self) -> str:
        """How the run's ``stopped_by`` reports it."""
        return f"stop requested by {self.by or 'a callback'}: {self.reason}"


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
        training: evaluations training now (on the executor's workers).
        waiting: evaluations of the current rung waiting for a worker.
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
    training: int = 0
    waiting: int = 0
    stop: StopRequest = field(default_factory=StopRequest, repr=False, compare=False)

    def request_stop(self, reason: str) -> None:
        """Ask the search to end before its next evaluation, cleanly, as when its time budget
        ends: the last generation is recorded, the exports written and ``on_run_end`` called.

        The first request stands; later ones are ignored.

        Args:
            reason: why, for the run's ``stopped_by`` (e.g. ``"precision 0.61 >= 0.6"``).
        """
        if not self.stop:
            self.stop.reason = reason or "no reason given"

    @cached_property
    def best(self) -> Member | None:
        """The member the search would return now (see :func:`evoband.search._member.best_member`)."""
        return best_member(self.members, self.constraints)

    def feasible(self, member: Member) -> bool:
        """Whether ``member``'s standing result meets the search's constraints."""
        return member.result is not None and self.constraints.feasible(member.result)


class Callback(Protocol):
    """Hooks the optimizer calls as a search goes, in the order they are given.

    A hook must not change the search; it may ask it to end (:meth:`SearchView.request_stop`).
    An exception raised in a hook stops the search at once (the run can be resumed).
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
    """Several callbacks as one, called in order.

    When one of them requests a stop, the request is signed with its class name.
    """

    def __init__(self, *callbacks: Callback) -> None:
        self.callbacks = callbacks

    @staticmethod
    def _sign(search: SearchView, cb: Callback) -> None:
        if search.stop and not search.stop.by:
            search.stop.by = type(cb).__name__

    def on_run_start(self, search: SearchView) -> None:
        for cb in self.callbacks:
            cb.on_run_start(search)
            self._sign(search, cb)

    def on_evaluation(self, search: SearchView, member: Member, result: Result) -> None:
        for cb in self.callbacks:
            cb.on_evaluation(search, member, result)
            self._sign(search, cb)

    def on_generation_end(
        self, search: SearchView, generation: int, population: Sequence[Member]
    ) -> None:
        for cb in self.callbacks:
            cb.on_generation_end(search, generation, population)
            self._sign(search, cb)

    def on_run_end(self, search: SearchView, best: Member | None) -> None:
        for cb in self.callbacks:
            cb.on_run_end(search, best)
