"""Fold workers on this machine (a Dask LocalCluster): a search with them, their devices, serial
results. Killed workers and checkpoint continuation: tests/execution/test_dask_executor.py."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from evoband.core._errors import ConfigError
from evoband.execution._cluster import worker_devices
from evoband.execution._dask import DaskExecutor
from evoband.execution._executors import make_executor
from evoband.nets._family import SHIPPED
from evoband.search._run import run_search
from evoband.search._settings import SearchSettings
from evoband.search._setup import SearchConfig, auto_workers
from evoband.training._data import load_data
from evoband.training._target import Task, evaluate
from helpers import SMALL_CONFIG


@pytest.mark.slow
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
        DaskExecutor(0)


def test_each_worker_gets_a_gpu_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert worker_devices(cpu, 3) == [cpu, cpu, cpu]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cuda = torch.device("cuda")
    assert worker_devices(cuda, 2) == [torch.device("cuda", 0), torch.device("cuda", 1)]
    assert auto_workers(cuda) == 2
    with pytest.raises(ConfigError, match="3 workers but 2 visible GPUs.*--workers 2"):
        worker_devices(cuda, 3)
    with pytest.raises(ConfigError, match="3 workers but 2 visible GPUs"):
        make_executor(3, cuda, SHIPPED)  # refused before any worker starts
    with pytest.raises(ConfigError, match="not on mps"):
        worker_devices(torch.device("mps"), 2)


def test_a_task_moves_its_folds_and_stays_where_it_was(tiny_image_root: Path) -> None:
    task = Task(load_data(tiny_image_root), cv_folds=2)
    assert task.on("cpu") is task
    moved = task.on("meta")
    assert moved.device == torch.device("meta") and task.device == torch.device("cpu")
    assert all(t.is_meta for s in moved.splits for t in dataclasses.astuple(s))
    assert all(not t.is_meta for s in task.splits for t in dataclasses.astuple(s))
    assert len(moved.splits) == 2 and moved.splits[0].x_train.shape == task.splits[0].x_train.shape


@pytest.mark.slow
def test_workers_on_given_devices_train_as_serial(tiny_image_root: Path) -> None:
    task = Task(load_data(tiny_image_root), cv_folds=2, split_seed=1)
    serial = evaluate(SMALL_CONFIG, 2, task=task, seed=4)
    executor = DaskExecutor(2, devices=[torch.device("cpu"), torch.device("cpu")])
    try:
        parallel = evaluate(SMALL_CONFIG, 2, task=task, seed=4, executor=executor)
    finally:
        executor.close()
    assert [(f.top3, f.precision) for f in parallel.folds] == [
        (f.top3, f.precision) for f in serial.folds
    ]
