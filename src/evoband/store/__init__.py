"""The run store: the one place that knows the files of a run directory. The SQLite ledger and its
schema, the exports beside it (``opt_cfg.json``, ``automl_run.json``, ``progress.csv``, ...), and
reading recorded runs back (:func:`load_run`, :class:`RunData`) with the one ranking over them."""

from __future__ import annotations

from ._analysis import (
    chronological,
    feasible_fraction,
    feasible_mask,
    member_results,
    optimum,
    pareto_front,
    rank,
    result_of,
)
from ._exports import (
    PROGRESS_COLUMNS,
    load_generations,
    load_run,
    read_population,
    read_run_json,
    read_training_record,
    training_record_path,
)
from ._ledger import RunStore
from ._lock import LOCK_FILE, LockHolder, RunLock, lock_holder, remove_stale_temporaries
from ._predictor_file import (
    ENSEMBLE,
    PREDICTOR_DIR,
    is_predictor_record,
    read_predictor_record,
)
from ._runs import RunData, algorithm_label, best_run, load_groups, member_config, read_run
from ._schema import LEDGER, SCHEMA_VERSION

__all__ = [
    "LOCK_FILE",
    "LockHolder",
    "RunLock",
    "lock_holder",
    "remove_stale_temporaries",
    "ENSEMBLE",
    "PREDICTOR_DIR",
    "is_predictor_record",
    "read_predictor_record",
    "LEDGER",
    "PROGRESS_COLUMNS",
    "RunData",
    "RunStore",
    "SCHEMA_VERSION",
    "algorithm_label",
    "best_run",
    "chronological",
    "feasible_fraction",
    "feasible_mask",
    "load_generations",
    "load_groups",
    "load_run",
    "member_config",
    "member_results",
    "optimum",
    "pareto_front",
    "rank",
    "read_population",
    "read_run",
    "read_run_json",
    "read_training_record",
    "result_of",
    "training_record_path",
]
