"""The folds of an evaluation as tasks on a Dask cluster (``dask.distributed``).

:class:`DaskExecutor` either starts a ``LocalCluster`` of N worker processes on this machine
(one CPU thread each, or one GPU each on CUDA) or connects to an existing cluster by its
scheduler's address or file. Every
worker receives the prepared data once: the :class:`evoband.training._target.Task` travels inside a worker
plugin, which the scheduler also hands to workers that join later (e.g. one restarted after it
died), and each job names the plugin it trains with; on an existing cluster, a scheduler plugin
removes it once the search's client leaves, however the search ended. Workers train on one torch
thread, one fold at a time per process, so the results are those of serial execution with one
thread.

Workers write their checkpoints into the run directory at the path the search gives them
(:func:`evoband.training._target.run_fold`): on a cluster of several machines the run directory must be on
a filesystem every worker sees at the same path, and evoband must be importable by the workers.
Time limits travel as wall-clock times, so the machines' clocks must agree (NTP).

A fold whose worker dies while training it is run again by the scheduler on another worker, up
to ``retries`` more times on a LocalCluster (an existing cluster uses its own
``distributed.scheduler.allowed-failures``, 3 by default), then recorded as a ``failed`` fold; the
search goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import dask
import torch
from distributed import (
    Client,
    Future,
    LocalCluster,
    SchedulerPlugin,
    WorkerPlugin,
    as_completed,
    get_worker,
)
from distributed.scheduler import KilledWorker
from distributed.security import Security

from ..core._errors import ClusterError, ConfigError, EvobandError
from ..core._validate import require_int
from ..training._faults import failed_fold
from ..training._loop import EpochCallback
from ..training._results import FoldResult, Status
from ..training._target import FoldJob, Task, WorkerExecutor, run_fold
from ._cluster import LOCAL_CLUSTER_SETTINGS, parse_scheduler_address, worker_devices
from ._signals import next_finished, signals_deferred

logger = logging.getLogger(__name__)

_ONE_FOLD_AT_A_TIME = threading.Lock()
"""Training seeds torch's global generator and sets its thread count: a worker process with
several threads must still train one fold at a time for the results to be reproducible."""


class _TaskPlugin(WorkerPlugin):
    """Carries the task to every worker (also to those that join later) and sets it up."""

    def __init__(
        self, task: Task, ignore_sigint: bool, devices: list[torch.device] | None = None
    ) -> None:
        self.task: Task | None = task
        self.ignore_sigint = ignore_sigint
        self.devices = devices

    def setup(self, worker: Any) -> None:
        torch.set_num_threads(1)  # small networks: one intra-op thread is fastest
        if self.ignore_sigint and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the search handles Ctrl-C
        if self.devices and self.task is not None:  # a LocalCluster names its workers 0, 1, ...
            index = worker.name if isinstance(worker.name, int) else 0
            self.task = self.task.on(self.devices[index % len(self.devices)])

    def teardown(self, worker: Any) -> None:
        self.task = None


class _DropTaskWithItsClient(SchedulerPlugin):
    """On the scheduler of an existing cluster: once the search's client is gone (closed, or
    its process killed without a word), remove the worker plugin that carries its task, so that
    no copy of the training set stays on the workers; then remove itself."""

    _pending: set[asyncio.Task[Any]] = set()  # unregistering runs on; keep it from collection

    def __init__(self, client_id: str, plugin: str) -> None:
        self.client_id, self.plugin = client_id, plugin
        self.name = f"{plugin}-drop"

    def remove_client(self, scheduler: Any, client: str) -> None:
        if client != self.client_id:
            return
        if self.plugin in scheduler.worker_plugins:  # not removed by the search itself
            job = asyncio.ensure_future(scheduler.unregister_worker_plugin(None, self.plugin))
            self._pending.add(job)
            job.add_done_callback(self._pending.discard)
        scheduler.plugins.pop(self.name, None)


def _run_on_worker(plugin: str, job: FoldJob, wall_deadline: float | None) -> FoldResult:
    """Run ``job`` on this worker with the task of ``plugin``; the model stays here."""
    holder = get_worker().plugins.get(plugin)
    task = holder.task if isinstance(holder, _TaskPlugin) else None
    if task is None:
        raise ClusterError(f"The Dask worker holds no task {plugin} (it joined without it).")
    with _ONE_FOLD_AT_A_TIME:
        if wall_deadline is not None:  # this machine's monotonic clock for the same moment
            job = replace(job, deadline=time.monotonic() + wall_deadline - time.time())
        result = run_fold(job, task)
    result.model = None
    return result


class DaskExecutor(WorkerExecutor):
    """Folds as tasks on a Dask cluster: a LocalCluster of ``workers`` processes, or an existing
    cluster reached by ``scheduler_address`` (``tcp://host:port``) or ``scheduler_file``.

    Args:
        workers: worker processes of a LocalCluster started on this machine (one CPU thread
            each, or one GPU each on CUDA); closed with the executor.
        devices: the device of each LocalCluster worker (default: :func:`worker_devices` of the
            task's device).
        scheduler_address: the address of a running scheduler.
        scheduler_file: the JSON file a running scheduler wrote (``--scheduler-file``).
        retries: how many more times a fold whose worker died is run (on a LocalCluster).
        connect_timeout: seconds to reach an existing scheduler and to wait for its first worker.
        tls: the LocalCluster's connections use TLS with temporary credentials made for it (a
            client without them is refused: nobody else on the machine can reach the workers,
            which unpickle what they are sent). An existing cluster is reached with Dask's own
            TLS configuration (``distributed.comm.tls.*``, see ``docs/cluster.md``).

    Exactly one of ``workers``, ``scheduler_address`` and ``scheduler_file`` is given.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        devices: list[torch.device] | None = None,
        scheduler_address: str | None = None,
        scheduler_file: str | Path | None = None,
        retries: int = 2,
        connect_timeout: float = 10.0,
        tls: bool = True,
    ) -> None:
        given = [x is not None for x in (workers, scheduler_address, scheduler_file)]
        if sum(given) != 1:
            raise ConfigError(
                "DaskExecutor takes exactly one of workers (a LocalCluster on this machine), "
                "scheduler_address and scheduler_file."
            )
        if workers is not None:
            require_int("workers", workers, low=1)
        require_int("retries", retries, low=0)
        if scheduler_address is not None:
            parse_scheduler_address(scheduler_address)
        self.workers = workers
        self.devices = devices
        self.scheduler_address = scheduler_address
        self.scheduler_file = None if scheduler_file is None else Path(scheduler_file)
        self.retries = retries
        self.connect_timeout = connect_timeout
        self.tls = tls
        self.client: Client | None = None
        self._cluster: LocalCluster | None = None
        self._task: Task | None = None
        self._plugin = ""

    # -- cluster -------------------------------------------------------------------------------

    def connect(self) -> Client:
        """The client, connected now: a LocalCluster is started, an existing scheduler reached
        (a ConfigError names an unreachable one, or one without workers)."""
        if self.client is not None:
            return self.client
        _quiet_distributed_logs()
        if self.workers is not None:
            self._start_local_cluster(self.workers)
        else:
            self._connect_to_scheduler()
        assert self.client is not None
        busy = {w: n for w, n in self.client.nthreads().items() if n > 1}
        if busy:
            logger.warning(
                "%d Dask worker(s) have several threads but train one fold at a time; start "
                "workers with --nthreads 1 and one --nworkers per core instead.",
                len(busy),
            )
        return self.client

    def _start_local_cluster(self, workers: int) -> None:
        # allowed-failures is read when the scheduler starts: the retries of a fold whose worker died
        settings = {
            **LOCAL_CLUSTER_SETTINGS,
            "distributed.scheduler.allowed-failures": self.retries,
        }
        with dask.config.set(settings):
            self._cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                # the workers log nothing: what a fold raises reaches the search, which reports it
                silence_logs=logging.CRITICAL,
                # imported before a worker registers: a restarted one takes no job while importing
                preload=[__name__],
                security=Security.temporary() if self.tls else None,
            )
        self.client = Client(self._cluster)  # with the cluster's credentials

    def _connect_to_scheduler(self) -> None:
        where = self.describe()
        if self.scheduler_file is not None:
            if not self.scheduler_file.is_file():
                raise ConfigError(
                    f"The scheduler file {self.scheduler_file} does not exist; start the "
                    f"scheduler with `dask scheduler --scheduler-file {self.scheduler_file}` first."
                )
        else:
            assert self.scheduler_address is not None
            _require_reachable_scheduler(self.scheduler_address, self.connect_timeout)
        _require_tls_credentials(self._address(), where)
        try:
            self.client = Client(
                self.scheduler_address,
                scheduler_file=None if self.scheduler_file is None else str(self.scheduler_file),
                timeout=self.connect_timeout,
            )
        except (OSError, ValueError, TimeoutError) as exc:
            raise ConfigError(
                f"Cannot connect to the Dask scheduler {where} ({exc}); check that it runs "
                "and the address, or drop the scheduler flag to train on this machine."
            ) from exc
        try:
            self.client.wait_for_workers(1, timeout=self.connect_timeout)
        except TimeoutError:
            self.close()
            raise ConfigError(
                f"The Dask scheduler {where} has no workers after {self.connect_timeout:g} s; "
                "start some with `dask worker <address> --nthreads 1`."
            ) from None

    def _address(self) -> str:
        """The scheduler's address, from the flag or its scheduler file ("" when unreadable:
        Dask then names the problem)."""
        if self.scheduler_address is not None:
            return self.scheduler_address
        try:
            return str(json.loads(Path(str(self.scheduler_file)).read_text())["address"])
        except (OSError, ValueError, KeyError, TypeError):
            return ""

    @property
    def n_workers(self) -> int:
        """Workers of the cluster now (0 before :meth:`connect`)."""
        return 0 if self.client is None else len(self.client.nthreads())

    def describe(self) -> str:
        """Where the folds run, in words."""
        if self.scheduler_address is not None:
            return f"at {self.scheduler_address}"
        if self.scheduler_file is not None:
            return f"of the scheduler file {self.scheduler_file}"
        return f"of a LocalCluster of {self.workers} worker processes"

    def start(self, task: Task) -> None:
        """Start (or reach) the cluster and send ``task`` to its workers now, so that neither is
        charged to the first evaluation's time limit."""
        self._client_for(task)

    def _client_for(self, task: Task) -> Client:
        devices = self.devices
        if task.device.type != "cpu" and devices is None:
            if self.workers is None:
                raise ConfigError(
                    "The workers of an existing Dask cluster train on the CPU; pass --device cpu."
                )
            devices = worker_devices(task.device, self.workers)
        client = self.connect()
        if self._task is not task:
            self._drop_plugin()
            name = f"evoband-task-{uuid.uuid4().hex}"
            plugin = _TaskPlugin(task.on("cpu"), self._cluster is not None, devices)
            if self._cluster is None:  # an existing cluster outlives the search, killed or not
                self._drop_with_client(client, name)
            try:
                client.register_plugin(plugin, name=name)
            except EvobandError:
                raise
            except Exception as exc:  # whatever the workers raised while loading it
                raise ConfigError(
                    f"The Dask workers {self.describe()} cannot load the task "
                    f"({type(exc).__name__}: {exc}); every worker needs evoband importable "
                    "(pip install -e . or PYTHONPATH=<repository>/src) and the same versions."
                ) from exc
            self._task, self._plugin = task, name
        return client

    def _drop_with_client(self, client: Client, name: str) -> None:
        try:
            client.register_plugin(_DropTaskWithItsClient(client.id, name))
        except Exception as exc:  # e.g. a scheduler that cannot import evoband
            logger.warning(
                "The Dask scheduler cannot remove this search's training set from its workers "
                "if the search is killed (%s: %s); a normal exit still removes it.",
                type(exc).__name__,
                exc,
            )

    def _drop_plugin(self) -> None:
        if self._plugin and self.client is not None and self._cluster is None:
            try:  # an existing cluster outlives the search: free its workers' copy of the data
                self.client.unregister_worker_plugin(self._plugin)
            except Exception as exc:  # a scheduler that is gone holds nothing any more
                logger.debug("Worker plugin %s not removed: %s", self._plugin, exc)
        self._task, self._plugin = None, ""

    # -- folds ---------------------------------------------------------------------------------

    def stream(
        self,
        jobs: Iterator[FoldJob],
        task: Task,
        on_epoch: Callable[[int], EpochCallback | None] | None = None,
    ) -> Iterator[tuple[FoldJob, FoldResult]]:
        """As many jobs at a time as the cluster has workers when the stream starts."""
        client = self._client_for(task)
        to_wall = time.time() - time.monotonic()
        submitted: dict[Any, tuple[FoldJob, float]] = {}  # by the future's key
        # our client's loop: the default client (another one in this process) would only
        # notice the results on its periodic ticks
        finished = as_completed([], loop=client.loop)
        exhausted, slots = False, max(1, self.n_workers)
        try:
            while True:
                while not exhausted and finished.count() < slots:
                    job = next(jobs, None)
                    if job is None:
                        exhausted = True
                        break
                    wall = None if job.deadline is None else job.deadline + to_wall
                    with signals_deferred():
                        future = client.submit(
                            _run_on_worker,
                            self._plugin,
                            replace(job, deadline=None),
                            wall,
                            key=f"evoband-fold{job.fold}-{uuid.uuid4().hex}",
                            pure=False,
                        )
                        submitted[future.key] = (job, time.perf_counter())
                        finished.add(future)
                if finished.is_empty():
                    return
                future = next_finished(finished)
                job, started = submitted.pop(future.key)
                with signals_deferred():
                    result = self._result_of(future, job, time.perf_counter() - started)
                yield job, result
        finally:  # interrupted or failed: stop what is still queued or training
            pending = list(finished.futures)
            if pending and self.client is not None and self.client.status == "running":
                self.client.cancel(pending)

    def _result_of(self, future: Future, job: FoldJob, seconds: float) -> FoldResult:
        if future.status == "finished":
            result: FoldResult = future.result()
            return result
        if future.status != "error":  # cancelled or lost: the scheduler is gone
            raise ClusterError(
                f"The Dask cluster {self.describe()} lost the job of fold {job.fold} "
                f"({future.status}); every finished evaluation is in the ledger: resume the run "
                "with --resume once the cluster is back."
            )
        exc = future.exception()
        if isinstance(exc, KilledWorker):
            return FoldResult(
                job.fold, 0.0, 0.0, 0.0, float("nan"), 0, seconds, Status.FAILED,
                f"the Dask worker training this fold died {exc.allowed_failures + 1} time(s) "
                "(killed, or out of memory); recorded as failed",
            )  # fmt: skip
        if isinstance(exc, (EvobandError, OSError)):
            raise exc  # the run directory cannot be written: as in serial execution
        assert isinstance(exc, Exception)
        return failed_fold(job.fold, exc, seconds)  # e.g. a worker that cannot import evoband

    def close(self) -> None:
        """Close the client, and the LocalCluster if this executor started it."""
        self._drop_plugin()
        client, cluster = self.client, self._cluster
        self.client = self._cluster = None
        for what in (client, cluster):
            if what is not None:
                try:
                    what.close()
                except Exception as exc:  # closing is best effort; the processes end with us
                    logger.debug("Closing %s failed: %s", type(what).__name__, exc)


