"""The figures of one run: its Hyperband rungs, and the confusion matrix of its optimum on test."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..store import _analysis as an
from ..store._runs import RunData
from ._panels import TOP3, note
from ._retrain import TestResult, confusion


def hyperband_rungs(run: RunData) -> Figure:
    """Per bracket: each member's top-3 across its rungs, with rung-vs-final Spearman correlations."""
    hb = run.evaluations[run.evaluations["bracket"].notna() & run.evaluations["rung"].notna()]
    brackets = sorted(
        (int(b) for b in hb["bracket"].unique()), reverse=True
    )  # in the order they run
    finals = run.final_rungs
    corr = an.spearman_per_rung(run.evaluations, finals)
    n = max(len(brackets), 1)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(max(5.2 * cols, 7.5), 4.4 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(brackets) :]:
        ax.set_axis_off()
    if not brackets:
        axes[0].set_axis_on()
        note(axes[0], "no Hyperband evaluation in this run")
    for ax, s in zip(axes, brackets, strict=False):
        part = hb[hb["bracket"].astype(int) == s]
        final = finals.get(s, int(part["rung"].max()))
        reached = set(part.loc[part["rung"].astype(int) == final, "member_id"])
        for member_id, rows_m in part.groupby("member_id"):
            rows_m = rows_m.sort_values("epochs")
            top = member_id in reached
            ax.plot(
                rows_m["epochs"],
                rows_m["top3"],
                marker="o",
                ms=3.5,
                lw=1.3 if top else 0.8,
                color="tab:blue" if top else "0.65",
                alpha=0.9 if top else 0.6,
                zorder=3 if top else 2,
            )
        ax.set_xscale("log", base=2)
        budgets = sorted(int(e) for e in part["epochs"].unique())
        ax.set_xticks(budgets, [str(b) for b in budgets])
        lines = [
            f"bracket s={s}: {part['member_id'].nunique()} members, {len(reached)} reached the final rung {final}"
        ]
        for r in corr[corr["bracket"] == s].to_dict("records"):
            rho = "n/a" if math.isnan(r["rho"]) else f"{r['rho']:+.2f}"
            lines.append(
                f"Spearman rung {r['rung']} ({r['epochs']} ep) vs final: {rho} (n={r['n']})"
            )
        if len(lines) == 1:
            lines.append("single rung: nothing to correlate")
        ax.set_title("\n".join(lines), fontsize=8.5)
        ax.set_xlabel("budget (epochs per fold, log scale)")
        ax.set_ylabel(TOP3)
        ax.grid(alpha=0.3)
    handles = [
        Line2D([], [], color="tab:blue", marker="o", label="reached the final rung"),
        Line2D([], [], color="0.65", marker="o", label="not (yet) at the final rung"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8)
    fig.suptitle(
        f"Hyperband rungs of {run.name} ({run.algorithm}): top-3 of each member per rung\n"
        "Spearman rho of each rung vs the final rung, over the members that reached the final rung",
        fontsize=10,
    )
    return fig


def confusion_matrix(test: TestResult) -> Figure:
    """The test-split confusion matrix of a run's retrained optimum."""
    cm = confusion(test)
    n = len(test.classes)
    size = max(5.0, 0.36 * n + 2.5)
    fig = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(cm, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, label="test images (count)", shrink=0.8)
    ax.set_xticks(range(n), test.classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), test.classes, fontsize=8)
    if n <= 25:
        threshold = cm.max() / 2 if cm.size else 0
        for (i, j), count in np.ndenumerate(cm):
            if count:
                ax.text(
                    j,
                    i,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if count > threshold else "black",
                )
    ax.set_xlabel("predicted class (top-1)")
    ax.set_ylabel("true class")
    ax.set_title(
        f"{test.run}: optimum retrained {test.epochs} epochs (seed {test.seed}), test split\n"
        f"top-1 {test.top1:.3f}   top-3 {test.top3:.3f}   precision {test.precision:.3f}   "
        f"{test.num_params:,} params",
        fontsize=9,
    )
    return fig
