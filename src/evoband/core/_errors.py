"""The package's exception types: one root, so callers can catch everything evoband raises."""

from __future__ import annotations


class EvobandError(Exception):
    """Root of every error evoband raises on purpose (bad input, unusable files)."""


class DataError(EvobandError):
    """The image data cannot be found or read."""


class ConfigError(EvobandError):
    """A configuration or an argument is invalid."""


class StoreError(EvobandError):
    """A run directory or its ledger cannot be used."""


class EnvironmentFailure(EvobandError):
    """The environment failed under a run that was going well: the disk filled up, the ledger
    was damaged, the Dask cluster went away. Not the input's fault, and not a bug: every finished
    evaluation is in the ledger, so fixing the cause and resuming continues the run. The command
    lines exit with status 4 on it (2 on the other errors of this package)."""


class StoreWriteError(StoreError, EnvironmentFailure):
    """Writing into a run directory failed (disk full, read-only file system, permissions).

    Everything finished before the failure is in the ledger: free the space (or make the
    directory writable) and resume the run.
    """


class LedgerDamaged(StoreError, EnvironmentFailure):
    """A run's ledger (``history.sqlite``) fails SQLite's integrity check: a damaged page, a
    truncated file. The command lines exit with status 4; restore the file from a backup or start
    a new run directory."""


def write_failure(run_dir: object, what: object, exc: BaseException) -> StoreWriteError:
    """The one-line :class:`StoreWriteError` for ``exc``, raised while writing ``what``."""
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return StoreWriteError(
        f"Cannot write to the run directory {run_dir} ({reason} while writing {what}); every "
        "finished evaluation is in its ledger: free space or make it writable, then resume "
        "with --resume."
    )


class ClusterError(EnvironmentFailure):
    """The Dask cluster running a search's folds went away (its scheduler stopped or became
    unreachable); every finished evaluation is in the ledger and the run can be resumed."""
