"""Reports on recorded runs: their optima retrained on the test split, ensembles of their best
members, summary tables, significance tests, the series behind the figures, the figures, and the
live dashboard (a run mirrored into an Optuna study served by optuna-dashboard, the optional extra
``evoband[dashboard]``)."""

from __future__ import annotations

from ._dashboard import Dashboard, default_journal_path, lower_priority, mirror_run
from ._ensembles import EnsembleResult, combine, ensemble_size
from ._plots import save_figures
from ._retrain import TestResult, retrain_on_test, test_data_dir, test_optima
from ._run_ensemble import test_ensembles
from ._significance import significance_tests, wilcoxon_paired
from ._summary import (
    ensemble_table,
    markdown_ensembles,
    markdown_summary,
    markdown_tests,
    summary_table,
)
from ._traces import best_feasible_trace, population_trace
from ._trials import MemberTrial, RunFacts, member_trials

__all__ = [
    "wilcoxon_paired",
    "Dashboard",
    "EnsembleResult",
    "MemberTrial",
    "RunFacts",
    "TestResult",
    "best_feasible_trace",
    "combine",
    "default_journal_path",
    "lower_priority",
    "ensemble_size",
    "ensemble_table",
    "markdown_ensembles",
    "markdown_summary",
    "markdown_tests",
    "member_trials",
    "mirror_run",
    "population_trace",
    "retrain_on_test",
    "save_figures",
    "significance_tests",
    "summary_table",
    "test_data_dir",
    "test_ensembles",
    "test_optima",
]
