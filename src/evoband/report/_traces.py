"""The series behind the progress figures: best feasible top-3 so far, epochs spent, and bands
of mean +- std over the runs of a group on a common grid."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..core._validate import invalid
from ..store._analysis import chronological, feasible_mask
from ..store._runs import RunData


def cumulative_epochs(frame: pd.DataFrame, folds: int = 1) -> np.ndarray:
    """Epochs trained, summed over folds, after each evaluation of a chronological frame.

    A member continued from its checkpoint (a Hyperband promotion) trains only the epochs beyond
    its previous budget. With a ``fold_epochs`` column ({fold: epochs the fold had trained when
    it finished}, from the ledger's folds) the count is exact, timed-out folds included; without
    it every one of ``folds`` folds is assumed to have trained the whole budget.
    """
    reached: dict[int, dict[int, int]] = {}
    per_fold = frame["fold_epochs"] if "fold_epochs" in frame.columns else [None] * len(frame)
    extra = []
    for member_id, epochs, done in zip(frame["member_id"], frame["epochs"], per_fold, strict=True):
        before = reached.get(int(member_id), {})
        if (
            not isinstance(done, Mapping) or not done
        ):  # no fold records: every fold trained the budget
            done = dict.fromkeys(range(folds), int(epochs))
        extra.append(sum(max(int(n) - before.get(k, 0), 0) for k, n in done.items()))
        reached[int(member_id)] = {
            **before,
            **{k: max(int(n), before.get(k, 0)) for k, n in done.items()},
        }
    return np.cumsum(np.asarray(extra, dtype=float))


def best_so_far(
    values: Sequence[float] | np.ndarray, feasible: Sequence[bool] | np.ndarray
) -> np.ndarray:
    """Running maximum of the feasible values; NaN until the first feasible one."""
    v = np.where(np.asarray(feasible, dtype=bool), np.asarray(values, dtype=float), -np.inf)
    best = np.maximum.accumulate(v) if len(v) else v
    return np.where(np.isfinite(best), best, np.nan)


def best_feasible_trace(run: RunData, x: str = "elapsed") -> pd.DataFrame:
    """Best feasible CV top-3 after each evaluation (any budget), against ``x``.

    Args:
        run: the run.
        x: ``elapsed`` (run seconds), ``evaluations`` (count) or ``epochs`` (epochs spent).

    Returns:
        Columns ``x`` and ``best``, one row per evaluation in the order they finished.
    """
    frame = chronological(run.evaluations)
    best = best_so_far(
        frame["top3"].to_numpy(dtype=float), feasible_mask(frame, run.constraints).to_numpy()
    )
    if x == "elapsed":
        xs = frame["elapsed"].to_numpy(dtype=float)
    elif x == "evaluations":
        xs = np.arange(1, len(frame) + 1, dtype=float)
    elif x == "epochs":
        xs = cumulative_epochs(frame, run.cv_folds)
    else:
        raise invalid("x", x, "one of 'elapsed', 'evaluations', 'epochs'")
    return pd.DataFrame({"x": xs, "best": best})


def population_trace(run: RunData, column: str) -> pd.DataFrame:
    """A generations column (``avg_acc``, ``avg_prec``, ...) against run seconds."""
    gens = run.generations
    return pd.DataFrame(
        {
            "x": gens["elapsed"].to_numpy(dtype=float),
            "best": pd.to_numeric(gens[column], errors="coerce").to_numpy(dtype=float),
        }
    )


def step_on_grid(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    grid: np.ndarray,
    end: float | None = None,
) -> np.ndarray:
    """A right-continuous step function through (x, y) read at ``grid``.

    NaN before the first step and from ``end`` on (the run had stopped): drawn as steps, the
    value at a grid point holds until the next one, so the last value reaches ``end`` exactly.
    """
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], ys[order]
    idx = np.searchsorted(xs, grid, side="right") - 1
    out = np.where(idx >= 0, ys[np.clip(idx, 0, None)] if len(ys) else np.nan, np.nan)
    if end is not None:
        out = np.where(grid >= end, np.nan, out)
    return out


@dataclass(frozen=True)
class Band:
    """Mean and standard deviation over runs on a grid; ``n`` runs with a value at each point."""

    grid: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n: np.ndarray


def band(curves: Sequence[np.ndarray], grid: np.ndarray) -> Band:
    """Mean +- sample standard deviation (0 for a single run) of curves sampled on ``grid``."""
    stack = (
        np.vstack([np.asarray(c, dtype=float) for c in curves])
        if curves
        else np.full((1, len(grid)), np.nan)
    )
    n = np.sum(~np.isnan(stack), axis=0)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(stack, axis=0)
        std = np.where(n > 1, np.nanstd(stack, axis=0, ddof=1), 0.0)
    return Band(grid, mean, np.where(n > 0, std, np.nan), n)


def group_band(
    traces: Sequence[pd.DataFrame], ends: Sequence[float | None], grid: np.ndarray
) -> Band:
    """:func:`band` of the step traces (columns x, best) of the runs of a group.

    A run that has stopped keeps its last value until the group's last run stops (its state,
    frozen), and the mean is NaN wherever not every run has a value yet, so that a run joining
    late cannot make the mean jump.
    """
    finite = [e for e in ends if e is not None and math.isfinite(e)]
    end = max(finite) if finite else None
    b = band([step_on_grid(t["x"], t["best"], grid, end) for t in traces], grid)
    complete = b.n == len(traces)
    return Band(grid, np.where(complete, b.mean, np.nan), np.where(complete, b.std, np.nan), b.n)
