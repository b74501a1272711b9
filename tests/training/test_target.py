"""Tests of evoband.training._target: K-fold evaluation, checkpoints and continuation."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from evoband.core import DataError
from evoband.nets._cnn import build_model, count_params
from evoband.training._checkpoints import checkpoint_path, file_sha256
from evoband.training._data import load_data
from evoband.training._results import FoldResult, Result, Status
from evoband.training._target import Task, evaluate

TINY: dict[str, Any] = {
    "learning_rate_init": 1e-2,
    "batch_size": 32,
    "kernel_size": 3,
    "use_BN": True,
    "global_avg_pooling": True,
    "dropout_rate": 0.2,
    "n_conv_layers": 1,
    "n_channels_conv_0": 16,
    "n_fc_layers": 1,
    "n_channels_fc_0": 16,
    "optimizer": "adamw",
    "train_criterion": "cross_entropy",
    "aug_flip": True,
    "aug_shift": 1,
    "lr_schedule": "cosine",
}


@pytest.fixture
def task(tiny_image_root: Path) -> Task:
    return Task(load_data(tiny_image_root), cv_folds=3, split_seed=0)


def fold_values(result: Result) -> list[tuple[Any, ...]]:
    return [(f.fold, f.top3, f.top1, f.precision, f.loss, f.epochs, f.status) for f in result.folds]


def assert_same_folds(a: Result, b: Result) -> None:
    """Per-fold metrics and losses are identical (NaN == NaN)."""
    assert len(a.folds) == len(b.folds)
    for fa, fb in zip(a.folds, b.folds, strict=True):
        for name in ("fold", "top3", "top1", "precision", "epochs", "status"):
            assert getattr(fa, name) == getattr(fb, name), name
        assert fa.loss == fb.loss or (math.isnan(fa.loss) and math.isnan(fb.loss))


# --- Task ---------------------------------------------------------------------------------------


def test_task_folds(task: Task) -> None:
    assert len(task.splits) == 3
    assert task.input_shape == (3, 8, 8)
    assert task.n_classes == 3
    assert sum(len(s.y_valid) for s in task.splits) == 36
    for split in task.splits:
        assert len(split.y_train) + len(split.y_valid) == 36
        assert split.x_train.dtype == torch.float32
        assert torch.bincount(split.y_valid, minlength=3).tolist() == [4, 4, 4]


def test_task_use_test(tiny_image_root: Path) -> None:
    task = Task(load_data(tiny_image_root), use_test=True)

    assert len(task.splits) == 1
    split = task.splits[0]
    assert len(split.y_train) == 36 and len(split.y_valid) == 12
    # Normalised with the training statistics only.
    assert split.x_train.mean(dim=(0, 2, 3)).abs().max() < 1e-5

    result = evaluate(TINY, 3, task=task, seed=0)
    assert result.status == Status.OK
    assert len(result.folds) == 1
    assert result.folds[0].epochs == 3
    assert 0.0 <= result.top1 <= 1.0 and result.top3 == 1.0  # 3 classes: top-3 is always right


def test_task_use_test_without_test_split(tiny_image_root: Path) -> None:
    import shutil

    shutil.rmtree(tiny_image_root / "test")
    with pytest.raises(DataError, match="no test split"):
        Task(load_data(tiny_image_root), use_test=True)


# --- evaluate -----------------------------------------------------------------------------------


def test_evaluate_result(task: Task, seed: int) -> None:
    result = evaluate(TINY, 2, task=task, seed=seed)

    assert result.status == Status.OK and result.ok
    assert result.epochs == 2
    assert result.num_params == count_params(TINY, (3, 8, 8), 3)
    assert [f.fold for f in result.folds] == [0, 1, 2]
    assert all(f.epochs == 2 and f.status == Status.OK for f in result.folds)
    assert all(f.checkpoint_sha256 == "" for f in result.folds)  # no checkpoint dir
    assert result.top1 == pytest.approx(sum(f.top1 for f in result.folds) / 3)
    assert result.precision == pytest.approx(sum(f.precision for f in result.folds) / 3)
    assert result.seconds == pytest.approx(sum(f.seconds for f in result.folds))
    assert result.to_dict()["folds"][0]["fold"] == 0


def test_evaluate_is_reproducible(task: Task, seed: int) -> None:
    a = evaluate(TINY, 2, task=task, seed=seed)
    b = evaluate(TINY, 2, task=task, seed=seed)
    assert fold_values(a) == fold_values(b)


MEDIUM = dict(
    TINY,
    n_conv_layers=2,
    n_channels_conv_0=32,
    n_channels_conv_1=48,
    kernel_size=5,
    global_avg_pooling=False,
    n_fc_layers=2,
    n_channels_fc_0=24,
    n_channels_fc_1=12,
)


@pytest.mark.parametrize("config", [TINY, MEDIUM], ids=["tiny", "medium"])
def test_num_params_equals_count_params(task: Task, config: dict[str, Any]) -> None:
    result = evaluate(config, 1, task=task, seed=0)
    assert result.num_params == count_params(config, task.input_shape, task.n_classes)
    assert result.num_params == sum(
        p.numel() for p in build_model(config, task.input_shape, task.n_classes).parameters()
    )


def test_checkpoint_continuation_equals_training_from_scratch(
    task: Task, tmp_path: Path, seed: int
) -> None:
    ckpt = tmp_path / "member"
    scratch = evaluate(TINY, 5, task=task, seed=seed, segments=(2, 5))

    first = evaluate(TINY, 2, task=task, seed=seed, segments=(2, 5), checkpoint_dir=ckpt)
    hashes = {f.fold: f.checkpoint_sha256 for f in first.folds}
    epochs_trained: list[tuple[int, int]] = []
    resumed = evaluate(
        TINY,
        5,
        task=task,
        seed=seed,
        segments=(2, 5),
        checkpoint_dir=ckpt,
        checkpoint_sha256=hashes,
        on_epoch=lambda k: lambda e, loss, acc: epochs_trained.append((k, e)),
    )

    assert first.status == resumed.status == Status.OK
    assert [f.epochs for f in first.folds] == [2, 2, 2]
    # Only the extra epochs were trained.
    assert epochs_trained == [(k, e) for k in range(3) for e in (3, 4, 5)]
    assert_same_folds(resumed, scratch)
    assert resumed.top3 == scratch.top3 and resumed.precision == scratch.precision


def test_checkpoints_are_written_per_fold_and_loadable(task: Task, tmp_path: Path) -> None:
    ckpt = tmp_path / "member"
    result = evaluate(TINY, 2, task=task, seed=0, segments=(2, 4), checkpoint_dir=ckpt)

    assert sorted(p.name for p in ckpt.iterdir()) == ["fold0.pt", "fold1.pt", "fold2.pt"]
    for fold in result.folds:
        path = checkpoint_path(ckpt, fold.fold)
        assert path == ckpt / f"fold{fold.fold}.pt"
        assert fold.checkpoint_sha256 == file_sha256(path)
        saved = torch.load(path, weights_only=True)
        assert saved["epochs_done"] == 2
        assert set(saved) == {"model", "optimizer", "epochs_done"}
        assert "conv.0.conv.weight" in saved["model"] and "head.weight" in saved["model"]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "hash_mismatch", "missing"])
def test_damaged_checkpoint_retrains_from_scratch(
    task: Task, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    ckpt = tmp_path / "member"
    scratch = evaluate(TINY, 3, task=task, seed=0, segments=(2, 3))
    first = evaluate(TINY, 2, task=task, seed=0, segments=(2, 3), checkpoint_dir=ckpt)
    hashes = {f.fold: f.checkpoint_sha256 for f in first.folds}
    path = checkpoint_path(ckpt, 1)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00garbage" * 100)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "hash_mismatch":
        hashes[1] = "0" * 64
    else:
        path.unlink()

    with caplog.at_level(logging.WARNING, logger="evoband.training._target"):
        resumed = evaluate(
            TINY,
            3,
            task=task,
            seed=0,
            segments=(2, 3),
            checkpoint_dir=ckpt,
            checkpoint_sha256=hashes,
        )

    assert resumed.status == Status.OK
    assert_same_folds(resumed, scratch)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 1 and str(path) in messages[0]
    # The fold's checkpoint is healthy again and its new hash is reported.
    assert resumed.folds[1].checkpoint_sha256 == file_sha256(path)
    assert torch.load(path, weights_only=True)["epochs_done"] == 3


def test_damaged_checkpoint_without_recorded_hash_retrains(
    task: Task, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ckpt = tmp_path / "member"
    scratch = evaluate(TINY, 3, task=task, seed=0, segments=(2, 3))
    evaluate(TINY, 2, task=task, seed=0, segments=(2, 3), checkpoint_dir=ckpt)
    path = checkpoint_path(ckpt, 0)
    path.write_bytes(path.read_bytes()[:100])

    with caplog.at_level(logging.WARNING, logger="evoband.training._target"):
        resumed = evaluate(TINY, 3, task=task, seed=0, segments=(2, 3), checkpoint_dir=ckpt)

    assert_same_folds(resumed, scratch)
    assert "cannot be loaded" in caplog.text


@pytest.mark.parametrize("damage", ["other_architecture", "bad_optimizer_state"])
def test_checkpoint_that_fails_halfway_leaves_no_trace(
    task: Task, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    ckpt = tmp_path / "member"
    scratch = evaluate(TINY, 3, task=task, seed=0, segments=(2, 3))
    if damage == "other_architecture":
        # Same conv layer, narrower FC layer: conv tensors match, the rest does not.
        evaluate(
            dict(TINY, n_channels_fc_0=8),
            2,
            task=task,
            seed=7,
            segments=(2, 3),
            checkpoint_dir=ckpt,
        )
    else:
        evaluate(TINY, 2, task=task, seed=7, segments=(2, 3), checkpoint_dir=ckpt)
        for k in range(3):
            path = checkpoint_path(ckpt, k)
            saved = torch.load(path, weights_only=True)
            saved["optimizer"] = {}
            torch.save(saved, path)

    with caplog.at_level(logging.WARNING, logger="evoband.training._target"):
        resumed = evaluate(TINY, 3, task=task, seed=0, segments=(2, 3), checkpoint_dir=ckpt)

    assert "retraining from scratch" in caplog.text
    assert_same_folds(resumed, scratch)


def test_checkpoint_beyond_the_budget_is_not_used(task: Task, tmp_path: Path) -> None:
    ckpt = tmp_path / "member"
    scratch = evaluate(TINY, 2, task=task, seed=0, segments=(2, 4))
    evaluate(TINY, 4, task=task, seed=0, segments=(2, 4), checkpoint_dir=ckpt)

    again = evaluate(TINY, 2, task=task, seed=0, segments=(2, 4), checkpoint_dir=ckpt)

    assert_same_folds(again, scratch)


def test_done_folds_are_not_retrained(task: Task) -> None:
    done = {
        0: FoldResult(0, 0.9, 0.8, 0.7, 0.1, 2, 1.0),
        2: FoldResult(2, 0.5, 0.4, 0.3, 0.2, 2, 1.0),
    }
    reported: list[int] = []
    trained: list[int] = []

    result = evaluate(
        TINY,
        2,
        task=task,
        seed=0,
        done_folds=done,
        on_fold=lambda f: reported.append(f.fold),
        on_epoch=lambda k: lambda e, loss, acc: trained.append(k),
    )

    assert reported == [1]
    assert set(trained) == {1}
    assert result.folds[0] is done[0] and result.folds[2] is done[2]
    assert result.folds[1].fold == 1 and result.folds[1].epochs == 2
    scratch = evaluate(TINY, 2, task=task, seed=0)
    assert fold_values(result)[1] == fold_values(scratch)[1]


def test_diverged_fold(task: Task) -> None:
    config = dict(
        TINY, optimizer="sgd", learning_rate_init=1e6, use_BN=False, lr_schedule="constant"
    )
    result = evaluate(config, 20, task=task, seed=0)

    assert result.status == Status.DIVERGED
    assert len(result.folds) == 3  # a diverged fold does not stop the others
    diverged = [f for f in result.folds if f.status == Status.DIVERGED]
    assert diverged and all(f.top3 == 0.0 and f.message for f in diverged)
    assert "non-finite" in result.message


def test_deadline_in_the_past_times_out_and_stops(task: Task, tmp_path: Path) -> None:
    ckpt = tmp_path / "member"
    seen: list[FoldResult] = []
    result = evaluate(
        TINY,
        3,
        task=task,
        seed=0,
        checkpoint_dir=ckpt,
        deadline=time.monotonic() - 1,
        on_fold=seen.append,
    )

    assert result.status == Status.TIMED_OUT and not result.ok
    assert len(result.folds) == 1 and seen == result.folds  # the remaining folds are not started
    assert result.folds[0].message
    assert not checkpoint_path(ckpt, 0).exists()  # an unfinished state is not saved


@pytest.mark.parametrize("where", ["main thread", "worker thread"])
def test_a_fold_stuck_in_scoring_is_stopped_at_its_hard_limit(
    task: Task, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scoring waits forever (a stuck read polled in a loop). In the main thread the alarm stops
    it; in another thread (as Dask workers run folds) the timer thread does; either way the fold
    is ``timed_out`` soon after its deadline plus the grace, and the other folds are not run."""
    import threading

    import evoband.training._faults as faults_module
    import evoband.training._target as target_module

    monkeypatch.setattr(faults_module, "HARD_LIMIT_GRACE", 0.3)

    def stuck(*args: Any, **kwargs: Any) -> Any:
        for _ in range(1200):  # a minute at most, so that a failure cannot hang the suite
            time.sleep(0.05)
        raise AssertionError("never stopped")

    # torch imports parts of itself on first use: an alarm inside an import would leave it half
    # done, so the imports happen here, and the deadline leaves training time to finish
    evaluate(TINY, 1, task=task, seed=0)
    monkeypatch.setattr(target_module, "evaluate_model", stuck)
    outcome: dict[str, Any] = {}

    def run() -> None:
        start = time.monotonic()
        outcome["result"] = evaluate(TINY, 1, task=task, seed=0, deadline=start + 1.5)
        outcome["seconds"] = time.monotonic() - start

    if where == "main thread":
        run()
    else:
        thread = threading.Thread(target=run)
        thread.start()
        thread.join(timeout=90)
        assert not thread.is_alive()
    result: Result = outcome["result"]
    assert [f.status for f in result.folds] == [Status.TIMED_OUT], result.folds[0].message
    assert "stopped outside training" in result.folds[0].message
    assert "0.3 s after the time limit" in result.folds[0].message
    assert outcome["seconds"] < 10


