"""Worker processes train the folds of an evaluation in parallel, with serial results."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from evoband.data import load_data
from evoband.errors import ConfigError
from evoband.executor import ProcessExecutor, worker_devices
from evoband.family import SHIPPED
from evoband.results import Status
from evoband.run_executor import make_executor
from evoband.run_setup import auto_workers
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
        make_executor("process", 3, cuda, SHIPPED)  # refused before any worker starts
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


def test_workers_on_given_devices_train_as_serial(tiny_image_root: Path) -> None:
    task = Task(load_data(tiny_image_root), cv_folds=2, split_seed=1)
    serial = evaluate(SMALL_CONFIG, 2, task=task, seed=4)
    executor = ProcessExecutor(2, devices=[torch.device("cpu"), torch.device("cpu")])
    try:
        parallel = evaluate(SMALL_CONFIG, 2, task=task, seed=4, executor=executor)
    finally:
        executor.close()
    assert [(f.top3, f.precision) for f in parallel.folds] == [
        (f.top3, f.precision) for f in serial.folds
    ]


def kill_a_worker_once_training(executor: ProcessExecutor, after: float = 0.3) -> threading.Thread:
    """SIGKILL one of the executor's worker processes ``after`` seconds after they exist (while
    they start or train: jobs are in flight either way)."""

    def kill() -> None:
        while not getattr(executor._pool, "_processes", None):
            time.sleep(0.05)
        time.sleep(after)
        os.kill(next(iter(executor._pool._processes)), signal.SIGKILL)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


SLOW = dict(SMALL_CONFIG, n_channels_conv_0=48)
"""Folds of a few seconds: a worker is killed while it trains one."""


@pytest.mark.parametrize("retries", [2, 0])
def test_a_worker_killed_mid_job_is_survived(image_folder_factory, retries: int) -> None:
    task = Task(load_data(image_folder_factory("big", n_train=90, size=16)), cv_folds=3)
    executor = ProcessExecutor(2, retries=retries)
    try:
        executor.start(task)
        killer = kill_a_worker_once_training(executor)
        killed = evaluate(SLOW, 8, task=task, seed=4, executor=executor)
        killer.join()
        after = evaluate(SLOW, 1, task=task, seed=4, executor=executor)  # the pool works again
    finally:
        executor.close()
    assert after.ok
    if retries:  # the folds that died with the pool ran again, from scratch
        serial = evaluate(SLOW, 8, task=task, seed=4)
        assert [f.precision for f in killed.folds] == [f.precision for f in serial.folds]
    else:
        failed = [f for f in killed.folds if f.status == Status.FAILED]
        assert failed and all("died 1 time(s)" in f.message for f in failed)
        assert killed.status == Status.FAILED
