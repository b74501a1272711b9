"""Tests of evoband.core._validate: the one validator and its one message shape."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evoband.core import (
    ConfigError,
    EvobandError,
    invalid,
    require,
    require_choice,
    require_int,
    require_name,
    require_number,
)


def message(call) -> str:
    with pytest.raises(ConfigError) as info:
        call()
    assert isinstance(info.value, EvobandError)
    return str(info.value)


def test_the_message_names_value_rule_owner_and_hint() -> None:
    assert (
        str(invalid("eta", 1, "an int >= 2")) == "The value of `eta` is 1, but must be an int >= 2."
    )
    text = str(invalid("tries", 0, "an int >= 1", owner="Shield", hint="Give it 1 at least."))
    assert (
        text == "The value of `tries` of Shield is 0, but must be an int >= 1. Give it 1 at least."
    )
    assert str(invalid("image_size", [0, 1], "two sides >= 1", shown="0 1")).startswith(
        "The value of `image_size` is 0 1,"
    )


@pytest.mark.parametrize(
    ("kwargs", "value", "rule"),
    [
        ({"low": 2}, 1, "an int >= 2"),
        ({"low": 0, "high": 2**32, "high_open": True}, 2**32, "an int in [0, 2**32)"),
        ({"high": 5}, 6, "an int <= 5"),
        ({"low": 1}, True, "an int >= 1"),  # a bool is not a count
        ({"low": 1}, 1.0, "an int >= 1"),
        ({}, "3", "an int"),
    ],
)
def test_require_int_refuses(kwargs: dict, value: object, rule: str) -> None:
    text = message(lambda: require_int("n", value, **kwargs))
    assert text == f"The value of `n` is {value!r}, but must be {rule}."


def test_require_int_accepts_numpy_integers_and_returns_an_int() -> None:
    value = require_int("n", np.int64(3), low=1)
    assert value == 3 and type(value) is int


@pytest.mark.parametrize(
    ("kwargs", "value", "rule"),
    [
        ({"low": 0, "low_open": True}, 0, "a number > 0"),
        ({"low": 0, "high": 1}, 1.5, "a number in [0, 1]"),
        ({"low": 0, "high": 1, "low_open": True, "high_open": True}, 1, "a number in (0, 1)"),
        ({}, math.inf, "a finite number"),
        ({"low": 0}, math.nan, "a number >= 0"),
        ({}, "1", "a finite number"),
        ({}, False, "a finite number"),
    ],
)
def test_require_number_refuses(kwargs: dict, value: object, rule: str) -> None:
    assert message(lambda: require_number("x", value, **kwargs)).endswith(f"must be {rule}.")


def test_require_number_takes_infinity_when_told() -> None:
    assert require_number("max_time", math.inf, low=0, low_open=True, finite=False) == math.inf
    assert require_number("p", 1, low=0, high=1) == 1.0


def test_require_choice_and_name_and_require() -> None:
    assert require_choice("kind", "max", ("max", "avg")) == "max"
    assert message(lambda: require_choice("kind", "min", ("max", "avg"))).endswith(
        "must be one of 'max', 'avg'."
    )
    require_name("name", None)
    require_name("name", "depth")
    assert "non-empty str" in message(lambda: require_name("name", " depth", owner="IntRange"))
    require(True, "x", 1, "anything")
    assert (
        message(lambda: require(False, "x", 1, "odd")) == "The value of `x` is 1, but must be odd."
    )
