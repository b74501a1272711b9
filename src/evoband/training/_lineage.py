"""Retraining a member that inherited weights: along its lineage, not from scratch.

A child that started from its parents' trained weights (``--inherit_weights True``) was scored
after their training plus its own epochs. Retrained from scratch for its own epochs only it is a
different, less trained network. Its lineage (recorded in ``opt_cfg.training.json``) lists every
ancestor whose weights it carries, with the epochs each had trained when its weights were passed
on; :func:`train_lineage` retrains them in that order on the task's split, each inheriting from
its own sources, and returns where the member's weights come from.

A lineage node is a dict ``{"member_id", "config", "epochs", "sources"}``; ``sources`` lists
``[member_id, epochs]`` of the nodes it inherited from, the first parent first. The last node is
the member itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..core._errors import EvobandError
from ._loop import derive_seed
from ._parent_weights import ParentWeights
from ._results import Status
from ._target import Task, evaluate

logger = logging.getLogger(__name__)

Sources = Sequence[tuple[int, int]]


def train_lineage(
    lineage: Sequence[Mapping[str, Any]],
    task: Task,
    *,
    seed: int,
    segments: Sequence[int],
    workdir: Path,
) -> ParentWeights | None:
    """Train the ancestors of the lineage's last node on ``task``; its inheritance source.

    Each ancestor is trained from its own sources' weights to the epochs recorded for it (LR
    cycles: the ``segments`` up to those epochs; seed derived from ``seed`` and its id), its
    checkpoint kept in ``workdir``. Returns None when the last node inherited nothing.

    Raises:
        EvobandError: an ancestor's training did not finish ``ok`` (the lineage is broken).
    """
    trained: dict[tuple[int, int], ParentWeights] = {}

    def source_of(node: Mapping[str, Any]) -> ParentWeights | None:
        found = [trained[(int(p), int(e))] for p, e in node["sources"]]
        if not found:
            return None
        first, *donors = found
        return replace(first, donors=tuple(donors))

    *ancestors, last = lineage
    for node in ancestors:
        member_id, epochs = int(node["member_id"]), int(node["epochs"])
        directory = workdir / f"member{member_id}_{epochs}epochs"
        result = evaluate(
            node["config"],
            epochs,
            task=task,
            seed=derive_seed(seed, member_id),
            segments=[b for b in segments if b <= epochs],
            checkpoint_dir=directory,
            inherit=source_of(node),
        )
        if result.status != Status.OK:
            raise EvobandError(
                f"Ancestor member {member_id} of the lineage ended {result.status} at {epochs} "
                f"epochs ({result.message}); main.py --lineage False trains it from scratch."
            )
        hashes = {f.fold: f.checkpoint_sha256 for f in result.folds if f.checkpoint_sha256}
        trained[(member_id, epochs)] = ParentWeights(
            member_id, dict(node["config"]), directory, hashes, epochs
        )
    return source_of(last)


def lineage_source(
    record: Mapping[str, Any] | None,
    config: Mapping[str, Any],
    task: Task,
    *,
    seed: int,
    workdir: Path,
) -> ParentWeights | None:
    """Where ``config``'s weights come from when its training record (``opt_cfg.training.json``)
    has a lineage: its ancestors retrained on ``task`` (:func:`train_lineage`); None when it
    inherited nothing or the record's lineage ends in another configuration."""
    if record is None or len(record.get("lineage") or []) < 2:
        return None
    lineage = record["lineage"]
    if any(config.get(k) != v for k, v in lineage[-1]["config"].items()):
        logger.warning(
            "The training record's lineage ends in another configuration than this one; "
            "training it from scratch."
        )
        return None
    epochs = sum(int(node["epochs"]) for node in lineage[:-1])
    logger.info(
        "Member %s inherited weights: retraining its %d ancestors first (%d epochs in all).",
        lineage[-1]["member_id"],
        len(lineage) - 1,
        epochs,
    )
    return train_lineage(
        lineage, task, seed=seed, segments=list(record["segments"]), workdir=workdir
    )
