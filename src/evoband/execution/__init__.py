"""Where folds run: evaluations streamed to an executor fold by fold, serially in this process, on a
Dask LocalCluster or on the workers of a running Dask scheduler."""

from __future__ import annotations

from ._batches import Evaluation, train_stream, train_together
from ._cluster import check_cluster_arguments, parse_scheduler_address
from ._dask import DaskExecutor
from ._executors import executor_record, make_executor

__all__ = [
    "DaskExecutor",
    "Evaluation",
    "check_cluster_arguments",
    "executor_record",
    "make_executor",
    "parse_scheduler_address",
    "train_stream",
    "train_together",
]
