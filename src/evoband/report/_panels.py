"""The building blocks of evoband's figures, and the panels the plot callbacks redraw.

Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot, no global state), so
they render without a display and from any thread. The panels that the plot callbacks of
:mod:`evoband.callbacks._callbacks` redraw as a search goes (:func:`fitness_panel`, :func:`population_panel`,
:func:`optimisation_panel`) are drawn here; :func:`scatter_panel`, the axis helpers and
:func:`save` are shared with the figures of :mod:`evoband.report._plots` and :mod:`evoband.report._run_plots`.
The numbers come from :mod:`evoband.store._analysis`; nothing here computes a statistic of its own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator

from ..core._files import write_atomic
from ..store import _analysis as an
from ..training._constraints import Constraints

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


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def note(ax: Axes, text: str) -> None:
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


def panels(
    n: int, *, sharey: bool = False, width: float = 5.2, height: float = 4.6
) -> tuple[Figure, list[Axes]]:
    """A figure of ``n`` panels (at least one) side by side."""
    n = max(n, 1)
    fig = Figure(figsize=(width * n, height), layout="constrained")
    axes = fig.subplots(1, n, sharey=sharey, squeeze=False)[0]
    return fig, list(axes)


def fitness_panel(ax: Axes, generations: pd.DataFrame) -> None:
    """Best and average CV top-3 of the population after each generation, and the best feasible.

    Args:
        ax: the panel.
        generations: :meth:`evoband.store._ledger.RunStore.generations_frame` of one run.
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
        note(ax, "no generation finished yet")
        ax.set_ylim(0, 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("generation (0 = initial population)")
    ax.set_ylabel(TOP3)
    ax.set_title("CV top-3 per generation", fontsize=10)
    ax.grid(alpha=0.3)


def _compact_count(value: float, _pos: object = None) -> str:
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:g}{suffix}"
    return f"{value:g}"


def params_axis(ax: Axes) -> None:
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


def legend_below(ax: Axes, handles: list) -> None:
    if handles:
        ax.legend(
            handles=handles,
            fontsize=7,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.16),
            ncols=2,
            frameon=False,
        )


def mark_optimum(
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


def limit_lines(ax: Axes, constraints: Iterable[Constraints], x: str) -> None:
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
        results: per run, its member results (:func:`evoband.store._analysis.member_results`) and its
            constraints.
        x: ``precision`` or ``num_params`` (log axis).
        optimum: mark each run's optimum (:func:`evoband.store._analysis.optimum`).
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
            mark_optimum(ax, an.optimum(frame, constraints), constraints, x, label=i == 0)
    limit_lines(ax, [constraints for _, constraints in results], x)
    if not any(counts.values()):
        note(ax, "no member evaluated yet")
    handles = [
        Line2D([], [], ls="", marker=m, color=c, label=f"{t} ({counts.get(k, 0)})")
        for k, (c, m, t) in CLASS_STYLE.items()
        if counts.get(k)
    ]
    extra_h, _ = ax.get_legend_handles_labels()
    legend_below(ax, handles + extra_h)
    if x == "num_params":
        params_axis(ax)
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
            :func:`evoband.store._analysis.member_results` gives them).
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
        results: each member's result (:func:`evoband.store._analysis.member_results`).
        constraints: the search's constraints.
    """
    scatter_panel(ax, [(results, constraints)], "num_params")
    ax.set_ylabel(TOP3)
    ax.set_title(f"every evaluated member ({len(results)}) at its highest budget", fontsize=10)


def slug(name: str) -> str:
    """A file-name-safe form of a run or group name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "run"


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` (format from the suffix) and return the path.

    Atomic (:func:`evoband.core._files.write_atomic`), so that a reader (a viewer refreshing a live
    run's figures) never sees half a file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda fh: fig.savefig(fh, format=path.suffix.lstrip(".") or None, dpi=130))
    return path
