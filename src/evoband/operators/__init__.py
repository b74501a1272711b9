"""Operators on genotypes, each taking an explicit numpy Generator: sampling, mutations, crossovers,
wrappers that combine and guard them, the repair that keeps children within the parameter limit
and cost cap, parent selection and survival strategies, and fitness functions."""

from __future__ import annotations

from ._base import COST_KEYS, STRUCTURE_PREFIXES, Selection, Variation
from ._crossovers import StageSwapCrossover, TrainingCrossover, UniformCrossover
from ._fitness import (
    Aggregate,
    Fitness,
    NanGuard,
    Precision,
    Size,
    TimedOutPenalty,
    TopK,
    TrainTime,
    member_fitness,
)
from ._mutations import (
    ActivationMutation,
    AddLayer,
    CountMutation,
    KernelMutation,
    LearningRateMutation,
    LocalMutation,
    OptimizerMutation,
    RemoveLayer,
    ToggleMutation,
    UniformMutation,
    WidthMutation,
)
from ._repair import ParamBudget, smallest_config
from ._sampling import FamilySampling, RandomSampling
from ._selection import NeutralSelection, TournamentSelection, plus_selection
from ._strategies import CombinedSelection, EliteSelection, PlusStrategy, Strategy, SUSSelection
from ._wrappers import ChainMutation, FilterMutation, Shield, WithinBudget, WithProbability

__all__ = [
    "ActivationMutation",
    "AddLayer",
    "Aggregate",
    "COST_KEYS",
    "ChainMutation",
    "CombinedSelection",
    "CountMutation",
    "EliteSelection",
    "FamilySampling",
    "FilterMutation",
    "Fitness",
    "KernelMutation",
    "LearningRateMutation",
    "LocalMutation",
    "NanGuard",
    "NeutralSelection",
    "OptimizerMutation",
    "ParamBudget",
    "PlusStrategy",
    "Precision",
    "RandomSampling",
    "RemoveLayer",
    "STRUCTURE_PREFIXES",
    "SUSSelection",
    "Selection",
    "Shield",
    "Size",
    "StageSwapCrossover",
    "Strategy",
    "TimedOutPenalty",
    "ToggleMutation",
    "TopK",
    "TournamentSelection",
    "TrainTime",
    "TrainingCrossover",
    "UniformCrossover",
    "UniformMutation",
    "Variation",
    "WidthMutation",
    "WithProbability",
    "WithinBudget",
    "member_fitness",
    "plus_selection",
    "smallest_config",
]
