"""Several copies of a network in one: an ensemble that is a single network of the searched size.

A configuration with ``towers`` = K > 1 builds K independently initialised copies of its network
side by side on the same input. In training mode the network returns the logits of every tower,
shaped ``(batch, towers, classes)``, and the training loop (:mod:`evoband.training._loop`) gives each tower
its own loss, so the towers learn as independent members of an ensemble would; in evaluation mode
it returns their mean, ``(batch, classes)``. Its parameters, MACs and training time are K times
one tower's, and the parameter limit counts them all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..core._errors import ConfigError
from ..core._validate import require_int

State = Mapping[str, torch.Tensor]


def n_towers(config: Mapping[str, Any]) -> int:
    """The ``towers`` of a configuration (1 when it has none)."""
    value = config.get("towers", 1)
    return require_int("towers", value, low=1)


class Towers(nn.Module):
    """``towers`` copies of a network (modules ``towers.<k>``); see the module docstring."""

    def __init__(self, towers: list[nn.Module]) -> None:
        super().__init__()
        if len(towers) < 2:
            raise ConfigError(f"Towers needs at least 2 networks, got {len(towers)}.")
        self.towers = nn.ModuleList(towers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([tower(x) for tower in self.towers], dim=1)
        return logits if self.training else logits.mean(dim=1)


def build_towers(config: Mapping[str, Any], build_one: Callable[[], nn.Module]) -> nn.Module:
    """``build_one()`` for a one-tower configuration, else :class:`Towers` of that many."""
    k = n_towers(config)
    return build_one() if k == 1 else Towers([build_one() for _ in range(k)])


def tower_mean(logits: torch.Tensor) -> torch.Tensor:
    """The ensemble's logits ``(batch, classes)`` of a training-mode output (either shape)."""
    return logits.mean(dim=1) if logits.dim() == 3 else logits


def split_towers(state: State, towers: int) -> list[dict[str, torch.Tensor]]:
    """A state dict of a network with ``towers`` towers as one state dict per tower (without the
    ``towers.<k>.`` prefix); a one-tower network's as it is."""
    if towers == 1:
        return [dict(state)]
    return [
        {
            key[len(f"towers.{k}.") :]: v
            for key, v in state.items()
            if key.startswith(f"towers.{k}.")
        }
        for k in range(towers)
    ]


def join_towers(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`split_towers`."""
    if len(states) == 1:
        return dict(states[0])
    return {f"towers.{k}.{key}": v for k, state in enumerate(states) for key, v in state.items()}
