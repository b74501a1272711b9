"""The figures of ``src/evaluation.py``: one function per figure, each returning a matplotlib Figure.

Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot, no global state), so
they render without a display and from any thread; :func:`save_figures` writes all of them.
The panels that the plot callbacks of :mod:`evoband.callbacks` redraw as a search goes
(:func:`fitness_panel`, :func:`population_panel`, :func:`optimisation_panel`) are here too, so
that each kind of figure is drawn in one place. The numbers come from :mod:`evoband.analysis`;
nothing here computes a statistic of its own.
"""

from __future__ import annotations

import logging
import math
import os
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator

from . import analysis as an
from .analysis import RunData
from .constraints import Constraints
from .retrain import TestResult, confusion

logger = logging.getLogger(__name__)

Groups = Mapping[str, Sequence[RunData]]

PALETTE = (
    "tab:blue",
    "tab:orange",
    "tab:green",
    "tab:red",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
    "tab:cyan",
    "tab:gray",
)

CLASS_STYLE: dict[str, tuple[str, str, str]] = {
    an.BOTH: ("tab:green", "o", "both constraints met (feasible)"),
    an.PARAMS_ONLY: ("tab:orange", "s", "params met, precision violated"),
    an.PRECISION_ONLY: ("tab:purple", "^", "precision met, params violated"),
    an.NEITHER: ("tab:red", "v", "both violated"),
    an.NOT_OK: ("0.55", "x", "diverged / timed out / failed"),
}
"""Colour, marker and legend text of each constraint class."""

TOP3 = "CV top-3 accuracy (fraction)"
TIME = "wall time since the run started (s)"
EPOCHS = "epochs trained (cumulative, summed over CV folds;\npromoted members count only their extra epochs)"
BAND_NOTE = (
    "thick line: mean over a group's runs where all have a value, band: ± 1 std, "
    "thin lines: single runs\n(a run that stopped keeps its last value)"
)
EVALS = "evaluations (member x budget, cumulative count)"


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _group_label(name: str, runs: Sequence[RunData]) -> str:
    return f"{name} ({len(runs)} run{'s' if len(runs) != 1 else ''})"


def _note(ax: Axes, text: str) -> None:
    ax.text(
        0.5,
        0.5,
        text,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=9,
        color="0.35",
        wrap=True,
    )


def _grid_of(
    traces: Sequence[pd.DataFrame], ends: Sequence[float], start: float = 0.0
) -> np.ndarray:
    """Every step position of every run (so that the band's steps are exact) and the ends."""
    xs = [t["x"].to_numpy(dtype=float) for t in traces] + [np.array([start, *ends], dtype=float)]
    grid = np.unique(np.concatenate(xs))
    return grid[np.isfinite(grid)]


def _draw_band(ax: Axes, band: an.Band, colour: str, label: str) -> None:
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
        b = an.group_band(traces[name], ends[name], grid)
        if len(runs) > 1:
            group_end = max(ends[name])
            for t in traces[name]:
                y = an.step_on_grid(t["x"], t["best"], grid, group_end)
                ax.plot(grid, y, drawstyle="steps-post", color=_colour(i), lw=0.7, alpha=0.45)
                drawn = drawn or bool(np.any(~np.isnan(y)))
        for t in traces[name]:  # where each run's value changed: improvements, generations
            x, y = t["x"].to_numpy(dtype=float), t["best"].to_numpy(dtype=float)
            changed = ~np.isnan(y) & ~np.isclose(
                y, np.concatenate([[np.nan], y[:-1]]), equal_nan=True
            )
            ax.plot(x[changed], y[changed], ls="", marker="o", ms=3, color=_colour(i), alpha=0.8)
        if np.all(np.isnan(b.mean)):
            continue
        _draw_band(ax, b, _colour(i), _group_label(name, runs))
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
            {n: [an.best_feasible_trace(r, "elapsed") for r in rs] for n, rs in groups.items()},
            "best feasible top-3 (fraction)",
            "no feasible evaluation yet",
        ),
        (
            "population average CV top-3 (after each generation)",
            {n: [an.population_trace(r, "avg_acc") for r in rs] for n, rs in groups.items()},
            "mean top-3 of population (fraction)",
            "no generation finished yet",
        ),
        (
            "population average CV precision (after each generation)",
            {n: [an.population_trace(r, "avg_prec") for r in rs] for n, rs in groups.items()},
            "mean macro precision (fraction)",
            "no generation finished yet",
        ),
    ]
    for ax, (title, traces, ylabel, empty) in zip(axes, panels, strict=True):
        if not _draw_traces(ax, groups, traces, ends):
            _note(ax, empty)
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
    traces = {n: [an.best_feasible_trace(r, x) for r in rs] for n, rs in groups.items()}
    ends = {n: [float(t["x"].max()) for t in ts] for n, ts in traces.items()}
    if not _draw_traces(ax, groups, traces, ends):
        _note(ax, "no feasible evaluation in any run")
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


