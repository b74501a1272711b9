"""Significance tests between groups of runs on the test split: McNemar and Wilcoxon."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..core._errors import ConfigError
from ..store._runs import RunData, best_run
from ._retrain import TestResult


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
        raise ConfigError(
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
