"""Knowledge distillation for the final training (``main.py -t --distill K``).

The teachers are K copies of the selected network, trained first on the same training split at
the same budget with other seeds; the network is then trained (with its own seed, as without
distillation) towards their averaged soft predictions as well as the labels. It stays one
network of the selected architecture and size: an ensemble's accuracy at one network's cost,
for K + 1 trainings once. Distillation only changes the final training: a search scores
members without it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..core._errors import ConfigError
from ._loop import Distillation, EpochCallback, derive_seed, predict
from ._parent_weights import ParentWeights
from ._results import Status
from ._target import Task, evaluate

logger = logging.getLogger(__name__)

TEACHER_STREAM = 7919
"""Teacher ``i`` of seed ``s`` trains with seed ``derive_seed(s, TEACHER_STREAM, i)``."""


def teacher_targets(
    config: Mapping[str, Any],
    epochs: int,
    *,
    task: Task,
    seed: int,
    teachers: int,
    segments: Sequence[int] = (),
    inherit: ParentWeights | None = None,
    on_epoch: Callable[[int], EpochCallback | None] | None = None,
    temperature: float = Distillation.temperature,
) -> Distillation | None:
    """Train ``teachers`` copies of ``config`` on ``task``'s training split and average their
    predictions on it at ``temperature``.

    Args:
        config, epochs, segments, inherit: as the network itself is trained (see
            :func:`evoband.training._target.evaluate`).
        task: a train -> test task (one split).
        seed: the network's seed; each teacher's is derived from it.
        teachers: how many (>= 1).
        on_epoch: progress callback per teacher (its index stands for the fold's).
        temperature: of the distillation loss (:class:`evoband.training._loop.Distillation`, whose
            default weight it keeps).

    Returns:
        The soft targets, or None (with a warning) when no teacher trained to the end.
    """
    if teachers < 1:
        raise ConfigError(f"Distillation needs at least 1 teacher, got {teachers}.")
    if len(task.splits) != 1:
        raise ConfigError("Distillation trains the final network: use a train -> test task.")
    x_train = task.splits[0].x_train
    probabilities = []
    for i in range(teachers):
        result = evaluate(
            config,
            epochs,
            task=task,
            seed=derive_seed(seed, TEACHER_STREAM, i),
            segments=segments,
            keep_predictions=True,
            inherit=inherit,
            on_epoch=_progress_of(on_epoch, i),
        )
        fold = result.folds[0]
        if fold.status != Status.OK or fold.model is None:
            logger.warning(
                "Teacher %d of %d ended %s; it is left out.", i + 1, teachers, fold.status
            )
            continue
        probabilities.append((predict(fold.model, x_train) / temperature).softmax(dim=1))
        logger.info("Teacher %d of %d: test top-3 %.4f", i + 1, teachers, result.top3)
    if not probabilities:
        logger.warning("No teacher trained to the end: the network trains without distillation.")
        return None
    return Distillation(torch.stack(probabilities).mean(dim=0), temperature=temperature)


def _progress_of(
    on_epoch: Callable[[int], EpochCallback | None] | None, teacher: int
) -> Callable[[int], EpochCallback | None] | None:
    """The per-fold progress callback of teacher ``teacher`` (its one fold is the teacher)."""
    if on_epoch is None:
        return None
    return lambda _fold: on_epoch(teacher)


def distillation_record(teachers: int, distillation: Distillation | None) -> dict[str, Any] | None:
    """How the network was distilled, for its result file; None when it was not."""
    if distillation is None:
        return None
    return {
        "teachers": teachers,
        "weight": distillation.weight,
        "temperature": distillation.temperature,
    }
