"""Summary tables of runs and groups of runs, and their Markdown rendering.

One row per run (its optimum, its evaluations, its test scores) and one per group (the best
run's optimum, mean and standard deviation over runs), as ``src/evaluation.py`` writes them to
``summary.csv`` and prints them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..store._analysis import feasible_mask, optimum, result_of, time_to_first_feasible
from ..store._runs import RunData, best_run, member_config
from ._ensembles import EnsembleResult
from ._retrain import TestResult

# -- configurations --------------------------------------------------------------------------

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


# -- rows ------------------------------------------------------------------------------------


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
        values = np.array([r.get(col) for r in run_rows], dtype=float)  # a missing score: NaN
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


ENSEMBLE_COLUMNS = [
    "run",
    "k",
    "members",
    "num_params",
    "ensemble_top3",
    "ensemble_precision",
    "best_top3",
    "best_precision",
]


def ensemble_table(ensembles: Mapping[str, EnsembleResult]) -> pd.DataFrame:
    """One row per run: its ensemble's test scores beside those of its best member alone."""
    rows = [
        {
            "run": name,
            "k": len(e.member_ids),
            "members": " ".join(str(m) for m in e.member_ids),
            "num_params": e.num_params,
            "ensemble_top3": e.metrics.top3,
            "ensemble_precision": e.metrics.precision,
            "best_top3": e.best_single.top3,
            "best_precision": e.best_single.precision,
        }
        for name, e in ensembles.items()
    ]
    return pd.DataFrame(rows, columns=ENSEMBLE_COLUMNS)


def markdown_ensembles(table: pd.DataFrame) -> str:
    """:func:`ensemble_table` as a Markdown table."""
    head = [
        "run", "members", "params", "ensemble top-3", "precision", "best member top-3", "precision"
    ]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in table.to_dict("records"):
        cells = [
            str(r["run"]),
            f"{r['k']} ({r['members']})",
            f"{int(r['num_params']):,}",
            _fmt(r["ensemble_top3"], ".4f"),
            _fmt(r["ensemble_precision"], ".4f"),
            _fmt(r["best_top3"], ".4f"),
            _fmt(r["best_precision"], ".4f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
