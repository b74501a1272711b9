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
from ..core._validate import is_int, is_number, require, require_int, require_name
from ._params import Fixed, FloatRange, Indexed, IntRange, OneOf, Param, ParamLike, Value
from ._params import as_param as _as_param

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
            return is_int(value)
        if self.value_type == "float":
            return is_number(value)
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


def _spaces(spaces: Sequence[object], owner: str) -> tuple[Space, ...]:
    for space in spaces:
        require(
            isinstance(space, SPACE_TYPES), "space", space, "a layer or architecture space",
            owner=owner, hint="Wrap a parameter in a layer (e.g. Conv(out_channels=IntRange(8, 64), ...)).",
        )  # fmt: skip
    return tuple(spaces)  # type: ignore[arg-type]


def _count_range(owner: str, names: tuple[str, str], low: object, high: object, least: int) -> None:
    """The bounds of a count: ints, ``least <= low <= high``."""
    minimum = require_int(names[0], low, low=least, owner=owner)
    require_int(names[1], high, low=minimum, owner=owner, hint="Swap them, or raise the maximum.")


class Chain:
    """The spaces one after another (an empty Chain is the identity)."""

    def __init__(self, *spaces: Space) -> None:
        self.spaces = _spaces(spaces, "Chain")

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
        owner = "Repeat"
        _spaces([self.space], owner)
        _count_range(owner, ("min", "max"), self.min, self.max, 0)
        require_int(
            "max", self.max, low=1, owner=owner, hint="A Repeat of at most 0 repeats nothing."
        )
        _count_default(owner, self.name, self.min, self.max, self.default)


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
        owner = "Fork"
        _spaces([self.space], owner)
        _count_range(owner, ("min_paths", "max_paths"), self.min_paths, self.max_paths, 1)
        _count_default(owner, self.name, self.min_paths, self.max_paths, self.default)


@dataclass(frozen=True, eq=False)
class Residual:
    """``x + f(x)`` for ``f`` from ``space`` (its keys ``<prefix>res_...``); a 1x1 conv (images)
    or a bias-free linear map (features) projects ``x`` when the shapes differ."""

    space: Space

    def __post_init__(self) -> None:
        _spaces([self.space], "Residual")


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
        self.spaces = _spaces(spaces, "Choice")
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


def _count_default(owner: str, name: object, low: int, high: int, default: object) -> None:
    if default is not None:
        require_int("default", default, low=low, high=high, owner=owner)
    require(
        low != high or default in (None, low), "default", default, f"None for a fixed count of {low}",
        owner=owner,
    )  # fmt: skip
    require_name("name", name, owner=owner)


Space = Layer | Chain | Repeat | Fork | Residual | Choice
"""A node of a composed search space."""

SPACE_TYPES = (Layer, Chain, Repeat, Fork, Residual, Choice)
