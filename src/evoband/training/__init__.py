"""Training and scoring: data sets decoded once into tensors, the one training loop, the metrics,
checkpoints, the K-fold objective (:class:`Task` and :func:`evaluate`), what an evaluation
produces and how constraints rank it, retraining along a lineage, distillation and the cost model."""

from __future__ import annotations

from ._arrays import ARRAYS, data_from_arrays
from ._checkpoints import load_checkpoint, save_checkpoint
from ._constraints import Constraint, Constraints, MaxParams, MinPrecision
from ._cost import CostModel
from ._data import (
    DATA_ENV,
    DIGITS,
    IMAGE_SUFFIXES,
    DataSource,
    ImageSet,
    channel_stats,
    find_data_dir,
    load_data,
    normalize,
    stratified_folds,
)
from ._distill import distillation_record, teacher_targets
from ._faults import failed_fold
from ._lineage import lineage_source, train_lineage
from ._loop import (
    Distillation,
    TrainState,
    cpu_threads_for,
    derive_seed,
    evaluate_model,
    make_optimizer,
    make_state,
    predict,
    resolve_device,
    train,
)
from ._metrics import (
    Metrics,
    compute_metrics,
    confusion_matrix,
    macro_precision,
    macro_precision_np,
    top_k_accuracy,
)
from ._parent_weights import ParentWeights
from ._predictor import EnsembleNetwork, data_fingerprint, load_network
from ._results import FoldResult, Result, Status
from ._retrain import Retrained, retrain
from ._target import FoldExecutor, FoldJob, SerialExecutor, Task, WorkerExecutor, evaluate, run_fold

__all__ = [
    "EnsembleNetwork",
    "data_fingerprint",
    "load_network",
    "Retrained",
    "retrain",
    "cpu_threads_for",
    "ARRAYS",
    "Constraint",
    "Constraints",
    "CostModel",
    "DATA_ENV",
    "DIGITS",
    "DataSource",
    "Distillation",
    "FoldExecutor",
    "FoldJob",
    "FoldResult",
    "IMAGE_SUFFIXES",
    "ImageSet",
    "MaxParams",
    "Metrics",
    "MinPrecision",
    "ParentWeights",
    "Result",
    "SerialExecutor",
    "Status",
    "Task",
    "TrainState",
    "WorkerExecutor",
    "channel_stats",
    "compute_metrics",
    "confusion_matrix",
    "data_from_arrays",
    "derive_seed",
    "distillation_record",
    "evaluate",
    "evaluate_model",
    "failed_fold",
    "find_data_dir",
    "lineage_source",
    "load_checkpoint",
    "load_data",
    "macro_precision",
    "macro_precision_np",
    "make_optimizer",
    "make_state",
    "normalize",
    "predict",
    "resolve_device",
    "run_fold",
    "save_checkpoint",
    "stratified_folds",
    "teacher_targets",
    "top_k_accuracy",
    "train",
    "train_lineage",
]
