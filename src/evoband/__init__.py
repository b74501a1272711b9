"""evoband: constrained evolutionary search with Hyperband for small PyTorch CNNs."""

from __future__ import annotations

__version__ = "0.1.0"

from .autoflux import fit  # noqa: E402
from .constraints import Constraints, MaxParams, MinPrecision  # noqa: E402
from .ea import EvolutionaryOptimizer  # noqa: E402
from .errors import ConfigError, DataError, EvobandError, StoreError  # noqa: E402
from .search import SearchConfig, run_search  # noqa: E402
from .settings import SearchSettings  # noqa: E402
from .store import RunStore, load_run  # noqa: E402

__all__ = [
    "ConfigError",
    "Constraints",
    "DataError",
    "EvobandError",
    "EvolutionaryOptimizer",
    "MaxParams",
    "MinPrecision",
    "RunStore",
    "SearchConfig",
    "SearchSettings",
    "StoreError",
    "fit",
    "load_run",
    "run_search",
]
