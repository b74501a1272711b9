"""Retraining a run's optimum on the whole training split and scoring it on test, for
``src/evaluation.py --test``: by the one retrain function (:func:`evoband.training.retrain`), as
``main.py -t`` does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..core._errors import DataError
from ..search._settings import SearchSettings
from ..store._analysis import member_results, optimum
from ..store._exports import read_training_record
from ..store._runs import RunData, member_config
from ..training._arrays import ARRAYS
from ..training._data import DIGITS, load_data
from ..training._loop import predict, resolve_device
from ..training._metrics import confusion_matrix
from ..training._results import Status
from ..training._retrain import retrain
from ..training._target import Task

logger = logging.getLogger(__name__)

DEFAULT_EPOCHS = 32
"""Epochs for an optimum with no record of its budget (the search's default max_epochs)."""


@dataclass
class TestResult:
    """A run's optimum retrained from scratch on the training split and scored on the test split."""

    run: str
    config: dict[str, Any]
    epochs: int
    seed: int
    top3: float
    top1: float
    precision: float
    num_params: int
    status: Status
    predicted: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    member_id: int = -1
    probabilities: torch.Tensor | None = None
    """Softmax outputs on the test split, ``N_test x n_classes`` (not written to JSON)."""

    @property
    def correct(self) -> np.ndarray:
        """Whether each test image's top-1 prediction is right."""
        return self.predicted == self.labels

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "member_id": self.member_id,
            "config": self.config,
            "epochs": self.epochs,
            "seed": self.seed,
            "top3": self.top3,
            "top1": self.top1,
            "precision": self.precision,
            "num_params": self.num_params,
            "status": self.status,
            "classes": list(self.classes),
            "predicted": self.predicted.tolist(),
            "labels": self.labels.tolist(),
        }


def check_retrainable(run: RunData) -> None:
    """A DataError for a run whose networks only Python code can rebuild: one that searched a
    space composed with the builders (recorded by its fingerprint, not its code)."""
    if run.search.get("space_fingerprint"):
        raise DataError(
            f"{run.name} searched the composed space {run.search.get('space')!r}, which only "
            "its Python code can rebuild; use the population fit() returned (model())."
        )


def test_data_dir(run: RunData) -> str | None:
    """Where the run's data came from, as ``load_data`` takes it (None: the default search)."""
    check_retrainable(run)
    data = run.info.get("data") or {}
    if data.get("name") == DIGITS:
        return DIGITS
    if data.get("name") == ARRAYS:
        raise DataError(
            f"{run.name} was searched on in-memory arrays, which are not on disk; pass --data_dir "
            "with the same images as a folder, or use the population fit() returned (model())."
        )
    location = run.search.get("data") or data.get("location")
    return str(location) if location and Path(str(location)).is_dir() else None


def test_image_size(run: RunData) -> tuple[int, int] | None:
    """The ``--image_size`` the run resized its images to, if any."""
    size = (run.info.get("arguments") or {}).get("image_size")
    return (int(size[0]), int(size[1])) if size else None


def member_training_record(run: RunData, member_id: int) -> dict[str, Any] | None:
    """The run's ``opt_cfg.training.json`` when it names ``member_id`` (or names no member)."""
    record = read_training_record(run.path / "opt_cfg.json")
    if record is not None and record.get("member_id", member_id) == member_id:
        return record
    return None


def selected_training(
    run: RunData, member_id: int, record: dict[str, Any] | None = None
) -> tuple[int, list[int]]:
    """Epochs and LR segments the run scored ``member_id`` at: its ``opt_cfg.training.json`` when
    that names the member (``record``: that file, already read), else its standing budget (highest
    ``ok`` one) with the rungs of its Hyperband bracket up to that budget as LR cycles (as the
    search trained it)."""
    record = record or member_training_record(run, member_id)
    if record is not None:
        return record["epochs"], record["segments"]
    standing = member_results(run.evaluations)
    row = standing[standing["member_id"] == member_id]
    if not len(row):
        return DEFAULT_EPOCHS, []
    epochs = int(row["epochs"].iloc[0])
    return epochs, bracket_segments(run, row["bracket"].iloc[0], epochs)


