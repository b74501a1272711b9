"""Tests of evoband.analysis, .summary and .significance on hand-made frames and synthetic runs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from evoband import analysis as an
from evoband.constraints import Constraints
from evoband.errors import StoreError
from evoband.member import SAMPLED
from evoband.store import RunStore
from evoband.target import FoldResult
from helpers import write_run


def frame_of(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A ledger-like frame; unspecified columns take harmless defaults."""
    base = {
        "status": "ok",
        "top1": 0.0,
        "seconds": 1.0,
        "elapsed": 0.0,
        "finished": 0.0,
        "generation": 0,
        "bracket": None,
        "rung": None,
        "epochs": 2,
        "origin": SAMPLED,
        "parents": (),
    }
    out = [{**base, "finished": float(i), "elapsed": float(i), **row} for i, row in enumerate(rows)]
    return pd.DataFrame(out)


LIMITS = Constraints.of(10_000, 0.5)


# -- ranking and constraint classes ----------------------------------------------------------


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
    run = an.read_run(write_run(tmp_path / "run", generations=1))
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
    run = an.read_run(write_run(tmp_path / "run", seed=3))
    results = an.member_results(run.evaluations)
    keys = [
        (run.constraints.rank_key(an.result_of(r)), r["member_id"])
        for r in results.to_dict("records")
    ]
    best = an.optimum(run.evaluations, run.constraints)
    assert best is not None and int(best["member_id"]) == min(keys)[1]


# -- traces ----------------------------------------------------------------------------------


def test_best_so_far_is_monotone_and_nan_until_first_feasible() -> None:
    best = an.best_so_far([0.9, 0.3, 0.5, 0.4, 0.8, 0.7], [False, False, True, True, False, True])
    assert np.isnan(best[:2]).all()
    np.testing.assert_allclose(best[2:], [0.5, 0.5, 0.5, 0.7])
    assert an.best_so_far([], []).size == 0


@pytest.mark.parametrize("x", ["elapsed", "evaluations", "epochs"])
def test_best_feasible_trace_is_monotone(tmp_path: Path, x: str, seed: int) -> None:
    run = an.read_run(write_run(tmp_path / "run", seed=seed))
    trace = an.best_feasible_trace(run, x)
    assert len(trace) == len(run.evaluations)
    assert np.all(np.diff(trace["x"]) >= 0)
    values = trace["best"].dropna().to_numpy()
    assert len(values) > 0 and np.all(np.diff(values) >= 0)
    first = int(np.argmax(trace["best"].notna().to_numpy()))
    assert trace["best"].iloc[first:].notna().all()


def test_cumulative_epochs_counts_only_extra_epochs_of_promoted_members() -> None:
    frame = frame_of(
        [
            {"member_id": 0, "epochs": 2},
            {"member_id": 1, "epochs": 2},
            {"member_id": 0, "epochs": 4},
            {"member_id": 0, "epochs": 8},
        ]
    )
    np.testing.assert_allclose(an.cumulative_epochs(frame, folds=3), [6, 12, 18, 30])
    # with the ledger's fold records: member 1's second fold timed out after 1 of 2 epochs
    frame["fold_epochs"] = [{0: 2, 1: 2}, {0: 2, 1: 1}, {0: 4, 1: 4}, {0: 8, 1: 8}]
    np.testing.assert_allclose(an.cumulative_epochs(frame), [4, 7, 11, 19])


def test_epochs_spent_of_a_run_match_its_fold_records(tmp_path: Path) -> None:
    path = tmp_path / "run"
    write_run(path, generations=1)
    store = RunStore(path)
    store.record_fold(0, 2, FoldResult(0, 0.5, 0.3, 0.5, 1.0, 2, 1.0))
    store.record_fold(0, 2, FoldResult(1, 0.5, 0.3, 0.5, 1.0, 1, 1.0, "timed_out"))
    store.close()
    run = an.read_run(path)
    frame = an.chronological(run.evaluations)
    assert frame["member_id"].iloc[0] == 0 and frame["fold_epochs"].iloc[0] == {0: 2, 1: 1}
    spent = an.cumulative_epochs(frame, run.cv_folds)
    assert spent[0] == 3 and spent[1] == 3 + 2 * 3  # member 1 has no fold records: 3 folds x 2


def test_step_on_grid_and_band() -> None:
    grid = np.array([0.0, 1.0, 1.5, 2.0, 3.0, 4.0])
    values = an.step_on_grid([1.0, 2.0], [0.2, 0.5], grid, end=3.0)
    np.testing.assert_allclose(values, [np.nan, 0.2, 0.2, 0.5, np.nan, np.nan])
    b = an.band([np.array([1.0, np.nan, 2.0]), np.array([3.0, 4.0, np.nan])], np.arange(3.0))
    np.testing.assert_allclose(b.mean, [2.0, 4.0, 2.0])
    np.testing.assert_allclose(b.std, [math.sqrt(2.0), 0.0, 0.0])
    assert b.n.tolist() == [2, 1, 1]


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


# -- reading runs and summaries --------------------------------------------------------------


def test_read_run_reports_unusable_directories(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        an.read_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="history.sqlite"):
        an.read_run(tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "history.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError):
        an.read_run(tmp_path / "broken")
    RunStore(tmp_path / "fresh").close()
    with pytest.raises(StoreError, match="no evaluations"):
        an.read_run(tmp_path / "fresh")


def test_read_run_takes_constraints_from_run_json_unless_overridden(tmp_path: Path) -> None:
    path = write_run(tmp_path / "run", max_params=12_345, min_precision=0.42)
    run = an.read_run(path)
    assert (run.constraints.max_params.limit, run.constraints.min_precision.limit) == (12_345, 0.42)
    assert run.algorithm == "EA+HB" and run.cv_folds == 3 and run.final_rungs == {2: 2, 1: 1, 0: 0}
    run = an.read_run(path, max_params=99, min_precision=0.9)
    assert (run.constraints.max_params.limit, run.constraints.min_precision.limit) == (99, 0.9)


def test_load_groups_by_algorithm_and_explicit_names(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", seed=1)
    b = write_run(tmp_path / "b", seed=2, random_search=True)
    c = write_run(tmp_path / "x" / "a", seed=3)
    groups, problems = an.load_groups(
        [(None, a), (None, b), ("mine", c), (None, tmp_path / "nope")]
    )
    assert list(groups) == ["EA+HB", "RS+HB", "mine"]
    assert groups["mine"][0].name == "a-2"  # folder names alike: made unique
    assert len(problems) == 1 and "nope" in problems[0]