def fitness_panel(ax: Axes, generations: pd.DataFrame) -> None:
    """Best and average CV top-3 of the population after each generation, and the best feasible.

    Args:
        ax: the panel.
        generations: :meth:`evoband.store.RunStore.generations_frame` of one run.
    """
    lines = (
        ("best_acc", "population: best", "tab:blue", "-"),
        ("avg_acc", "population: average", "tab:blue", "--"),
        ("best_feasible_acc", "best feasible member so far", "tab:green", "-"),
    )
    generation = generations["generation"].to_numpy(dtype=float)
    for column, label, colour, style in lines:
        top3 = pd.to_numeric(generations[column], errors="coerce").to_numpy(dtype=float)
        if np.any(~np.isnan(top3)):
            ax.plot(generation, top3, color=colour, ls=style, lw=1.5, marker="o", ms=3, label=label)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right")
    else:
        _note(ax, "no generation finished yet")
        ax.set_ylim(0, 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("generation (0 = initial population)")
    ax.set_ylabel(TOP3)
    ax.set_title("CV top-3 per generation", fontsize=10)
    ax.grid(alpha=0.3)


def panels(
    n: int, *, sharey: bool = False, width: float = 5.2, height: float = 4.6
) -> tuple[Figure, list[Axes]]:
    """A figure of ``n`` panels (at least one) side by side."""
    n = max(n, 1)
    fig = Figure(figsize=(width * n, height), layout="constrained")
    axes = fig.subplots(1, n, sharey=sharey, squeeze=False)[0]
    return fig, list(axes)


def _compact_count(value: float, _pos: object = None) -> str:
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:g}{suffix}"
    return f"{value:g}"


