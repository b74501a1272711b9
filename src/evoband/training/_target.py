"""The objective: train a configuration for a budget of epochs on K folds (or train -> test).

Each fold continues from its checkpoint when one exists and saves a new one afterwards, so that a
member promoted to a higher Hyperband rung only trains the extra epochs.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core._errors import DataError, EvobandError
from ..nets._family import SHIPPED, NetworkFamily
from ._checkpoints import (
    checkpoint_path,
    commit_checkpoint,
    load_checkpoint,
    save_pending_checkpoint,
)
from ._data import DataSource, channel_stats, normalize, stratified_folds
from ._faults import HardTimeLimit, failed_fold, hard_time_limit, stopped_fold
from ._loop import (
    Distillation,
    EpochCallback,
    TrainState,
    derive_seed,
    evaluate_model,
    make_state,
    train,
)
from ._parent_weights import ParentWeights, load_inherited
from ._results import FoldResult, Result, Status

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    """Normalised tensors of one fold, on the training device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_valid: torch.Tensor
    y_valid: torch.Tensor


class Task:
    """A data set prepared for evaluation: normalised once, split into folds, on the device.

    Args:
        data: the data set.
        cv_folds: K for stratified K-fold CV on the training split; ignored with ``use_test``.
        split_seed: fixes the folds.
        device: where tensors and models live.
        use_test: train on the whole training split and evaluate on the test split.
        whole_train: train on the whole training split and evaluate on nothing (a final
            network, trained without looking at the test split).
        family: builds and counts the networks of the configurations evaluated on it (default:
            the shipped :class:`evoband.nets._cnn.ConfigurableCNN`).
    """

    def __init__(
        self,
        data: DataSource,
        *,
        cv_folds: int = 3,
        split_seed: int = 0,
        device: torch.device | str = "cpu",
        use_test: bool = False,
        whole_train: bool = False,
        family: NetworkFamily = SHIPPED,
    ) -> None:
        self.data = data
        self.family = family
        self.device = torch.device(device)
        self.use_test = use_test
        # Statistics of the whole training split: the test split is never looked at.
        mean, std = channel_stats(data.train.images)
        x = normalize(data.train.images, mean, std, self.device)
        y = data.train.labels.to(self.device)
        if whole_train:
            self.splits = [Split(x, y, x[:0], y[:0])]
        elif use_test:
            if len(data.test) == 0:
                raise DataError(f"The data set {data.name} has no test split.")
            xt = normalize(data.test.images, mean, std, self.device)
            self.splits = [Split(x, y, xt, data.test.labels.to(self.device))]
        else:
            self.splits = []
            for fold in stratified_folds(data.train.labels, cv_folds, split_seed):
                tr = torch.as_tensor(fold.train_idx, device=self.device)
                va = torch.as_tensor(fold.valid_idx, device=self.device)
                self.splits.append(Split(x[tr], y[tr], x[va], y[va]))

    def on(self, device: torch.device | str) -> Task:
        """This task with its tensors on ``device`` (itself when they are there already)."""
        device = torch.device(device)
        if device == self.device:
            return self
        moved = copy.copy(self)
        moved.device = device
        moved.splits = [Split(*(t.to(device) for t in dataclasses.astuple(s))) for s in self.splits]
        return moved

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.data.input_shape

    @property
    def n_classes(self) -> int:
        return self.data.n_classes

    def count_params(self, config: Mapping[str, Any]) -> int:
        """Parameters of ``config`` on this task, without allocating it.

        A network the input is too small for (more poolings than pixels) counts as infinitely
        large (``sys.maxsize``), so that the parameter repair of a search shrinks it like any
        other oversized child.
        """
        return self.family.safe_count(config, self.input_shape, self.n_classes)


STOPPING = (Status.TIMED_OUT, Status.FAILED, Status.ERROR)
"""Fold statuses after which the other folds of an evaluation are not trained."""


