"""Layer spaces and architecture spaces: the nodes of a composed search space.

A layer space (:class:`Conv`, :class:`Dense`, :class:`BatchNorm`, :class:`Pool`,
:class:`GlobalPool`) is one network layer whose settings are parameter spaces
(:mod:`evoband.space._params`); a plain value given for a setting is :class:`Fixed`. An
architecture space (:class:`Chain`, :class:`Repeat`, :class:`Fork`, :class:`Residual`,
:class:`Choice`) arranges other spaces. :func:`evoband.space._builders.compile_space` turns a tree of them
into a ConfigSpace space, :func:`evoband.nets._composed.build_network` a configuration into a network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..core._errors import ConfigError
from ._params import Fixed, FloatRange, Indexed, IntRange, OneOf, Param, ParamLike, Value
from ._params import as_param as _as_param
from ._params import is_number as _is_number

ACTIVATION_NAMES = ("relu", "leaky_relu", "gelu", "silu", "tanh", "identity")
"""The activations a layer space may use (see :data:`evoband.nets._composed.ACTIVATIONS`)."""

POOL_KINDS = ("max", "avg")
"""The pooling kinds of :class:`Pool` and :class:`GlobalPool`."""


@dataclass(frozen=True)
class Rule:
    """The values a layer setting allows: their type, a test and whether ranges may give them."""

    what: str
    value_type: str  # "int", "float", "str" or "bool"
    accepts: Callable[[Any], bool]
    ranges: bool = False

    def has_type(self, value: object) -> bool:
        """Whether ``value`` is of this rule's type (an int counts as a float)."""
        if self.value_type == "int":
            return _is_number(value) and isinstance(value, int)
        if self.value_type == "float":
            return _is_number(value)
        return type(value).__name__ == self.value_type

    def allows(self, value: object) -> bool:
        """Whether a genotype may hold ``value`` for this setting."""
        return self.has_type(value) and bool(self.accepts(value))

    def check(self, param: Param, where: str) -> None:
        """A ConfigError naming ``where`` if ``param`` may give a value this rule rejects."""
        ranged = isinstance(param, (IntRange, FloatRange))
        if ranged and not self.ranges:
            raise ConfigError(f"{where} is {self.what}: give it as OneOf([...]), not a range.")
        if isinstance(param, FloatRange) and self.value_type == "int":
            raise ConfigError(f"{where} is {self.what}: use IntRange, not FloatRange.")
        for value in param.candidates():
            if not self.allows(value):
                raise ConfigError(f"{where} may be {value!r}, but must be {self.what}.")


POSITIVE_INT = Rule("a positive int", "int", lambda v: v >= 1, ranges=True)
ODD_KERNEL = Rule("an odd positive int (same padding)", "int", lambda v: v >= 1 and v % 2 == 1)
ACTIVATION = Rule("one of " + ", ".join(ACTIVATION_NAMES), "str", lambda v: v in ACTIVATION_NAMES)
FLAG = Rule("True or False", "bool", lambda v: True)
RATE = Rule("a rate in [0, 1)", "float", lambda v: 0 <= v < 1, ranges=True)
POOL_KIND = Rule("'max' or 'avg'", "str", lambda v: v in POOL_KINDS)


class Layer:
    """Base of the layer spaces. ``FIELDS`` maps each setting's attribute to its key suffix in
    the genotype (``b0_channels``) and its :class:`Rule`."""

    KIND: ClassVar[str]
    FIELDS: ClassVar[dict[str, tuple[str, Rule]]] = {}

    def __post_init__(self) -> None:
        for attribute in self.FIELDS:
            value = getattr(self, attribute)
            if not isinstance(value, Indexed):
                owner = f"{type(self).__name__}({attribute}=...)"
                object.__setattr__(self, attribute, _as_param(value, owner))

    def settings(self) -> dict[str, Param | Indexed]:
        """The key suffix of each setting and its parameter space."""
        return {suffix: getattr(self, attribute) for attribute, (suffix, _) in self.FIELDS.items()}

    def rule(self, suffix: str) -> Rule:
        """The rule of the setting with key suffix ``suffix``."""
        return next(rule for key, rule in self.FIELDS.values() if key == suffix)


