"""The figures of ``src/evaluation.py`` that compare groups of runs, and :func:`save_figures`.

One function per figure, each returning a matplotlib Figure; the figures of a single run
(Hyperband rungs, confusion matrix) are in :mod:`evoband.report._run_plots`, the building blocks in
:mod:`evoband.report._panels`. The numbers come from :mod:`evoband.store._analysis` and
:mod:`evoband.report._traces`; nothing here computes a statistic of its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..store import _analysis as an
from ..store._runs import RunData
from . import _traces as tr
from ._panels import (
    TOP3,
    colour,
    legend_below,
    limit_lines,
    mark_optimum,
    note,
    panels,
    params_axis,
    save,
    scatter_panel,
    slug,
)
from ._retrain import TestResult
from ._run_plots import confusion_matrix, hyperband_rungs

Groups = Mapping[str, Sequence[RunData]]


TIME = "wall time since the run started (s)"


EPOCHS = "epochs trained (cumulative, summed over CV folds;\npromoted members count only their extra epochs)"


BAND_NOTE = (
    "thick line: mean over a group's runs where all have a value, band: ± 1 std, "
    "thin lines: single runs\n(a run that stopped keeps its last value)"
)


EVALS = "evaluations (member x budget, cumulative count)"


def _group_label(name: str, runs: Sequence[RunData]) -> str:
    return f"{name} ({len(runs)} run{'s' if len(runs) != 1 else ''})"


def _grid_of(
    traces: Sequence[pd.DataFrame], ends: Sequence[float], start: float = 0.0
) -> np.ndarray:
    """Every step position of every run (so that the band's steps are exact) and the ends."""
    xs = [t["x"].to_numpy(dtype=float) for t in traces] + [np.array([start, *ends], dtype=float)]
    grid = np.unique(np.concatenate(xs))
    return grid[np.isfinite(grid)]


def _draw_band(ax: Axes, band: tr.Band, colour: str, label: str) -> None:
    ax.plot(band.grid, band.mean, drawstyle="steps-post", color=colour, lw=2)
    ax.plot(
        [], [], color=colour, lw=2, marker="o", ms=3, label=label
    )  # legend: line and change points
    if np.nanmax(band.n, initial=0) > 1:
        ax.fill_between(
            band.grid,
            band.mean - band.std,
            band.mean + band.std,
            step="post",
            color=colour,
            alpha=0.2,
            lw=0,
        )


def _draw_traces(
    ax: Axes,
    groups: Groups,
    traces: Mapping[str, list[pd.DataFrame]],
    ends: Mapping[str, list[float]],
) -> bool:
    """Per group: mean +- std step line on a grid shared by all groups, thin lines for its runs.

    Returns whether anything was drawn.
    """
    all_traces = [t for ts in traces.values() for t in ts]
    grid = _grid_of(all_traces, [e for es in ends.values() for e in es])
    drawn = False
    for i, (name, runs) in enumerate(groups.items()):
        b = tr.group_band(traces[name], ends[name], grid)
        if len(runs) > 1:
            group_end = max(ends[name])
            for t in traces[name]:
                y = tr.step_on_grid(t["x"], t["best"], grid, group_end)
                ax.plot(grid, y, drawstyle="steps-post", color=colour(i), lw=0.7, alpha=0.45)
                drawn = drawn or bool(np.any(~np.isnan(y)))
        for t in traces[name]:  # where each run's value changed: improvements, generations
            x, y = t["x"].to_numpy(dtype=float), t["best"].to_numpy(dtype=float)
            changed = ~np.isnan(y) & ~np.isclose(
                y, np.concatenate([[np.nan], y[:-1]]), equal_nan=True
            )
            ax.plot(x[changed], y[changed], ls="", marker="o", ms=3, color=colour(i), alpha=0.8)
        if np.all(np.isnan(b.mean)):
            continue
        _draw_band(ax, b, colour(i), _group_label(name, runs))
        drawn = True
    right = max((e for es in ends.values() for e in es if math.isfinite(e)), default=0.0)
    ax.set_xlim(0, max(right, 1.0) * 1.02)
    return drawn


def best_over_time(groups: Groups) -> Figure:
    """Best feasible top-3, population-average top-3 and precision against wall time."""
    fig = Figure(figsize=(8, 9.5), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    ends = {name: [r.elapsed for r in runs] for name, runs in groups.items()}
    panels = [
        (
            "best feasible CV top-3 so far (any budget)",
            {n: [tr.best_feasible_trace(r, "elapsed") for r in rs] for n, rs in groups.items()},
            "best feasible top-3 (fraction)",
            "no feasible evaluation yet",
        ),
        (
            "population average CV top-3 (after each generation)",
            {n: [tr.population_trace(r, "avg_acc") for r in rs] for n, rs in groups.items()},
            "mean top-3 of population (fraction)",
            "no generation finished yet",
        ),
        (
            "population average CV precision (after each generation)",
            {n: [tr.population_trace(r, "avg_prec") for r in rs] for n, rs in groups.items()},
            "mean macro precision (fraction)",
            "no generation finished yet",
        ),
    ]
    for ax, (title, traces, ylabel, empty) in zip(axes, panels, strict=True):
        if not _draw_traces(ax, groups, traces, ends):
            note(ax, empty)
            ax.set_ylim(0, 1)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    limits = sorted({r.constraints.min_precision.limit for rs in groups.values() for r in rs})
    for limit in limits:
        axes[2].axhline(limit, color="k", ls="--", lw=1, label=f"min precision {limit:g}")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    axes[-1].set_xlabel(TIME)
    fig.suptitle(f"Search progress over wall time\n{BAND_NOTE}", fontsize=11)
    return fig


def best_over(groups: Groups, x: str) -> Figure:
    """Best feasible CV top-3 against evaluations (``x='evaluations'``) or epochs (``'epochs'``)."""
    fig = Figure(figsize=(8, 4.8), layout="constrained")
    ax = fig.subplots()
    traces = {n: [tr.best_feasible_trace(r, x) for r in rs] for n, rs in groups.items()}
    ends = {n: [float(t["x"].max()) for t in ts] for n, ts in traces.items()}
    if not _draw_traces(ax, groups, traces, ends):
        note(ax, "no feasible evaluation in any run")
        ax.set_ylim(0, 1)
    ax.set_xlabel(EVALS if x == "evaluations" else EPOCHS)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("best feasible CV top-3 so far (fraction)")
    what = "evaluations" if x == "evaluations" else "epochs spent"
    ax.set_title(f"Best feasible CV top-3 (any budget) vs {what}\n{BAND_NOTE}", fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right")
    return fig


def scatter_top3(groups: Groups, x: str) -> Figure:
    """Every member's result (highest budget) coloured by the constraints it meets.

    Args:
        groups: the runs.
        x: ``precision`` or ``num_params`` (log axis).
    """
    fig, axes = panels(len(groups), sharey=True)
    for ax, (name, runs) in zip(axes, groups.items(), strict=False):
        scatter_panel(ax, [(an.member_results(r.evaluations), r.constraints) for r in runs], x)
        ax.set_title(_group_label(name, runs), fontsize=10)
    axes[0].set_ylabel(TOP3)
    vs = "precision" if x == "precision" else "model size"
    fig.suptitle(
        f"CV top-3 vs {vs}: every member at its highest budget, by the constraints it meets"
    )
    return fig


def pareto_params_top3(groups: Groups) -> Figure:
    """Pareto front (fewer params, higher top-3) of the members meeting the precision constraint."""
    fig, axes = panels(len(groups), sharey=True)
    for ax, (name, runs) in zip(axes, groups.items(), strict=False):
        frames = []
        for run in runs:
            frames.append(
                an.precision_feasible(an.member_results(run.evaluations), run.constraints)
            )
        pool = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        floor = ", ".join(sorted({f"{r.constraints.min_precision.limit:g}" for r in runs}))
        if len(pool) == 0:
            note(ax, f"no member reached precision >= {floor}")
        else:
            front = an.pareto_front(pool)
            ax.scatter(
                pool["num_params"],
                pool["top3"],
                c="0.6",
                s=22,
                label=f"precision >= {floor} ({len(pool)})",
            )
            ax.plot(
                front["num_params"],
                front["top3"],
                drawstyle="steps-post",
                color="tab:red",
                lw=1.5,
                marker="o",
                ms=5,
                label=f"Pareto front ({len(front)})",
            )
        limit_lines(ax, [r.constraints for r in runs], "num_params")
        for i, run in enumerate(runs):
            best = an.optimum(run.evaluations, run.constraints)
            mark_optimum(ax, best, run.constraints, "num_params", label=i == 0)
        params_axis(ax)
        ax.set_title(_group_label(name, runs), fontsize=10)
        ax.grid(alpha=0.3)
        legend_below(ax, ax.get_legend_handles_labels()[0])
    axes[0].set_ylabel(TOP3)
    fig.suptitle(
        "Pareto front of size vs CV top-3 among precision-feasible members (highest budget)"
    )
    return fig


def feasible_fraction(groups: Groups) -> Figure:
    """Fraction of feasible evaluations per generation (mean +- std over the runs of a group)."""
    fig = Figure(figsize=(8, 4.6), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(len(groups), 1)
    generations: set[int] = set()
    for i, (name, runs) in enumerate(groups.items()):
        per = [
            an.feasible_fraction(r.evaluations, r.constraints).set_index("generation") for r in runs
        ]
        fractions = pd.concat([p["fraction"] for p in per], axis=1)
        mean = fractions.mean(axis=1)
        std = fractions.std(axis=1, ddof=1).fillna(0).to_numpy() if len(runs) > 1 else None
        feasible = sum(p["n_feasible"].reindex(mean.index, fill_value=0) for p in per)
        total = sum(p["n_evaluations"].reindex(mean.index, fill_value=0) for p in per)
        x = mean.index.to_numpy(dtype=float) + (i - (len(groups) - 1) / 2) * width
        bars = ax.bar(
            x,
            mean.to_numpy(),
            width=width,
            color=colour(i),
            alpha=0.85,
            label=_group_label(name, runs),
            yerr=std,
            capsize=3,
        )
        ax.bar_label(
            bars,
            [f"{int(k)}/{int(n)}" for k, n in zip(feasible, total, strict=True)],
            fontsize=7,
            padding=2,
        )
        generations.update(int(g) for g in mean.index)
    ticks = sorted(generations)
    ax.set_xticks(ticks if len(ticks) <= 30 else ticks[:: math.ceil(len(ticks) / 30)])
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("generation (0 = initial population)")
    ax.set_ylabel("feasible evaluations / evaluations (fraction)")
    ax.set_title(
        "Fraction of feasible evaluations per generation\n"
        "(bar: mean over runs, whisker: ± 1 std, label: feasible / evaluations summed over runs)",
        fontsize=10,
    )
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="upper right")
    return fig


def save_figures(
    groups: Groups, out_dir: Path, fmt: str = "png", tests: Mapping[str, TestResult] | None = None
) -> list[Path]:
    """Draw and write every figure into ``out_dir``; return the files written."""
    written = [
        save(best_over_time(groups), out_dir / f"best_over_time.{fmt}"),
        save(best_over(groups, "evaluations"), out_dir / f"best_over_evaluations.{fmt}"),
        save(best_over(groups, "epochs"), out_dir / f"best_over_epochs.{fmt}"),
        save(scatter_top3(groups, "precision"), out_dir / f"scatter_precision_top3.{fmt}"),
        save(scatter_top3(groups, "num_params"), out_dir / f"scatter_params_top3.{fmt}"),
        save(pareto_params_top3(groups), out_dir / f"pareto_params_top3.{fmt}"),
        save(feasible_fraction(groups), out_dir / f"feasible_fraction.{fmt}"),
    ]
    for runs in groups.values():
        for run in runs:
            if run.uses_hyperband:
                written.append(
                    save(hyperband_rungs(run), out_dir / f"hyperband_rungs_{slug(run.name)}.{fmt}")
                )
    for test in (tests or {}).values():
        written.append(
            save(confusion_matrix(test), out_dir / f"confusion_matrix_{slug(test.run)}.{fmt}")
        )
    return written
