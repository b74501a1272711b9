"""Tests of evoband.store._runs: reading run directories, their constraints, groups of runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from evoband.core._errors import StoreError
from evoband.store._ledger import RunStore
from evoband.store._runs import load_groups, read_run
from helpers import write_run


def test_read_run_reports_unusable_directories(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        read_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="history.sqlite"):
        read_run(tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "history.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError):
        read_run(tmp_path / "broken")
    RunStore(tmp_path / "fresh").close()
    with pytest.raises(StoreError, match="no evaluations"):
        read_run(tmp_path / "fresh")


def test_read_run_takes_constraints_from_run_json_unless_overridden(tmp_path: Path) -> None:
    path = write_run(tmp_path / "run", max_params=12_345, min_precision=0.42)
    run = read_run(path)
    assert (run.constraints.max_params.limit, run.constraints.min_precision.limit) == (12_345, 0.42)
    assert run.algorithm == "EA+HB" and run.cv_folds == 3 and run.final_rungs == {2: 2, 1: 1, 0: 0}
    run = read_run(path, max_params=99, min_precision=0.9)
    assert (run.constraints.max_params.limit, run.constraints.min_precision.limit) == (99, 0.9)


def test_load_groups_by_algorithm_and_explicit_names(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", seed=1)
    b = write_run(tmp_path / "b", seed=2, random_search=True)
    c = write_run(tmp_path / "x" / "a", seed=3)
    groups, problems = load_groups([(None, a), (None, b), ("mine", c), (None, tmp_path / "nope")])
    assert list(groups) == ["EA+HB", "RS+HB", "mine"]
    assert groups["mine"][0].name == "a-2"  # folder names alike: made unique
    assert len(problems) == 1 and "nope" in problems[0]
