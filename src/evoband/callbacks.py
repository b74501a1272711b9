"""Callbacks: hooks the optimizer calls as a search goes (the interface is :mod:`evoband.hooks`).

Besides :class:`CbAll` and :class:`ProgressBar`: :data:`persist` (writes the population into
``population.json``), :class:`StopAtTarget` (ends the search when a target is reached) and the plot callbacks of AutoFlux: :class:`PlotFitness`,
:class:`ScatterPop` and :class:`ScatterOpt` redraw a figure of the search into
``<run_dir>/figures/`` after each generation, and :class:`MultiPlot` draws several of them as
panels of one figure::

    plots = [PlotFitness(), ScatterPop(), ScatterOpt()]
    run_search(config, callbacks=[*plots, MultiPlot(*plots)])
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from tqdm.auto import tqdm

from .errors import ConfigError
from .hooks import BaseCallback, Callback, CbAll, SearchView
from .store import load_generations, write_population

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .member import Member
    from .results import Result

__all__ = [
    "BaseCallback",
    "Callback",
    "CbAll",
    "FigureCallback",
    "MultiPlot",
    "Persist",
    "PlotCallback",
    "PlotFitness",
    "ProgressBar",
    "ScatterOpt",
    "ScatterPop",
    "SearchView",
    "StopAtTarget",
    "persist",
]

logger = logging.getLogger(__name__)


class ProgressBar(BaseCallback):
    """A tqdm bar over the time budget; its postfix shows generation, evaluations (done, training
    and waiting for a worker) and the best."""

    def __init__(self, **tqdm_kwargs: Any) -> None:
        self.kwargs = tqdm_kwargs
        self.bar: tqdm | None = None

    def on_run_start(self, search: SearchView) -> None:
        total = float(search.settings.max_time)
        self.bar = tqdm(
            total=total,
            unit="s",
            desc="search",
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f}s {postfix}",
            **self.kwargs,
        )
        self._update(search)

    def _update(self, search: SearchView) -> None:
        if self.bar is None:
            return
        self.bar.n = min(search.elapsed, self.bar.total)
        best = search.best
        postfix: dict[str, object] = {"gen": search.generation, "evals": search.n_evaluations}
        if search.training or search.waiting:
            postfix["jobs"] = f"{search.training} training, {search.waiting} waiting"
        if best is not None and best.result is not None:
            tag = "best" if search.constraints.feasible(best.result) else "best(infeasible)"
            postfix[tag] = f"top3 {best.result.top3:.3f} prec {best.result.precision:.3f}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.refresh()

    def on_evaluation(self, search: SearchView, member: Member, result: Result) -> None:
        self._update(search)

    def on_generation_end(
        self, search: SearchView, generation: int, population: Sequence[Member]
    ) -> None:
        self._update(search)

    def on_run_end(self, search: SearchView, best: Member | None) -> None:
        if self.bar is not None:
            self._update(search)
            self.bar.close()
            self.bar = None


class Persist(BaseCallback):
    """Makes the population durable: ``population.json`` in the run directory, after every
    generation and when the search ends (AutoFlux's ``persist``; use the instance :data:`persist`).

    The file holds the generation, the evaluations so far, the constraints and the population,
    best first, each member with its configuration, lineage and standing result. The ledger and
    its exports (``opt_cfg.json``, ``automl_run.json``, ...) are written by the search itself
    after every evaluation; together they make a stopped run resumable from its run directory.
    """

    def on_generation_end(
        self, search: SearchView, generation: int, population: Sequence[Member]
    ) -> None:
        if not search.replaying:
            self.write(search, population)

    def on_run_end(self, search: SearchView, best: Member | None) -> None:
        self.write(search, search.population)

    @staticmethod
    def write(search: SearchView, population: Sequence[Member]) -> Path:
        """Write ``population.json`` for ``search`` now; return its path."""
        return write_population(
            search.run_dir,
            {
                "generation": search.generation,
                "n_evaluations": search.n_evaluations,
                "elapsed": search.elapsed,
                "constraints": {c.name: c.describe() for c in search.constraints.all},
                "best": None if search.best is None else search.best.member_id,
                "population": [
                    {**m.to_dict(), "feasible": _feasible(search, m)} for m in population
                ],
            },
        )


persist = Persist()
"""The :class:`Persist` callback: ``fit(..., callbacks=[persist])``."""


def _feasible(search: SearchView, member: Member) -> bool:
    return member.result is not None and search.constraints.feasible(member.result)


class StopAtTarget(BaseCallback):
    """Ends the search (cleanly, as its time budget does) once a feasible member reaches a target.

    Args:
        top3: the CV top-3 accuracy to reach, if any.
        precision: the CV precision to reach, if any. With both, both must be reached.
    """

    def __init__(self, top3: float | None = None, precision: float | None = None) -> None:
        if top3 is None and precision is None:
            raise ConfigError("StopAtTarget needs a target: pass top3, precision or both.")
        self.top3 = top3
        self.precision = precision

    def on_evaluation(self, search: SearchView, member: Member, result: Result) -> None:
        if not search.constraints.feasible(result):
            return
        if self.top3 is not None and result.top3 < self.top3:
            return
        if self.precision is not None and result.precision < self.precision:
            return
        search.request_stop(
            f"{member.describe()} reached top-3 {result.top3:.4f}, precision {result.precision:.4f}"
        )


# -- figures -----------------------------------------------------------------------------------
#
# The drawing lives in evoband.plot_panels, imported when a figure is first drawn: it imports
# matplotlib (about a second), which a search that draws nothing should not pay for.


class FigureCallback(BaseCallback, ABC):
    """A figure of the search, redrawn after each generation into ``<run_dir>/figures/``.

    Subclasses build the figure in :meth:`figure`. Writing it is atomic (a reader sees the
    previous figure or the new one, never half of one), and a figure never stops the search: an
    exception while drawing or writing is logged as a warning and the search goes on. While a
    resumed run replays its recorded evaluations nothing is drawn; the figure catches up when
    new evaluations start, or at the end of the run.
    """

    filename: str = "figure.png"
    """The file name in ``<run_dir>/figures/``; its suffix sets the format."""

    _stale = False

    @abstractmethod
    def figure(self, search: SearchView) -> Figure:
        """The figure of the search as it stands."""

    def path(self, search: SearchView) -> Path:
        """Where the figure of this run is written."""
        return Path(search.run_dir) / "figures" / self.filename

    def redraw(self, search: SearchView) -> Path | None:
        """Draw and write the figure now; its path, or None when that failed (and was logged)."""
        self._stale = False
        try:
            from .plot_panels import save

            return save(self.figure(search), self.path(search))
        except Exception:  # a figure is never worth a search
            logger.warning(
                "Could not draw figures/%s; the search goes on.", self.filename, exc_info=True
            )
            return None

    def on_evaluation(self, search: SearchView, member: Member, result: Result) -> None:
        self._stale = True

    def on_generation_end(
        self, search: SearchView, generation: int, population: Sequence[Member]
    ) -> None:
        self._stale = True
        # a resumed run replays hundreds of generations in seconds; drawing each would take minutes
        if not search.replaying:
            self.redraw(search)

    def on_run_end(self, search: SearchView, best: Member | None) -> None:
        if self._stale:
            self.redraw(search)


class PlotCallback(FigureCallback):
    """A figure of one panel, drawn by :meth:`draw`; :class:`MultiPlot` combines several."""

    @abstractmethod
    def draw(self, ax: Axes, search: SearchView) -> None:
        """Draw the panel onto ``ax``."""

    def figure(self, search: SearchView) -> Figure:
        from .plot_panels import panels

        fig, (ax,) = panels(1)
        self.draw(ax, search)
        return fig


class PlotFitness(PlotCallback):
    """Best and average CV top-3 of the population per generation, and the best feasible one.

    Writes ``figures/fitness.png``.
    """

    filename = "fitness.png"

    def draw(self, ax: Axes, search: SearchView) -> None:
        from .plot_panels import fitness_panel

        fitness_panel(ax, load_generations(search.run_dir))


class ScatterPop(PlotCallback):
    """The population's precision vs CV top-3, with the precision constraint.

    Writes ``figures/population.png``.
    """

    filename = "population.png"

    def draw(self, ax: Axes, search: SearchView) -> None:
        from .plot_panels import population_panel

        population = _results_frame(search.population)
        population_panel(ax, population, search.constraints, search.generation)


class ScatterOpt(PlotCallback):
    """Every evaluated member's size (log scale) vs CV top-3 by the constraints it meets.

    The member the search would return now is marked. Writes ``figures/optimisation.png``.
    """

    filename = "optimisation.png"

    def draw(self, ax: Axes, search: SearchView) -> None:
        from .plot_panels import optimisation_panel

        optimisation_panel(ax, _results_frame(search.members), search.constraints)


class MultiPlot(FigureCallback):
    """Several plot callbacks as the panels of one figure: ``figures/overview.png``.

    Args:
        plots: the panels, left to right. They draw only here; to also keep their own files,
            pass them to the search as well.
        filename: the file name in ``<run_dir>/figures/``.
    """

    def __init__(self, *plots: PlotCallback, filename: str = "overview.png") -> None:
        if not plots:
            raise ConfigError("MultiPlot needs at least one plot callback, but got none.")
        wrong = [type(p).__name__ for p in plots if not isinstance(p, PlotCallback)]
        if wrong:
            raise ConfigError(
                f"MultiPlot takes plot callbacks (PlotFitness, ScatterPop, ScatterOpt, ...). "
                f"Got {', '.join(wrong)} instead."
            )
        self.plots = plots
        self.filename = filename

    def figure(self, search: SearchView) -> Figure:
        from .plot_panels import panels

        fig, axes = panels(len(self.plots))
        for plot, ax in zip(self.plots, axes, strict=True):
            plot.draw(ax, search)
        return fig


_RESULT_COLUMNS = ("top3", "top1", "precision", "num_params", "epochs", "seconds", "status")


def _results_frame(members: Iterable[Member]) -> pd.DataFrame:
    """Each evaluated member's result (its highest budget), one row per member.

    The columns of :func:`evoband.analysis.member_results` that its ranking and constraint
    functions read: member_id, top3, top1, precision, num_params, epochs, seconds, status.
    """
    rows = [
        {"member_id": m.member_id, **{c: getattr(m.result, c) for c in _RESULT_COLUMNS}}
        for m in members
        if m.result is not None
    ]
    return pd.DataFrame(rows, columns=["member_id", *_RESULT_COLUMNS])
