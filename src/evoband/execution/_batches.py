"""Training several evaluations together: the fold jobs of all of them stream to the executor's
workers, so that no worker waits while another finishes the last fold of one evaluation.

The evaluations are started in the order given, each when a worker is free for its first fold
(and only if ``may_start`` agrees then); an evaluation's time limit counts from that moment. Its
results are those of training it alone: every fold is seeded by itself and trained in one
process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..training._parent_weights import ParentWeights
from ..training._results import FoldResult, Result
from ..training._target import STOPPING, FoldExecutor, FoldJob, Task, fold_jobs


@dataclass(eq=False)
class Evaluation:
    """One evaluation to train: a configuration to ``epochs`` on every fold of the task.

    Attributes:
        owner: whatever the caller evaluates (a member), handed back to its callbacks.
        num_params: the network's parameters (the result reports them).
        time_limit: seconds it may train from its start (None: no limit).
        deadline: the ``time.monotonic()`` value it may not train beyond, whenever it starts
            (None: none).
        done: folds already finished at this budget; filled as the others finish.
        The others are those of :class:`evoband.training._target.FoldJob`.
    """

    owner: Any
    num_params: int
    config: dict[str, Any]
    epochs: int
    seed: int
    segments: tuple[int, ...] = ()
    checkpoint_dir: Path | None = None
    checkpoint_sha256: Mapping[int, str] = field(default_factory=dict)
    time_limit: float | None = None
    deadline: float | None = None
    inherit: ParentWeights | None = None
    done: dict[int, FoldResult] = field(default_factory=dict)
    _in_flight: int = 0

    def needs_training(self, n_folds: int) -> bool:
        """Whether a fold is left to train (none after a fold that timed out or failed)."""
        return len(self.done) < n_folds and not self.stopped

    @property
    def stopped(self) -> bool:
        """A fold timed out or failed: the others are not trained."""
        return any(f.status in STOPPING for f in self.done.values())

    def _jobs(self, n_folds: int) -> Iterator[FoldJob]:
        limits = [
            *([] if self.time_limit is None else [time.monotonic() + self.time_limit]),
            *([] if self.deadline is None else [self.deadline]),
        ]
        deadline = min(limits) if limits else None
        yield from fold_jobs(
            self.config,
            self.epochs,
            self.seed,
            [k for k in range(n_folds) if k not in self.done],
            segments=self.segments,
            checkpoint_dir=self.checkpoint_dir,
            checkpoint_sha256=self.checkpoint_sha256,
            deadline=deadline,
            inherit=self.inherit,
            stopped=lambda: self.stopped,
        )


def result_of(evaluation: Evaluation) -> Result:
    """The evaluation's result from the folds it has."""
    folds = [evaluation.done[k] for k in sorted(evaluation.done)]
    return Result.from_folds(folds, evaluation.num_params, evaluation.epochs)


def train_together(
    evaluations: Sequence[Evaluation],
    task: Task,
    executor: FoldExecutor,
    *,
    may_start: Callable[[Evaluation], bool],
    on_fold: Callable[[Evaluation, FoldResult], None],
    on_done: Callable[[Evaluation, Result], None],
) -> list[Evaluation]:
    """Train ``evaluations`` (each needing training) with their folds interleaved on the workers.

    Args:
        evaluations: in the order they are to start.
        task: prepared data and folds.
        executor: runs the fold jobs (``executor.stream``).
        may_start: asked when an evaluation is about to start; False starts neither it nor any
            later one (e.g. the time budget is used up), while those already started finish.
        on_fold: called with each newly finished fold (to record it at once).
        on_done: called with each evaluation's result as soon as its last fold is in; an
            exception raised there stops everything still running.

    Returns:
        The evaluations not started.
    """
    queue = list(evaluations)
    not_started: list[Evaluation] = []

    def next_evaluation() -> Evaluation | None:
        if queue and not may_start(queue[0]):
            not_started.extend(queue)
            queue.clear()
        return queue.pop(0) if queue else None

    train_stream(next_evaluation, task, executor, on_fold=on_fold, on_done=on_done)
    return not_started


def train_stream(
    next_evaluation: Callable[[], Evaluation | None],
    task: Task,
    executor: FoldExecutor,
    *,
    on_fold: Callable[[Evaluation, FoldResult], None],
    on_done: Callable[[Evaluation, Result], None],
) -> None:
    """Train the evaluations ``next_evaluation`` gives, each asked for when a worker is free
    for its first fold, until it gives None and those started have finished.

    ``next_evaluation`` may decide from the results known when it is called (asynchronous
    promotion); it must give evaluations that need training. ``on_fold`` and ``on_done`` are
    those of :func:`train_together`.
    """
    n_folds = len(task.splits)
    owner_of: dict[int, Evaluation] = {}

    def jobs() -> Iterator[FoldJob]:
        while (evaluation := next_evaluation()) is not None:
            for job in evaluation._jobs(n_folds):
                owner_of[id(job)] = evaluation
                evaluation._in_flight += 1
                yield job

    for job, fold in executor.stream(jobs(), task):
        evaluation = owner_of.pop(id(job))
        evaluation._in_flight -= 1
        evaluation.done[fold.fold] = fold
        on_fold(evaluation, fold)
        if evaluation._in_flight == 0 and not evaluation.needs_training(n_folds):
            on_done(evaluation, result_of(evaluation))