def evaluate(
    config: Mapping[str, Any],
    epochs: int,
    *,
    task: Task,
    seed: int,
    segments: Sequence[int] = (),
    checkpoint_dir: Path | None = None,
    checkpoint_sha256: Mapping[int, str] | None = None,
    deadline: float | None = None,
    done_folds: Mapping[int, FoldResult] | None = None,
    on_fold: Callable[[FoldResult], None] | None = None,
    on_epoch: Callable[[int], EpochCallback | None] | None = None,
    keep_predictions: bool = False,
    executor: FoldExecutor | None = None,
    inherit: ParentWeights | None = None,
    distill: Distillation | None = None,
) -> Result:
    """Train ``config`` to ``epochs`` epochs on every fold of ``task`` and score it.

    Args:
        config: the genotype.
        epochs: the budget: total epochs each fold's model has trained when this returns.
        task: prepared data and folds.
        seed: fixes initialisation and each epoch's randomness (with the fold index).
        segments: the budgets the member is planned to be scored at (the LR schedule's cycles,
            see :func:`evoband.training._loop.learning_rate`); ``epochs`` is always added.
        checkpoint_dir: continue from / save to ``fold<k>.pt`` there; None trains from scratch.
        checkpoint_sha256: hashes recorded for those checkpoints; a mismatch means retraining.
        deadline: ``time.monotonic()`` value after which training stops as ``timed_out``.
        done_folds: folds already finished at this budget (e.g. before a crash): not redone.
        on_fold: called with each newly finished fold (to record it at once).
        on_epoch: given a fold index, returns a per-epoch progress callback (or None).
        keep_predictions: fill each fold's ``predicted`` and ``labels`` lists.
        executor: runs the folds (default: one after the other in this process).
        inherit: a fold that starts from epoch 0 (no checkpoint of its own) starts from these
            parent weights (see :mod:`evoband.nets._inherit`) instead of a fresh initialisation.
        distill: teachers' soft targets for the training images (a train -> test task's).
    """
    num_params = task.family.count_params(config, task.input_shape, task.n_classes)
    done = dict(done_folds or {})
    if any(f.status in STOPPING for f in done.values()):
        return Result.from_folds([done[k] for k in sorted(done)], num_params, epochs)
    todo = [k for k in range(len(task.splits)) if k not in done]
    jobs = list(
        fold_jobs(
            config,
            epochs,
            seed,
            todo,
            segments=segments,
            checkpoint_dir=checkpoint_dir,
            checkpoint_sha256=checkpoint_sha256,
            deadline=deadline,
            keep_predictions=keep_predictions,
            inherit=inherit,
            distill=distill,
        )
    )
    for result in (executor or SerialExecutor()).run(jobs, task, on_epoch):
        take_checkpoint(result, checkpoint_dir)
        done[result.fold] = result
        if on_fold is not None:
            on_fold(result)
    return Result.from_folds([done[k] for k in sorted(done)], num_params, epochs)


@dataclass(frozen=True)
class FoldJob:
    """Everything needed to train and score one fold (picklable, for worker processes)."""

    config: dict[str, Any]
    epochs: int
    fold: int
    seed: int
    segments: tuple[int, ...]
    checkpoint_dir: Path | None
    expected_sha256: str | None
    deadline: float | None
    keep_predictions: bool = False
    inherit: ParentWeights | None = None
    distill: Distillation | None = None


def fold_jobs(
    config: Mapping[str, Any],
    epochs: int,
    seed: int,
    folds: Iterable[int],
    *,
    segments: Sequence[int] = (),
    checkpoint_dir: Path | None = None,
    checkpoint_sha256: Mapping[int, str] | None = None,
    deadline: float | None = None,
    keep_predictions: bool = False,
    inherit: ParentWeights | None = None,
    distill: Distillation | None = None,
    stopped: Callable[[], bool] = lambda: False,
) -> Iterator[FoldJob]:
    """The jobs of one evaluation (see :func:`evaluate` for the arguments), one per fold of
    ``folds``, made as they are taken; none once ``stopped()`` (a fold of it timed out or failed
    meanwhile: the rest is not trained)."""
    for k in folds:
        if stopped():
            return
        yield FoldJob(
            config=dict(config),
            epochs=epochs,
            fold=k,
            seed=seed,
            segments=tuple(segments),
            checkpoint_dir=checkpoint_dir,
            expected_sha256=(checkpoint_sha256 or {}).get(k),
            deadline=deadline,
            keep_predictions=keep_predictions,
            inherit=inherit,
            distill=distill,
        )


class FoldExecutor(ABC):
    """Runs the fold jobs of one evaluation and yields each result as it finishes."""

    @abstractmethod
    def run(
        self,
        jobs: Sequence[FoldJob],
        task: Task,
        on_epoch: Callable[[int], EpochCallback | None] | None = None,
    ) -> Iterator[FoldResult]:
        """Results of ``jobs`` on ``task``, in the order they finish."""

    def stream(
        self,
        jobs: Iterator[FoldJob],
        task: Task,
        on_epoch: Callable[[int], EpochCallback | None] | None = None,
    ) -> Iterator[tuple[FoldJob, FoldResult]]:
        """Each job of ``jobs`` with its result, in the order they finish; the next job is taken
        from ``jobs`` only when a worker is free for it (so a deadline set when the job is made
        starts with its training). This default trains one job at a time."""
        for job in jobs:
            for result in self.run([job], task, on_epoch):
                yield job, result

    def start(self, task: Task) -> None:  # noqa: B027 - optional hook; most executors hold nothing
        """Start workers now (with ``task`` loaded), if any: not on an evaluation's clock."""

    def close(self) -> None:  # noqa: B027 - optional hook; most executors hold nothing
        """Release workers, if any."""


class WorkerExecutor(FoldExecutor):
    """An executor whose workers take jobs as they free up: :meth:`run` streams the list."""

    def run(
        self,
        jobs: Sequence[FoldJob],
        task: Task,
        on_epoch: Callable[[int], EpochCallback | None] | None = None,
    ) -> Iterator[FoldResult]:
        for _, result in self.stream(iter(jobs), task, on_epoch):
            yield result

    @abstractmethod
    def stream(
        self,
        jobs: Iterator[FoldJob],
        task: Task,
        on_epoch: Callable[[int], EpochCallback | None] | None = None,
    ) -> Iterator[tuple[FoldJob, FoldResult]]:
        """See :meth:`FoldExecutor.stream`; as many jobs at a time as there are workers."""


