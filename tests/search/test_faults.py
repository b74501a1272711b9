"""Faults injected for real into searches on tiny data: each is recorded honestly, and the search
goes on, stops with a summary (a repeated bug) or stops with one clear error (a full disk) that
``--resume`` recovers from.

Where this is covered elsewhere: a truncated, damaged or missing checkpoint is retrained from
scratch (``test_target.py::test_damaged_checkpoint_retrains_from_scratch`` and, in a search,
``test_ea.py::test_corrupted_checkpoint_on_resume_is_retrained``); a truncated one is also
checked in a search below.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from test_ea import assert_same_evaluations, records, search_config

import AutoML
from evoband.core import _files as files
from evoband.core._errors import StoreWriteError
from evoband.search._faults import REPEATED_ERROR_LIMIT
from evoband.search._hooks import BaseCallback, SearchView
from evoband.search._member import Member
from evoband.search._run import run_search
from evoband.search._settings import SearchSettings
from evoband.search._setup import SearchConfig
from evoband.search._state import CRASH_LIMIT, CRASHED
from evoband.store._ledger import RunStore
from evoband.training._results import Result
from helpers import call_cli, error_lines, make_image_folder, read_json

CAP = 6


class Armed(BaseCallback):
    """Counts finished evaluations, so that a fault can strike chosen evaluations (0-based)."""

    def __init__(self, at: Callable[[int], bool]) -> None:
        self.at = at
        self.done = 0

    def on_evaluation(self, search: SearchView, member: Member, result: Result) -> None:
        self.done += 1

    @property
    def now(self) -> bool:
        return self.at(self.done)


def inject_into_training_loss(
    monkeypatch: pytest.MonkeyPatch, armed: Armed, fault: Callable[[torch.Tensor], torch.Tensor]
) -> None:
    """Replace the loss of the real training loop (not of scoring) by ``fault`` while armed
    (both criteria of the course space: cross entropy and MSE on the softmax outputs)."""

    def wrap(real: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def loss(logits: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            if armed.now and logits.requires_grad:  # a training step, not the validation pass
                return fault(logits)
            return real(logits, y, **kwargs)

        return loss

    for name in ("cross_entropy", "mse_loss"):
        monkeypatch.setattr(torch.nn.functional, name, wrap(getattr(torch.nn.functional, name)))


def shape_bug(logits: torch.Tensor) -> torch.Tensor:
    """A real shape error raised by torch inside the step (a head of the wrong width)."""
    wrong = torch.zeros(logits.shape[1] + 1, 4)
    return (logits @ wrong).sum()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("data") / "tiny")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """An uninterrupted search of CAP evaluations."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    run_search(search_config(data_dir, run_dir, cap=CAP))
    return run_dir


def statuses(run_dir: Path) -> list[str]:
    return [r["status"] for r in records(run_dir)]


# -- a bug in training ----------------------------------------------------------------------------


def test_a_repeated_bug_is_recorded_with_its_traceback_and_stops_the_search(
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    armed = Armed(lambda done: done >= 1)  # every evaluation after the first hits the bug
    inject_into_training_loss(monkeypatch, armed, shape_bug)
    run_dir = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="evoband"):
        report = run_search(search_config(data_dir, run_dir, cap=20), callbacks=[armed])

    assert statuses(run_dir) == ["ok"] + ["error"] * REPEATED_ERROR_LIMIT
    assert report.n_evaluations == 1 + REPEATED_ERROR_LIMIT, "stopped, not burning the budget"
    assert report.stopped_by.startswith(f"the same error in {REPEATED_ERROR_LIMIT} evaluations")
    assert report.stopped_by.startswith(AutoML.REPEATED_ERRORS)  # what AutoML.py exits 4 on
    assert "RuntimeError: mat1 and mat2 shapes cannot be multiplied" in report.stopped_by
    assert read_json(run_dir / "run.json")["stopped_by"] == report.stopped_by
    store = RunStore(run_dir, readonly=True)
    try:
        errors = store.errors()
        assert len(errors) == REPEATED_ERROR_LIMIT  # one fold each: the others are not trained
        for row in errors:
            assert row["error"].startswith("RuntimeError: mat1 and mat2 shapes")
            assert "Traceback (most recent call last)" in row["traceback"]
            assert "_loop.py" in row["traceback"] and "loss_fn(logits, y)" in row["traceback"]
        replayed = store.fold_results(errors[0]["member_id"], errors[0]["epochs"])
        assert replayed[errors[0]["fold"]].traceback == errors[0]["traceback"]
    finally:
        store.close()
    # logged once with its traceback, then one line per repeat; never once per fold
    tracebacks = [r for r in caplog.records if "Traceback" in r.getMessage()]
    assert len(tracebacks) == 1
    assert sum("again (" in r.getMessage() for r in caplog.records) == 2

    # the bug fixed, the run resumes past the recorded errors and finishes its budget
    monkeypatch.undo()
    resumed = run_search(search_config(data_dir, run_dir, cap=8, resume=True))
    assert resumed.stopped_by != report.stopped_by
    assert statuses(run_dir)[: 1 + REPEATED_ERROR_LIMIT] == ["ok"] + ["error"] * 3
    assert resumed.n_evaluations == 8 and "error" not in statuses(run_dir)[4:]


