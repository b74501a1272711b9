"""The layer-mapping helpers of weight inheritance (see :mod:`evoband.nets._inherit`): the weighted
layers of a configuration in forward order, what each unit between two layers carries, and the
tensor operations that choose, resize and bound the inherited units.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ._cnn import conv_widths, convs_per_stage, fc_widths, gene

Signal = tuple[str, int, str]
"""What one input or output unit of a layer carries: (the parent layer that produced it, its
channel there, where the unit sits after pooling: ``""``, ``"gap"`` or ``"flat<h>x<w>:<p>"``)."""

BN_EPS = 1e-5
"""The eps of ``nn.BatchNorm2d`` as :mod:`evoband.nets._cnn` builds it."""

IDENTITY_ACTIVATIONS = ("relu", "leaky_relu")
"""Activations that are the identity on non-negative inputs."""

_BN_KEYS = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class LayerSpec:
    """One weighted layer of the network family, in forward order.

    Attributes:
        name: the module name of its Conv2d or Linear (``conv.0.extra.0.0``, ``fc.1.linear``).
        kind: ``conv`` or ``linear``.
        width: output channels or units.
        bn: the module name of its BatchNorm, if it has one.
        activation: the activation after it; None for the head.
        in_stage: for a conv, its index within the stage (0: the stage's first conv).
        pooling: for the first linear layer, ``gap`` or ``flat<h>x<w>`` (how conv features reach
            it); None otherwise.
    """

    name: str
    kind: str
    width: int
    bn: str | None
    activation: str | None
    in_stage: int = 0
    pooling: str | None = None


def layer_specs(
    config: Mapping[str, Any], input_shape: tuple[int, int, int], n_classes: int
) -> list[LayerSpec]:
    """The weighted layers of ``build_model(config, ...)`` in forward order."""
    _, h, w = input_shape
    use_bn = bool(gene(config, "use_BN"))
    activation = str(gene(config, "activation"))
    specs: list[LayerSpec] = []
    widths = conv_widths(config)
    for i, width in enumerate(widths):
        for j in range(convs_per_stage(config)):
            base = f"conv.{i}" if j == 0 else f"conv.{i}.extra.{j - 1}"
            name = f"{base}.conv" if j == 0 else f"{base}.0"
            bn = (f"{base}.bn" if j == 0 else f"{base}.2") if use_bn else None
            specs.append(LayerSpec(name, "conv", width, bn, activation, in_stage=j))
    global_pool = bool(gene(config, "global_avg_pooling"))
    pooling: str | None = "gap" if global_pool else f"flat{h >> len(widths)}x{w >> len(widths)}"
    for i, width in enumerate(fc_widths(config)):
        specs.append(
            LayerSpec(f"fc.{i}.linear", "linear", width, None, activation, pooling=pooling)
        )
        pooling = None
    specs.append(LayerSpec("head", "linear", n_classes, None, None, pooling=pooling))
    return specs


@dataclass
class Space:
    """The units between two layers of the child.

    ``signals[j]`` is the parent unit that unit ``j`` carries (None: a new unit). A unit's actual
    value is ``scale * plain + shift``, where ``plain`` is the value of the parent unit; ``lower``
    and ``upper`` bound the plain value in eval mode (infinite: unknown).
    """

    signals: list[Signal | None]
    scale: torch.Tensor
    shift: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor

    @classmethod
    def plain(
        cls,
        signals: list[Signal | None],
        lower: torch.Tensor | None = None,
        upper: torch.Tensor | None = None,
    ) -> Space:
        n = len(signals)
        return cls(
            signals,
            torch.ones(n),
            torch.zeros(n),
            torch.full((n,), -torch.inf) if lower is None else lower,
            torch.full((n,), torch.inf) if upper is None else upper,
        )

    @property
    def encoded(self) -> bool:
        return bool((self.scale != 1).any() or (self.shift != 0).any())


def _pooled(space: Space, pooling: str | None) -> Space:
    """The units a linear layer sees after global pooling or flatten of ``space``'s channels."""
    if pooling is None:
        return space
    if pooling == "gap":
        signals = [None if s is None else (s[0], s[1], "gap") for s in space.signals]
        return Space(signals, space.scale, space.shift, space.lower, space.upper)
    h, w = (int(v) for v in pooling[4:].split("x"))
    hw = h * w
    signals = [
        None if s is None else (s[0], s[1], f"{pooling}:{p}")
        for s in space.signals
        for p in range(hw)
    ]

    def repeat(t: torch.Tensor) -> torch.Tensor:
        return t.repeat_interleave(hw)

    return Space(
        signals, repeat(space.scale), repeat(space.shift), repeat(space.lower), repeat(space.upper)
    )


def _parent_inputs(specs: list[LayerSpec], in_channels: int) -> dict[str, list[Signal | None]]:
    """For each layer of the parent, the parent units its input columns read."""
    signals: list[Signal | None] = [("input", c, "") for c in range(in_channels)]
    inputs: dict[str, list[Signal | None]] = {}
    for spec in specs:
        inputs[spec.name] = _pooled(Space.plain(signals), spec.pooling).signals
        signals = [(spec.name, c, "") for c in range(spec.width)]
    return inputs


def _filter_norms(weight: torch.Tensor) -> torch.Tensor:
    """L1 norm of each output channel's filter (row)."""
    return weight.detach().abs().reshape(weight.shape[0], -1).sum(dim=1).cpu()


def _top(norms: torch.Tensor, k: int) -> list[int]:
    """Indices of the ``k`` largest ``norms`` (ties: the lower index), in ascending order."""
    order = torch.argsort(-norms, stable=True)[:k]
    return sorted(int(i) for i in order)


def _fit_kernel(weight: torch.Tensor, kernel: int) -> torch.Tensor:
    """A conv weight with its kernel centred in ``kernel x kernel`` (zero-padded or cropped)."""
    k = weight.shape[-1]
    if k == kernel:
        return weight
    if k < kernel:
        pad = (kernel - k) // 2
        return torch.nn.functional.pad(weight, (pad, kernel - k - pad, pad, kernel - k - pad))
    cut = (k - kernel) // 2
    return weight[..., cut : cut + kernel, cut : cut + kernel]


def _bounds(
    spec: LayerSpec, state: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode bounds of a layer's outputs: known only after a ReLU (and its BatchNorm)."""
    n = spec.width
    lower, upper = torch.full((n,), -torch.inf), torch.full((n,), torch.inf)
    if spec.activation != "relu":
        return lower, upper
    if spec.bn is None:
        return torch.zeros(n), upper
    # BN(a) = (a - mean) * g + beta with a >= 0: bounded at a = 0 on the side g points away from
    bn = {key: state[f"{spec.bn}.{key}"].float().cpu() for key in _BN_KEYS}
    gain = bn["weight"] / torch.sqrt(bn["running_var"] + BN_EPS)
    at_zero = bn["bias"] - bn["running_mean"] * gain
    lower = torch.where(gain >= 0, at_zero, lower)
    upper = torch.where(gain <= 0, at_zero, upper)
    return lower, upper


def _shift_into_relu(lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per unit, ``(s, b)`` with ``s * x + b >= 0`` for every ``x`` within the bounds
    (``s = 1, b = 0`` where no bound is known)."""
    low_known = torch.isfinite(lower)
    up_known = torch.isfinite(upper) & ~low_known
    scale = torch.where(up_known, -1.0, 1.0)
    shift = torch.where(low_known, (-lower).clamp(min=0), torch.zeros_like(lower))
    shift = torch.where(up_known, upper.clamp(min=0), shift)
    return scale, shift
