"""Constraint objects and the one feasibility-first ranking."""

from __future__ import annotations

import math
import random

import pytest

from evoband.core._errors import ConfigError
from evoband.training._constraints import Constraint, Constraints, MaxParams, MinPrecision
from evoband.training._results import Result, Status

LIMITS = Constraints.of(max_params=1000, min_precision=0.5)


def result(
    top3: float, precision: float, num_params: int = 100, status: Status = Status.OK
) -> Result:
    return Result(
        top3=top3,
        top1=top3 / 2,
        precision=precision,
        num_params=num_params,
        epochs=2,
        seconds=1.0,
        status=status,
    )


def ranked(results: list[Result]) -> list[Result]:
    # shuffle first: the order must come from the key, not from the input order
    shuffled = results[:]
    random.Random(0).shuffle(shuffled)
    return sorted(shuffled, key=LIMITS.rank_key)


def test_feasible_by_top3_then_infeasible_by_precision_then_failed() -> None:
    feasible_hi = result(0.9, 0.6)
    feasible_lo = result(0.7, 0.99)  # more precise, but feasible ones rank by top-3
    infeasible_prec_hi = result(0.99, 0.45)  # best top-3 of all, but violates min precision
    infeasible_prec_lo = result(0.95, 0.1)
    too_big = result(0.99, 0.8, num_params=1001)  # infeasible: ranked by its precision
    failed = result(0.0, 0.0, status=Status.FAILED)
    diverged = result(0.0, 0.0, status=Status.DIVERGED)
    timed_out = result(
        0.95, 0.9, status=Status.TIMED_OUT
    )  # good scores, but not a finished evaluation
    order = ranked(
        [
            failed,
            infeasible_prec_lo,
            feasible_lo,
            too_big,
            diverged,
            timed_out,
            infeasible_prec_hi,
            feasible_hi,
        ]
    )
    assert order[:2] == [feasible_hi, feasible_lo]
    assert order[2:5] == [too_big, infeasible_prec_hi, infeasible_prec_lo]
    assert {id(r) for r in order[5:]} == {id(failed), id(diverged), id(timed_out)}
    # among unsuccessful results, the more precise one first
    assert order[5] is timed_out


def test_no_result_sorts_last() -> None:
    keys = sorted(
        [None, result(0.0, 0.0, status=Status.FAILED), result(0.1, 0.1)], key=LIMITS.rank_key
    )
    assert keys[-1] is None
    assert LIMITS.rank_key(None) > LIMITS.rank_key(result(0.0, 0.0, status=Status.FAILED))


def test_ranked_breaks_ties_by_member_id_and_says_each_verdict() -> None:
    a, b, c = result(0.8, 0.6), result(0.8, 0.9), result(0.9, 0.3)
    entries = [(5, a), (2, b), (1, c), (0, None)]
    order = LIMITS.ranked(entries, result=lambda e: e[1], member_id=lambda e: e[0])
    assert [member_id for member_id, _ in order] == [2, 5, 1, 0]  # a and b tie: the older first
    assert LIMITS.verdict(a) == "feasible"
    assert LIMITS.verdict(c) == "violates precision >= 0.5"
    assert LIMITS.verdict(result(0.9, 0.9, status=Status.DIVERGED)) == "diverged"


def test_ties_keep_equal_keys_and_sort_stably() -> None:
    a, b, c = result(0.8, 0.6), result(0.8, 0.9), result(0.8, 0.7, num_params=999)
    assert LIMITS.rank_key(a) == LIMITS.rank_key(b) == LIMITS.rank_key(c)
    # Python's sort is stable: equal keys keep their input order (the optimizer adds member id)
    assert sorted([b, c, a], key=LIMITS.rank_key) == [b, c, a]
    d, e = result(0.2, 0.3), result(0.9, 0.3)
    assert LIMITS.rank_key(d) == LIMITS.rank_key(e)


@pytest.mark.parametrize(
    "res, feasible, violated",
    [
        (result(0.5, 0.5, num_params=1000), True, []),  # both limits are inclusive
        (result(0.5, 0.49), False, ["min_precision"]),
        (result(0.5, 0.9, num_params=1001), False, ["max_params"]),
        (result(0.5, 0.1, num_params=5000), False, ["max_params", "min_precision"]),
        (result(0.9, 0.9, status=Status.FAILED), False, []),  # not ok: never feasible
    ],
)
def test_feasible_and_violated(res: Result, feasible: bool, violated: list[str]) -> None:
    assert LIMITS.feasible(res) is feasible
    assert [c.name for c in LIMITS.violated(res)] == violated


def test_max_params_known_before_training() -> None:
    limit = MaxParams(2e7)  # type: ignore[arg-type]
    assert limit.limit == 20_000_000 and isinstance(limit.limit, int)
    assert limit.before_training and not MinPrecision(0.5).before_training
    assert limit.allows(20_000_000) and not limit.allows(20_000_001)
    assert limit.describe() == "num_params <= 20,000,000"
    assert MinPrecision(0.39).describe() == "precision >= 0.39"


@pytest.mark.parametrize("limit", [0, -5, 0.5])
def test_max_params_validation(limit: float) -> None:
    with pytest.raises(ConfigError, match="max_params"):
        MaxParams(limit)  # type: ignore[arg-type]


@pytest.mark.parametrize("limit", [0, 0.0, -0.1, 1.5, 2, math.nan])
def test_min_precision_validation(limit: float) -> None:
    with pytest.raises(ConfigError, match="min_precision"):
        MinPrecision(limit)


@pytest.mark.parametrize("limit", [1e-9, 0.39, 1.0, 1])
def test_min_precision_accepts_the_interval(limit: float) -> None:
    assert MinPrecision(limit).limit == float(limit)


def test_constraints_of_validates_both() -> None:
    with pytest.raises(ConfigError):
        Constraints.of(0, 0.5)
    with pytest.raises(ConfigError):
        Constraints.of(1000, 0)
    both = Constraints.of(2e7, 0.39)
    assert [c.name for c in both.all] == ["max_params", "min_precision"]


def test_further_constraints_are_refused_not_dropped() -> None:
    class Latency(Constraint):
        name = "latency"

        def satisfied(self, result: Result) -> bool:
            return True

    with pytest.raises(ConfigError, match="latency"):
        Constraints(MaxParams(10), MinPrecision(0.5), extra=[Latency()])
