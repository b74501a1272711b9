"""Parameter spaces: the leaves of a composed search space (see :mod:`evoband.space._builders`).

Each compiles to one ConfigSpace hyperparameter keyed by its explicit ``name``, or else by its
position in the tree (see :mod:`evoband.space._tree`). A parameter with an explicit name used in
several places compiles to one shared hyperparameter. An unnamed :class:`Fixed` compiles to
nothing: its value is part of the space, not of the genotype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ConfigSpace import Categorical, Constant, Float, Integer, OrdinalHyperparameter
from ConfigSpace.hyperparameters import Hyperparameter

from ..core._errors import ConfigError
from ..core._validate import is_int, is_number, require, require_name

Value = bool | int | float | str
"""A hyperparameter value: what a genotype holds under a key."""


def _value(value: object, owner: str) -> None:
    ok = isinstance(value, (bool, int, float, str))
    require(ok, "value", value, "a bool, int, float or str", owner=owner)


class Param:
    """Base of the parameter spaces: the values one hyperparameter may take."""

    name: str | None

    def hyperparameter(self, key: str) -> Hyperparameter | None:
        """The ConfigSpace hyperparameter under ``key``; None when nothing is searched."""
        raise NotImplementedError

    def candidates(self) -> tuple[Value, ...]:
        """The values a field rule checks: every value, or the bounds of a range."""
        raise NotImplementedError


@dataclass(frozen=True)
class Fixed(Param):
    """One value. Unnamed it is part of the space; named it is a ConfigSpace ``Constant``."""

    value: Value
    name: str | None = None

    def __post_init__(self) -> None:
        _value(self.value, "Fixed")
        require_name("name", self.name, owner="Fixed")

    def hyperparameter(self, key: str) -> Hyperparameter | None:
        return None if self.name is None else Constant(key, self.value)

    def candidates(self) -> tuple[Value, ...]:
        return (self.value,)


@dataclass(frozen=True)
class OneOf(Param):
    """One of ``values`` (a ``Categorical``, or an ``OrdinalHyperparameter`` with ``ordered``).

    ``weights`` are relative sampling weights (not with ``ordered``); ``default`` is one of
    ``values`` (ConfigSpace's choice when omitted).
    """

    values: Sequence[Value]
    weights: Sequence[float] | None = None
    name: str | None = None
    default: Value | None = None
    ordered: bool = False

    def __post_init__(self) -> None:
        owner = f"OneOf({list(self.values)!r})" if isinstance(self.values, Sequence) else "OneOf"
        if isinstance(self.values, str) or not isinstance(self.values, Sequence) or not self.values:
            raise ConfigError(f"{owner} needs a non-empty list of values, e.g. OneOf([3, 5]).")
        object.__setattr__(self, "values", tuple(self.values))
        for value in self.values:
            _value(value, "OneOf")
        if len({(type(v), v) for v in self.values}) != len(self.values):
            raise ConfigError(f"{owner} lists a value twice; list each value once.")
        require_name("name", self.name, owner=owner)
        if self.weights is not None:
            weights = tuple(self.weights)
            if len(weights) != len(self.values) or not all(is_number(w) and w > 0 for w in weights):
                raise ConfigError(f"{owner} needs one positive weight per value, not {weights}.")
            if self.ordered:
                raise ConfigError(f"{owner} is ordered and takes no weights; drop one of them.")
            object.__setattr__(self, "weights", weights)
        if self.default is not None and (type(self.default), self.default) not in {
            (type(v), v) for v in self.values
        }:
            raise ConfigError(f"{owner} has the default {self.default!r}, not one of its values.")

    def hyperparameter(self, key: str) -> Hyperparameter | None:
        values = list(self.values)
        if self.ordered:
            if self.default is None:
                return OrdinalHyperparameter(key, values)
            return OrdinalHyperparameter(key, values, default_value=self.default)
        options: dict[str, Any] = {}
        if self.default is not None:
            options["default"] = self.default
        if self.weights is not None:
            options["weights"] = list(self.weights)
        return Categorical(key, values, **options)

    def candidates(self) -> tuple[Value, ...]:
        return tuple(self.values)


def _range(param: IntRange | FloatRange, is_bound: Callable[[object], bool]) -> None:
    """The rules of a range's fields (their one message shape is the validator's)."""
    owner = type(param).__name__
    kind = "an int" if is_bound is is_int else "a number"
    require(is_bound(param.lo), "lo", param.lo, kind, owner=owner)
    require(is_bound(param.hi), "hi", param.hi, f"{kind} > lo ({param.lo!r})", owner=owner)
    require(
        param.lo < param.hi, "hi", param.hi, f"> lo ({param.lo!r})", owner=owner,
        hint=f"Use Fixed({param.lo!r}) for a single value.",
    )  # fmt: skip
    require(not param.log or param.lo > 0, "lo", param.lo, "> 0 with log=True", owner=owner)
    if param.default is not None:
        ok = is_bound(param.default) and param.lo <= param.default <= param.hi
        rule = f"{kind} in [{param.lo!r}, {param.hi!r}]"
        require(ok, "default", param.default, rule, owner=owner)
    require_name("name", param.name, owner=owner)


@dataclass(frozen=True)
class IntRange(Param):
    """An int in ``[lo, hi]`` (a ConfigSpace ``Integer``), log-uniform with ``log``."""

    lo: int
    hi: int
    log: bool = False
    name: str | None = None
    default: int | None = None

    def __post_init__(self) -> None:
        _range(self, is_int)

    def hyperparameter(self, key: str) -> Hyperparameter | None:
        return Integer(key, (self.lo, self.hi), log=self.log, default=self.default)

    def candidates(self) -> tuple[Value, ...]:
        return (self.lo, self.hi)


@dataclass(frozen=True)
class FloatRange(Param):
    """A float in ``[lo, hi]`` (a ConfigSpace ``Float``), log-uniform with ``log``."""

    lo: float
    hi: float
    log: bool = False
    name: str | None = None
    default: float | None = None

    def __post_init__(self) -> None:
        _range(self, is_number)

    def hyperparameter(self, key: str) -> Hyperparameter | None:
        return Float(key, (self.lo, self.hi), log=self.log, default=self.default)

    def candidates(self) -> tuple[Value, ...]:
        return (self.lo, self.hi)


@dataclass(frozen=True)
class Indexed:
    """A parameter made per item of an enclosing :class:`~evoband.space._layers.Repeat`.

    ``make(i)`` gives the parameter of item ``i`` (its own name, bounds, default...), e.g.
    ``Indexed(lambda i: IntRange(8, 512, name=f"width_{i}", default=[32, 64][i]))``. ``index``
    names the Repeat (its ``index=``); None takes the innermost Repeat.
    """

    make: Callable[[int], Param | Value]
    index: str | None = None

    def __post_init__(self) -> None:
        if not callable(self.make):
            raise ConfigError("Indexed needs a function of the item index, e.g. lambda i: ...")

    def resolve(self, indices: Sequence[tuple[str | None, int]], where: str) -> Param:
        """The parameter for the item indices of the enclosing Repeats (outermost first)."""
        matches = [i for name, i in indices if self.index is None or name == self.index]
        if not matches:
            wanted = "a Repeat" if self.index is None else f"a Repeat with index={self.index!r}"
            raise ConfigError(f"Indexed parameter {where} is not inside {wanted}; wrap it in one.")
        return as_param(self.make(matches[-1]), where)


ParamLike = Param | Indexed | bool | int | float | str
"""What a layer field accepts: a parameter space, an :class:`Indexed` one, or a plain value."""


def as_param(value: object, where: str) -> Param:
    """``value`` as a parameter space: a plain value becomes :class:`Fixed`."""
    if isinstance(value, Param):
        return value
    if isinstance(value, (bool, int, float, str)):
        return Fixed(value)
    hint = " (use OneOf([...]) for a choice)" if isinstance(value, (list, tuple)) else ""
    raise ConfigError(f"{where} must be a parameter space or a value, not {value!r}{hint}.")
