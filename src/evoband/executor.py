"""Parallel execution of fold jobs in worker processes on this machine.

Each worker holds the prepared data once (sent when the pool starts) and trains on one CPU
thread, so that N workers use N cores without the intra-op thread contention that makes
multi-threaded training of small networks many times slower on a busy CPU. Folds are
independent, so the results are those of serial execution with one thread per model. On CUDA
each worker trains on a GPU of its own instead.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

import torch

from .errors import ConfigError
from .results import FoldResult, Status
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


def _ready() -> int:
    time.sleep(0.05)  # long enough for the other workers to take the other calls
    return os.getpid()


def _run_in_worker(job: FoldJob) -> FoldResult:
    assert _WORKER_TASK is not None, "worker started without its task"
    result = run_fold(job, _WORKER_TASK)
    result.model = None  # models stay in the worker
    return result


class ProcessExecutor(WorkerExecutor):
    """Folds in ``workers`` processes; the pool starts with the first evaluation.

    On a CPU every worker trains on one thread; on CUDA each worker has a GPU of its own
    (:func:`worker_devices`). The task's tensors are sent through the CPU. A worker that dies
    (killed, out of memory) takes the pool down with every job in flight: the pool is started
    again and those jobs are run again, each at most ``retries`` more times, after which it is
    recorded as a ``failed`` fold.

    Args:
        workers: number of worker processes (>= 2 to be useful).
        devices: the device of each worker (default: :func:`worker_devices` of the task's).
        retries: how many more times a job is run after its worker died under it.
    """

    def __init__(
        self, workers: int, devices: list[torch.device] | None = None, retries: int = 2
    ) -> None:
        if workers < 1:
            raise ConfigError(f"The value of `workers` is {workers}, but must be `workers >= 1`.")
        if retries < 0:
            raise ConfigError(f"The value of `retries` is {retries}, but must be `retries >= 0`.")
        self.workers = workers
        self.devices = devices
        self.retries = retries
        self._pool: ProcessPoolExecutor | None = None
        self._task: Task | None = None

    def start(self, task: Task) -> None:
        """Start the workers now (with ``task`` loaded), so that their start-up is not charged
        to the first evaluation's time limit: returns once every worker has answered."""
        pool = self._pool_for(task)
        answered: set[int] = set()
        for _ in range(20):  # the pool spawns its workers as jobs come; each answers when ready
            answered |= {f.result() for f in [pool.submit(_ready) for _ in range(self.workers)]}
            if len(answered) >= self.workers:
                return

    def _pool_for(self, task: Task) -> ProcessPoolExecutor:
        if self._pool is None or self._task is not task:
            devices = self.devices or worker_devices(task.device, self.workers)
            self.close()
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),  # no fork of torch threads
                initializer=_init_worker,
                initargs=(task.on("cpu"), devices),
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
        running: dict[Future[FoldResult], tuple[FoldJob, float]] = {}
        again: deque[FoldJob] = deque()
        deaths: dict[int, int] = {}
        exhausted = False
        try:
            while True:
                pool = self._pool_for(task)
                while len(running) < self.workers:
                    job = again.popleft() if again else None if exhausted else next(jobs, None)
                    if job is None:  # (``again`` is empty here)
                        exhausted = True
                        break
                    running[pool.submit(_run_in_worker, job)] = (job, time.perf_counter())
                if not running:
                    return
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                    done = set(running)  # the pool is gone, and every job in flight with it
                    self.close()
                for future in done:
                    job, started = running.pop(future)
                    exc = future.exception()
                    if exc is None:
                        yield job, future.result()
                    elif not isinstance(exc, BrokenProcessPool):
                        raise exc
                    elif deaths.setdefault(id(job), 0) < self.retries:
                        deaths[id(job)] += 1
                        again.append(job)
                    else:
                        yield job, _died(job, self.retries + 1, time.perf_counter() - started)
        finally:
            if running:  # abandoned (a stop, an error): end those jobs, not train them on
                self.close()

    def close(self) -> None:
        if self._pool is not None:
            # terminate running jobs (shutdown alone would wait for them to finish)
            for process in list((getattr(self._pool, "_processes", None) or {}).values()):
                process.terminate()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            self._task = None


def _died(job: FoldJob, times: int, seconds: float) -> FoldResult:
    message = (
        f"the worker process training this fold died {times} time(s) (killed, or out of "
        "memory); recorded as failed"
    )
    return FoldResult(job.fold, 0.0, 0.0, 0.0, float("nan"), 0, seconds, Status.FAILED, message)
