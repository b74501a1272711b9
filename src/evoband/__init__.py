"""evoband: constrained evolutionary search with Hyperband for small PyTorch CNNs."""

from __future__ import annotations

__version__ = "0.1.0"

from .arrays import data_from_arrays  # noqa: E402
from .autoflux import fit  # noqa: E402
from .callbacks import (  # noqa: E402
    CbAll,
    MultiPlot,
    Persist,
    PlotFitness,
    ScatterOpt,
    ScatterPop,
    StopAtTarget,
    persist,
)
from .constraints import Constraints, MaxParams, MinPrecision  # noqa: E402
from .ea import EvolutionaryOptimizer  # noqa: E402
from .ensemble import EnsembleResult, ensemble  # noqa: E402
from .errors import ConfigError, DataError, EvobandError, StoreError  # noqa: E402
from .export import ExportReport, export_model, load_exported  # noqa: E402
from .fitted import FittedMember, Population  # noqa: E402
from .search import SearchConfig, run_search  # noqa: E402
from .settings import SearchSettings  # noqa: E402
from .store import RunStore, load_run  # noqa: E402

__all__ = [
    "CbAll",
    "ConfigError",
    "Constraints",
    "DataError",
    "EnsembleResult",
    "EvobandError",
    "EvolutionaryOptimizer",
    "ExportReport",
    "FittedMember",
    "MaxParams",
    "MinPrecision",
    "MultiPlot",
    "Persist",
    "PlotFitness",
    "Population",
    "RunStore",
    "ScatterOpt",
    "ScatterPop",
    "SearchConfig",
    "SearchSettings",
    "StopAtTarget",
    "StoreError",
    "data_from_arrays",
    "ensemble",
    "export_model",
    "fit",
    "load_exported",
    "load_run",
    "persist",
    "run_search",
]
