"""Several evaluations trained together: their folds interleave on the workers, each evaluation
gets the results of training it alone, and the search's history does not depend on the workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evoband.execution._batches import Evaluation, train_together
from evoband.execution._dask import DaskExecutor
from evoband.search._hooks import BaseCallback, SearchView
from evoband.search._member import Member
from evoband.search._run import run_search
from evoband.search._settings import SearchSettings
from evoband.search._setup import SearchConfig
from evoband.training._data import load_data
from evoband.training._results import FoldResult, Result, Status
from evoband.training._target import SerialExecutor, Task, evaluate
from helpers import SMALL_CONFIG

CONFIGS = [
    dict(SMALL_CONFIG),
    {**SMALL_CONFIG, "learning_rate_init": 0.003},
    {**SMALL_CONFIG, "batch_size": 16},
]


def _evaluation(task: Task, owner: int, config: dict, epochs: int, **options) -> Evaluation:
    params = task.family.count_params(config, task.input_shape, task.n_classes)
    return Evaluation(owner, params, config, epochs, owner, **options)


def _train(task: Task, executor, evaluations, may_start=lambda e: True):
    folds: list[tuple[int, int]] = []
    results: dict[int, Result] = {}

    def on_done(evaluation: Evaluation, result: Result) -> None:
        assert evaluation.owner not in results, "an evaluation finished twice"
        results[evaluation.owner] = result

    def on_fold(evaluation: Evaluation, fold: FoldResult) -> None:
        folds.append((evaluation.owner, fold.fold))

    left = train_together(
        evaluations, task, executor, may_start=may_start, on_fold=on_fold, on_done=on_done
    )
    return results, folds, left


@pytest.mark.parametrize(
    "workers",
    [1, pytest.param(2, marks=pytest.mark.slow)],  # 2: a LocalCluster starts
)
def test_evaluations_trained_together_score_as_alone(tiny_image_root: Path, workers: int) -> None:
    task = Task(load_data(tiny_image_root), cv_folds=3, split_seed=1)
    alone = [evaluate(config, 2, task=task, seed=i) for i, config in enumerate(CONFIGS)]
    executor = DaskExecutor(workers) if workers > 1 else SerialExecutor()
    try:
        evaluations = [_evaluation(task, i, config, 2) for i, config in enumerate(CONFIGS)]
        results, folds, left = _train(task, executor, evaluations)
    finally:
        executor.close()
    assert left == []
    assert sorted(folds) == [(i, k) for i in range(3) for k in range(3)]
    if workers == 1:  # one at a time: in the order given
        assert folds == [(i, k) for i in range(3) for k in range(3)]
    for i, expected in enumerate(alone):
        got = results[i]
        assert [f.fold for f in got.folds] == [0, 1, 2]
        assert (got.top3, got.precision, got.num_params) == (
            expected.top3,
            expected.precision,
            expected.num_params,
        )


def test_a_refused_start_leaves_that_evaluation_and_the_later_ones(tiny_image_root: Path) -> None:
    task = Task(load_data(tiny_image_root), cv_folds=2, split_seed=1)
    evaluations = [_evaluation(task, i, config, 1) for i, config in enumerate(CONFIGS)]
    asked: list[int] = []

    def may_start(evaluation: Evaluation) -> bool:
        asked.append(evaluation.owner)
        return evaluation.owner == 0

    results, folds, left = _train(task, SerialExecutor(), evaluations, may_start)
    assert asked == [0, 1]
    assert list(results) == [0] and [e.owner for e in left] == [1, 2]
    assert folds == [(0, 0), (0, 1)]


def test_a_timed_out_fold_ends_its_evaluation_only(tiny_image_root: Path) -> None:
    task = Task(load_data(tiny_image_root), cv_folds=3, split_seed=1)
    evaluations = [
        _evaluation(task, 0, CONFIGS[0], 3, time_limit=0.0),
        _evaluation(task, 1, CONFIGS[1], 1),
    ]
    results, folds, left = _train(task, SerialExecutor(), evaluations)
    assert left == []
    assert results[0].status == Status.TIMED_OUT and len(results[0].folds) == 1
    assert folds == [(0, 0), (1, 0), (1, 1), (1, 2)]
    assert results[1].ok


class _Jobs(BaseCallback):
    """What the progress bar shows of the jobs: (training, waiting) at each evaluation."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def on_evaluation(self, search: SearchView, member: Member, result: Result) -> None:
        self.seen.append((search.training, search.waiting))


def _history(root: Path, run_dir: Path, workers: int) -> list[tuple]:
    settings = SearchSettings(
        pop_size=4,
        hyperband=True,
        min_epochs=1,
        max_epochs=4,
        max_evaluations=10,
        seed=5,
        eval_time_limit=600,  # time limits depend on the machine's load: keep them out of this test
    )
    config = SearchConfig(
        settings=settings,
        max_params=50_000,
        min_precision=0.3,
        data_dir=str(root),
        run_dir=str(run_dir),
        progress=False,
        workers=workers,
    )
    jobs = _Jobs()
    run_search(config, [jobs])
    # the initial population's first rung: 4 evaluations; when the first is in, the others are
    # waiting (1 worker) or some training already (2)
    training, waiting = jobs.seen[0]
    assert training + waiting == 3
    assert training == 0 if workers == 1 else training >= 1
    records = json.loads((run_dir / "automl_run.json").read_text())
    return sorted(
        (r["member_id"], r["epochs"], r["top3"], r["precision"], r["status"]) for r in records
    )


@pytest.mark.slow
def test_search_history_does_not_depend_on_the_workers(
    tiny_image_root: Path, tmp_path: Path
) -> None:
    serial = _history(tiny_image_root, tmp_path / "serial", 1)
    parallel = _history(tiny_image_root, tmp_path / "parallel", 2)
    assert len(serial) == 10
    assert parallel == serial
