"""Example composed search spaces shared by the tests of the block modules (small widths)."""

from __future__ import annotations

from typing import Any

from ConfigSpace import ConfigurationSpace

from evoband.space._layers import (
    BatchNorm,
    Chain,
    Choice,
    Conv,
    Dense,
    Fork,
    GlobalPool,
    Pool,
    Repeat,
    Residual,
)
from evoband.space._params import FloatRange, IntRange, OneOf

DENSE_ONLY = Chain(
    Repeat(
        Dense(IntRange(4, 32, log=True), OneOf(["relu", "gelu", "tanh"]), FloatRange(0.0, 0.5)),
        1,
        4,
    ),
    Choice(BatchNorm(), Chain()),
    Dense(IntRange(4, 16), "silu"),
)
"""Dense layers only: the first one flattens an image input."""

CONV_REPEAT = Chain(
    Repeat(
        Chain(
            Repeat(
                Conv(
                    IntRange(4, 16, log=True),
                    OneOf([1, 3, 5]),
                    OneOf(["relu", "leaky_relu"]),
                    stride=OneOf([1, 2]),
                    batch_norm=OneOf([True, False]),
                ),
                1,
                2,
            ),
            Pool(),
        ),
        1,
        4,
    ),
    GlobalPool(),
    Repeat(Dense(IntRange(4, 16), "relu", 0.1), 0, 2),
)
"""Stages of one or two convolutions and a pool, global pooling, up to two Dense layers."""

RESIDUAL_FORK = Chain(
    Conv(8, 3, "relu"),
    Repeat(
        Choice(
            Residual(
                Chain(
                    Conv(IntRange(4, 12), 3, "relu", batch_norm=True),
                    Conv(IntRange(4, 12), OneOf([1, 3]), "identity"),
                )
            ),
            Fork(
                Repeat(Conv(IntRange(2, 8), OneOf([1, 3]), "gelu", stride=OneOf([1, 2])), 1, 2),
                1,
                3,
            ),
            Residual(Fork(Chain(Conv(IntRange(2, 8), 3, "relu"), Pool()), 2, 3)),
            Residual(Chain(Pool(), BatchNorm())),
        ),
        1,
        3,
    ),
    Choice(GlobalPool(), Dense(16, "relu")),
    Residual(Dense(IntRange(4, 16), "relu")),
)
"""Residual and Fork blocks picked by a Choice, repeated; a Repeat inside a Fork inside a Choice
inside a Repeat; a residual Dense layer on the features."""

EXAMPLES = {"dense": DENSE_ONLY, "conv": CONV_REPEAT, "residual_fork": RESIDUAL_FORK}


def narrow(compiled: ConfigurationSpace, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with every layer width (``n_channels_*``) at its lower bound: a fast network."""
    return {
        key: compiled[key].lower if key.startswith("n_channels_") else value
        for key, value in config.items()
    }
