"""Fold checkpoints on disk: written atomically with their SHA-256, loaded only when intact.

:mod:`evoband.training._target` continues folds from them (and re-exports these names).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch

from ..core import _files as files
from ..core._errors import write_failure
from ._loop import TrainState

logger = logging.getLogger(
    "evoband.training._target"
)  # where users (and tests) have always seen these


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(path: Path, state: TrainState) -> str:
    """Write ``state`` atomically (see :func:`evoband.core._files.write_atomic`); return its SHA-256."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_atomic(path, lambda fh: torch.save(state.state_dict(), fh))
    except OSError as exc:  # a full or read-only disk is the run's problem, not the fold's
        raise write_failure(
            path.parent.parent.parent, f"{path.parent.name}/{path.name}", exc
        ) from exc
    return file_sha256(path)


def pending_path(path: Path) -> Path:
    """Where a fold writes the checkpoint of ``path`` until the search takes it: a name of the
    atomic writer's temporaries (unique, never read, removed as stale when a search starts)."""
    return files.temporary_path(path)


def save_pending_checkpoint(path: Path, state: TrainState) -> tuple[Path, str]:
    """Write ``state`` beside ``path`` under a :func:`pending_path` name; return that name and
    the SHA-256. Only :func:`commit_checkpoint`, called by whoever records the fold, makes it
    ``path``: a fold whose result nobody takes (a task of a cancelled search still running on
    a worker) writes nowhere a search reads."""
    pending = pending_path(path)
    return pending, save_checkpoint(pending, state)


def commit_checkpoint(pending: str | Path, path: Path) -> None:
    """Rename a fold's pending checkpoint to ``path`` (atomic; the folder synced)."""
    try:
        Path(pending).replace(path)
        files.fsync_directory(path.parent)
    except OSError as exc:
        raise write_failure(
            path.parent.parent.parent, f"{path.parent.name}/{path.name}", exc
        ) from exc


def load_checkpoint(
    path: Path, state: TrainState, expected_sha256: str | None, max_epochs: int
) -> bool:
    """Restore ``state`` from ``path`` if it is there, intact and usable; say whether it was.

    A missing, truncated or mismatching file is logged and ignored: the fold is retrained; one
    trained beyond ``max_epochs`` (the budget asked for) is not used.
    """
    if not path.exists():
        if expected_sha256:
            logger.warning("Checkpoint %s is missing; retraining that fold from scratch.", path)
        return False
    if expected_sha256 and file_sha256(path) != expected_sha256:
        logger.warning(
            "Checkpoint %s does not match its recorded hash; retraining from scratch.", path
        )
        return False
    try:
        saved = torch.load(
            path, map_location=next(state.model.parameters()).device, weights_only=True
        )
        if int(saved["epochs_done"]) > max_epochs:
            return False
        state.load_state_dict(saved)
    except Exception as exc:  # a damaged file may fail in many ways inside torch.load
        logger.warning("Checkpoint %s cannot be loaded (%s); retraining from scratch.", path, exc)
        return False
    return True


def checkpoint_path(checkpoint_dir: Path, fold: int) -> Path:
    """Where fold ``fold`` of a member keeps its checkpoint."""
    return checkpoint_dir / f"fold{fold}.pt"