def test_a_bug_that_does_not_repeat_does_not_stop_the_search(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    armed = Armed(lambda done: done in (1, 3))  # two errors, not in a row
    inject_into_training_loss(monkeypatch, armed, shape_bug)
    run_dir = tmp_path / "run"
    report = run_search(search_config(data_dir, run_dir, cap=CAP), callbacks=[armed])
    assert statuses(run_dir).count("error") == 2
    assert report.n_evaluations == CAP and report.stopped_by.startswith("max_evaluations")


# -- resources and numbers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "oom",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        MemoryError("cannot allocate 2147483648 bytes"),
    ],
    ids=["cuda", "host"],
)
def test_out_of_memory_is_a_failed_fold_and_the_search_goes_on(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, oom: BaseException
) -> None:
    armed = Armed(lambda done: done >= 1)

    def out_of_memory(logits: torch.Tensor) -> torch.Tensor:
        raise oom

    inject_into_training_loss(monkeypatch, armed, out_of_memory)
    run_dir = tmp_path / "run"
    report = run_search(search_config(data_dir, run_dir, cap=CAP), callbacks=[armed])
    assert statuses(run_dir) == ["ok"] + ["failed"] * (CAP - 1)
    assert report.n_evaluations == CAP, "memory is not a bug: no repeated-error stop"
    folds = RunStore(run_dir, readonly=True).fold_results(1, 1)
    assert folds[0].message == f"out of memory ({type(oom).__name__}: {oom})"
    assert RunStore(run_dir, readonly=True).errors() == []


