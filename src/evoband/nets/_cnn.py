"""Config -> ``nn.Module`` with the reference network's semantics and stable module names.

Per conv stage: ``convs_per_stage`` (default 1) times Conv2d (same padding) -> activation ->
BatchNorm (if ``use_BN``), then MaxPool2d(2); then global average pooling or flatten; FC layers
Linear -> activation -> Dropout (``n_fc_layers`` may be 0); a last Linear to the classes. With
``tta_flip`` the network in evaluation mode averages its logits over the image and its mirror
image (flip test-time augmentation; training is unchanged). Modules
are named ``conv.<i>``, ``fc.<i>`` and ``head`` so that weights can be matched between
configurations. With ``towers`` = K > 1 the network is K such networks side by side
(:mod:`evoband.nets._towers`), named ``towers.<k>.conv.<i>`` and so on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..core._errors import ConfigError
from ..space._genotype import plain
from ._towers import build_towers, n_towers

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


COURSE_FAMILY: dict[str, Any] = {"activation": "relu", "convs_per_stage": 1, "tta_flip": False}
"""Keys the course space does not have, at the values that make its networks: the only defaults
a network is built with. Every other structural key must be in the genotype."""


def gene(config: Mapping[str, Any], key: str) -> Any:
    """The value of a structural key; a ConfigError if the genotype lacks it."""
    if key in config:
        return config[key]
    if key in COURSE_FAMILY:
        return COURSE_FAMILY[key]
    raise ConfigError(
        f"The configuration lacks {key!r}: a network is built from a complete genotype "
        "(evoband.space._spaces.load_config fills missing keys from the space's defaults)."
    )


def conv_widths(config: Mapping[str, Any]) -> list[int]:
    """Output channels of each conv stage."""
    return [
        int(gene(config, f"n_channels_conv_{i}")) for i in range(int(gene(config, "n_conv_layers")))
    ]


def fc_widths(config: Mapping[str, Any]) -> list[int]:
    """Output units of each hidden FC layer."""
    return [
        int(gene(config, f"n_channels_fc_{i}")) for i in range(int(gene(config, "n_fc_layers")))
    ]


def convs_per_stage(config: Mapping[str, Any]) -> int:
    """Convolutions per pooling stage (1 in the course space)."""
    return int(gene(config, "convs_per_stage"))


class ConvBlock(nn.Module):
    """A stage: (Conv2d (same padding) -> activation -> optional BatchNorm) x n_convs -> MaxPool2d(2).

    The first conv keeps the names ``conv``, ``act``, ``bn`` (a one-conv stage is the course
    network's layer); further convs are ``extra.<j>``.
    """

    def __init__(
        self, c_in: int, c_out: int, kernel: int, use_bn: bool, activation: str, n_convs: int = 1
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=(kernel - 1) // 2)
        self.act = ACTIVATIONS[activation]()
        self.bn = nn.BatchNorm2d(c_out) if use_bn else nn.Identity()
        self.extra = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(c_out, c_out, kernel, padding=(kernel - 1) // 2),
                ACTIVATIONS[activation](),
                nn.BatchNorm2d(c_out) if use_bn else nn.Identity(),
            )
            for _ in range(n_convs - 1)
        )
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.act(self.conv(x)))
        for layer in self.extra:
            x = layer(x)
        return self.pool(x)


class DenseBlock(nn.Module):
    """Linear -> activation -> Dropout."""

    def __init__(self, n_in: int, n_out: int, dropout: float, activation: str) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.act = ACTIVATIONS[activation]()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.act(self.linear(x)))


class ConfigurableCNN(nn.Module):
    """The searched network family; see the module docstring for its layout."""

    def __init__(
        self, config: Mapping[str, Any], input_shape: tuple[int, int, int], n_classes: int
    ) -> None:
        super().__init__()
        c_in, h, w = input_shape
        kernel = int(gene(config, "kernel_size"))
        use_bn = bool(gene(config, "use_BN"))
        activation = str(gene(config, "activation"))
        dropout = float(gene(config, "dropout_rate"))
        widths = conv_widths(config)
        n_convs = convs_per_stage(config)
        if h >> len(widths) < 1 or w >> len(widths) < 1:
            raise ConfigError(
                f"n_conv_layers={len(widths)} pools a {h}x{w} input below 1x1; use at most "
                f"{min(h, w).bit_length() - 1} conv layers for this data."
            )
        self.conv = nn.ModuleList()
        for c_out in widths:
            self.conv.append(ConvBlock(c_in, c_out, kernel, use_bn, activation, n_convs))
            c_in = c_out
        self.global_pool = bool(gene(config, "global_avg_pooling"))
        n_in = c_in if self.global_pool else c_in * (h >> len(widths)) * (w >> len(widths))
        self.fc = nn.ModuleList()
        for n_out in fc_widths(config):
            self.fc.append(DenseBlock(n_in, n_out, dropout, activation))
            n_in = n_out
        # without hidden FC layers the dropout acts on the pooled features
        self.drop = nn.Dropout(dropout) if not self.fc else nn.Identity()
        self.head = nn.Linear(n_in, n_classes)
        self.tta_flip = bool(gene(config, "tta_flip"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tta_flip and not self.training:
            return (self._logits(x) + self._logits(x.flip(3))) / 2
        return self._logits(x)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.conv:
            x = block(x)
        x = x.mean(dim=(2, 3)) if self.global_pool else x.flatten(1)
        for dense in self.fc:
            x = dense(x)
        return self.head(self.drop(x))


def build_model(
    config: Mapping[str, Any], input_shape: tuple[int, int, int], n_classes: int
) -> nn.Module:
    """The network for ``config`` on inputs ``C x H x W`` with ``n_classes`` outputs.

    ``config`` is a genotype dict or a ConfigSpace ``Configuration`` (numpy scalars included).
    """
    config = plain(config)
    return build_towers(config, lambda: ConfigurableCNN(config, input_shape, n_classes))


def count_params(
    config: Mapping[str, Any], input_shape: tuple[int, int, int], n_classes: int
) -> int:
    """Trainable parameters of ``build_model(...)``, counted on the meta device (no allocation);
    ``config`` as :func:`build_model` takes it."""
    with torch.device("meta"):
        model = build_model(config, input_shape, n_classes)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def macs_per_sample(
    config: Mapping[str, Any], input_shape: tuple[int, int, int], n_classes: int
) -> int:
    """Multiply-accumulates of one forward pass (convolutions and linear layers)."""
    c_in, h, w = input_shape
    kernel = int(gene(config, "kernel_size"))
    macs = 0
    n_convs = convs_per_stage(config)
    for c_out in conv_widths(config):
        macs += h * w * kernel * kernel * c_out * (c_in + (n_convs - 1) * c_out)
        c_in, h, w = c_out, max(h // 2, 1), max(w // 2, 1)
    n_in = c_in if gene(config, "global_avg_pooling") else c_in * h * w
    for n_out in [*fc_widths(config), n_classes]:
        macs += n_in * n_out
        n_in = n_out
    return macs * n_towers(config)


def activation_elements(config: Mapping[str, Any], input_shape: tuple[int, int, int]) -> int:
    """Conv output elements of one forward pass (before pooling): the memory-bound work of
    activations, BatchNorm and pooling, which MACs miss for wide layers on large inputs."""
    _, h, w = input_shape
    total = 0
    n_convs = convs_per_stage(config)
    for c_out in conv_widths(config):
        total += n_convs * c_out * h * w
        h, w = max(h // 2, 1), max(w // 2, 1)
    return total * n_towers(config)
