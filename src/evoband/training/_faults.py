"""Failed folds: an unexpected exception inside training becomes a fold with status ``error``
(its traceback kept for the ledger), running out of memory one with status ``failed``."""

from __future__ import annotations

import logging
import traceback

from ._results import FoldResult, Status

logger = logging.getLogger(__name__)


_OOM_WORDS = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says memory ran out (CUDA, MPS or the CPU allocator): not a bug."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True  # torch.OutOfMemoryError (CUDA, and torch.cuda's), without importing torch
    return isinstance(exc, RuntimeError) and any(w in str(exc).lower() for w in _OOM_WORDS)


def failed_fold(fold: int, exc: Exception, seconds: float) -> FoldResult:
    """The fold result of an exception raised while training or scoring.

    Running out of memory is a ``failed`` fold (the search goes on, as with any resource
    limit); anything else is an ``error`` whose message is ``Type: text`` and whose traceback is
    kept for the ledger (the optimizer logs it and stops a search that repeats it).
    """
    error = f"{type(exc).__name__}: {exc}"
    if is_out_of_memory(exc):
        return FoldResult(
            fold, 0.0, 0.0, 0.0, float("nan"), 0, seconds, Status.FAILED, f"out of memory ({error})"
        )
    result = FoldResult(fold, 0.0, 0.0, 0.0, float("nan"), 0, seconds, Status.ERROR, error)
    result.traceback = "".join(traceback.format_exception(exc))
    return result
