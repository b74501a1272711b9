"""The network of one configuration as plain data: its active layers, their settings and the
shape of every tensor. It decides whether a configuration fits an input (no image pooled or
strided below 1x1, paths of a Fork ending at one size, a Residual's input projectable onto its
output) without building anything, and samples only configurations that fit.

Shapes are ``(C, H, W)`` for images and ``(F,)`` for features (without the batch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from ConfigSpace import ConfigurationSpace

from ..core._errors import ConfigError
from ..core._validate import is_int, require, require_int
from ..space._genotype import sample
from ..space._layers import Space
from ..space._params import Value
from ..space._tree import (
    ChoiceNode,
    CountNode,
    LayerNode,
    Node,
    ResidualNode,
    expand,
    module_name,
    where,
)

Shape = tuple[int, ...]


class ShapeError(ConfigError):
    """A configuration does not fit the input shape (it is valid in the space otherwise)."""


@dataclass(frozen=True)
class LayerStep:
    """One active layer: its module name, kind, setting values (by key suffix) and shapes."""

    name: str
    kind: str
    settings: Mapping[str, Value]
    in_shape: Shape
    out_shape: Shape


@dataclass(frozen=True)
class SeqStep:
    """Steps one after another (a Chain, or the active items of a Repeat)."""

    steps: tuple[Step, ...]
    in_shape: Shape
    out_shape: Shape


@dataclass(frozen=True)
class ForkStep:
    """Active paths on the same input, concatenated on channels or features."""

    paths: tuple[Step, ...]
    in_shape: Shape
    out_shape: Shape


@dataclass(frozen=True)
class ResidualStep:
    """``x + body(x)``; ``projection`` is the module name of the map applied to ``x`` when the
    shapes differ (None: the identity) and ``stride`` the stride of that 1x1 conv."""

    body: Step
    projection: str | None
    stride: tuple[int, int]
    in_shape: Shape
    out_shape: Shape


Step = LayerStep | SeqStep | ForkStep | ResidualStep


def _image(shape: Shape, what: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(
            f"{what} needs an image input (C, H, W), but gets {shape[0]} features (after a "
            "Dense or GlobalPool layer); put it before them."
        )
    return shape[0], shape[1], shape[2]


def _layer_shape(kind: str, settings: Mapping[str, Any], shape: Shape, what: str) -> Shape:
    if kind == "conv":
        _, h, w = _image(shape, what)
        stride = int(settings["stride"])
        return int(settings["channels"]), (h - 1) // stride + 1, (w - 1) // stride + 1
    if kind == "pool":
        c, h, w = _image(shape, what)
        if h < 2 or w < 2:
            raise ShapeError(
                f"{what} pools a {h}x{w} image below 1x1; use fewer pools or strides, or "
                "larger inputs."
            )
        return c, h // 2, w // 2
    if kind == "global_pool":
        return (_image(shape, what)[0],)
    if kind == "dense":
        return (int(settings["units"]),)
    return shape  # batch norm


def _layer(node: LayerNode, config: Mapping[str, Value], shape: Shape) -> LayerStep:
    settings: dict[str, Value] = {}
    for suffix, slot in node.slots.items():
        value = slot.read(config)
        rule = node.layer.rule(suffix)
        if not rule.allows(value):
            raise ConfigError(f"{slot.key}={value!r} is not allowed: it must be {rule.what}.")
        settings[suffix] = value
    what = f"{type(node.layer).__name__} {where(node.prefix)}"
    out = _layer_shape(node.layer.KIND, settings, shape, what)
    return LayerStep(module_name(node.prefix), node.layer.KIND, settings, shape, out)


def projection_stride(n_in: int, n_out: int) -> int | None:
    """The stride of a 1x1 conv (no padding) that maps size ``n_in`` to ``n_out``, if any."""
    for stride in range(1, n_in + 1):
        if (n_in - 1) // stride + 1 == n_out:
            return stride
    return None


def _residual(node: ResidualNode, config: Mapping[str, Value], shape: Shape) -> ResidualStep:
    body = _plan(node.body, config, shape)
    out = body.out_shape
    name = module_name(f"{node.prefix}proj")
    if out == shape:
        return ResidualStep(body, None, (1, 1), shape, out)
    if len(out) != len(shape):
        raise ShapeError(
            f"Residual {where(node.prefix)} adds an input of shape {shape} to an output of shape "
            f"{out}; keep images images (or features features) inside a Residual."
        )
    if len(out) == 1:
        return ResidualStep(body, name, (1, 1), shape, out)
    strides = (projection_stride(shape[1], out[1]), projection_stride(shape[2], out[2]))
    if strides[0] is None or strides[1] is None:
        raise ShapeError(
            f"Residual {where(node.prefix)}: no strided 1x1 conv maps {shape[1]}x{shape[2]} "
            f"onto {out[1]}x{out[2]}; use inputs whose size halves evenly at its pools."
        )
    return ResidualStep(body, name, (strides[0], strides[1]), shape, out)


def _fork(node: CountNode, paths: list[Step], shape: Shape) -> ForkStep:
    if len({path.out_shape[1:] for path in paths}) > 1:  # () for features, (H, W) for images
        sizes = ", ".join(str(path.out_shape) for path in paths)
        raise ShapeError(
            f"Fork {where(node.prefix)}: its paths end at different shapes ({sizes}); they are "
            "concatenated, so keep their pools and strides alike."
        )
    out = (sum(path.out_shape[0] for path in paths), *paths[0].out_shape[1:])
    return ForkStep(tuple(paths), shape, out)


def _sequence(steps: list[Step], shape: Shape) -> SeqStep:
    return SeqStep(tuple(steps), shape, steps[-1].out_shape if steps else shape)


def _plan(node: Node, config: Mapping[str, Value], shape: Shape) -> Step:
    if isinstance(node, LayerNode):
        return _layer(node, config, shape)
    if isinstance(node, ChoiceNode):
        return _plan(node.branch(config), config, shape)
    if isinstance(node, ResidualNode):
        return _residual(node, config, shape)
    if isinstance(node, CountNode):
        count = node.count.read(config)
        if (
            not isinstance(count, int)
            or isinstance(count, bool)
            or not node.low <= count <= len(node.items)
        ):
            raise ConfigError(
                f"{node.count.key}={count!r} is not allowed: it must be an int in "
                f"[{node.low}, {len(node.items)}]."
            )
        active = node.items[:count]
        if node.fork:
            return _fork(node, [_plan(item, config, shape) for item in active], shape)
        return _chain(list(active), config, shape)
    return _chain(list(node.children), config, shape)


def _chain(nodes: list[Node], config: Mapping[str, Value], shape: Shape) -> SeqStep:
    steps: list[Step] = []
    for child in nodes:
        steps.append(_plan(child, config, steps[-1].out_shape if steps else shape))
    return _sequence(steps, shape)


def input_shape_of(input_shape: object) -> Shape:
    """``input_shape`` as a tuple: ``(C, H, W)`` or ``(F,)`` of positive ints."""
    ok = (
        isinstance(input_shape, (tuple, list))
        and len(input_shape) in (1, 3)
        and all(is_int(n) and n > 0 for n in input_shape)
    )
    require(ok, "input_shape", input_shape, "(C, H, W) or (F,) of ints >= 1")
    assert isinstance(input_shape, (tuple, list))
    return tuple(input_shape)


def plan_network(space: Space, config: Mapping[str, Value], input_shape: Shape) -> Step:
    """The active layers of ``config`` with their settings and shapes; a :class:`ShapeError`
    if it does not fit ``input_shape``, a ConfigError if a key is missing or wrong."""
    return _plan(expand(space), config, input_shape_of(input_shape))


def output_shape(space: Space, config: Mapping[str, Value], input_shape: Shape) -> Shape:
    """The shape of the features the network of ``config`` hands to the classifier head."""
    return plan_network(space, config, input_shape).out_shape


def is_valid(space: Space, config: Mapping[str, Value], input_shape: Shape) -> bool:
    """Whether ``config`` fits ``input_shape`` (a missing or wrong key is still an error)."""
    try:
        plan_network(space, config, input_shape)
    except ShapeError:
        return False
    return True


def sample_config(
    space: Space,
    compiled: ConfigurationSpace,
    input_shape: Shape,
    rng: np.random.Generator,
    max_tries: int = 100,
) -> dict[str, Any]:
    """A configuration of ``compiled`` (drawn by :func:`evoband.space._spaces.sample`) that fits
    ``input_shape``: configurations that do not are drawn again, up to ``max_tries`` times."""
    shape = input_shape_of(input_shape)
    require_int("max_tries", max_tries, low=1)
    node = expand(space)
    reason = ""
    for _ in range(max_tries):
        config = sample(compiled, rng)
        try:
            _plan(node, config, shape)
        except ShapeError as exc:
            reason = str(exc)
            continue
        return config
    raise ShapeError(
        f"None of {max_tries} configurations drawn from the space {compiled.name!r} "
        f"fits the input {shape}; the last: {reason} Allow fewer pools or strides, or use "
        "larger inputs."
    )


def flat_size(shape: Shape) -> int:
    """The number of values per sample of a tensor of ``shape`` (what a flatten yields)."""
    return math.prod(shape)
