"""Analysis of recorded runs: their results, the one ranking, feasibility and rung statistics.

Small pure functions on the ledger's DataFrames (:func:`evoband.store._ledger.load_run`, one row per
member and budget) and on arrays. Reading run directories is in :mod:`evoband.store._runs`, the series
behind the progress figures in :mod:`evoband.report._traces`, the drawing in :mod:`evoband.report._plots`, the
summary tables in :mod:`evoband.report._summary`, retraining an optimum on the test split in
:mod:`evoband.report._retrain` and the tests between groups in :mod:`evoband.report._significance`.

Definitions used throughout:

- an *evaluation* is one (member, budget) row of the ledger;
- a member's *result* is its highest-budget evaluation that finished ok, else its latest
  (:func:`evoband.training._results.standing_budget`: what the optimizer ranks and returns);
- *feasible*: status ok and every constraint met (:meth:`Constraints.feasible`);
- *not ok*: diverged, timed out or failed (the status of the evaluation is not ``ok``);
- the *optimum* of a run: the best member result by the feasibility-first ranking
  (:meth:`Constraints.ranked`, ties to the older member), exactly as the optimizer returns it;
- *epochs spent*: epochs trained summed over folds (as the ledger's folds record them), where a
  member continued from its checkpoint counts only the extra epochs of each rung.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..training._constraints import Constraints
from ..training._results import Result, Status, standing_budget

BOTH, PARAMS_ONLY, PRECISION_ONLY, NEITHER, NOT_OK = (
    "both",
    "params only",
    "precision only",
    "neither",
    "not ok",
)
"""The labels of :func:`constraint_classes`, one per combination of constraints met."""


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
        status=Status(row["status"]),
    )


def chronological(frame: pd.DataFrame) -> pd.DataFrame:
    """Evaluations in the order they finished."""
    return frame.sort_values(["finished", "member_id"], kind="stable").reset_index(drop=True)


def member_results(frame: pd.DataFrame) -> pd.DataFrame:
    """Each member's result, by member id: its highest-budget ``ok`` evaluation, else its latest.

    Picked by :func:`evoband.training._results.standing_budget`, as :attr:`evoband.search._member.Member.result`.
    """
    ids, budgets = frame["member_id"].astype(int), frame["epochs"].astype(int)
    statuses: dict[int, dict[int, str]] = {}
    for member_id, budget, status in zip(ids, budgets, frame["status"], strict=True):
        statuses.setdefault(member_id, {})[budget] = status
    standing = {member_id: standing_budget(s) for member_id, s in statuses.items()}
    keep = [standing[m] == b for m, b in zip(ids, budgets, strict=True)]
    picked = frame[np.asarray(keep, dtype=bool)].sort_values("member_id", kind="stable")
    return picked.drop_duplicates("member_id", keep="last").reset_index(drop=True)


def feasible_mask(frame: pd.DataFrame, constraints: Constraints) -> pd.Series:
    """Whether each row is feasible (status ok and every constraint met)."""
    return pd.Series(
        [constraints.feasible(result_of(r)) for r in _rows(frame)], index=frame.index, dtype=bool
    )


def rank(frame: pd.DataFrame, constraints: Constraints) -> pd.DataFrame:
    """Rows in feasibility-first order, best first: the one ranking rule of evoband.

    Feasible by top-3 descending, then infeasible ok ones by precision descending, then the
    others; ties go to the older member (:meth:`Constraints.ranked`, as the optimizer ranks).
    """
    rows = list(_rows(frame))
    order = constraints.ranked(
        range(len(rows)),
        result=lambda i: result_of(rows[i]),
        member_id=lambda i: int(rows[i]["member_id"]),
    )
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
        r["status"] == Status.OK and constraints.min_precision.satisfied(result_of(r))
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