@dataclass(frozen=True)
class Conv(Layer):
    """Conv2d (same padding, odd kernel) -> activation -> BatchNorm2d if ``batch_norm``."""

    out_channels: ParamLike
    kernel: ParamLike
    activation: ParamLike
    stride: ParamLike = Fixed(1)
    batch_norm: ParamLike = Fixed(False)

    KIND: ClassVar[str] = "conv"
    FIELDS: ClassVar[dict[str, tuple[str, Rule]]] = {
        "out_channels": ("channels", POSITIVE_INT),
        "kernel": ("kernel", ODD_KERNEL),
        "activation": ("act", ACTIVATION),
        "stride": ("stride", POSITIVE_INT),
        "batch_norm": ("bn", FLAG),
    }


@dataclass(frozen=True)
class Dense(Layer):
    """Linear (on the flattened input) -> activation -> Dropout."""

    units: ParamLike
    activation: ParamLike
    dropout: ParamLike = Fixed(0.0)

    KIND: ClassVar[str] = "dense"
    FIELDS: ClassVar[dict[str, tuple[str, Rule]]] = {
        "units": ("units", POSITIVE_INT),
        "activation": ("act", ACTIVATION),
        "dropout": ("dropout", RATE),
    }


@dataclass(frozen=True)
class BatchNorm(Layer):
    """BatchNorm2d on images, BatchNorm1d on features."""

    KIND: ClassVar[str] = "batchnorm"


@dataclass(frozen=True)
class Pool(Layer):
    """2x2 pooling with stride 2, max or average."""

    kind: ParamLike = OneOf(["max", "avg"])

    KIND: ClassVar[str] = "pool"
    FIELDS: ClassVar[dict[str, tuple[str, Rule]]] = {"kind": ("pool", POOL_KIND)}


@dataclass(frozen=True)
class GlobalPool(Layer):
    """Pooling over the whole image, max or average: images become features."""

    kind: ParamLike = OneOf(["avg", "max"])

    KIND: ClassVar[str] = "global_pool"
    FIELDS: ClassVar[dict[str, tuple[str, Rule]]] = {"kind": ("gpool", POOL_KIND)}


def _check_spaces(spaces: Sequence[object], owner: str) -> tuple[Space, ...]:
    checked: list[Space] = []
    for space in spaces:
        if not isinstance(space, SPACE_TYPES):
            raise ConfigError(
                f"{owner} takes layer or architecture spaces, not {space!r}; wrap a parameter "
                "in a layer (e.g. Conv(out_channels=IntRange(8, 64), ...))."
            )
        checked.append(space)
    return tuple(checked)


def _check_count_range(owner: str, low: object, high: object, least: int) -> None:
    if not (
        _is_number(low) and isinstance(low, int) and _is_number(high) and isinstance(high, int)
    ):
        raise ConfigError(f"{owner} needs int bounds.")
    if low < least:
        raise ConfigError(f"{owner}: the minimum must be at least {least}.")
    if low > high:
        raise ConfigError(f"{owner}: the minimum exceeds the maximum; swap them or raise the max.")


class Chain:
    """The spaces one after another (an empty Chain is the identity)."""

    def __init__(self, *spaces: Space) -> None:
        self.spaces = _check_spaces(spaces, "Chain")

    def __repr__(self) -> str:
        return f"Chain({', '.join(map(repr, self.spaces))})"


