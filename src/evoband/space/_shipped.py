"""The shipped search spaces written with the builders of :mod:`evoband.space._builders`.

:func:`evoband.space._spaces.course_space` and :func:`evoband.space._spaces.extended_space` compile these; explicit
names keep the flat keys the hand-written spaces had (``n_conv_layers``, ``n_channels_conv_0``, ...),
and ``tests/test_block_spaces.py`` checks the compiled spaces against those, frozen as JSON. The networks built from them
(:func:`evoband.nets._composed.build_network`) have the parameter counts of
:class:`evoband.nets._cnn.ConfigurableCNN`, but differ from it where a setting is no layer:

* ``tta_flip`` (extended) is a setting here: no flip test-time averaging in the network;
* ``dropout_rate`` acts in the Dense layers only: with ``n_fc_layers == 0`` (extended) there is
  no dropout before the head.

The extended space has no ``n_channels_fc_2``: the hand-written one held it under the condition
``n_fc_layers > 2``, which never holds (``n_fc_layers`` is at most 2), and a Repeat makes no
item beyond its maximum. No configuration ever held it, so every saved one still loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ConfigSpace import ConfigurationSpace

from ._builders import Space, compile_space
from ._layers import Chain, Choice, Conv, Dense, GlobalPool, Pool, Repeat
from ._params import Fixed, FloatRange, Indexed, IntRange, OneOf, Param

MAX_LAYERS = 3
"""The most conv stages and FC layers the shipped spaces have."""

DEFAULT_NETWORK: dict[str, Any] = {
    "learning_rate_init": 0.0016651181400389517,
    "batch_size": 290,
    "kernel_size": 5,
    "use_BN": False,
    "global_avg_pooling": True,
    "dropout_rate": 0.2,
    "n_conv_layers": 3,
    "n_channels_conv_0": 457,
    "n_channels_conv_1": 511,
    "n_channels_conv_2": 38,
    "n_fc_layers": 2,
    "n_channels_fc_0": 27,
    "n_channels_fc_1": 17,
    "optimizer": "adamw",
    "train_criterion": "cross_entropy",
}
"""The reference default network (the course space's defaults), as the ``opt_cfg.json`` dict."""


@dataclass(frozen=True)
class SpaceDefinition:
    """A search space written with the builders: the network's space and the settings that are
    no part of the network (training hyperparameters), compiled together under ``name``."""

    name: str
    network: Space
    settings: tuple[Param, ...]

    def compile(self, seed: int | None = None) -> ConfigurationSpace:
        """The ConfigSpace space (``compile_space(network, extra=settings)``)."""
        return compile_space(self.network, name=self.name, seed=seed, extra=self.settings)


def layer_widths(
    name: str, bounds: tuple[int, int], defaults: Sequence[int], index: str | None = None
) -> Indexed:
    """Per-item widths ``<name>_<i>``, log-uniform in ``bounds``, item ``i`` defaulting to
    ``defaults[i]`` (the widths of :func:`evoband.space._spaces.course_space`)."""
    low, high = bounds
    return Indexed(
        lambda i: IntRange(low, high, log=True, name=f"{name}_{i}", default=defaults[i]),
        index=index,
    )


def _pooling() -> Choice:
    """Global average pooling, or none (the head flattens the image)."""
    return Choice(
        GlobalPool(Fixed("avg")),
        Chain(),
        name="global_avg_pooling",
        labels=[True, False],
        default=True,
    )


def course_blocks() -> SpaceDefinition:
    """:func:`evoband.space._spaces.course_space` written with the builders."""
    kernel = OneOf([3, 5, 7], ordered=True, name="kernel_size", default=5)
    batch_norm = OneOf([True, False], name="use_BN", default=False)
    conv = Conv(
        layer_widths("n_channels_conv", (16, 1024), [457, 511, 38]),
        kernel,
        "relu",
        batch_norm=batch_norm,
    )
    dense = Dense(
        layer_widths("n_channels_fc", (4, 512), [27, 17, 273]),
        "relu",
        FloatRange(0.01, 0.5, log=True, name="dropout_rate", default=0.2),
    )
    network = Chain(
        Repeat(Chain(conv, Pool(Fixed("max"))), 1, MAX_LAYERS, name="n_conv_layers", default=3),
        _pooling(),
        Repeat(dense, 1, MAX_LAYERS, name="n_fc_layers", default=2),
    )
    settings = (
        FloatRange(
            1e-5,
            0.1,
            log=True,
            name="learning_rate_init",
            default=DEFAULT_NETWORK["learning_rate_init"],
        ),
        IntRange(4, 300, log=True, name="batch_size", default=290),
        OneOf(
            ["adam", "adamw", "sgd", "adad"],
            weights=[3, 3, 2, 1],
            name="optimizer",
            default="adamw",
        ),
        OneOf(
            ["cross_entropy", "mse"],
            weights=[4, 1],
            name="train_criterion",
            default="cross_entropy",
        ),
    )
    return SpaceDefinition("course", network, settings)


def extended_blocks() -> SpaceDefinition:
    """:func:`evoband.space._spaces.extended_space` written with the builders (see the module docstring
    for what differs)."""
    activation = OneOf(["relu", "leaky_relu", "gelu", "silu"], name="activation", default="relu")
    conv = Conv(
        layer_widths("n_channels_conv", (8, 512), [32, 64, 128], index="stage"),
        OneOf([3, 5, 7], ordered=True, name="kernel_size", default=3),
        activation,
        batch_norm=OneOf([True, False], weights=[3, 1], name="use_BN", default=True),
    )
    dropout = FloatRange(0.01, 0.5, log=True, name="dropout_rate", default=0.3)
    stage = Chain(Repeat(conv, 1, 2, name="convs_per_stage", default=2), Pool(Fixed("max")))
    dense = Dense(layer_widths("n_channels_fc", (16, 512), [128, 64, 64]), activation, dropout)
    network = Chain(
        Repeat(stage, 1, MAX_LAYERS, name="n_conv_layers", default=3, index="stage"),
        _pooling(),
        Repeat(dense, 0, MAX_LAYERS - 1, name="n_fc_layers", default=0),
    )
    settings = (
        FloatRange(1e-4, 0.1, log=True, name="learning_rate_init", default=3e-3),
        IntRange(16, 300, log=True, name="batch_size", default=64),
        dropout,  # unconditional: today's network drops out before the head without FC layers
        OneOf(["adam", "adamw", "sgd"], weights=[1, 2, 1], name="optimizer", default="adamw"),
        Fixed("cross_entropy", name="train_criterion"),
        FloatRange(1e-6, 0.1, log=True, name="weight_decay", default=0.05),
        FloatRange(0.0, 0.3, name="label_smoothing", default=0.1),
        OneOf(
            ["constant", "cosine", "onecycle"],
            weights=[1, 2, 3],
            name="lr_schedule",
            default="onecycle",
        ),
        OneOf([True, False], name="aug_flip", default=True),
        IntRange(0, 3, name="aug_shift", default=2),
        OneOf([True, False], name="tta_flip", default=True),
        OneOf([1, 2, 3], weights=[3, 2, 1], name="towers", default=1),
    )
    return SpaceDefinition("extended", network, settings)
