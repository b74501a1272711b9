"""The search: its settings, members, the Hyperband schedule, breeding, the evolutionary optimizer
(with rung barriers or asynchronous promotion), the callback interface it calls, and running a
whole search from arguments (:func:`run_search`)."""

from __future__ import annotations

from ._breeding import Breeder
from ._ensemble_selection import Candidate, Selection, fold_scores, select_ensemble
from ._final import Delivered
from ._hooks import BaseCallback, Callback, CbAll, SearchView, StopRequest
from ._hyperband import Bracket, HyperbandSchedule, promote
from ._member import Member, Origin, best_member, rank_members
from ._optimizer import EvolutionaryOptimizer
from ._progress import ProgressBar
from ._run import SearchReport, run_search
from ._settings import SearchSettings
from ._setup import SearchConfig
from ._space import SearchSpace, resolve_space

__all__ = [
    "Candidate",
    "Delivered",
    "Selection",
    "fold_scores",
    "select_ensemble",
    "BaseCallback",
    "Bracket",
    "Breeder",
    "Callback",
    "CbAll",
    "EvolutionaryOptimizer",
    "HyperbandSchedule",
    "Member",
    "Origin",
    "ProgressBar",
    "SearchConfig",
    "SearchReport",
    "SearchSettings",
    "SearchSpace",
    "SearchView",
    "StopRequest",
    "best_member",
    "promote",
    "rank_members",
    "resolve_space",
    "run_search",
]
