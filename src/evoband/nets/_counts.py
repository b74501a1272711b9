"""What any network costs, measured without memory: its parameters, its multiply-accumulates per
sample and the output elements of its convolutions, from one forward pass on the meta device.

The network is built on the meta device (shapes only, no storage) and two samples are passed
through it in training mode (BatchNorm needs more than one value per channel there) with forward
hooks on its convolutions and linear layers; the counts are per sample. Training mode is what the
cost model times: a network that averages over a flipped copy in evaluation mode counts once.

* MACs: a convolution costs ``in_channels / groups * prod(kernel_size)`` per output element, a
  linear layer ``in_features`` per output element; nothing else counts (activations, BatchNorm
  and pooling are memory-bound work, counted below).
* Activation elements: the output elements of every convolution (before its activation,
  BatchNorm and pooling), the memory-bound work the cost model adds to the MACs.

For :class:`evoband.nets._cnn.ConfigurableCNN` these equal :func:`evoband.nets._cnn.macs_per_sample` and
:func:`evoband.nets._cnn.activation_elements`, which compute them by formula.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCH = 2


@dataclass(frozen=True)
class NetworkCounts:
    """Trainable parameters, multiply-accumulates per sample and conv output elements per sample."""

    params: int
    macs: int
    activation_elements: int


def measure(model: nn.Module, input_shape: Sequence[int]) -> NetworkCounts:
    """The counts of ``model`` (on any device; on the meta device nothing is computed) for
    inputs of ``input_shape`` (without the batch). The model's training flag is restored."""
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("meta")
    macs, elements = 0, 0

    def on_conv(module: Any, inputs: Any, output: torch.Tensor) -> None:
        nonlocal macs, elements
        per_sample = output.numel() // _BATCH
        macs += per_sample * (module.in_channels // module.groups) * math.prod(module.kernel_size)
        elements += per_sample

    def on_linear(module: Any, inputs: Any, output: torch.Tensor) -> None:
        nonlocal macs
        macs += output.numel() // _BATCH * module.in_features

    hooks = [
        m.register_forward_hook(on_conv if isinstance(m, _CONVS) else on_linear)
        for m in model.modules()
        if isinstance(m, (*_CONVS, nn.Linear))
    ]
    was_training = model.training
    try:
        model.train()
        with torch.no_grad():
            model(torch.zeros(_BATCH, *input_shape, device=device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return NetworkCounts(int(params), int(macs), int(elements))


def count_network(build: Callable[[], nn.Module], input_shape: Sequence[int]) -> NetworkCounts:
    """:func:`measure` of the network ``build()`` makes, built on the meta device."""
    with torch.device("meta"):
        model = build()
    return measure(model, input_shape)
