"""Callbacks: hooks the optimizer calls as a search goes (the interface is :mod:`evoband.search._hooks`).

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
from typing import TYPE_CHECKING

import pandas as pd

from ..core._errors import ConfigError
from ..search._hooks import BaseCallback, SearchView
from ..store._exports import load_generations

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..search._member import Member
    from ..training._results import Result

logger = logging.getLogger(__name__)


# -- figures -----------------------------------------------------------------------------------
#
# The drawing lives in evoband.report._panels, imported when a figure is first drawn: it imports
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
            from ..report._panels import save

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
        from ..report._panels import panels

        fig, (ax,) = panels(1)
        self.draw(ax, search)
        return fig


class PlotFitness(PlotCallback):
    """Best and average CV top-3 of the population per generation, and the best feasible one.

    Writes ``figures/fitness.png``.
    """

    filename = "fitness.png"

    def draw(self, ax: Axes, search: SearchView) -> None:
        from ..report._panels import fitness_panel

        fitness_panel(ax, load_generations(search.run_dir))


class ScatterPop(PlotCallback):
    """The population's precision vs CV top-3, with the precision constraint.

    Writes ``figures/population.png``.
    """

    filename = "population.png"

    def draw(self, ax: Axes, search: SearchView) -> None:
        from ..report._panels import population_panel

        population = _results_frame(search.population)
        population_panel(ax, population, search.constraints, search.generation)


class ScatterOpt(PlotCallback):
    """Every evaluated member's size (log scale) vs CV top-3 by the constraints it meets.

    The member the search would return now is marked. Writes ``figures/optimisation.png``.
    """

    filename = "optimisation.png"

    def draw(self, ax: Axes, search: SearchView) -> None:
        from ..report._panels import optimisation_panel

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
        from ..report._panels import panels

        fig, axes = panels(len(self.plots))
        for plot, ax in zip(self.plots, axes, strict=True):
            plot.draw(ax, search)
        return fig


_RESULT_COLUMNS = ("top3", "top1", "precision", "num_params", "epochs", "seconds", "status")


def _results_frame(members: Iterable[Member]) -> pd.DataFrame:
    """Each evaluated member's result (its highest budget), one row per member.

    The columns of :func:`evoband.store._analysis.member_results` that its ranking and constraint
    functions read: member_id, top3, top1, precision, num_params, epochs, seconds, status.
    """
    rows = [
        {"member_id": m.member_id, **{c: getattr(m.result, c) for c in _RESULT_COLUMNS}}
        for m in members
        if m.result is not None
    ]
    return pd.DataFrame(rows, columns=["member_id", *_RESULT_COLUMNS])
