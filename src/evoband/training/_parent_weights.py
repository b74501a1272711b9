"""Where a child's initial weights come from, and loading them onto its fresh model.

The mapping of a parent's tensors onto the child's network is the network family's; this
module finds and checks the parents' fold checkpoints.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..nets._family import SHIPPED, NetworkFamily
from ._checkpoints import checkpoint_path, file_sha256
from ._loop import TrainState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParentWeights:
    """Where a child's initial weights come from (see :mod:`evoband.nets._inherit`).

    Attributes:
        member_id: the (first) parent's id.
        config: the parent's genotype.
        checkpoint_dir: the parent's checkpoints (``fold<k>.pt``).
        sha256: the recorded hash of each fold's checkpoint; a mismatch means no inheritance.
        epochs: the epochs the parent had trained (those of its checkpoints).
        donors: the other parents of a recombined child: a layer that one of them gave the child
            (:func:`evoband.nets._inherit.inherit_recombined`) starts from its weights.
    """

    member_id: int
    config: dict[str, Any]
    checkpoint_dir: Path
    sha256: dict[int, str]
    epochs: int = 0
    donors: tuple[ParentWeights, ...] = ()


def _saved_model(
    parent: ParentWeights, fold: int, device: torch.device
) -> Mapping[str, torch.Tensor] | None:
    """The parent's model state of ``fold``; None when its checkpoint is missing, does not match
    its recorded hash or does not load."""
    path = checkpoint_path(parent.checkpoint_dir, fold)
    expected = parent.sha256.get(fold)
    if not path.exists() or (expected and file_sha256(path) != expected):
        logger.debug("No usable parent checkpoint %s; fold %d does not inherit it.", path, fold)
        return None
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
        return dict(saved["model"])
    except Exception as exc:  # a damaged file may fail in many ways inside torch.load
        logger.warning("Parent checkpoint %s cannot be inherited (%s).", path, exc)
        return None


def load_inherited(
    state: TrainState,
    parent: ParentWeights,
    fold: int,
    config: Mapping[str, Any],
    input_shape: tuple[int, ...],
    family: NetworkFamily = SHIPPED,
) -> tuple[int, ...]:
    """Initialise ``state``'s model (``family``'s network of ``config``) from the parents'
    checkpoints of ``fold`` (:meth:`NetworkFamily.inherit_state`).

    Returns the ids of the parents it started from, the first parent first; empty when it
    inherited nothing. An unusable checkpoint of the first parent leaves the fresh
    initialisation; an unusable one of a donor leaves its layers to the first parent (and its
    id out of the ids returned).
    """
    device = next(state.model.parameters()).device
    first = _saved_model(parent, fold, device)
    if first is None:
        return ()
    sources, used = [(first, parent.config)], [parent.member_id]
    for donor in parent.donors:
        saved = _saved_model(donor, fold, device)
        if saved is not None:
            sources.append((saved, donor.config))
            used.append(donor.member_id)
    try:
        child = family.inherit_state(sources, state.model.state_dict(), config, input_shape)
        state.model.load_state_dict(child)
    except Exception as exc:  # e.g. a checkpoint of another network under the recorded config
        logger.warning("Parent weights cannot be inherited (%s); starting fresh.", exc)
        return ()
    return tuple(used)
