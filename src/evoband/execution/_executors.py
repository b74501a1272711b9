"""Where a search's folds run: in this process, on a Dask LocalCluster or on an existing Dask
cluster, as :class:`evoband.search._setup.SearchConfig`'s ``workers``, ``scheduler_address`` and
``scheduler_file`` say.

The executor is not part of a search's definition: a run may be resumed with another one (the
results are those of serial execution either way).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core._errors import ConfigError
from ._cluster import check_cluster_arguments, check_sendable, worker_devices

if TYPE_CHECKING:
    import torch

    from ..nets._family import NetworkFamily
    from ..training._target import FoldExecutor


def make_executor(
    workers: int,
    device: torch.device,
    family: NetworkFamily,
    *,
    scheduler_address: str | None = None,
    scheduler_file: str | Path | None = None,
    tls: bool = True,
) -> FoldExecutor | None:
    """The executor of a search's folds (None: serially in this process).

    With a scheduler address or file the folds run on that existing Dask cluster (``workers`` is
    ignored) and it is reached now, so that a bad address fails before anything is written.
    Otherwise ``workers > 1`` worker processes of a Dask LocalCluster on this machine run them
    (one CPU thread each, or one GPU each on CUDA), started later by ``start(task)``; with
    ``tls`` its connections use TLS with temporary credentials.
    """
    check_cluster_arguments(scheduler_address, scheduler_file)
    remote = scheduler_address is not None or scheduler_file is not None
    if not remote and workers <= 1:
        return None
    if remote and device.type != "cpu":
        raise ConfigError(
            f"The workers of an existing Dask cluster train on the CPU, not on {device}; pass "
            "--device cpu."
        )
    import cloudpickle

    from ._dask import DaskExecutor

    check_sendable(family, workers, cloudpickle.dumps)
    if not remote:
        worker_devices(device, workers)  # more workers than GPUs fails now, not at the start
        return DaskExecutor(workers, tls=tls)
    dask_executor = DaskExecutor(scheduler_address=scheduler_address, scheduler_file=scheduler_file)
    dask_executor.connect()
    return dask_executor


def executor_record(executor: FoldExecutor | None, workers: int) -> dict[str, Any]:
    """What ``run.json`` says about where the folds ran: ``executor``, ``workers``, on a
    LocalCluster ``tls`` and on an existing cluster ``scheduler``."""
    if executor is None:
        return {"executor": "serial", "workers": 1}
    from ._dask import DaskExecutor

    if not isinstance(executor, DaskExecutor):
        return {"executor": type(executor).__name__, "workers": workers}
    if executor.workers is not None:
        return {"executor": "dask", "workers": executor.workers, "tls": executor.tls}
    scheduler = executor.scheduler_address or str(executor.scheduler_file)
    return {"executor": "dask", "workers": executor.n_workers, "scheduler": scheduler}
