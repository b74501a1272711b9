"""The one validator of values a user gives (flags, settings, spaces, operators), and its one
message shape::

    The value of `eta` is 1, but must be an int >= 2.

with, where it helps, the owner of the value (``of Hyperband``) and a hint of what to do. Every
refusal is a :class:`~evoband.core._errors.ConfigError`, so the command lines print it as their
one ``error:`` line (exit 2) and library users catch it as an ``EvobandError``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection
from typing import Any, TypeVar

from ._errors import ConfigError

T = TypeVar("T")


def invalid(
    name: str, value: object, rule: str, *, owner: str = "", hint: str = "", shown: str = ""
) -> ConfigError:
    """The error of ``value`` given for ``name`` (of ``owner``) that breaks ``rule``.

    Args:
        name: the parameter as the user wrote it (a flag without dashes, a keyword).
        value: what was given; shown with ``repr`` unless ``shown`` says how.
        rule: what it must be, completing "must be ..." (``an int >= 2``, ``in (0, 1]``).
        owner: the class or command the parameter belongs to, when the name alone is ambiguous.
        hint: one sentence on what to do, appended.
    """
    of = f" of {owner}" if owner else ""
    text = f"The value of `{name}`{of} is {shown or repr(value)}, but must be {rule}."
    return ConfigError(f"{text} {hint}" if hint else text)


def require(
    condition: bool,
    name: str,
    value: object,
    rule: str,
    *,
    owner: str = "",
    hint: str = "",
    shown: str = "",
) -> None:
    """Raise :func:`invalid` unless ``condition`` holds."""
    if not condition:
        raise invalid(name, value, rule, owner=owner, hint=hint, shown=shown)


def is_int(value: object) -> bool:
    """An integer (Python's or numpy's), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A real number (int or float, Python's or numpy's), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _show(bound: float) -> str:
    if is_int(bound) and bound >= 2**16 and bound & (bound - 1) == 0:  # type: ignore[operator]
        return f"2**{int(bound).bit_length() - 1}"
    return str(bound) if is_int(bound) else f"{bound:g}"


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        opening, closing = "(" if low_open else "[", ")" if high_open else "]"
        return f"in {opening}{_show(low)}, {_show(high)}{closing}"
    if low is not None:
        return f"{'>' if low_open else '>='} {_show(low)}"
    if high is not None:
        return f"{'<' if high_open else '<='} {_show(high)}"
    return ""


def _within(
    value: float, low: float | None, high: float | None, lo_open: bool, hi_open: bool
) -> bool:
    above = low is None or (value > low if lo_open else value >= low)
    below = high is None or (value < high if hi_open else value <= high)
    return above and below


def require_int(
    name: str,
    value: Any,
    *,
    low: int | None = None,
    high: int | None = None,
    high_open: bool = False,
    owner: str = "",
    hint: str = "",
) -> int:
    """``value`` as an int, refused unless it is an integer (not a bool) within the bounds."""
    bounds = _bounds(low, high, False, high_open)
    rule = f"an int {bounds}".rstrip()
    require(is_int(value), name, value, rule, owner=owner, hint=hint)
    require(_within(value, low, high, False, high_open), name, value, rule, owner=owner, hint=hint)
    return int(value)


def require_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
    owner: str = "",
    hint: str = "",
) -> float:
    """``value`` as a float, refused unless it is a real number (finite, unless ``finite`` is
    False) within the bounds."""
    bounds = _bounds(low, high, low_open, high_open)
    rule = f"a {'finite ' if finite and not bounds else ''}number {bounds}".rstrip()
    ok = is_number(value) and not math.isnan(value) and (math.isfinite(value) or not finite)
    require(ok and _within(value, low, high, low_open, high_open), name, value, rule, owner=owner,
            hint=hint)  # fmt: skip
    return float(value)


def require_choice(
    name: str, value: T, choices: Collection[Any], *, owner: str = "", hint: str = ""
) -> T:
    """``value``, refused unless it is one of ``choices``."""
    listed = ", ".join(map(repr, choices))
    require(value in choices, name, value, f"one of {listed}", owner=owner, hint=hint)
    return value


def require_name(name: str, value: object, *, owner: str = "") -> None:
    """Refuse a name that is given (not None) but is not a non-empty str without spaces around."""
    ok = value is None or (isinstance(value, str) and bool(value) and value == value.strip())
    require(ok, name, value, "a non-empty str without spaces around it", owner=owner)
