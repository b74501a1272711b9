"""Parallel execution of fold jobs in worker processes on this machine.

Each worker holds the prepared data once (sent when the pool starts) and trains on one CPU
thread, so that N workers use N cores without the intra-op thread contention that makes
multi-threaded training of small networks many times slower on a busy CPU. Folds are
independent, so the results are those of serial execution with one thread per model. On CUDA
each worker trains on a GPU of its own instead.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
from collections.abc import Callable, Iterator
from functools import partial
from multiprocessing.pool import Pool
from typing import Any

import torch

from .errors import ConfigError
from .results import FoldResult
from .target import FoldJob, Task, WorkerExecutor, run_fold
from .train import EpochCallback

_WORKER_TASK: Task | None = None


def worker_devices(device: torch.device, workers: int) -> list[torch.device]:
    """The device of each worker: the CPU for all on a CPU, one GPU each on CUDA.

    Raises:
        ConfigError: more workers than visible GPUs.
    """
    if device.type == "cpu":
        return [device] * workers
    if device.type != "cuda":
        raise ConfigError(f"Worker processes train on the CPU or CUDA GPUs, not on {device}.")
    gpus = torch.cuda.device_count()
    if workers > gpus:
        raise ConfigError(
            f"{workers} workers but {gpus} visible GPUs: each worker trains on a GPU of its own; "
            f"pass --workers {max(gpus, 1)} (or --workers auto)."
        )
    return [torch.device("cuda", i) for i in range(workers)]


def _init_worker(task: Task, devices: list[torch.device]) -> None:
    global _WORKER_TASK
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends the pool
    torch.set_num_threads(1)
    # the pool numbers its workers from 1 (a replaced worker gets the next number)
    index = (multiprocessing.current_process()._identity or (1,))[0] - 1
    _WORKER_TASK = task.on(devices[index % len(devices)])


def _run_in_worker(job: FoldJob) -> FoldResult:
    assert _WORKER_TASK is not None, "worker started without its task"
    result = run_fold(job, _WORKER_TASK)
    result.model = None  # models stay in the worker
    return result


def _paired(finished: queue.SimpleQueue[Any], job: FoldJob, result: FoldResult) -> None:
    finished.put((job, result))


class ProcessExecutor(WorkerExecutor):
    """Folds in ``workers`` processes; the pool starts with the first evaluation.

    On a CPU every worker trains on one thread; on CUDA each worker has a GPU of its own
    (:func:`worker_devices`). The task's tensors are sent through the CPU.

    Args:
        workers: number of worker processes (>= 2 to be useful).
        devices: the device of each worker (default: :func:`worker_devices` of the task's).
    """

    def __init__(self, workers: int, devices: list[torch.device] | None = None) -> None:
        if workers < 1:
            raise ConfigError(f"The value of `workers` is {workers}, but must be `workers >= 1`.")
        self.workers = workers
        self.devices = devices
        self._pool: Pool | None = None
        self._task: Task | None = None

    def start(self, task: Task) -> None:
        """Start the workers now (with ``task`` loaded), so that their start-up is not charged
        to the first evaluation's time limit."""
        self._pool_for(task)

    def _pool_for(self, task: Task) -> Pool:
        if self._pool is None or self._task is not task:
            devices = self.devices or worker_devices(task.device, self.workers)
            self.close()
            context = multiprocessing.get_context(
                "spawn"
            )  # no fork of a process holding torch threads
            self._pool = context.Pool(
                self.workers, initializer=_init_worker, initargs=(task.on("cpu"), devices)
            )
            self._task = task
        return self._pool

    def stream(
        self,
        jobs: Iterator[FoldJob],
        task: Task,
        on_epoch: Callable[[int], EpochCallback | None] | None = None,
    ) -> Iterator[tuple[FoldJob, FoldResult]]:
        """At most ``workers`` jobs at a time; a worker's exception is raised here."""
        pool = self._pool_for(task)
        finished: queue.SimpleQueue[tuple[FoldJob, FoldResult] | BaseException]
        finished = queue.SimpleQueue()
        in_flight, exhausted = 0, False
        try:
            while True:
                while not exhausted and in_flight < self.workers:
                    job = next(jobs, None)
                    if job is None:
                        exhausted = True
                        break
                    pool.apply_async(
                        _run_in_worker,
                        (job,),
                        callback=partial(_paired, finished, job),
                        error_callback=finished.put,
                    )
                    in_flight += 1
                if in_flight == 0:
                    return
                outcome = finished.get()
                in_flight -= 1
                if isinstance(outcome, BaseException):
                    raise outcome
                yield outcome
        finally:
            if in_flight:  # abandoned (a stop, an error): end those jobs, not train them on
                self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
            self._task = None
