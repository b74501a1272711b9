"""Tests of evoband.search._hooks: the view of a search that callbacks get, and calling several callbacks."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pytest

from evoband.search._hooks import BaseCallback, CbAll, SearchView
from evoband.search._member import Member
from evoband.search._run import run_search
from evoband.search._settings import SearchSettings
from evoband.search._setup import SearchConfig
from evoband.training._constraints import Constraints
from evoband.training._results import Result, Status


def member(member_id: int, top3: float, precision: float) -> Member:
    m = Member(member_id=member_id, config={}, seed=member_id, num_params=10)
    m.results[2] = Result(top3, top3, precision, 10, 2, 1.0, Status.OK)
    return m


def view(members: Sequence[Member]) -> SearchView:
    return SearchView(
        settings=SearchSettings(),
        constraints=Constraints.of(100, 0.5),
        run_dir=Path("run"),
        generation=0,
        members=tuple(members),
        population=tuple(members),
        n_evaluations=len(members),
        elapsed=1.0,
        replaying=False,
    )


def test_the_view_names_the_best_member_and_is_read_only() -> None:
    infeasible, feasible = member(0, 0.9, 0.4), member(1, 0.6, 0.6)
    search = view([infeasible, feasible, Member(member_id=2, config={}, seed=2, num_params=10)])
    assert search.best is feasible
    assert view([]).best is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        search.generation = 1  # type: ignore[misc]


class Recorder(BaseCallback):
    """Records the hooks it gets (only on_evaluation and on_run_end are overridden)."""

    def __init__(self, name: str, calls: list[tuple[str, str]]) -> None:
        self.name, self.calls = name, calls

    def on_evaluation(self, search: SearchView, member: Member, result: Result) -> None:
        self.calls.append((self.name, f"evaluation {member.member_id}"))

    def on_run_end(self, search: SearchView, best: Member | None) -> None:
        self.calls.append((self.name, "end"))


def test_cb_all_calls_each_callback_in_order_and_base_hooks_do_nothing() -> None:
    calls: list[tuple[str, str]] = []
    both = CbAll(Recorder("a", calls), Recorder("b", calls))
    m = member(0, 0.5, 0.5)
    search = view([m])
    both.on_run_start(search)
    both.on_evaluation(search, m, m.results[2])
    both.on_generation_end(search, 0, [m])
    both.on_run_end(search, m)
    assert calls == [("a", "evaluation 0"), ("b", "evaluation 0"), ("a", "end"), ("b", "end")]


class Replaying(BaseCallback):
    def __init__(self) -> None:
        self.seen: list[bool] = []

    def on_evaluation(self, search: SearchView, member: Member, result: Result) -> None:
        self.seen.append(search.replaying)


def test_a_resumed_search_replays_its_recorded_evaluations_first(
    tmp_path: Path, tiny_image_root: Path
) -> None:
    def search(evaluations: int, resume: bool) -> list[bool]:
        settings = SearchSettings(
            pop_size=3, min_epochs=1, max_epochs=2, max_evaluations=evaluations, max_time=600
        )
        config = SearchConfig(
            settings=settings,
            max_params=50_000,
            data_dir=str(tiny_image_root),
            run_dir=str(tmp_path / "run"),
            resume=resume,
            progress=False,
        )
        callback = Replaying()
        run_search(config, callbacks=[callback])
        return callback.seen

    assert search(2, resume=False) == [False, False]
    assert search(4, resume=True) == [True, True, False, False]


class AskToStop(BaseCallback):
    def on_generation_end(
        self, search: SearchView, generation: int, population: Sequence[Member]
    ) -> None:
        search.request_stop(f"enough at generation {generation}")


def test_a_stop_request_is_signed_by_the_callback_that_made_it_and_the_first_stands() -> None:
    calls: list[tuple[str, str]] = []
    search = view([member(0, 0.5, 0.5)])
    assert not search.stop
    CbAll(Recorder("r", calls), CbAll(AskToStop()), AskToStop()).on_generation_end(search, 4, [])
    assert search.stop.by == "AskToStop" and search.stop.reason == "enough at generation 4"
    search.request_stop("later")
    assert search.stop.describe() == "stop requested by AskToStop: enough at generation 4"
