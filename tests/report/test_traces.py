"""Tests of evoband.report._traces: best feasible so far, epochs spent, bands over the runs of a group."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from evoband.report import _traces as tr
from evoband.store._analysis import chronological
from evoband.store._ledger import RunStore
from evoband.store._runs import read_run
from evoband.training._results import FoldResult
from helpers import frame_of, write_run


def test_best_so_far_is_monotone_and_nan_until_first_feasible() -> None:
    best = tr.best_so_far([0.9, 0.3, 0.5, 0.4, 0.8, 0.7], [False, False, True, True, False, True])
    assert np.isnan(best[:2]).all()
    np.testing.assert_allclose(best[2:], [0.5, 0.5, 0.5, 0.7])
    assert tr.best_so_far([], []).size == 0


@pytest.mark.parametrize("x", ["elapsed", "evaluations", "epochs"])
def test_best_feasible_trace_is_monotone(tmp_path: Path, x: str, seed: int) -> None:
    run = read_run(write_run(tmp_path / "run", seed=seed))
    trace = tr.best_feasible_trace(run, x)
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
    np.testing.assert_allclose(tr.cumulative_epochs(frame, folds=3), [6, 12, 18, 30])
    # with the ledger's fold records: member 1's second fold timed out after 1 of 2 epochs
    frame["fold_epochs"] = [{0: 2, 1: 2}, {0: 2, 1: 1}, {0: 4, 1: 4}, {0: 8, 1: 8}]
    np.testing.assert_allclose(tr.cumulative_epochs(frame), [4, 7, 11, 19])


def test_epochs_spent_of_a_run_match_its_fold_records(tmp_path: Path) -> None:
    path = tmp_path / "run"
    write_run(path, generations=1)
    store = RunStore(path)
    store.record_fold(0, 2, FoldResult(0, 0.5, 0.3, 0.5, 1.0, 2, 1.0))
    store.record_fold(0, 2, FoldResult(1, 0.5, 0.3, 0.5, 1.0, 1, 1.0, "timed_out"))
    store.close()
    run = read_run(path)
    frame = chronological(run.evaluations)
    assert frame["member_id"].iloc[0] == 0 and frame["fold_epochs"].iloc[0] == {0: 2, 1: 1}
    spent = tr.cumulative_epochs(frame, run.cv_folds)
    assert spent[0] == 3 and spent[1] == 3 + 2 * 3  # member 1 has no fold records: 3 folds x 2


def test_step_on_grid_and_band() -> None:
    grid = np.array([0.0, 1.0, 1.5, 2.0, 3.0, 4.0])
    values = tr.step_on_grid([1.0, 2.0], [0.2, 0.5], grid, end=3.0)
    np.testing.assert_allclose(values, [np.nan, 0.2, 0.2, 0.5, np.nan, np.nan])
    b = tr.band([np.array([1.0, np.nan, 2.0]), np.array([3.0, 4.0, np.nan])], np.arange(3.0))
    np.testing.assert_allclose(b.mean, [2.0, 4.0, 2.0])
    np.testing.assert_allclose(b.std, [math.sqrt(2.0), 0.0, 0.0])
    assert b.n.tolist() == [2, 1, 1]