def test_a_folds_checkpoint_lands_in_its_place_only_when_its_result_is_taken(
    tiny_image_root: Path, tmp_path: Path
) -> None:
    """A fold writes a pending file; whoever records the fold takes it. A result nobody takes (a
    task still running for a cancelled search) leaves the checkpoint a search reads untouched."""
    from evoband.core._files import is_temporary
    from evoband.training._target import FoldJob, run_fold, take_checkpoint
    from helpers import SMALL_CONFIG

    task = Task(load_data(tiny_image_root), cv_folds=3)
    folder = tmp_path / "member"
    first = run_fold(FoldJob(dict(SMALL_CONFIG), 1, 0, 3, (1, 2), folder, None, None), task)
    assert not checkpoint_path(folder, 0).exists()
    take_checkpoint(first, folder)
    assert file_sha256(checkpoint_path(folder, 0)) == first.checkpoint_sha256
    assert not first.pending_checkpoint and [p.name for p in folder.iterdir()] == ["fold0.pt"]

    late = run_fold(
        FoldJob(dict(SMALL_CONFIG), 2, 0, 3, (1, 2), folder, first.checkpoint_sha256, None), task
    )
    assert late.status == Status.OK and late.checkpoint_sha256 != first.checkpoint_sha256
    assert file_sha256(checkpoint_path(folder, 0)) == first.checkpoint_sha256  # untouched
    pending = Path(late.pending_checkpoint)
    assert pending.parent == folder and is_temporary(pending)
    take_checkpoint(late, folder)
    assert file_sha256(checkpoint_path(folder, 0)) == late.checkpoint_sha256
    assert not pending.exists()
