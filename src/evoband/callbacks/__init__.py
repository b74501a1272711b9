"""Callbacks a search calls as it goes: persisting the population, stopping at a target, and figures
redrawn after every generation. The interface (:class:`Callback`, :class:`BaseCallback`,
:class:`SearchView`) and the default progress bar belong to :mod:`evoband.search`, which calls
them; they are handed on here too."""

from __future__ import annotations

from ..search import BaseCallback, Callback, CbAll, ProgressBar, SearchView
from ._figures import FigureCallback, MultiPlot, PlotCallback, PlotFitness, ScatterOpt, ScatterPop
from ._persist import Persist, persist
from ._stop import StopAtTarget

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
