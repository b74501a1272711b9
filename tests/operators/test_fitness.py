"""Fitness objects on hand-made results: each field, the guards, the timed-out penalty, weighted
sums, a member's fitness, and bad arguments."""

from __future__ import annotations

import math

import pytest

from evoband.core._errors import ConfigError
from evoband.operators._fitness import (
    Aggregate,
    NanGuard,
    Precision,
    Size,
    TimedOutPenalty,
    TopK,
    TrainTime,
    member_fitness,
)
from evoband.search._member import Member
from evoband.training._results import Result, Status


def result(
    top3: float = 0.9,
    top1: float = 0.6,
    precision: float = 0.7,
    num_params: int = 20_000,
    seconds: float = 30.0,
    status: Status = Status.OK,
) -> Result:
    return Result(
        top3=top3,
        top1=top1,
        precision=precision,
        num_params=num_params,
        epochs=9,
        seconds=seconds,
        status=status,
    )


def test_field_fitnesses_read_their_field() -> None:
    r = result()
    assert TopK(3)(r) == 0.9
    assert TopK(1)(r) == 0.6
    assert Precision()(r) == 0.7
    assert Size()(r) == -20_000
    assert Size(scale=100_000)(r) == pytest.approx(-0.2)
    assert TrainTime()(r) == -30.0
    assert TrainTime(scale=60)(r) == pytest.approx(-0.5)
    for fitness in (TopK(3), TopK(1), Precision(), Size(), TrainTime()):
        assert math.isnan(fitness(None))


def test_higher_is_better() -> None:
    small, big = result(num_params=1_000), result(num_params=50_000)
    fast, slow = result(seconds=5.0), result(seconds=50.0)
    assert Size()(small) > Size()(big)
    assert TrainTime()(fast) > TrainTime()(slow)
    assert TopK(3)(result(top3=0.95)) > TopK(3)(result(top3=0.5))


def test_aggregate_is_the_weighted_sum() -> None:
    r = result()
    combined = Aggregate({TopK(3): 1.0, Precision(): 0.5, Size(scale=100_000): 0.25})
    assert combined(r) == pytest.approx(0.9 + 0.35 - 0.05)
    top3 = TopK(3)
    twice = Aggregate([(top3, 1.0), (top3, 2.0)])
    assert twice(r) == pytest.approx(2.7)
    assert Aggregate({lambda res: 1.0: 3.0})(r) == 3.0  # a plain function is a fitness too
    assert math.isnan(combined(None))


@pytest.mark.parametrize("status", [Status.DIVERGED, Status.TIMED_OUT, Status.FAILED, Status.ERROR])
def test_nan_guard_replaces_results_that_are_not_ok(status: Status) -> None:
    guarded = NanGuard(TopK(3), -1.0)
    assert guarded(result(status=status)) == -1.0
    assert guarded(result()) == 0.9
    assert guarded(None) == -1.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_guard_replaces_non_finite_scores(bad: float) -> None:
    assert NanGuard(TopK(3), 0.0)(result(top3=bad)) == 0.0
    assert NanGuard(Precision(), 0.25)(result(precision=bad)) == 0.25


def test_nan_guard_keeps_the_statuses_it_is_told_to() -> None:
    guarded = NanGuard(TopK(3), 0.0, keep=[Status.TIMED_OUT])
    assert guarded(result(status=Status.TIMED_OUT)) == 0.9
    assert guarded(result(status=Status.DIVERGED)) == 0.0
    assert NanGuard(TopK(3), 0.0, keep=["timed_out"])(result(status=Status.TIMED_OUT)) == 0.9


def test_timed_out_penalty_lowers_only_timed_out_results() -> None:
    penalised = TimedOutPenalty(TopK(3), 0.5)
    assert penalised(result()) == 0.9
    assert penalised(result(status=Status.TIMED_OUT)) == pytest.approx(0.45)
    assert penalised(result(status=Status.DIVERGED)) == 0.9
    assert math.isnan(penalised(None))
    size = TimedOutPenalty(Size(), 0.5)  # a negative score is lowered too
    assert size(result(status=Status.TIMED_OUT)) == -40_000
    assert TimedOutPenalty(Size(), 0.0)(result(status=Status.TIMED_OUT)) == -math.inf
    assert TimedOutPenalty(TopK(3), 1.0)(result(status=Status.TIMED_OUT)) == 0.9


def test_the_composition_of_the_module_docstring() -> None:
    fitness = NanGuard(TimedOutPenalty(TopK(3), 0.5), 0.0, keep=[Status.TIMED_OUT])
    assert fitness(result()) == 0.9
    assert fitness(result(status=Status.TIMED_OUT)) == pytest.approx(0.45)
    assert fitness(result(status=Status.FAILED)) == 0.0
    assert fitness(result(top3=float("nan"))) == 0.0
    assert fitness(None) == 0.0


def test_member_fitness_scores_the_standing_result() -> None:
    member = Member(member_id=1, config={}, seed=0, num_params=20_000)
    score = member_fitness(NanGuard(TopK(3), -1.0))
    assert score(member) == -1.0  # not evaluated yet
    member.results[3] = result(top3=0.5)
    member.results[9] = result(top3=0.8, status=Status.TIMED_OUT)
    assert score(member) == 0.5  # the highest ok budget stands
    member.results[27] = result(top3=0.85)
    assert score(member) == 0.85


@pytest.mark.parametrize(
    "make",
    [
        lambda: TopK(2),
        lambda: TopK(True),
        lambda: Size(0),
        lambda: Size(-1.0),
        lambda: TrainTime(float("inf")),
        lambda: Aggregate({}),
        lambda: Aggregate({TopK(3): float("nan")}),
        lambda: Aggregate({TopK(3): "1"}),
        lambda: Aggregate([("top3", 1.0)]),
        lambda: NanGuard(TopK(3), float("nan")),
        lambda: NanGuard(TopK(3), None),
        lambda: NanGuard(TopK(3), 0.0, keep=["not_a_status"]),
        lambda: NanGuard(0.9, 0.0),
        lambda: TimedOutPenalty(TopK(3), 1.5),
        lambda: TimedOutPenalty(TopK(3), -0.1),
        lambda: TimedOutPenalty(TopK(3), float("nan")),
    ],
)
def test_bad_arguments_are_config_errors(make) -> None:
    with pytest.raises(ConfigError) as info:
        make()
    assert "\n" not in str(info.value)
