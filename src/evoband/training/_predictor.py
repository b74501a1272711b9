"""A delivered predictor as one network: its members' networks, their class probabilities
averaged with the members' weights.

A member of the predictor is one or several networks of one configuration (its K fold models, or
one retrain on all training images); its probabilities are the mean over its networks, and the
predictor's are the weighted sum over its members. :class:`EnsembleNetwork` returns the log of
those probabilities, so that ``argmax`` and ``topk`` of its output are the predictor's, as they
are of a single network's logits; it exports with ``torch.export`` like any network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core._errors import ConfigError, DataError
from ..nets._family import SHIPPED, NetworkFamily
from ._data import DataSource


class EnsembleNetwork(nn.Module):
    """Networks grouped into weighted members.

    Args:
        members: each member's networks (in evaluation mode when predicting).
        weights: each member's weight (normalised to sum to 1).
    """

    def __init__(self, members: Sequence[Sequence[nn.Module]], weights: Sequence[float]) -> None:
        super().__init__()
        if not members or len(members) != len(weights) or any(not m for m in members):
            raise ConfigError("An ensemble needs one weight and at least one network per member.")
        total = float(sum(weights))
        self.members = nn.ModuleList(nn.ModuleList(list(nets)) for nets in members)
        self.register_buffer("weights", torch.tensor([w / total for w in weights]))

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """The predictor's class probabilities for a batch of normalised images."""
        weights: torch.Tensor = self.weights  # type: ignore[assignment]
        out = None
        for i, nets in enumerate(self.members):
            assert isinstance(nets, nn.ModuleList)
            member = torch.stack([net(x).float().softmax(dim=1) for net in nets]).mean(dim=0)
            term = weights[i] * member
            out = term if out is None else out + term
        assert out is not None
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log class probabilities (argmax and top-k are the predictor's)."""
        return self.probabilities(x).clamp_min(1e-12).log()


def data_fingerprint(data: DataSource) -> str:
    """SHA-256 of the training images, their labels and the class names: which data a
    predictor was trained on."""
    digest = hashlib.sha256()
    digest.update(",".join(data.classes).encode())
    digest.update(data.train.images.contiguous().numpy().tobytes())
    digest.update(data.train.labels.to(torch.int64).contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_network(
    config: Mapping[str, Any],
    weights: Path,
    input_shape: tuple[int, ...],
    n_classes: int,
    *,
    family: NetworkFamily = SHIPPED,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """The network of ``config`` with the weights saved at ``weights``, in evaluation mode; a
    DataError naming the file when it is missing or does not fit the configuration."""
    model = family.build(config, input_shape, n_classes)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except FileNotFoundError as exc:
        raise DataError(f"The weights file {weights} does not exist.") from exc
    except Exception as exc:  # a damaged or foreign file fails in many ways inside torch.load
        raise DataError(
            f"The weights in {weights} do not load into their network ({exc})."
        ) from exc
    return model.to(device).eval()
