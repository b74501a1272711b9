"""Failed folds: an unexpected exception inside training becomes a fold with status ``error``
(its traceback kept for the ledger), running out of memory one with status ``failed``, and a
fold stuck past its time limit is stopped there (:func:`hard_time_limit`)."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from types import FrameType

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


HARD_LIMIT_GRACE = 30.0
"""Seconds past an evaluation's deadline before its fold is stopped wherever it is: training
itself stops at the deadline between batches, and scoring the validation split after it is
allowed this long."""


class HardTimeLimit(BaseException):
    """Raised into a fold stuck past its deadline plus :data:`HARD_LIMIT_GRACE` (building a
    model, loading a checkpoint, inheriting weights, scoring). A BaseException, as
    KeyboardInterrupt is, so that no ``except Exception`` on the way swallows it."""

    def __str__(self) -> str:  # raised into another thread, it arrives without its message
        return (
            str(self.args[0])
            if self.args
            else f"still running {HARD_LIMIT_GRACE:g} s after the time limit"
        )


@contextlib.contextmanager
def hard_time_limit(deadline: float | None) -> Iterator[None]:
    """Raise :class:`HardTimeLimit` in the block once ``time.monotonic()`` passes ``deadline``
    plus :data:`HARD_LIMIT_GRACE`, whatever the block is doing between Python bytecodes (a
    single long native call ends first).

    In the main thread of a process where no alarm is set already this is a real-time alarm
    (SIGALRM), which also ends a blocking system call; in any other thread (Dask workers run
    folds in threads) a timer thread raises the exception into the block's thread, where it
    arrives at the next Python bytecode (a blocking call returns first)."""
    if deadline is None:
        yield
        return
    seconds = max(deadline + HARD_LIMIT_GRACE - time.monotonic(), 1e-3)
    main = threading.current_thread() is threading.main_thread()
    if main and hasattr(signal, "setitimer") and signal.getitimer(signal.ITIMER_REAL)[0] == 0.0:
        with _alarm(seconds):
            yield
    elif main:  # an alarm of someone else's is set: it is not ours to replace
        yield
    else:
        with _timer_thread(seconds):
            yield


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def stop(signum: int, frame: FrameType | None) -> None:
        raise HardTimeLimit()

    previous = signal.signal(signal.SIGALRM, stop)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _timer_thread(seconds: float) -> Iterator[None]:
    target = ctypes.c_ulong(threading.get_ident())
    lock = threading.Lock()
    state = {"inside": True, "raised": False}

    def stop() -> None:
        with lock:
            if state["inside"]:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(target, ctypes.py_object(HardTimeLimit))
                state["raised"] = True

    timer = threading.Timer(seconds, stop)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            state["inside"] = False
            timer.cancel()
            if state["raised"]:  # the block ended just then: withdraw it if it has not arrived
                ctypes.pythonapi.PyThreadState_SetAsyncExc(target, None)


def stopped_fold(fold: int, exc: HardTimeLimit, seconds: float) -> FoldResult:
    """The ``timed_out`` result of a fold :func:`hard_time_limit` stopped (nothing scored)."""
    return FoldResult(
        fold, 0.0, 0.0, 0.0, float("nan"), 0, seconds, Status.TIMED_OUT,
        f"evaluation time limit reached; stopped outside training ({exc})",
    )  # fmt: skip
