"""The one retrain: a configuration trained afresh on the whole training split, as it was scored.

``main.py -t``, the members :func:`evoband.fit` returns, the reports' test scores and the final
predictor of a search all retrain through :func:`retrain`: the configuration's epochs and LR
cycles as it was selected, its seed, and, for a member that inherited weights in the search, its
lineage first (its ancestors retrained in order, see :mod:`evoband.training._lineage`), so that
the network is trained as the one that was scored; optionally distilled from teachers.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ._distill import teacher_targets
from ._lineage import lineage_source
from ._loop import Distillation, EpochCallback
from ._results import Result
from ._target import Task, evaluate


@dataclass
class Retrained:
    """A retrained network and how it was trained.

    Attributes:
        result: its scores on the task's evaluation split (the test split of a train -> test
            task; none for a :class:`Task` with ``whole_train``).
        model: the trained network in evaluation mode (None when training did not end ``ok``).
        lineage: how many ancestors were retrained first (0: from scratch).
        distillation: the teachers' soft targets it was trained towards, if any.
    """

    result: Result
    model: nn.Module | None
    lineage: int = 0
    distillation: Distillation | None = None


def retrain(
    config: Mapping[str, Any],
    epochs: int,
    *,
    task: Task,
    seed: int,
    segments: Sequence[int] = (),
    record: Mapping[str, Any] | None = None,
    distill: int = 0,
    on_epoch: Callable[[int], EpochCallback | None] | None = None,
    on_teacher_epoch: Callable[[int], EpochCallback | None] | None = None,
    deadline: float | None = None,
) -> Retrained:
    """Train ``config`` for ``epochs`` on ``task`` as it was selected, and score it.

    On a train -> test or a whole-train task (one split) this gives the final network; on a
    K-fold task, the K-fold scores of the configuration trained as it was selected.

    Args:
        config: the genotype.
        epochs: the epochs it was selected at.
        task: a :class:`Task`: with ``use_test`` or ``whole_train`` for a final network.
        seed: fixes initialisation and training (of the ancestors and teachers too).
        segments: its LR cycles as it was selected (see :func:`evoband.training.train`).
        record: its training record (``opt_cfg.training.json``'s content); with a lineage, the
            ancestors are retrained first and the network starts from their weights.
        distill: train this many teachers first and distil the network from them (one split).
        on_epoch: progress callback of the network's training (given the fold index, 0).
        on_teacher_epoch: progress callback of teacher ``i``'s training.
        deadline: ``time.monotonic()`` value after which the network's training stops
            (``timed_out``: no model).
    """
    segments = [b for b in segments if b <= epochs]
    with tempfile.TemporaryDirectory(prefix="evoband-lineage-") as workdir:
        source = lineage_source(record, config, task, seed=seed, workdir=Path(workdir))
        distillation = None
        if distill:
            distillation = teacher_targets(
                config,
                epochs,
                task=task,
                seed=seed,
                teachers=distill,
                segments=segments,
                inherit=source,
                on_epoch=on_teacher_epoch,
            )
        result = evaluate(
            config,
            epochs,
            task=task,
            seed=seed,
            segments=segments,
            on_epoch=on_epoch,
            keep_predictions=True,
            inherit=source,
            distill=distillation,
            deadline=deadline,
        )
    fold = result.folds[0] if result.folds else None
    model = fold.model.eval() if result.ok and fold is not None and fold.model is not None else None
    depth = len((record or {}).get("lineage") or []) - 1 if source is not None else 0
    return Retrained(result, model, depth, distillation)
