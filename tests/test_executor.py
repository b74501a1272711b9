"""Worker processes train the folds of an evaluation in parallel, with serial results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evoband.data import load_data
from evoband.executor import ProcessExecutor
from evoband.search import SearchConfig, run_search
from evoband.settings import SearchSettings
from evoband.target import Task, evaluate
from helpers import SMALL_CONFIG


def test_parallel_folds_equal_serial_folds_and_continue_checkpoints(
    tiny_image_root: Path, tmp_path: Path
) -> None:
    task = Task(load_data(tiny_image_root), cv_folds=3, split_seed=1)
    serial = evaluate(SMALL_CONFIG, 3, task=task, seed=4)
    executor = ProcessExecutor(2)
    try:
        evaluate(
            SMALL_CONFIG, 1, task=task, seed=4, checkpoint_dir=tmp_path / "ckpt", executor=executor
        )
        parallel = evaluate(
            SMALL_CONFIG, 3, task=task, seed=4, checkpoint_dir=tmp_path / "ckpt", executor=executor
        )
    finally:
        executor.close()
    assert [f.fold for f in parallel.folds] == [0, 1, 2]
    for a, b in zip(serial.folds, parallel.folds, strict=True):
        assert (a.top3, a.precision, a.epochs) == (b.top3, b.precision, b.epochs)
        assert a.loss == pytest.approx(b.loss, abs=1e-6)
    assert all(f.checkpoint_sha256 for f in parallel.folds)


def test_search_with_workers_records_every_fold(tiny_image_root: Path, tmp_path: Path) -> None:
    settings = SearchSettings(
        pop_size=3,
        hyperband=True,
        min_epochs=1,
        max_epochs=2,
        max_evaluations=4,
        seed=2,
        eval_time_limit=600,  # time limits depend on the machine's load: keep them out of this test
    )
    config = SearchConfig(
        settings=settings,
        max_params=50_000,
        min_precision=0.3,
        data_dir=str(tiny_image_root),
        run_dir=str(tmp_path / "run"),
        progress=False,
        workers=2,
    )
    report = run_search(config)
    assert report.n_evaluations == 4
    records = json.loads((tmp_path / "run" / "automl_run.json").read_text())
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)


def test_workers_must_be_positive() -> None:
    with pytest.raises(Exception, match="workers"):
        ProcessExecutor(0)