@dataclass(frozen=True, eq=False)
class Repeat:
    """``space`` ``min`` to ``max`` times in a row; item ``i`` exists when the count exceeds ``i``.

    The count is a hyperparameter (``<prefix>count`` or ``name``, with ``default``), none when
    ``min == max``. Repeats sharing a ``name`` share the count. ``index`` names this Repeat for
    :class:`~evoband.space._params.Indexed` parameters of its items.
    """

    space: Space
    min: int = 1
    max: int = 3
    name: str | None = None
    default: int | None = None
    index: str | None = None

    def __post_init__(self) -> None:
        owner = f"Repeat(min={self.min!r}, max={self.max!r})"
        _check_spaces([self.space], owner)
        _check_count_range(owner, self.min, self.max, 0)
        if self.max < 1:
            raise ConfigError(f"{owner} repeats nothing; use a max of at least 1.")
        _check_default(owner, self.default, self.min, self.max)
        _check_count_name(owner, self.name, self.min, self.max, self.default)


@dataclass(frozen=True, eq=False)
class Fork:
    """``min_paths`` to ``max_paths`` copies of ``space`` on the same input, each with its own
    keys (``<prefix>p<k>_...``), their outputs concatenated on channels or features. The number
    of paths is the hyperparameter ``<prefix>paths`` (or ``name``), none when min == max."""

    space: Space
    min_paths: int = 2
    max_paths: int = 3
    name: str | None = None
    default: int | None = None

    def __post_init__(self) -> None:
        owner = f"Fork(min_paths={self.min_paths!r}, max_paths={self.max_paths!r})"
        _check_spaces([self.space], owner)
        _check_count_range(owner, self.min_paths, self.max_paths, 1)
        _check_default(owner, self.default, self.min_paths, self.max_paths)
        _check_count_name(owner, self.name, self.min_paths, self.max_paths, self.default)


@dataclass(frozen=True, eq=False)
class Residual:
    """``x + f(x)`` for ``f`` from ``space`` (its keys ``<prefix>res_...``); a 1x1 conv (images)
    or a bias-free linear map (features) projects ``x`` when the shapes differ."""

    space: Space

    def __post_init__(self) -> None:
        _check_spaces([self.space], "Residual")


class Choice:
    """One of the spaces, picked by a categorical hyperparameter (``<prefix>choice`` or ``name``)
    whose values are ``labels`` (default 0, 1, ...); only the picked branch's keys are active."""

    def __init__(
        self,
        *spaces: Space,
        name: str | None = None,
        labels: Sequence[Value] | None = None,
        weights: Sequence[float] | None = None,
        default: Value | None = None,
    ) -> None:
        self.spaces = _check_spaces(spaces, "Choice")
        if len(self.spaces) < 2:
            raise ConfigError("Choice needs at least two spaces to choose from.")
        self.labels: tuple[Value, ...] = tuple(
            range(len(self.spaces)) if labels is None else labels
        )
        if len(self.labels) != len(self.spaces):
            raise ConfigError(
                f"Choice has {len(self.spaces)} spaces but {len(self.labels)} labels; "
                "give one label per space."
            )
        # OneOf checks the labels, the weights and the default
        self.pick = OneOf(self.labels, weights=weights, name=name, default=default)

    @property
    def name(self) -> str | None:
        """The explicit name of the choice's hyperparameter, if given."""
        return self.pick.name

    def __repr__(self) -> str:
        return f"Choice({', '.join(map(repr, self.spaces))}, labels={list(self.labels)!r})"


def _check_default(owner: str, default: object, low: int, high: int) -> None:
    if default is not None and not (
        _is_number(default) and isinstance(default, int) and low <= default <= high
    ):
        raise ConfigError(f"{owner} has the default {default!r}; give one in [{low}, {high}].")


def _check_count_name(owner: str, name: object, low: int, high: int, default: object) -> None:
    if name is not None and (not isinstance(name, str) or not name or name != name.strip()):
        raise ConfigError(f"{owner} has the name {name!r}; a name is a non-empty str, no spaces.")
    if low == high and default is not None and default != low:
        raise ConfigError(f"{owner} has a fixed count; drop its default.")


Space = Layer | Chain | Repeat | Fork | Residual | Choice
"""A node of a composed search space."""

SPACE_TYPES = (Layer, Chain, Repeat, Fork, Residual, Choice)
