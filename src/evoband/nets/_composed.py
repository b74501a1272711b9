"""PyTorch networks of composed search spaces: any configuration of a compiled space (see
:mod:`evoband.space._builders`) as an ``nn.Module``, and its exact parameter count on the meta device.

Layout: the configuration's active layers (:mod:`evoband.nets._plan`), then the classifier head:
the features are flattened and one Linear (``head``) maps them to the classes. The head does not
pool: a space that wants global pooling ends in a :class:`~evoband.space._layers.GlobalPool`
(flattening a 1x1 image is the same). Layers are ``Conv``: Conv2d (same padding) -> activation ->
BatchNorm2d; ``Dense``: flatten -> Linear -> activation -> Dropout. Each layer's module is
``layers.<prefix>`` (``layers.b0_r2.conv.weight``) and a Residual's projection
``layers.<prefix>proj`` (bias-free), so that weights can be matched between configurations by
name. This module also re-exports the planning functions of :mod:`evoband.nets._plan`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..core._validate import require_int
from ..space._layers import Space
from ..space._params import Value
from ._cnn import ACTIVATIONS as CNN_ACTIVATIONS
from ._plan import (
    ForkStep,
    LayerStep,
    ResidualStep,
    SeqStep,
    Shape,
    Step,
    flat_size,
    plan_network,
)
from ._towers import build_towers

ACTIVATIONS: dict[str, type[nn.Module]] = {
    **CNN_ACTIVATIONS,
    "tanh": nn.Tanh,
    "identity": nn.Identity,
}
"""The module of each activation name of :data:`evoband.space._layers.ACTIVATION_NAMES`."""


class ConvLayer(nn.Module):
    """Conv2d (same padding) -> activation -> BatchNorm2d (``bn``, an Identity without it)."""

    def __init__(self, c_in: int, settings: Mapping[str, Any]) -> None:
        super().__init__()
        kernel, c_out = int(settings["kernel"]), int(settings["channels"])
        self.conv = nn.Conv2d(
            c_in, c_out, kernel, stride=int(settings["stride"]), padding=(kernel - 1) // 2
        )
        self.act = ACTIVATIONS[str(settings["act"])]()
        self.bn = nn.BatchNorm2d(c_out) if settings["bn"] else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.act(self.conv(x)))


class DenseLayer(nn.Module):
    """Flatten -> Linear -> activation -> Dropout."""

    def __init__(self, n_in: int, settings: Mapping[str, Any]) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, int(settings["units"]))
        self.act = ACTIVATIONS[str(settings["act"])]()
        self.drop = nn.Dropout(float(settings["dropout"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.act(self.linear(x.flatten(1))))


class GlobalPool2d(nn.Module):
    """Max or average over the whole image: ``(N, C, H, W)`` -> ``(N, C)``."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(2, 3)) if self.kind == "max" else x.mean(dim=(2, 3))


def _layer_module(step: LayerStep) -> nn.Module:
    settings, shape = step.settings, step.in_shape
    if step.kind == "conv":
        return ConvLayer(shape[0], settings)
    if step.kind == "dense":
        return DenseLayer(flat_size(shape), settings)
    if step.kind == "pool":
        return nn.MaxPool2d(2) if settings["pool"] == "max" else nn.AvgPool2d(2)
    if step.kind == "global_pool":
        return GlobalPool2d(str(settings["gpool"]))
    return nn.BatchNorm2d(shape[0]) if len(shape) == 3 else nn.BatchNorm1d(shape[0])


def _projection(step: ResidualStep) -> nn.Module:
    c_in, c_out = step.in_shape[0], step.out_shape[0]
    if len(step.in_shape) == 1:
        return nn.Linear(c_in, c_out, bias=False)
    return nn.Conv2d(c_in, c_out, 1, stride=step.stride, bias=False)


class BlockNetwork(nn.Module):
    """The network of one planned configuration (see the module docstring for its layout)."""

    def __init__(self, plan: Step, n_classes: int) -> None:
        super().__init__()
        self.plan = plan
        self.layers = nn.ModuleDict()
        self._add_modules(plan)
        self.head = nn.Linear(flat_size(plan.out_shape), n_classes)

    def _add_modules(self, step: Step) -> None:
        if isinstance(step, LayerStep):
            self.layers[step.name] = _layer_module(step)
        elif isinstance(step, SeqStep):
            for inner in step.steps:
                self._add_modules(inner)
        elif isinstance(step, ForkStep):
            for path in step.paths:
                self._add_modules(path)
        else:
            self._add_modules(step.body)
            if step.projection is not None:
                self.layers[step.projection] = _projection(step)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._run(self.plan, x).flatten(1))

    def _run(self, step: Step, x: torch.Tensor) -> torch.Tensor:
        if isinstance(step, LayerStep):
            return self.layers[step.name](x)
        if isinstance(step, SeqStep):
            for inner in step.steps:
                x = self._run(inner, x)
            return x
        if isinstance(step, ForkStep):
            return torch.cat([self._run(path, x) for path in step.paths], dim=1)
        shortcut = x if step.projection is None else self.layers[step.projection](x)
        return shortcut + self._run(step.body, x)


def build_network(
    space: Space, config: Mapping[str, Value], input_shape: Shape, n_classes: int
) -> nn.Module:
    """The network of ``config`` (a configuration of ``compile_space(space)``) on inputs of
    ``input_shape`` (``(C, H, W)`` or ``(F,)``) with ``n_classes`` outputs: a
    :class:`BlockNetwork`, or :class:`evoband.nets._towers.Towers` of them when the configuration's
    ``towers`` setting is above 1.

    A :class:`ShapeError` if the configuration does not fit the input (see :func:`is_valid`).
    """
    require_int("n_classes", n_classes, low=1)
    plan = plan_network(space, config, input_shape)
    return build_towers(config, lambda: BlockNetwork(plan, n_classes))


def count_parameters(
    space: Space, config: Mapping[str, Value], input_shape: Shape, n_classes: int
) -> int:
    """Trainable parameters of ``build_network(...)``, counted on the meta device (no memory)."""
    with torch.device("meta"):
        model = build_network(space, config, input_shape, n_classes)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