def _params_axis(ax: Axes) -> None:
    """A log axis of parameter counts labelled 3k, 20k, 1.5M."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(_compact_count))
    low, high = ax.dataLim.intervalx
    decades = math.log10(max(high, low) / low) if low > 0 and np.isfinite(high) else math.inf
    # label minor ticks where few decades show: all below half a decade, 2/3/5 below two
    labelled = (2, 3, 4, 5, 6, 7, 8, 9) if decades < 0.5 else (2, 3, 5) if decades < 2 else ()

    def minor(value: float, pos: object = None) -> str:
        mantissa = round(value / 10 ** math.floor(math.log10(value)), 6) if value > 0 else 0
        return _compact_count(value) if mantissa in labelled else ""

    ax.xaxis.set_minor_formatter(FuncFormatter(minor))
    ax.set_xlabel("trainable parameters (count, log scale)")


def _legend_below(ax: Axes, handles: list) -> None:
    if handles:
        ax.legend(
            handles=handles,
            fontsize=7,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.16),
            ncols=2,
            frameon=False,
        )


def _mark_optimum(
    ax: Axes, best: pd.Series | None, constraints: Constraints, x: str, label: bool
) -> None:
    if best is None:
        return
    feasible = constraints.feasible(an.result_of(best))
    ax.scatter(
        [best[x]],
        [best["top3"]],
        marker="*",
        s=260,
        facecolor="gold",
        edgecolor="k",
        lw=1.0,
        zorder=5,
        label=("returned optimum" + ("" if feasible else " (INFEASIBLE)")) if label else None,
    )


def _limit_lines(ax: Axes, constraints: Iterable[Constraints], x: str) -> None:
    """A dashed line at each distinct min precision (``x='precision'``) or max params limit."""
    limits = sorted(
        {c.min_precision.limit if x == "precision" else c.max_params.limit for c in constraints}
    )
    for limit in limits:
        text = f"min precision {limit:g}" if x == "precision" else f"max params {limit:,.0f}"
        ax.axvline(limit, color="k", ls="--", lw=1, label=text)


def scatter_panel(
    ax: Axes, results: Sequence[tuple[pd.DataFrame, Constraints]], x: str, *, optimum: bool = True
) -> None:
    """Member results at (``x``, top-3), coloured and marked by the constraints they meet.

    The constraint on ``x`` is a dashed line; each run's optimum is a star.

    Args:
        ax: the panel.
        results: per run, its member results (:func:`evoband.analysis.member_results`) and its
            constraints.
        x: ``precision`` or ``num_params`` (log axis).
        optimum: mark each run's optimum (:func:`evoband.analysis.optimum`).
    """
    counts: dict[str, int] = {}
    for frame, constraints in results:
        classes = an.constraint_classes(frame, constraints)
        for cls, (colour, marker, _) in CLASS_STYLE.items():
            part = frame[classes == cls]
            counts[cls] = counts.get(cls, 0) + len(part)
            if len(part):
                ax.scatter(
                    part[x],
                    part["top3"],
                    c=colour,
                    marker=marker,
                    s=28,
                    alpha=0.8,
                    edgecolors="none" if marker != "x" else None,
                )
    if optimum:
        for i, (frame, constraints) in enumerate(results):
            _mark_optimum(ax, an.optimum(frame, constraints), constraints, x, label=i == 0)
    _limit_lines(ax, [constraints for _, constraints in results], x)
    if not any(counts.values()):
        _note(ax, "no member evaluated yet")
    handles = [
        Line2D([], [], ls="", marker=m, color=c, label=f"{t} ({counts.get(k, 0)})")
        for k, (c, m, t) in CLASS_STYLE.items()
        if counts.get(k)
    ]
    extra_h, _ = ax.get_legend_handles_labels()
    _legend_below(ax, handles + extra_h)
    if x == "num_params":
        _params_axis(ax)
    else:
        ax.set_xlabel("CV macro precision (fraction)")
    ax.grid(alpha=0.3)


def population_panel(
    ax: Axes, population: pd.DataFrame, constraints: Constraints, generation: int
) -> None:
    """The population's precision vs CV top-3, by the constraints each member meets.

    Args:
        ax: the panel.
        population: the results of the population's members (as
            :func:`evoband.analysis.member_results` gives them).
        constraints: the search's constraints.
        generation: the generation the population survived.
    """
    scatter_panel(ax, [(population, constraints)], "precision", optimum=False)
    ax.set_ylabel(TOP3)
    ax.set_title(
        f"population after generation {generation} ({len(population)} members)", fontsize=10
    )


def optimisation_panel(ax: Axes, results: pd.DataFrame, constraints: Constraints) -> None:
    """Every evaluated member's size vs CV top-3, by the constraints it meets; the optimum marked.

    Args:
        ax: the panel.
        results: each member's result (:func:`evoband.analysis.member_results`).
        constraints: the search's constraints.
    """
    scatter_panel(ax, [(results, constraints)], "num_params")
    ax.set_ylabel(TOP3)
    ax.set_title(f"every evaluated member ({len(results)}) at its highest budget", fontsize=10)


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
            _note(ax, f"no member reached precision >= {floor}")
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
        _limit_lines(ax, [r.constraints for r in runs], "num_params")
        for i, run in enumerate(runs):
            best = an.optimum(run.evaluations, run.constraints)
            _mark_optimum(ax, best, run.constraints, "num_params", label=i == 0)
        _params_axis(ax)
        ax.set_title(_group_label(name, runs), fontsize=10)
        ax.grid(alpha=0.3)
        _legend_below(ax, ax.get_legend_handles_labels()[0])
    axes[0].set_ylabel(TOP3)
    fig.suptitle(
        "Pareto front of size vs CV top-3 among precision-feasible members (highest budget)"
    )
    return fig


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
        _note(axes[0], "no Hyperband evaluation in this run")
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
            color=_colour(i),
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


def slug(name: str) -> str:
    """A file-name-safe form of a run or group name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "run"


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` (format from the suffix) and return the path.

    Atomic: the figure goes to a temporary file in the same folder that then replaces ``path``,
    so that a reader (a viewer refreshing a live run's figures) never sees half a file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as fh:
            fig.savefig(fh, format=path.suffix.lstrip(".") or None, dpi=130)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


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