def _quiet_distributed_logs() -> None:
    """Show distributed's warnings and errors only (e.g. a worker that died), not its INFO lines
    (workers starting, clients connecting), unless a level was chosen for it or evoband's own
    logs are at DEBUG (``-v``)."""
    log = logging.getLogger("distributed")
    if log.level == logging.INFO and not logger.isEnabledFor(logging.DEBUG):
        log.setLevel(logging.WARNING)


def _require_tls_credentials(address: str, where: str) -> None:
    """A ConfigError when the scheduler speaks TLS and Dask's configuration holds no client
    credentials for it (Dask itself fails with a TypeError deep inside)."""
    if not address.startswith("tls://"):
        return
    security = Security()  # from Dask's configuration: distributed.comm.tls.*
    if not (getattr(security, "tls_ca_file", None) and getattr(security, "tls_client_cert", None)):
        raise ConfigError(
            f"The Dask scheduler {where} uses TLS, but Dask's configuration holds no client "
            "credentials; set distributed.comm.tls.ca-file, distributed.comm.tls.client.cert and "
            "distributed.comm.tls.client.key (e.g. DASK_DISTRIBUTED__COMM__TLS__CA_FILE=ca.pem; "
            "see docs/cluster.md)."
        )


def _require_reachable_scheduler(address: str, timeout: float) -> None:
    """A ConfigError at once when nothing listens at a TCP or TLS scheduler address (Dask
    itself retries until its timeout)."""
    scheme, host, port = parse_scheduler_address(address)
    if scheme not in ("tcp", "tls"):
        return
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ConfigError(
            f"Cannot reach the Dask scheduler at {address} ({reason}); start one with "
            "`dask scheduler`, or check --scheduler_address."
        ) from exc
