"""The arguments that choose where a search's folds run: ``executor``, ``scheduler_address``
and ``scheduler_file`` of :class:`evoband.run_setup.SearchConfig`, checked before any work
(:mod:`evoband.run_executor` makes the executor from them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import ConfigError

if TYPE_CHECKING:
    from .family import NetworkFamily

__all__ = [
    "EXECUTORS",
    "SCHEDULER_SCHEMES",
    "check_cluster_arguments",
    "check_sendable",
    "parse_scheduler_address",
]

EXECUTORS = ("process", "dask")
"""How ``workers > 1`` run the folds on this machine: a process pool or a Dask LocalCluster."""

SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss")


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
    executor: str, scheduler_address: str | None, scheduler_file: str | Path | None
) -> None:
    """A ConfigError for an unknown executor, both scheduler options, or a malformed address."""
    if executor not in EXECUTORS:
        raise ConfigError(
            f"The executor {executor!r} is not one of {', '.join(EXECUTORS)}; choose one of them."
        )
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
    """A ConfigError if ``dumps`` cannot send the network family to worker processes (a composed
    space whose ``Indexed`` parameters are made by lambdas cannot be pickled)."""
    try:
        dumps(family)
    except Exception as exc:  # pickling fails with several types
        raise ConfigError(
            f"The space cannot be sent to {workers} worker processes ({exc}); use workers=1, or "
            "make its Indexed parameters with module-level functions instead of lambdas."
        ) from exc