class SerialExecutor(FoldExecutor):
    """Folds one after the other in this process; stops after a timed-out or failed fold."""

    def run(
        self,
        jobs: Sequence[FoldJob],
        task: Task,
        on_epoch: Callable[[int], EpochCallback | None] | None = None,
    ) -> Iterator[FoldResult]:
        for job in jobs:
            result = run_fold(job, task, on_epoch(job.fold) if on_epoch else None)
            yield result
            if result.status in STOPPING:
                return


def run_fold(job: FoldJob, task: Task, on_epoch: EpochCallback | None = None) -> FoldResult:
    """Train one fold to ``job.epochs`` (continuing from its checkpoint) and score it.

    An exception of training or scoring is returned as a result (see :func:`failed_fold`),
    not raised; failures to write into the run directory (:class:`evoband.core._errors.StoreError`,
    ``OSError``) and interrupts propagate. Training stops at ``job.deadline`` between batches;
    a fold still running well after it, wherever it is stuck, is stopped and ``timed_out``
    (see :func:`evoband.training._faults.hard_time_limit`).
    """
    start = time.perf_counter()
    try:
        with hard_time_limit(job.deadline):
            return _run_fold(job, task, on_epoch, start)
    except HardTimeLimit as exc:
        return stopped_fold(job.fold, exc, time.perf_counter() - start)


def _run_fold(job: FoldJob, task: Task, on_epoch: EpochCallback | None, start: float) -> FoldResult:
    config, epochs, k, seed = job.config, job.epochs, job.fold, job.seed
    split, checkpoint_dir = task.splits[k], job.checkpoint_dir
    try:

        def fresh_state() -> TrainState:
            return make_state(
                config,
                task.input_shape,
                task.n_classes,
                seed=derive_seed(seed, k, 0),
                device=task.device,
                family=task.family,
            )

        state = fresh_state()
        path = checkpoint_path(checkpoint_dir, k) if checkpoint_dir is not None else None
        if (
            path is not None
            and (path.exists() or job.expected_sha256)
            and not load_checkpoint(path, state, job.expected_sha256, epochs)
        ):
            state = fresh_state()  # a failed load may have filled part of the state
        inherited_from: tuple[int, ...] = ()
        if job.inherit is not None and state.epochs_done == 0:
            inherited_from = load_inherited(
                state, job.inherit, k, job.config, task.input_shape, task.family
            )
            if not inherited_from:
                state = fresh_state()
        outcome = train(
            state,
            split.x_train,
            split.y_train,
            config=config,
            epochs=epochs,
            seed=derive_seed(seed, k, 1),
            segments=job.segments,
            deadline=job.deadline,
            on_epoch=on_epoch,
            family=task.family,
            distill=job.distill,
        )
        sha = ""
        if outcome.status == Status.DIVERGED:
            return FoldResult(
                k, 0.0, 0.0, 0.0, outcome.loss, outcome.epochs_done, time.perf_counter() - start,
                Status.DIVERGED, "non-finite training loss",
            )  # fmt: skip
        metrics, logits = evaluate_model(
            state.model, split.x_valid, split.y_valid, config, task.family
        )
        pending = ""
        if path is not None and outcome.status == Status.OK:
            written, sha = save_pending_checkpoint(path, state)
            pending = str(written)
        message = "evaluation time limit reached" if outcome.status == Status.TIMED_OUT else ""
        result = FoldResult(
            k,
            metrics.top3,
            metrics.top1,
            metrics.precision,
            metrics.loss,
            outcome.epochs_done,
            time.perf_counter() - start,
            outcome.status,
            message,
            sha,
        )
        result.inherited_from = inherited_from
        result.pending_checkpoint = pending
        result.probabilities = logits.softmax(dim=1).numpy().astype(np.float16)
        if job.keep_predictions:
            result.predicted = logits.argmax(1).tolist()
            result.labels = split.y_valid.cpu().tolist()
            result.model = state.model
        return result
    except (EvobandError, OSError):
        raise
    except Exception as exc:  # recorded as the fold's result; the optimizer decides what next
        logger.debug("Fold %d raised %s: %s", k, type(exc).__name__, exc)
        return failed_fold(k, exc, time.perf_counter() - start)


def take_checkpoint(result: FoldResult, checkpoint_dir: Path | None) -> None:
    """Commit ``result``'s pending checkpoint to ``fold<k>.pt`` in ``checkpoint_dir``: whoever
    records a fold takes its checkpoint, in this process, before it records the fold."""
    if result.pending_checkpoint and checkpoint_dir is not None:
        commit_checkpoint(result.pending_checkpoint, checkpoint_path(checkpoint_dir, result.fold))
        result.pending_checkpoint = ""
