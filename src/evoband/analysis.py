"""Analysis of recorded runs: the computations behind ``src/evaluation.py``'s figures and tables.

Small pure functions on the ledger's DataFrames (:func:`evoband.store.load_run`, one row per
member and budget) and on arrays; the drawing is in :mod:`evoband.plots`.

Definitions used throughout:

- an *evaluation* is one (member, budget) row of the ledger;
- a member's *result* is its highest-budget evaluation (what the optimizer ranks and returns);
- *feasible*: status ok and every constraint met (:meth:`Constraints.feasible`);
- the *optimum* of a run: the best member result by the feasibility-first ranking
  (:meth:`Constraints.rank_key`, ties to the older member), exactly as the optimizer returns it;
- *epochs spent*: epochs trained summed over folds (as the ledger's folds record them), where a
  member continued from its checkpoint counts only the extra epochs of each rung.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

from .constraints import Constraints
from .data import DIGITS, load_data
from .errors import EvobandError, StoreError
from .metrics import confusion_matrix
from .store import RunStore, read_run_json
from .target import Result, Task, evaluate
from .train import OK, resolve_device

logger = logging.getLogger(__name__)

BOTH, PARAMS_ONLY, PRECISION_ONLY, NEITHER, NOT_OK = (
    "both",
    "params only",
    "precision only",
    "neither",
    "not ok",
)
CONSTRAINT_CLASSES = (BOTH, PARAMS_ONLY, PRECISION_ONLY, NEITHER, NOT_OK)
"""Which constraints an evaluation meets; ``not ok`` = diverged, timed out or failed."""


# -- one run ---------------------------------------------------------------------------------


@dataclass
class RunData:
    """One run directory, read once: its ledger, its generations, its description.

    Attributes:
        path: the run directory.
        name: a short unique label (the folder name).
        algorithm: EA+HB, EA, RS+HB or RS.
        constraints: from run.json, or overridden by the caller.
        evaluations: :func:`evoband.store.load_run`'s frame, in the order results finished.
        generations: :meth:`RunStore.generations_frame`.
        info: run.json (or the ledger's run info for a run that has none yet).
    """

    path: Path
    name: str
    algorithm: str
    constraints: Constraints
    evaluations: pd.DataFrame
    generations: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def search(self) -> dict[str, Any]:
        return dict(self.info.get("search") or {})

    @property
    def seed(self) -> int | None:
        seed = self.search.get("seed")
        return None if seed is None else int(seed)

    @property
    def cv_folds(self) -> int:
        return int(self.search.get("cv_folds") or 1)

    @property
    def elapsed(self) -> float:
        """Seconds the run lasted (up to its last record for a live run)."""
        recorded = self.info.get("elapsed_seconds")
        last = [float(self.evaluations["elapsed"].max())]
        if len(self.generations):
            last.append(float(self.generations["elapsed"].max()))
        candidates = [x for x in [recorded, *last] if x is not None and math.isfinite(x)]
        return max(candidates, default=0.0)

    @property
    def final_rungs(self) -> dict[int, int]:
        """The last rung index of each Hyperband bracket, from the recorded schedule."""
        schedule = self.info.get("hyperband") or {}
        return {int(b["s"]): len(b["budgets"]) - 1 for b in schedule.get("brackets", [])}

    @property
    def uses_hyperband(self) -> bool:
        return bool(self.evaluations["bracket"].notna().any())


def algorithm_name(search: Mapping[str, Any]) -> str:
    """EA / RS, with +HB for Hyperband, as :attr:`SearchSettings.algorithm` names them."""
    name = "RS" if search.get("random_search") else "EA"
    return f"{name}+HB" if search.get("hyperband") else name


def read_run(
    run_dir: str | Path,
    *,
    max_params: float | None = None,
    min_precision: float | None = None,
    name: str | None = None,
) -> RunData:
    """Read a run directory; constraints from its run.json unless given.

    Raises:
        StoreError: the directory is missing, holds no ledger, an unreadable one, or no
            evaluations yet, or its constraints are unknown and not given.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise StoreError(f"{path} does not exist or is not a directory.")
    try:
        store = RunStore(path, readonly=True)
    except sqlite3.Error as exc:
        raise StoreError(f"{path} has an unreadable ledger ({exc}).") from exc
    try:
        evaluations = store.evaluations_frame()
        evaluations["fold_epochs"] = [
            {k: f.epochs for k, f in store.fold_results(int(m), int(e)).items()}
            for m, e in zip(evaluations["member_id"], evaluations["epochs"], strict=True)
        ]
        generations = store.generations_frame()
        ledger_info = store.run_info()
    except (sqlite3.Error, pd.errors.DatabaseError, ValueError) as exc:
        raise StoreError(f"{path} has an unreadable ledger ({exc}).") from exc
    finally:
        store.close()
    try:
        info = read_run_json(path)
    except (OSError, json.JSONDecodeError):
        info = ledger_info
    if not isinstance(info, dict):
        info = ledger_info
    search = info.get("search") or ledger_info.get("search") or {}
    info.setdefault("search", search)
    if len(evaluations) == 0:
        raise StoreError(f"{path} holds no evaluations yet.")
    limit = max_params if max_params is not None else search.get("max_params")
    floor = min_precision if min_precision is not None else search.get("min_precision")
    if limit is None or floor is None:
        raise StoreError(
            f"{path} records no constraints; pass --constraint_max_model_size and "
            "--constraint_min_precision."
        )
    run = RunData(
        path=path,
        name=name or path.resolve().name,
        algorithm=str(info.get("algorithm") or algorithm_name(search)),
        constraints=Constraints.of(limit, floor),
        evaluations=evaluations.reset_index(drop=True),
        generations=generations,
        info=info,
    )
    recorded = (info.get("best") or {}).get("member_id")
    if recorded is not None and max_params is None and min_precision is None:
        best = optimum(run.evaluations, run.constraints)
        if best is not None and int(best["member_id"]) != int(recorded):
            logger.warning(
                "%s: run.json names member %s as the optimum, the ledger ranks member %s first.",
                path,
                recorded,
                int(best["member_id"]),
            )
    return run


def load_groups(
    entries: Sequence[tuple[str | None, str | Path]],
    *,
    max_params: float | None = None,
    min_precision: float | None = None,
) -> tuple[dict[str, list[RunData]], list[str]]:
    """Read runs into named groups; a run without a group joins the group of its algorithm.

    Args:
        entries: (group name or None, run directory), in the order to show them.
        max_params, min_precision: override every run's recorded constraints.

    Returns:
        The groups (in first-seen order, without empty ones) and one message per unusable run.
    """
    groups: dict[str, list[RunData]] = {}
    problems: list[str] = []
    used: set[str] = set()
    for group, run_dir in entries:
        try:
            run = read_run(run_dir, max_params=max_params, min_precision=min_precision)
        except EvobandError as exc:  # one unusable run does not stop the others
            problems.append(f"skipping {run_dir}: {exc}")
            continue
        base, k = run.name, 2
        while run.name in used:  # two runs named alike in different folders
            run.name = f"{base}-{k}"
            k += 1
        used.add(run.name)
        groups.setdefault(group or run.algorithm, []).append(run)
    return groups, problems


# -- results and ranking ---------------------------------------------------------------------


def _num(value: Any, default: float = 0.0) -> float:
    return (
        default
        if value is None or (isinstance(value, float) and math.isnan(value))
        else float(value)
    )


def result_of(row: Mapping[str, Any]) -> Result:
    """The :class:`Result` of one ledger row (for the constraint objects)."""
    return Result(
        top3=_num(row["top3"]),
        top1=_num(row["top1"]),
        precision=_num(row["precision"]),
        num_params=int(_num(row["num_params"])),
        epochs=int(row["epochs"]),
        seconds=_num(row["seconds"]),
        status=str(row["status"]),
    )


def chronological(frame: pd.DataFrame) -> pd.DataFrame:
    """Evaluations in the order they finished."""
    return frame.sort_values(["finished", "member_id"], kind="stable").reset_index(drop=True)


def member_results(frame: pd.DataFrame) -> pd.DataFrame:
    """Each member's highest-budget evaluation (its result), by member id."""
    idx = frame.groupby("member_id")["epochs"].idxmax()
    return frame.loc[idx.to_numpy()].sort_values("member_id").reset_index(drop=True)


def feasible_mask(frame: pd.DataFrame, constraints: Constraints) -> pd.Series:
    """Whether each row is feasible (status ok and every constraint met)."""
    return pd.Series(
        [constraints.feasible(result_of(r)) for r in _rows(frame)], index=frame.index, dtype=bool
    )


def rank(frame: pd.DataFrame, constraints: Constraints) -> pd.DataFrame:
    """Rows in feasibility-first order, best first: the one ranking rule of evoband.

    Feasible by top-3 descending, then infeasible ok ones by precision descending, then the
    others; ties go to the older member (:meth:`EvolutionaryOptimizer.rank`).
    """
    keys = [(*constraints.rank_key(result_of(r)), int(r["member_id"])) for r in _rows(frame)]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return frame.iloc[order].reset_index(drop=True)


def optimum(frame: pd.DataFrame, constraints: Constraints) -> pd.Series | None:
    """The member result the run returns: the best by :func:`rank` over :func:`member_results`."""
    if len(frame) == 0:
        return None
    return rank(member_results(frame), constraints).iloc[0]


def constraint_classes(frame: pd.DataFrame, constraints: Constraints) -> pd.Series:
    """Which constraints each row meets: both / params only / precision only / neither / not ok."""
    labels = []
    for row in _rows(frame):
        result = result_of(row)
        if not result.ok:
            labels.append(NOT_OK)
            continue
        params = constraints.max_params.satisfied(result)
        precision = constraints.min_precision.satisfied(result)
        labels.append(
            BOTH
            if params and precision
            else PARAMS_ONLY
            if params
            else PRECISION_ONLY
            if precision
            else NEITHER
        )
    return pd.Series(labels, index=frame.index, dtype=object)


def _rows(frame: pd.DataFrame) -> Iterable[dict[str, Any]]:
    return frame.to_dict("records")


# -- traces ----------------------------------------------------------------------------------


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
        raise ValueError(f"x must be 'elapsed', 'evaluations' or 'epochs', not {x!r}.")
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


# -- populations, Pareto front, Hyperband rungs ----------------------------------------------


def feasible_fraction(frame: pd.DataFrame, constraints: Constraints) -> pd.DataFrame:
    """Per generation: evaluations, feasible evaluations and their fraction."""
    feasible = feasible_mask(frame, constraints)
    per = pd.DataFrame({"generation": frame["generation"].astype(int), "feasible": feasible})
    out = (
        per.groupby("generation")["feasible"]
        .agg(n_evaluations="size", n_feasible="sum")
        .reset_index()
    )
    out["fraction"] = out["n_feasible"] / out["n_evaluations"]
    return out


def pareto_mask(
    num_params: Sequence[float] | np.ndarray, top3: Sequence[float] | np.ndarray
) -> np.ndarray:
    """Points no other point dominates (at most as many params and at least the top-3, one strictly).

    Of identical points only the first is kept.
    """
    params, acc = np.asarray(num_params, dtype=float), np.asarray(top3, dtype=float)
    order = np.lexsort((-acc, params))  # by params ascending, then top-3 descending
    mask = np.zeros(len(params), dtype=bool)
    best = -np.inf
    for i in order:
        if acc[i] > best:
            mask[i] = True
            best = acc[i]
    return mask


def pareto_front(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows on the (fewer params, higher top-3) Pareto front, by params ascending."""
    if len(frame) == 0:
        return frame.copy()
    mask = pareto_mask(frame["num_params"].to_numpy(), frame["top3"].to_numpy())
    return frame[mask].sort_values("num_params").reset_index(drop=True)


def precision_feasible(frame: pd.DataFrame, constraints: Constraints) -> pd.DataFrame:
    """Rows with status ok that meet the precision constraint (whatever their size)."""
    keep = [
        r["status"] == OK and constraints.min_precision.satisfied(result_of(r))
        for r in _rows(frame)
    ]
    return frame[np.asarray(keep, dtype=bool)] if len(frame) else frame.copy()


def spearman_per_rung(
    frame: pd.DataFrame, final_rungs: Mapping[int, int] | None = None
) -> pd.DataFrame:
    """Spearman correlation of each rung's top-3 with the final rung's, per Hyperband bracket.

    Only members that reached the bracket's final rung count (pooled over generations).

    Args:
        frame: evaluations with ``bracket`` and ``rung``.
        final_rungs: last rung index per bracket (the schedule); default the highest one seen.

    Returns:
        Columns bracket, rung, epochs, n, rho, pvalue (NaN when n < 3 or undefined), for every
        rung below the final one.
    """
    rows: list[dict[str, Any]] = []
    hb = frame[frame["bracket"].notna() & frame["rung"].notna()]
    for bracket, part in hb.groupby(hb["bracket"].astype(int)):
        rung = part["rung"].astype(int)
        final = (final_rungs or {}).get(int(bracket), int(rung.max()))
        table = part.assign(rung=rung).pivot_table(
            index="member_id", columns="rung", values="top3", aggfunc="max"
        )
        finished = table[table[final].notna()] if final in table.columns else table.iloc[:0]
        for r in sorted(c for c in table.columns if c < final):
            pair = (
                finished[[r, final]].dropna() if final in table.columns else finished[[r]].iloc[:0]
            )
            epochs = part.loc[rung == r, "epochs"]
            rho, p = (
                spearman(pair[r].to_numpy(), pair[final].to_numpy())
                if len(pair)
                else (math.nan, math.nan)
            )
            rows.append(
                {
                    "bracket": int(bracket),
                    "rung": int(r),
                    "epochs": int(epochs.max()),
                    "n": len(pair),
                    "rho": rho,
                    "pvalue": p,
                }
            )
    return pd.DataFrame(rows, columns=["bracket", "rung", "epochs", "n", "rho", "pvalue"])


def spearman(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Spearman's rho and its p-value; NaN for fewer than 3 pairs or a constant sample."""
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan"), float("nan")
    res = stats.spearmanr(a, b)
    return float(res.statistic), float(res.pvalue)


# -- run and group summaries -----------------------------------------------------------------


def time_to_first_feasible(frame: pd.DataFrame, constraints: Constraints) -> float:
    """Run seconds at which the first feasible evaluation finished; NaN if none did."""
    frame = chronological(frame)
    hits = frame.loc[feasible_mask(frame, constraints).to_numpy(), "elapsed"]
    return float(hits.iloc[0]) if len(hits) else float("nan")


_SHORT = {
    "aug_flip": "flip",
    "aug_shift": "shift",
    "weight_decay": "wd",
    "label_smoothing": "ls",
    "lr_schedule": "",
    "activation": "",
    "train_criterion": "",
}
_SKIP = {"use_weight_decay"}
_DEFAULTS_HIDDEN = {
    "lr_schedule": "constant",
    "activation": "relu",
    "train_criterion": "cross_entropy",
    "aug_flip": False,
    "aug_shift": 0,
    "label_smoothing": 0.0,
}


def compact_config(config: Mapping[str, Any]) -> str:
    """A one-line description of a genotype, e.g. ``conv[457,511,38] k5 GAP fc[27,17] ...``."""
    c = {
        k: v
        for k, v in config.items()
        if v is not None and not (isinstance(v, float) and math.isnan(v))
    }
    parts: list[str] = []
    done: set[str] = set()

    def widths(prefix: str, count: str) -> list[str]:
        n = int(c.get(count, 0))
        keys = [f"{prefix}_{i}" for i in range(n)]
        done.update([count, *(k for k in c if k.startswith(prefix))])
        return [str(int(c[k])) for k in keys if k in c]

    if "n_conv_layers" in c:
        parts.append(f"conv[{','.join(widths('n_channels_conv', 'n_conv_layers'))}]")
    if "kernel_size" in c:
        parts.append(f"k{int(c['kernel_size'])}")
    if c.get("use_BN"):
        parts.append("BN")
    if c.get("global_avg_pooling"):
        parts.append("GAP")
    done.update(["use_BN", "global_avg_pooling"])
    if "n_fc_layers" in c:
        parts.append(f"fc[{','.join(widths('n_channels_fc', 'n_fc_layers'))}]")
    if "dropout_rate" in c:
        parts.append(f"drop{float(c['dropout_rate']):.2f}")
    if "batch_size" in c:
        parts.append(f"bs{int(c['batch_size'])}")
    if "learning_rate_init" in c:
        parts.append(f"lr{float(c['learning_rate_init']):.1e}")
    if "optimizer" in c:
        parts.append(str(c["optimizer"]))
    done.update(
        ["kernel_size", "dropout_rate", "batch_size", "learning_rate_init", "optimizer", *_SKIP]
    )
    for key in sorted(set(c) - done):
        value = c[key]
        if _DEFAULTS_HIDDEN.get(key, object()) == value:
            continue
        label = _SHORT.get(key, key + "=")
        if isinstance(value, bool):
            parts.append(label.rstrip("=") if value else f"no-{label.rstrip('=')}")
        elif isinstance(value, float):
            parts.append(f"{label}{value:.2g}")
        else:
            parts.append(f"{label}{value}")
    return " ".join(parts)


def member_config(run: RunData, member_id: int) -> dict[str, Any]:
    """A member's genotype exactly as recorded (the frame's columns have lost int / NaN types)."""
    store = RunStore(run.path, readonly=True)
    try:
        config = store.member_config(int(member_id))
    finally:
        store.close()
    if config is None:
        raise StoreError(f"{run.path} records no member {member_id}.")
    return config


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
    status: str
    predicted: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    @property
    def correct(self) -> np.ndarray:
        """Whether each test image's top-1 prediction is right."""
        return self.predicted == self.labels

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
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


def test_data_dir(run: RunData) -> str | None:
    """Where the run's data came from, as ``load_data`` takes it (None: the default search)."""
    data = run.info.get("data") or {}
    if data.get("name") == DIGITS:
        return DIGITS
    location = run.search.get("data") or data.get("location")
    return str(location) if location and Path(str(location)).is_dir() else None


def test_image_size(run: RunData) -> tuple[int, int] | None:
    """The ``--image_size`` the run resized its images to, if any."""
    size = (run.info.get("arguments") or {}).get("image_size")
    return (int(size[0]), int(size[1])) if size else None


def retrain_on_test(
    run: RunData, task: Task, epochs: int, seed: int | None = None
) -> TestResult | None:
    """Retrain the run's optimum from scratch on the training split; score it on the test split.

    The same code path as ``main.py -t``: :class:`Task` with ``use_test`` and :func:`evaluate`.

    Args:
        run: the run.
        task: a ``Task(data, use_test=True)`` of the run's data set.
        epochs: epochs to train.
        seed: fixes initialisation and training; default the run's seed.

    Returns:
        The scores and predictions, or None when the run has no optimum.
    """
    best = optimum(run.evaluations, run.constraints)
    if best is None:
        return None
    config = member_config(run, int(best["member_id"]))
    seed = seed if seed is not None else (run.seed if run.seed is not None else 0)
    result = evaluate(config, epochs, task=task, seed=seed, keep_predictions=True)
    fold = result.folds[0] if result.folds else None
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
    )


def test_optima(
    runs: Iterable[RunData],
    epochs: int,
    *,
    data_dir: str | None = None,
    device: str = "auto",
    seed: int | None = None,
) -> dict[str, TestResult]:
    """:func:`retrain_on_test` for every run, loading each distinct data set once.

    Args:
        runs: the runs.
        epochs: epochs to train each optimum.
        data_dir: the data set for every run; default the one each run recorded.
        device: where to train (``auto``: CUDA, MPS, else CPU).
        seed: fixes training of every run; default each run's seed.
    """
    target = resolve_device(device)
    tasks: dict[tuple[str | None, tuple[int, int] | None], Task] = {}
    out: dict[str, TestResult] = {}
    for run in runs:
        key = (data_dir if data_dir is not None else test_data_dir(run), test_image_size(run))
        if key not in tasks:
            tasks[key] = Task(load_data(*key), use_test=True, device=target)
        logger.info(
            "Retraining the optimum of %s for %d epochs on the full training split.",
            run.name,
            epochs,
        )
        result = retrain_on_test(run, tasks[key], epochs, seed)
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
    """The test confusion matrix (rows: true class, columns: predicted), by :mod:`evoband.metrics`."""
    return confusion_matrix(
        torch.as_tensor(test.predicted), torch.as_tensor(test.labels), len(test.classes)
    ).numpy()


def run_summary(run: RunData, test: TestResult | None = None) -> dict[str, Any]:
    """One summary row of a run: its optimum, its evaluations, its test scores."""
    frame = run.evaluations
    best = optimum(frame, run.constraints)
    feasible = feasible_mask(frame, run.constraints)
    row: dict[str, Any] = {
        "level": "run",
        "group": "",
        "run": run.name,
        "n_runs": 1,
        "algorithm": run.algorithm,
        "seed": run.seed,
        "max_params": run.constraints.max_params.limit,
        "min_precision": run.constraints.min_precision.limit,
    }
    if best is not None:
        row.update(
            {
                "member_id": int(best["member_id"]),
                "config": compact_config(member_config(run, int(best["member_id"]))),
                "epochs": int(best["epochs"]),
                "cv_top3": float(best["top3"]),
                "cv_precision": float(best["precision"]),
                "num_params": int(best["num_params"]),
                "feasible": bool(run.constraints.feasible(result_of(best))),
            }
        )
    row.update(
        {
            "evaluations": len(frame),
            "feasible_rate": float(feasible.mean()) if len(frame) else float("nan"),
            "time_to_first_feasible": time_to_first_feasible(frame, run.constraints),
            "elapsed": run.elapsed,
        }
    )
    if test is not None:
        row.update(
            {
                "test_epochs": test.epochs,
                "test_top3": test.top3,
                "test_top1": test.top1,
                "test_precision": test.precision,
            }
        )
    return row


MEAN_COLUMNS = (
    "cv_top3",
    "cv_precision",
    "num_params",
    "evaluations",
    "feasible_rate",
    "time_to_first_feasible",
    "elapsed",
    "test_top3",
    "test_top1",
    "test_precision",
)
"""Columns a group row gives as mean over its runs (with ``<column>_std``)."""


def best_run(runs: Sequence[RunData]) -> RunData:
    """The run whose optimum ranks best (CV only: the test split never picks)."""

    def key(run: RunData) -> tuple[int, float]:
        best = optimum(run.evaluations, run.constraints)
        return run.constraints.rank_key(None if best is None else result_of(best))

    return min(runs, key=key)


def group_summary(
    name: str, run_rows: Sequence[dict[str, Any]], runs: Sequence[RunData]
) -> dict[str, Any]:
    """A group row: the best run's optimum configuration, means and std over runs of the scores."""
    top = best_run(runs)
    top_row = next(r for r in run_rows if r["run"] == top.name)
    row: dict[str, Any] = {
        "level": "group",
        "group": name,
        "run": top.name,
        "n_runs": len(runs),
        "algorithm": ",".join(sorted({r.algorithm for r in runs})),
        "member_id": top_row.get("member_id"),
        "config": top_row.get("config", ""),
        "epochs": top_row.get("epochs"),
        "feasible": top_row.get("feasible"),
        "n_feasible_runs": sum(bool(r.get("feasible")) for r in run_rows),
    }
    for col in MEAN_COLUMNS:
        values = np.array([_num(r.get(col), float("nan")) for r in run_rows], dtype=float)
        values = values[~np.isnan(values)]
        row[col] = float(values.mean()) if len(values) else float("nan")
        row[f"{col}_std"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return row


def summary_table(
    groups: Mapping[str, Sequence[RunData]], tests: Mapping[str, TestResult] | None = None
) -> pd.DataFrame:
    """Run rows then a row per group (see :func:`run_summary` and :func:`group_summary`)."""
    tests = tests or {}
    rows: list[dict[str, Any]] = []
    for name, runs in groups.items():
        run_rows = [{**run_summary(run, tests.get(run.name)), "group": name} for run in runs]
        rows.extend(run_rows)
        rows.append(group_summary(name, run_rows, runs))
    return pd.DataFrame(rows)


# -- statistical tests -----------------------------------------------------------------------


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test: ``b`` = only A right, ``c`` = only B right; two-sided p-value."""

    b: int
    c: int
    pvalue: float


def mcnemar(
    correct_a: Sequence[bool] | np.ndarray, correct_b: Sequence[bool] | np.ndarray
) -> McNemar:
    """Exact McNemar test (binomial on the discordant pairs) of two classifiers on the same samples."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(
            f"Both classifiers must be scored on the same samples ({a.shape} vs {b.shape})."
        )
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = only_a + only_b
    p = 1.0 if n == 0 else float(stats.binomtest(only_a, n, 0.5).pvalue)
    return McNemar(only_a, only_b, p)


def wilcoxon_paired(a: Mapping[Any, float], b: Mapping[Any, float]) -> tuple[int, float, float]:
    """Wilcoxon signed-rank test over the keys (seeds) both hold: (n pairs, statistic, p-value).

    NaN statistic and p-value with fewer than 3 pairs or when every difference is zero.
    """
    keys = sorted(set(a) & set(b), key=str)
    x = np.array([a[k] for k in keys], dtype=float)
    y = np.array([b[k] for k in keys], dtype=float)
    if len(keys) < 3 or np.all(x == y):
        return len(keys), float("nan"), float("nan")
    res = stats.wilcoxon(x, y)
    return len(keys), float(res.statistic), float(res.pvalue)


def significance_tests(
    groups: Mapping[str, Sequence[RunData]], tests: Mapping[str, TestResult]
) -> pd.DataFrame:
    """Pairwise tests between groups on the test split.

    McNemar: top-1 correctness of each group's best run (by CV ranking) on the test images.
    Wilcoxon: test top-3 of the runs paired by seed, when both groups have >= 3 runs.
    """
    rows: list[dict[str, Any]] = []
    for (name_a, runs_a), (name_b, runs_b) in combinations(groups.items(), 2):
        best_a, best_b = tests.get(best_run(runs_a).name), tests.get(best_run(runs_b).name)
        if (
            best_a is not None
            and best_b is not None
            and np.array_equal(best_a.labels, best_b.labels)
        ):
            m = mcnemar(best_a.correct, best_b.correct)
            rows.append(
                {
                    "group_a": name_a,
                    "group_b": name_b,
                    "test": "McNemar exact (top-1 correct, best run)",
                    "n": len(best_a.labels),
                    "statistic": float(min(m.b, m.c)),
                    "pvalue": m.pvalue,
                    "note": f"only {name_a} right: {m.b}, only {name_b} right: {m.c}",
                }
            )
        wilcoxon = "Wilcoxon signed-rank (test top-3, paired by seed)"
        if len(runs_a) >= 3 and len(runs_b) >= 3:
            score_a = {r.seed: tests[r.name].top3 for r in runs_a if r.name in tests}
            score_b = {r.seed: tests[r.name].top3 for r in runs_b if r.name in tests}
            n, stat, p = wilcoxon_paired(score_a, score_b)
            note = (
                ""
                if not math.isnan(p)
                else ("fewer than 3 seeds in common" if n < 3 else "all differences are zero")
            )
            rows.append(
                {
                    "group_a": name_a,
                    "group_b": name_b,
                    "test": wilcoxon,
                    "n": n,
                    "statistic": stat,
                    "pvalue": p,
                    "note": note,
                }
            )
        else:
            rows.append(
                {
                    "group_a": name_a,
                    "group_b": name_b,
                    "test": wilcoxon,
                    "n": 0,
                    "statistic": math.nan,
                    "pvalue": math.nan,
                    "note": "needs >= 3 runs (seeds) in each group",
                }
            )
    return pd.DataFrame(
        rows, columns=["group_a", "group_b", "test", "n", "statistic", "pvalue", "note"]
    )


# -- Markdown --------------------------------------------------------------------------------


def _fmt(value: Any, spec: str, std: Any = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = format(value, spec)
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        text += " ± " + format(std, spec)
    return text


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def markdown_summary(summary: pd.DataFrame) -> str:
    """The summary as a Markdown table (group rows: mean ± std over runs, best run's config)."""
    has_test = "test_top3" in summary.columns and bool(summary["test_top3"].notna().any())
    head = [
        "",
        "group",
        "run",
        "optimum",
        "CV top-3",
        "CV precision",
        "params",
        "feasible",
        "evaluations",
        "feasible rate",
        "first feasible (s)",
    ]
    if has_test:
        head += ["test top-3", "test top-1", "test precision"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in summary.to_dict("records"):
        group = r["level"] == "group"

        def cell(col: str, spec: str, r: dict[str, Any] = r, group: bool = group) -> str:
            return _fmt(r.get(col), spec, r.get(f"{col}_std") if group else None)

        feasible = r.get("feasible")
        verdict = (
            "n/a" if feasible is None or feasible != feasible else ("yes" if feasible else "NO")
        )
        if group:
            verdict = f"{int(r.get('n_feasible_runs') or 0)}/{int(r['n_runs'])} runs"
        cells = [
            f"**group** ({_runs(int(r['n_runs']))})" if group else "run",
            str(r["group"]),
            (f"best: {r['run']}" if group else str(r["run"])),
            f"`{r.get('config') or 'n/a'}` ({_fmt(r.get('epochs'), '.0f')} ep)",
            cell("cv_top3", ".3f"),
            cell("cv_precision", ".3f"),
            cell("num_params", ",.0f"),
            verdict,
            cell("evaluations", ".0f" if float(r.get("evaluations") or 0).is_integer() else ".1f"),
            cell("feasible_rate", ".0%"),
            cell("time_to_first_feasible", ".0f"),
        ]
        if has_test:
            cells += [
                cell("test_top3", ".3f"),
                cell("test_top1", ".3f"),
                cell("test_precision", ".3f"),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_tests(table: pd.DataFrame) -> str:
    """The significance tests as a Markdown table."""
    head = ["group A", "group B", "test", "n", "statistic", "p-value", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in table.to_dict("records"):
        lines.append(
            "| "
            + " | ".join(
                [
                    str(r["group_a"]),
                    str(r["group_b"]),
                    str(r["test"]),
                    str(r["n"]),
                    _fmt(r["statistic"], ".3g"),
                    _fmt(r["pvalue"], ".3g"),
                    str(r["note"]),
                ]
            )
            + " |"
        )
    return "\n".join(lines)
