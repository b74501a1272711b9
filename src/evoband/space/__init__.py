"""Search spaces: parameters and the builders that compose them (``Chain``, ``Repeat``, ``Fork``,
``Residual``, ``Choice`` and the layer spaces), compiled to ConfigSpace; the genotype (a flat
config dict) and its helpers; the shipped ``course`` and ``extended`` spaces and their recipes."""

from __future__ import annotations

from ._builders import Above, Among, compile_space
from ._genotype import (
    Config,
    complete,
    default_config,
    fill,
    is_active,
    plain,
    sample,
    sample_value,
    space_default,
    validate,
)
from ._keys import describe, repeat_items, size_keys
from ._layers import (
    BatchNorm,
    Chain,
    Choice,
    Conv,
    Dense,
    Fork,
    GlobalPool,
    Layer,
    Pool,
    Repeat,
    Residual,
    Space,
)
from ._params import Fixed, FloatRange, Indexed, IntRange, OneOf, Param, Value
from ._recipes import RECIPES
from ._shipped import DEFAULT_NETWORK, MAX_LAYERS, SpaceDefinition, course_blocks, extended_blocks
from ._spaces import SPACES, course_space, extended_space, get_space, load_config, recipes

__all__ = [
    "Above",
    "Among",
    "BatchNorm",
    "Chain",
    "Choice",
    "Config",
    "Conv",
    "DEFAULT_NETWORK",
    "Dense",
    "Fixed",
    "FloatRange",
    "Fork",
    "GlobalPool",
    "Indexed",
    "IntRange",
    "Layer",
    "MAX_LAYERS",
    "OneOf",
    "Param",
    "Pool",
    "RECIPES",
    "Repeat",
    "Residual",
    "SPACES",
    "Space",
    "SpaceDefinition",
    "Value",
    "compile_space",
    "complete",
    "course_blocks",
    "course_space",
    "default_config",
    "describe",
    "extended_blocks",
    "extended_space",
    "fill",
    "get_space",
    "is_active",
    "load_config",
    "plain",
    "recipes",
    "repeat_items",
    "sample",
    "sample_value",
    "size_keys",
    "space_default",
    "validate",
]
