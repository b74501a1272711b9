"""Where a search's folds run: in this process, in a local process pool, on a local Dask cluster
or on an existing Dask cluster, as :class:`evoband.run_setup.SearchConfig`'s ``workers``,
``executor``, ``scheduler_address`` and ``scheduler_file`` say.

The executor is not part of a search's definition: a run may be resumed with another one (the
results are those of serial execution either way).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cluster import check_cluster_arguments, check_sendable
from .errors import ConfigError

if TYPE_CHECKING:
    import torch

    from .family import NetworkFamily
    from .target import FoldExecutor

__all__ = ["executor_record", "make_executor"]


def make_executor(
    executor: str,
    workers: int,
    device: torch.device,
    family: NetworkFamily,
    *,
    scheduler_address: str | None = None,
    scheduler_file: str | Path | None = None,
) -> FoldExecutor | None:
    """The executor of a search's folds (None: serially in this process).

    With a scheduler address or file the folds run on that existing Dask cluster (``workers`` and
    ``executor`` are ignored) and it is reached now, so that a bad address fails before anything
    is written. Otherwise ``workers > 1`` processes run them on this machine: a process pool
    (``executor="process"``) or a Dask LocalCluster (``"dask"``), both started later by
    ``start(task)``.
    """
    check_cluster_arguments(executor, scheduler_address, scheduler_file)
    remote = scheduler_address is not None or scheduler_file is not None
    if not remote and workers <= 1:
        return None
    if not remote and executor == "process":
        from .executor import ProcessExecutor, worker_devices

        check_sendable(family, workers, pickle.dumps)
        worker_devices(device, workers)  # more workers than GPUs fails now, not at the start
        return ProcessExecutor(workers)
    if device.type != "cpu":
        raise ConfigError(
            f"Dask workers train on the CPU only, not on {device}; pass --device cpu."
        )
    import cloudpickle

    from .dask_executor import DaskExecutor

    check_sendable(family, workers, cloudpickle.dumps)
    if not remote:
        return DaskExecutor(workers)
    dask_executor = DaskExecutor(scheduler_address=scheduler_address, scheduler_file=scheduler_file)
    dask_executor.connect()
    return dask_executor


def executor_record(executor: FoldExecutor | None, workers: int) -> dict[str, Any]:
    """What ``run.json`` says about where the folds ran: ``executor``, ``workers`` and, on an
    existing cluster, ``scheduler``."""
    if executor is None:
        return {"executor": "serial", "workers": 1}
    from .executor import ProcessExecutor

    if isinstance(executor, ProcessExecutor):
        return {"executor": "process", "workers": executor.workers}
    from .dask_executor import DaskExecutor

    if not isinstance(executor, DaskExecutor):
        return {"executor": type(executor).__name__, "workers": workers}
    if executor.workers is not None:
        return {"executor": "dask", "workers": executor.workers}
    scheduler = executor.scheduler_address or str(executor.scheduler_file)
    return {"executor": "dask", "workers": executor.n_workers, "scheduler": scheduler}