def test_a_non_finite_loss_is_diverged_and_the_search_goes_on(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    armed = Armed(lambda done: done in (1, 2))
    inject_into_training_loss(monkeypatch, armed, lambda logits: logits.sum() * float("nan"))
    run_dir = tmp_path / "run"
    report = run_search(search_config(data_dir, run_dir, cap=CAP), callbacks=[armed])
    assert statuses(run_dir)[1:3] == ["diverged", "diverged"]
    assert report.n_evaluations == CAP
    assert RunStore(run_dir, readonly=True).fold_results(1, 1)[0].message == (
        "non-finite training loss"
    )


def test_an_evaluation_over_its_time_limit_is_timed_out_and_the_search_goes_on(
    data_dir: Path, tmp_path: Path
) -> None:
    config = search_config(data_dir, tmp_path / "run", cap=4)
    config.settings = SearchSettings(**{**config.settings.to_dict(), "eval_time_limit": 1e-9})
    report = run_search(config)
    assert statuses(tmp_path / "run") == ["timed_out"] * 4
    assert report.n_evaluations == 4 and report.stopped_by.startswith("max_evaluations")
    # every fold stopped within its first epoch: nothing was trained to count
    progress = (tmp_path / "run" / "progress.csv").read_text().splitlines()
    assert progress[-1].split(",")[-1] == "0"
    assert (
        "evaluation time limit reached"
        in read_json(tmp_path / "run" / "run.json")["best"]["message"]
    )


def test_a_truncated_checkpoint_in_a_search_is_retrained(
    reference: Path, data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    run_search(search_config(data_dir, run_dir, cap=3))
    for path in (run_dir / "checkpoints").rglob("*.pt"):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="evoband"):
        run_search(search_config(data_dir, run_dir, cap=CAP, resume=True))
    assert "retraining from scratch" in caplog.text
    assert_same_evaluations(records(run_dir), records(reference))


# -- a full or read-only disk ---------------------------------------------------------------------


def fill_the_disk_after(monkeypatch: pytest.MonkeyPatch, writes: int, code: int) -> list[Path]:
    """Make every atomic write after the first ``writes`` fail as a full (or read-only) disk."""
    real = files.write_atomic
    done: list[Path] = []

    def write_atomic(path: Path, write: Callable[[Any], object]) -> None:
        if len(done) >= writes:
            raise OSError(code, os.strerror(code), str(path))
        done.append(path)
        real(path, write)

    monkeypatch.setattr(files, "write_atomic", write_atomic)
    return done


@pytest.mark.parametrize(
    ("writes", "code"),
    [(12, errno.ENOSPC), (17, errno.EROFS), (25, errno.ENOSPC)],
    ids=["checkpoint-or-export", "read-only", "later"],
)
def test_a_full_disk_stops_with_one_error_and_resume_finishes_the_run(
    reference: Path,
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    writes: int,
    code: int,
) -> None:
    run_dir = tmp_path / "run"
    with monkeypatch.context() as patch:
        fill_the_disk_after(patch, writes, code)
        with pytest.raises(StoreWriteError, match=os.strerror(code)) as caught:
            run_search(search_config(data_dir, run_dir, cap=CAP))
    message = str(caught.value)
    assert "\n" not in message and f"run directory {run_dir}" in message and "--resume" in message
    # the ledger is consistent: readable, every recorded evaluation complete
    frame = RunStore(run_dir, readonly=True).evaluations_frame()
    assert len(frame) < CAP and (frame["n_folds"] == 2).all()
    # space freed: the run resumes and ends as if never interrupted
    report = run_search(search_config(data_dir, run_dir, cap=CAP, resume=True))
    assert report.n_evaluations == CAP
    assert_same_evaluations(records(run_dir), records(reference))


class FullLedger:
    """A ledger connection on a full disk: sqlite's own error for every insert."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.lstrip().upper().startswith("INSERT"):
            raise sqlite3.OperationalError("database or disk is full")
        return self.conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def test_a_full_ledger_stops_with_one_error_and_resume_finishes_the_run(
    reference: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills before the third evaluation is recorded: sqlite reports it full."""
    real = RunStore.record_evaluation
    calls = [0]

    def record_evaluation(self: RunStore, *args: Any, **kwargs: Any) -> None:
        calls[0] += 1
        if calls[0] == 3:
            self.conn = FullLedger(self.conn)  # type: ignore[assignment]
        real(self, *args, **kwargs)

    run_dir = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(RunStore, "record_evaluation", record_evaluation)
        with pytest.raises(StoreWriteError, match="database or disk is full while writing history"):
            run_search(search_config(data_dir, run_dir, cap=CAP))
    assert len(records(run_dir)) == 2
    with sqlite3.connect(run_dir / "history.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    report = run_search(search_config(data_dir, run_dir, cap=CAP, resume=True))
    assert report.n_evaluations == CAP
    assert_same_evaluations(records(run_dir), records(reference))


def test_a_full_disk_through_the_cli_is_one_error_line_and_exit_4(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    fill_the_disk_after(monkeypatch, 12, errno.ENOSPC)
    argv = [
        "--data_dir", str(data_dir), "--run_dir", str(run_dir), "--space", "course",
        "--pop_size", "3", "--hyperband", "True", "--min_epochs", "1", "-e", "2",
        "--cv_folds", "2", "--max_evaluations", str(CAP), "--workers", "1", "--seed", "1",
        "-s", "20000", "-p", "0.1",
    ]  # fmt: skip
    code, _, err = call_cli(AutoML.main, argv)
    assert code == 4  # the environment failed during the run, not bad input
    lines = error_lines(err)
    assert len(lines) == 1 and "No space left on device" in lines[0], err
    assert lines[0].startswith("error: Cannot write to the run directory")


def test_a_search_stopped_by_a_repeated_bug_exits_4_not_0(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first evaluation is feasible, then every one hits the same bug: the search stops
    short of its budget, which is not a result to exit 0 (or 1) on."""
    armed = Armed(lambda done: done >= 1)

    class CountingRunStarted(AutoML.RunStarted):
        def on_evaluation(self, search: SearchView, member: Member, result: Result) -> None:
            armed.on_evaluation(search, member, result)

    monkeypatch.setattr(AutoML, "RunStarted", CountingRunStarted)
    inject_into_training_loss(monkeypatch, armed, shape_bug)
    run_dir = tmp_path / "run"
    argv = [
        "--data_dir", str(data_dir), "--run_dir", str(run_dir), "--space", "course",
        "--pop_size", "3", "--hyperband", "True", "--min_epochs", "1", "-e", "2",
        "--cv_folds", "2", "--max_evaluations", "20", "--workers", "1", "--seed", "1",
        "-s", "20000", "-p", "0.1", "--no_progress",
    ]  # fmt: skip
    code, stdout, err = call_cli(AutoML.main, argv)
    assert code == 4, stdout + err
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert lines[0].startswith(
        f"error: the search stopped early: the same error in {REPEATED_ERROR_LIMIT} evaluations"
    )
    assert "--resume" in lines[0] and "\n" not in lines[0]
    run = read_json(run_dir / "run.json")
    assert run["feasible"] and run["n_evaluations"] == 1 + REPEATED_ERROR_LIMIT
    assert f"stopped: {run['stopped_by']}" in stdout


# -- a crash of the search process ------------------------------------------------------------


def _starts(run_dir: Path) -> dict[tuple[int, int], int]:
    with sqlite3.connect(run_dir / "history.sqlite") as conn:
        rows = conn.execute("SELECT member_id, epochs, attempts FROM starts").fetchall()
    return {(m, e): a for m, e, a in rows}


def _config(
    data_dir: Path, run_dir: Path, cap: int, asynchronous: bool, resume: bool = False
) -> SearchConfig:
    config = search_config(data_dir, run_dir, cap=cap, resume=resume)
    settings = dataclasses.replace(config.settings, async_promotion=asynchronous)
    return dataclasses.replace(config, settings=settings)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["rungs", "async"])
@pytest.mark.parametrize(("crashes", "status"), [(CRASH_LIMIT - 1, "ok"), (CRASH_LIMIT, "failed")])
def test_an_evaluation_that_crashed_the_search_repeatedly_is_failed_and_the_search_goes_on(
    data_dir: Path, tmp_path: Path, crashes: int, status: str, asynchronous: bool
) -> None:
    """The process died ``crashes`` times in the third evaluation: started, unfinished (a kill
    runs no code, so the ledger holds what it would after real kills)."""
    run_search(_config(data_dir, tmp_path / "three", 3, asynchronous))
    third = [(r["member_id"], r["epochs"]) for r in records(tmp_path / "three")][2]
    run_dir = tmp_path / "run"
    run_search(_config(data_dir, run_dir, 2, asynchronous))
    assert sorted(_starts(run_dir).values()) == [1, 1]  # each finished evaluation started once
    with sqlite3.connect(run_dir / "history.sqlite") as conn:
        conn.execute("INSERT INTO starts VALUES (?, ?, ?, 0.0)", (*third, crashes))
    report = run_search(_config(data_dir, run_dir, CAP, asynchronous, resume=True))
    assert report.n_evaluations == CAP
    crashed = [r for r in records(run_dir) if (r["member_id"], r["epochs"]) == third]
    assert [r["status"] for r in crashed] == [status]
    evaluation = RunStore(run_dir, readonly=True).evaluation(*third)
    assert evaluation is not None
    assert (evaluation.message == CRASHED) == (status == "failed")
    # trained once more below the limit (no fold finished: the count goes on); not at it
    assert _starts(run_dir)[third] == CRASH_LIMIT
    assert len(records(run_dir)) == CAP


def test_an_orderly_stop_takes_the_starts_of_evaluations_in_flight_back(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while an evaluation trains is no crash: interrupted twice, the evaluation is
    still trained on resume, not failed."""

    def interrupt(logits: torch.Tensor) -> torch.Tensor:
        raise KeyboardInterrupt

    run_dir = tmp_path / "run"
    for attempt in range(2):
        with monkeypatch.context() as patch:
            armed = Armed(lambda done: done >= 1)  # in member 1's evaluation
            inject_into_training_loss(patch, armed, interrupt)
            with pytest.raises(KeyboardInterrupt):
                run_search(
                    search_config(data_dir, run_dir, cap=CAP, resume=attempt > 0),
                    callbacks=[armed],
                )
        assert _starts(run_dir) == {(0, 1): 1, (1, 1): 0}
    report = run_search(search_config(data_dir, run_dir, cap=CAP, resume=True))
    assert report.n_evaluations == CAP
    assert "failed" not in statuses(run_dir)
    assert _starts(run_dir)[(1, 1)] == 1


# -- a fold stuck outside the training steps ---------------------------------------------------------


def test_a_fold_stuck_outside_the_optimizer_step_is_stopped_at_its_limit(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scoring hangs (as a stuck data read or a deadlock would) in the second evaluation: the
    cooperative deadline between batches never comes; the hard limit stops it."""
    import time

    import evoband.training._faults as faults_module
    import evoband.training._target as target_module

    monkeypatch.setattr(faults_module, "HARD_LIMIT_GRACE", 0.5)
    armed = Armed(lambda done: done == 1)
    real = target_module.evaluate_model

    def hanging(*args: Any, **kwargs: Any) -> Any:
        if armed.now:
            time.sleep(60)  # long enough to be stopped; short enough not to hang the suite
        return real(*args, **kwargs)

    monkeypatch.setattr(target_module, "evaluate_model", hanging)
    config = search_config(data_dir, tmp_path / "run", cap=CAP)
    config = dataclasses.replace(
        config, settings=dataclasses.replace(config.settings, eval_time_limit=2.0)
    )
    start = time.monotonic()
    report = run_search(config, callbacks=[armed])
    assert time.monotonic() - start < 120
    assert report.n_evaluations == CAP  # the search went on
    stuck = records(tmp_path / "run")[1]
    assert stuck["status"] == "timed_out"
    evaluation = RunStore(tmp_path / "run", readonly=True).evaluation(
        stuck["member_id"], stuck["epochs"]
    )
    assert evaluation is not None and "stopped outside training" in evaluation.message


# -- memory ------------------------------------------------------------------------------------------


def test_an_evaluation_over_the_memory_bound_is_failed_without_training(
    data_dir: Path, tmp_path: Path
) -> None:
    """The bound sits between the members' estimates: the bigger ones are refused before they
    train (nothing started), the others train, and the search goes on."""
    from evoband.training._data import load_data
    from evoband.training._memory import GIB, training_bytes
    from evoband.training._target import Task

    task = Task(load_data(data_dir), cv_folds=3)

    def need(record: dict) -> int:
        return training_bytes(
            record["configuration"], task.input_shape, task.n_classes, task.family
        )

    reference = tmp_path / "reference"
    run_search(search_config(data_dir, reference, cap=CAP))
    estimates = sorted({need(r) for r in records(reference)})
    bound = estimates[len(estimates) // 2]  # the middle estimate
    config = dataclasses.replace(
        search_config(data_dir, tmp_path / "run", cap=CAP), max_memory=bound / GIB
    )
    report = run_search(config)
    assert report.n_evaluations == CAP
    run = records(tmp_path / "run")
    refused = [r for r in run if need(r) > bound]
    assert refused, "no member over the bound: the test proves nothing"
    assert all(r["status"] == "failed" for r in refused)
    assert all(r["status"] != "failed" for r in run if need(r) <= bound)
    started = _starts(tmp_path / "run")
    assert not any((r["member_id"], r["epochs"]) in started for r in refused)
