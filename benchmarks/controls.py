"""No-search controls and the clean test split, for ``search_quality.py``.

An AutoML tool must beat what a user gets without searching, at the same compute:

- ``recipe_once``: the recipe with the best CV among the space's recipes, trained once on all
  training images at the search's top budget with one LR cycle (as ``main.py -t`` trains a
  configuration without a training record) and scored on test;
- ``recipe_ensemble``: seeds of that recipe trained one after another for the search's wall
  time, their softmax outputs averaged. ``recipe_once`` is its first member (same seed).

The *clean* test images are those whose RMSE to every training image is at least
:data:`CLEAN_RMSE` on the 0-255 scale: near-copies of training images score a memoriser, not a
predictor. Every method is scored on all test images and on the clean ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

CLEAN_RMSE = 5.0
"""A test image closer than this (RMSE over pixels, 0-255 scale) to a training image is a
near-copy of it and left out of the clean test split."""


def nearest_train_rmse(train: torch.Tensor, test: torch.Tensor) -> np.ndarray:
    """For each test image, the RMSE (0-255 scale) to its nearest training image.

    Args:
        train: uint8 images ``N x C x H x W``.
        test: uint8 images ``M x C x H x W`` of the same shape.
    """
    a = train.reshape(len(train), -1).to(torch.float64)
    b = test.reshape(len(test), -1).to(torch.float64)
    squared = (b * b).sum(1)[:, None] + (a * a).sum(1)[None, :] - 2.0 * b @ a.T
    mse = squared.clamp_min(0.0) / a.shape[1]
    return mse.min(dim=1).values.sqrt().numpy()


def clean_test_mask(
    train: torch.Tensor, test: torch.Tensor, rmse: float = CLEAN_RMSE
) -> np.ndarray:
    """Whether each test image is clean: at least ``rmse`` from every training image."""
    return nearest_train_rmse(train, test) >= rmse


def scores(
    probabilities: np.ndarray, labels: np.ndarray, mask: np.ndarray | None = None
) -> dict[str, float]:
    """Top-3, top-1 and macro precision of ``probabilities`` (``N x classes``) on the images
    ``mask`` selects (all by default), by evoband's one metrics module."""
    from evoband.training import compute_metrics

    keep = np.ones(len(labels), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    m = compute_metrics(
        torch.as_tensor(np.asarray(probabilities, dtype=np.float32)[keep]),
        torch.as_tensor(np.asarray(labels)[keep]),
    )
    return {"top3": m.top3, "top1": m.top1, "precision": m.precision}


@dataclass
class ControlRun:
    """Seeds of one recipe trained one after another, with their test probabilities."""

    recipe: str
    seed: int
    budget: float
    labels: np.ndarray
    member_seconds: list[float] = field(default_factory=list)
    member_probabilities: list[np.ndarray] = field(default_factory=list)
    finished_at: list[float] = field(default_factory=list)

    def probabilities(self, n: int | None = None) -> np.ndarray:
        """The averaged softmax outputs of the first ``n`` members (all by default)."""
        members = self.member_probabilities[: n or len(self.member_probabilities)]
        return np.mean(np.stack(members), axis=0)


_WORKER_TASK: Any = None


def _start_worker(data_dir: str | None, device: str) -> None:
    """Load the data set once per worker process, as a train -> test task."""
    global _WORKER_TASK
    from evoband.training import Task, load_data, resolve_device

    torch.set_num_threads(1)
    _WORKER_TASK = Task(load_data(data_dir), use_test=True, device=resolve_device(device))


def _train_member(
    config: dict[str, Any], epochs: int, seed: int
) -> tuple[str, np.ndarray | None, float]:
    """Train one member on all training images; its status, test softmax outputs and seconds."""
    from evoband.training import evaluate, predict

    t0 = time.monotonic()
    task = _WORKER_TASK
    result = evaluate(config, epochs, task=task, seed=seed, keep_predictions=True)
    fold = result.folds[0]
    if not result.ok or fold.model is None:
        return str(result.status), None, time.monotonic() - t0
    probs = predict(fold.model, task.splits[0].x_valid).softmax(dim=1).numpy().astype(np.float32)
    return str(result.status), probs, time.monotonic() - t0


def run_recipe_control(
    config: Mapping[str, Any],
    recipe: str,
    *,
    data_dir: str | None,
    labels: np.ndarray,
    seed: int,
    budget: float,
    epochs: int,
    workers: int,
    max_members: int | None = None,
    device: str = "auto",
    log: Callable[[str], None] = print,
) -> ControlRun:
    """Train seeds of ``config`` on all training images, ``workers`` at a time (one per core, as
    the search has one fold worker per core), each started while it is expected to finish within
    ``budget`` seconds (by the mean time of those before it).

    Member ``i`` trains ``epochs`` epochs with one LR cycle from a fresh initialisation with seed
    ``derive_seed(seed, i)``, through ``main.py -t``'s code path (a train -> test
    :class:`evoband.training._target.Task` and :func:`evoband.training._target.evaluate`). Members are averaged in
    the order of their seeds.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from evoband.training import derive_seed

    start = time.monotonic()
    run = ControlRun(recipe, seed, budget, labels)
    done: dict[int, tuple[np.ndarray, float]] = {}
    seconds: list[float] = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, context, _start_worker, (data_dir, device)) as pool:
        running: dict[Any, int] = {}
        started = 0
        while True:
            elapsed = time.monotonic() - start
            expected = float(np.mean(seconds)) if seconds else 0.0
            while (
                len(running) < workers
                and (max_members is None or started < max_members)
                and (not seconds or elapsed + expected <= budget)
                and (seconds or started < workers)
            ):
                future = pool.submit(
                    _train_member, dict(config), epochs, derive_seed(seed, started)
                )
                running[future] = started
                started += 1
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                i = running.pop(future)
                status, probs, took = future.result()
                seconds.append(took)
                if probs is None:
                    log(f"  {recipe} member {i} {status}: left out")
                    continue
                done[i] = (probs, time.monotonic() - start)
                alone = scores(probs, labels)["top3"]
                log(f"  {recipe} member {i} in {took:.0f} s: test top-3 {alone:.3f}")
    for i in sorted(done):
        run.member_probabilities.append(done[i][0])
        run.finished_at.append(done[i][1])
    run.member_seconds = seconds
    log(
        f"  {recipe}: {len(done)} members in {time.monotonic() - start:.0f} s, averaged test "
        f"top-3 {scores(run.probabilities(), labels)['top3']:.3f}"
    )
    return run