def bracket_segments(run: RunData, bracket: Any, epochs: int) -> list[int]:
    """The rung budgets of Hyperband bracket ``bracket`` up to ``epochs``, as the run's settings
    plan them (:meth:`SearchSettings.lr_segments`)."""
    search = run.search
    if bracket is None or pd.isna(bracket) or not search.get("hyperband"):
        return []
    settings = SearchSettings(
        hyperband=True,
        min_epochs=int(search["min_epochs"]),
        max_epochs=int(search["max_epochs"]),
        eta=int(search["eta"]),
    )
    return list(settings.lr_segments(int(bracket), up_to=epochs))


def retrain_on_test(
    run: RunData,
    task: Task,
    epochs: int | None = None,
    seed: int | None = None,
    member_id: int | None = None,
) -> TestResult | None:
    """Retrain a member of the run on the training split (from scratch, or after its lineage when
    it inherited weights, see :mod:`evoband.training._lineage`); score it on the test split.

    By the one retrain function (:func:`evoband.training.retrain`), as ``main.py -t`` does.

    Args:
        run: the run.
        task: a ``Task(data, use_test=True)`` of the run's data set.
        epochs: epochs to train; None: as the member was selected (:func:`selected_training`).
        seed: fixes initialisation and training; default the run's seed.
        member_id: the member; default the run's optimum.

    Returns:
        The scores and predictions, or None when the run has no optimum.
    """
    check_retrainable(run)
    if member_id is None:
        best = optimum(run.evaluations, run.constraints)
        if best is None:
            return None
        member_id = int(best["member_id"])
    config = member_config(run, member_id)
    seed = seed if seed is not None else (run.seed if run.seed is not None else 0)
    segments: list[int] = []
    record = member_training_record(run, member_id)
    if epochs is None:
        epochs, segments = selected_training(run, member_id, record)
    # a record naming no member carries no lineage of this one
    named = record if record is not None and record.get("member_id") == member_id else None
    trained = retrain(config, epochs, task=task, seed=seed, segments=segments, record=named)
    result = trained.result
    fold = result.folds[0] if result.folds else None
    probabilities = None
    if trained.model is not None:
        probabilities = predict(trained.model, task.splits[0].x_valid).softmax(dim=1)
    return TestResult(
        run=run.name,
        config=config,
        epochs=epochs,
        seed=seed,
        top3=result.top3,
        top1=result.top1,
        precision=result.precision,
        num_params=result.num_params,
        status=result.status,
        predicted=np.asarray(fold.predicted if fold else [], dtype=int),
        labels=np.asarray(fold.labels if fold else [], dtype=int),
        classes=tuple(task.data.classes),
        member_id=member_id,
        probabilities=probabilities,
    )


def test_task(
    run: RunData, tasks: dict[Any, Task], data_dir: str | None, device: torch.device
) -> Task:
    """The ``Task(use_test=True)`` of ``run``'s data (``data_dir`` overrides it), made once per
    distinct data set and image size in ``tasks``."""
    key = (data_dir if data_dir is not None else test_data_dir(run), test_image_size(run))
    if key not in tasks:
        tasks[key] = Task(load_data(*key), use_test=True, device=device)
    return tasks[key]


def test_optima(
    runs: Iterable[RunData],
    epochs: int | None = None,
    *,
    data_dir: str | None = None,
    device: str = "auto",
    seed: int | None = None,
) -> dict[str, TestResult]:
    """:func:`retrain_on_test` for every run, loading each distinct data set once.

    Args:
        runs: the runs.
        epochs: epochs to train each optimum; None: as each was selected.
        data_dir: the data set for every run; default the one each run recorded.
        device: where to train (``auto``: CUDA, MPS, else CPU).
        seed: fixes training of every run; default each run's seed.
    """
    target = resolve_device(device)
    tasks: dict[Any, Task] = {}
    out: dict[str, TestResult] = {}
    for run in runs:
        task = test_task(run, tasks, data_dir, target)
        logger.info(
            "Retraining the optimum of %s for %s epochs on the full training split.",
            run.name,
            epochs if epochs is not None else "its selected",
        )
        result = retrain_on_test(run, task, epochs, seed)
        if result is not None:
            logger.info(
                "%s: test top-3 %.4f, top-1 %.4f, precision %.4f",
                run.name,
                result.top3,
                result.top1,
                result.precision,
            )
            out[run.name] = result
    return out


def confusion(test: TestResult) -> np.ndarray:
    """The test confusion matrix (rows: true class, columns: predicted), by :mod:`evoband.training._metrics`."""
    return confusion_matrix(
        torch.as_tensor(test.predicted), torch.as_tensor(test.labels), len(test.classes)
    ).numpy()
