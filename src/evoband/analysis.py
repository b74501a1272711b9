"""Analysis of recorded runs: reading them, ranking their results, the series behind the figures.

Small pure functions on the ledger's DataFrames (:func:`evoband.store.load_run`, one row per
member and budget) and on arrays. The drawing is in :mod:`evoband.plots`, the summary tables in
:mod:`evoband.summary`, retraining an optimum on the test split in :mod:`evoband.retrain` and the
tests between groups in :mod:`evoband.significance`.

Definitions used throughout:

- an *evaluation* is one (member, budget) row of the ledger;
- a member's *result* is its highest-budget evaluation (what the optimizer ranks and returns);
- *feasible*: status ok and every constraint met (:meth:`Constraints.feasible`);
- *not ok*: diverged, timed out or failed (the status of the evaluation is not ``ok``);
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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .constraints import Constraints
from .errors import EvobandError, StoreError
from .store import RunStore, read_run_json
from .target import Result
from .train import OK

logger = logging.getLogger(__name__)

BOTH, PARAMS_ONLY, PRECISION_ONLY, NEITHER, NOT_OK = (
    "both",
    "params only",
    "precision only",
    "neither",
    "not ok",
)
"""The labels of :func:`constraint_classes`, one per combination of constraints met."""


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
    """Each member's result, by member id: its highest-budget ``ok`` evaluation, else its latest.

    The same rule as :attr:`evoband.member.Member.result`.
    """
    ok_first = frame.assign(_ok=frame["status"] == "ok").sort_values(["member_id", "_ok", "epochs"])
    picked = ok_first.groupby("member_id").tail(1).drop(columns="_ok")
    return picked.sort_values("member_id").reset_index(drop=True)


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


def best_run(runs: Sequence[RunData]) -> RunData:
    """The run whose optimum ranks best (CV only: the test split never picks)."""

    def key(run: RunData) -> tuple[int, float]:
        best = optimum(run.evaluations, run.constraints)
        return run.constraints.rank_key(None if best is None else result_of(best))

    return min(runs, key=key)


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


# -- feasibility, Pareto front, Hyperband rungs ----------------------------------------------


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


def time_to_first_feasible(frame: pd.DataFrame, constraints: Constraints) -> float:
    """Run seconds at which the first feasible evaluation finished; NaN if none did."""
    frame = chronological(frame)
    hits = frame.loc[feasible_mask(frame, constraints).to_numpy(), "elapsed"]
    return float(hits.iloc[0]) if len(hits) else float("nan")


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
