"""Tests of evoband.store._analysis on hand-made frames and synthetic runs: results, ranking, feasibility."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from evoband.store import _analysis as an
from evoband.store._runs import read_run
from evoband.training._constraints import Constraints
from helpers import frame_of, write_run

LIMITS = Constraints.of(10_000, 0.5)


# -- results, ranking and constraint classes -------------------------------------------------


def test_constraint_classes_match_constraints() -> None:
    frame = frame_of(
        [
            {"member_id": 0, "top3": 0.8, "precision": 0.6, "num_params": 5_000},
            {"member_id": 1, "top3": 0.8, "precision": 0.4, "num_params": 5_000},
            {"member_id": 2, "top3": 0.8, "precision": 0.6, "num_params": 50_000},
            {"member_id": 3, "top3": 0.8, "precision": 0.4, "num_params": 50_000},
            {
                "member_id": 4,
                "top3": 0.8,
                "precision": 0.6,
                "num_params": 5_000,
                "status": "timed_out",
            },
            {
                "member_id": 5,
                "top3": 0.8,
                "precision": 0.5,
                "num_params": 10_000,
            },  # limits are inclusive
        ]
    )
    classes = an.constraint_classes(frame, LIMITS).tolist()
    assert classes == [an.BOTH, an.PARAMS_ONLY, an.PRECISION_ONLY, an.NEITHER, an.NOT_OK, an.BOTH]
    feasible = an.feasible_mask(frame, LIMITS)
    assert feasible.tolist() == [c == an.BOTH for c in classes]


def test_constraint_classes_agree_with_constraints_on_a_synthetic_run(tmp_path: Path) -> None:
    run = read_run(write_run(tmp_path / "run", generations=1))
    classes = an.constraint_classes(run.evaluations, run.constraints)
    for row, cls in zip(run.evaluations.to_dict("records"), classes, strict=True):
        result = an.result_of(row)
        violated = {c.name for c in run.constraints.violated(result)}
        expected = {
            frozenset(): an.BOTH,
            frozenset({"min_precision"}): an.PARAMS_ONLY,
            frozenset({"max_params"}): an.PRECISION_ONLY,
            frozenset({"max_params", "min_precision"}): an.NEITHER,
        }[frozenset(violated)]
        assert cls == (expected if result.ok else an.NOT_OK)


def test_optimum_is_feasibility_first_over_each_members_highest_budget() -> None:
    frame = frame_of(
        [
            {
                "member_id": 0,
                "epochs": 2,
                "top3": 0.95,
                "precision": 0.9,
                "num_params": 5_000,
            },  # superseded
            {"member_id": 0, "epochs": 4, "top3": 0.60, "precision": 0.9, "num_params": 5_000},
            {
                "member_id": 1,
                "epochs": 2,
                "top3": 0.99,
                "precision": 0.3,
                "num_params": 5_000,
            },  # infeasible
            {"member_id": 2, "epochs": 2, "top3": 0.70, "precision": 0.6, "num_params": 5_000},
            {
                "member_id": 3,
                "epochs": 2,
                "top3": 0.70,
                "precision": 0.7,
                "num_params": 5_000,
            },  # tie: older wins
        ]
    )
    best = an.optimum(frame, LIMITS)
    assert best is not None and int(best["member_id"]) == 2
    ranked = an.rank(an.member_results(frame), LIMITS)
    assert ranked["member_id"].tolist() == [2, 3, 0, 1]


def test_optimum_without_feasible_member_is_the_most_precise_ok_one() -> None:
    frame = frame_of(
        [
            {"member_id": 0, "top3": 0.9, "precision": 0.2, "num_params": 5_000},
            {"member_id": 1, "top3": 0.1, "precision": 0.45, "num_params": 5_000},
            {
                "member_id": 2,
                "top3": 0.0,
                "precision": 0.9,
                "num_params": 5_000,
                "status": "failed",
            },
        ]
    )
    best = an.optimum(frame, LIMITS)
    assert best is not None and int(best["member_id"]) == 1


def test_optimum_agrees_with_constraints_rank_key(tmp_path: Path) -> None:
    run = read_run(write_run(tmp_path / "run", seed=3))
    results = an.member_results(run.evaluations)
    keys = [
        (run.constraints.rank_key(an.result_of(r)), r["member_id"])
        for r in results.to_dict("records")
    ]
    best = an.optimum(run.evaluations, run.constraints)
    assert best is not None and int(best["member_id"]) == min(keys)[1]


def test_member_results_are_each_members_highest_ok_else_latest_evaluation() -> None:
    frame = frame_of(
        [
            {"member_id": 0, "epochs": 2, "status": "ok"},
            {"member_id": 0, "epochs": 16, "status": "ok"},
            {"member_id": 0, "epochs": 50, "status": "timed_out"},
            {"member_id": 1, "epochs": 2, "status": "diverged"},
            {"member_id": 1, "epochs": 4, "status": "timed_out"},
        ]
    )
    picked = an.member_results(frame)
    assert picked[["member_id", "epochs"]].values.tolist() == [[0, 16], [1, 4]]


# -- Pareto, Spearman, feasible fraction -----------------------------------------------------


def test_pareto_front_known_case() -> None:
    params = [100, 200, 200, 300, 400, 50, 400]
    top3 = [0.5, 0.6, 0.4, 0.6, 0.9, 0.2, 0.9]
    # 200/0.4 is dominated by 100/0.5, 300/0.6 by 200/0.6; the second 400/0.9 duplicates the first.
    assert an.pareto_mask(params, top3).tolist() == [True, True, False, False, True, True, False]
    frame = pd.DataFrame({"num_params": params, "top3": top3})
    front = an.pareto_front(frame)
    assert front["num_params"].tolist() == [50, 100, 200, 400]
    assert np.all(np.diff(front["top3"]) > 0)


def _rungs_frame(rung0: list[float], final: list[float], extra: list[float]) -> pd.DataFrame:
    rows = []
    for i, (a, b) in enumerate(zip(rung0, final, strict=True)):
        rows += [
            {"member_id": i, "epochs": 4, "bracket": 1, "rung": 0, "top3": a},
            {"member_id": i, "epochs": 8, "bracket": 1, "rung": 1, "top3": b},
        ]
    for j, a in enumerate(extra):  # stopped at rung 0
        rows.append({"member_id": 100 + j, "epochs": 4, "bracket": 1, "rung": 0, "top3": a})
    return frame_of([{**r, "precision": 0.5, "num_params": 1} for r in rows])


def test_spearman_per_rung_known_cases() -> None:
    table = an.spearman_per_rung(
        _rungs_frame([0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8], [0.9]), {1: 1}
    )
    assert table[["bracket", "rung", "epochs", "n"]].values.tolist() == [[1, 0, 4, 4]]
    assert table["rho"].iloc[0] == pytest.approx(1.0)
    reverse = an.spearman_per_rung(_rungs_frame([0.1, 0.2, 0.3, 0.4], [0.8, 0.7, 0.6, 0.5], []))
    assert reverse["rho"].iloc[0] == pytest.approx(-1.0)
    rung0, final = [0.3, 0.1, 0.4, 0.2, 0.5], [0.2, 0.1, 0.5, 0.4, 0.3]
    mixed = an.spearman_per_rung(_rungs_frame(rung0, final, []))
    assert mixed["rho"].iloc[0] == pytest.approx(stats.spearmanr(rung0, final).statistic)
    few = an.spearman_per_rung(_rungs_frame([0.1, 0.2], [0.3, 0.4], [0.5, 0.6]))
    assert few["n"].iloc[0] == 2 and math.isnan(few["rho"].iloc[0])
    # the schedule says rung 2 is final and nobody got there: n/a, not a correlation with rung 1
    unfinished = an.spearman_per_rung(_rungs_frame([0.1, 0.2, 0.3], [0.3, 0.4, 0.5], []), {1: 2})
    assert unfinished["n"].tolist() == [0, 0] and unfinished["rho"].isna().all()


def test_feasible_fraction_per_generation() -> None:
    frame = frame_of(
        [
            {"member_id": 0, "generation": 0, "top3": 0.5, "precision": 0.6, "num_params": 1_000},
            {"member_id": 1, "generation": 0, "top3": 0.5, "precision": 0.4, "num_params": 1_000},
            {"member_id": 2, "generation": 1, "top3": 0.5, "precision": 0.6, "num_params": 1_000},
            {
                "member_id": 2,
                "generation": 1,
                "epochs": 4,
                "top3": 0.5,
                "precision": 0.6,
                "num_params": 1_000,
            },
            {"member_id": 3, "generation": 1, "top3": 0.5, "precision": 0.6, "num_params": 99_000},
            {
                "member_id": 4,
                "generation": 1,
                "top3": 0.5,
                "precision": 0.6,
                "num_params": 1_000,
                "status": "diverged",
            },
        ]
    )
    table = an.feasible_fraction(frame, LIMITS)
    assert table["generation"].tolist() == [0, 1]
    assert table["n_evaluations"].tolist() == [2, 4]
    assert table["n_feasible"].tolist() == [1, 2]
    np.testing.assert_allclose(table["fraction"], [0.5, 0.5])
