"""The arguments that choose where a search's folds run: ``workers``, ``scheduler_address``
and ``scheduler_file`` of :class:`evoband.search._setup.SearchConfig` and the device of each
worker, checked before any work (:mod:`evoband.execution._executors` makes the executor from them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import torch

from ..core._errors import ConfigError

if TYPE_CHECKING:
    from ..nets._family import NetworkFamily

SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss")

LOCAL_CLUSTER_SETTINGS: dict[str, object] = {
    # the nanny would set it here and in the workers: it slows training (see evoband.training._allocator)
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    # fewer wake-ups of the cluster's own threads, which take CPU and the GIL from training when
    # every core trains: 2 workers on 2 cores ran 215 +- 4 epoch-folds per minute with Dask's
    # defaults and 234 +- 27 with these (benchmarks/scaling.py, scaling_180s_dask_quiet.csv)
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.scheduler.work-stealing": False,  # one job per free worker: nothing to steal
}
"""Dask settings of the LocalCluster a search starts on this machine."""


def parse_scheduler_address(address: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a scheduler address such as ``tcp://10.0.0.5:8786``; a
    ConfigError for anything else."""
    words = (
        f"The scheduler address {address!r} is not of the form tcp://host:port; give the "
        "address `dask scheduler` printed (e.g. tcp://10.0.0.5:8786)."
    )
    try:
        parts = urlsplit(address.strip())
        port = parts.port
    except ValueError:
        raise ConfigError(words) from None
    if parts.scheme not in SCHEDULER_SCHEMES or not parts.hostname or port is None:
        raise ConfigError(words)
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConfigError(words)
    return parts.scheme, parts.hostname, port


def check_cluster_arguments(
    scheduler_address: str | None, scheduler_file: str | Path | None
) -> None:
    """A ConfigError for both scheduler options, or a malformed address."""
    if scheduler_address is not None and scheduler_file is not None:
        raise ConfigError(
            "Give either scheduler_address or scheduler_file (they both name the scheduler to "
            "connect to), not both."
        )
    if scheduler_address is not None:
        parse_scheduler_address(scheduler_address)
    if scheduler_file is not None and not str(scheduler_file).strip():
        raise ConfigError("The scheduler file is empty; give the path of a scheduler's file.")


def check_sendable(family: NetworkFamily, workers: int, dumps: Callable[[Any], bytes]) -> None:
    """A ConfigError if ``dumps`` cannot send the network family to worker processes (e.g. a
    composed space holding a lock or an open file)."""
    try:
        dumps(family)
    except Exception as exc:  # pickling fails with several types
        raise ConfigError(
            f"The space cannot be sent to {workers} worker processes ({exc}); use workers=1, or "
            "build the space from values that can be pickled."
        ) from exc


def worker_devices(device: torch.device, workers: int) -> list[torch.device]:
    """The device of each worker of a cluster on this machine: the CPU for all on a CPU, one GPU
    each on CUDA.

    Raises:
        ConfigError: more workers than visible GPUs, or another kind of device.
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
