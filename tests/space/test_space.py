"""Tests of evoband.space._spaces: the shipped spaces, sampling, and reading user configurations."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from evoband.core._errors import ConfigError
from evoband.space._genotype import complete, default_config, is_active, plain, sample, validate
from evoband.space._recipes import RECIPES
from evoband.space._shipped import DEFAULT_NETWORK
from evoband.space._spaces import (
    SPACES,
    course_space,
    extended_space,
    get_space,
    load_config,
    recipes,
)

# ConfigSpace rounds float defaults to 12 significant digits.
REL = 1e-9


def assert_same_config(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for key, value in expected.items():
        if isinstance(value, float):
            assert math.isclose(got[key], value, rel_tol=REL), key
        else:
            assert got[key] == value, key
            assert type(got[key]) is type(value), key


def test_course_default_is_the_default_network() -> None:
    assert_same_config(default_config(course_space()), DEFAULT_NETWORK)


def test_extended_default_is_the_first_recipe_and_holds_the_default_network() -> None:
    space = extended_space()
    assert_same_config(default_config(space), RECIPES["bn-cnn"])
    # the reference default network is a configuration of the extended space too
    extras = {k: v for k, v in default_config(space).items() if k not in DEFAULT_NETWORK}
    extras.update(
        aug_flip=False, aug_shift=0, label_smoothing=0.0, lr_schedule="constant", convs_per_stage=1
    )
    validate(space, dict(DEFAULT_NETWORK, **extras))


def test_recipes_are_valid_where_they_are_used() -> None:
    assert [c["n_conv_layers"] for c in recipes(course_space())] == [3, 3]
    assert len(recipes(extended_space())) == 4
    for config in recipes(course_space()) + recipes(extended_space()):
        assert config in RECIPES.values()


@pytest.mark.parametrize("name", sorted(SPACES))
def test_get_space(name: str) -> None:
    space = get_space(name, seed=3)
    assert space.name == name
    validate(space, default_config(space))
    # The default network is a valid (partial) genotype of every shipped space.
    assert_same_config(
        {k: v for k, v in load_config(DEFAULT_NETWORK, space).items() if k in DEFAULT_NETWORK},
        DEFAULT_NETWORK,
    )


def test_get_space_unknown_name() -> None:
    with pytest.raises(ConfigError, match="'nope'") as info:
        get_space("nope")
    assert "course" in str(info.value) and "extended" in str(info.value)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_sampled_configs_validate(name: str, seed: int) -> None:
    space = get_space(name)
    rng = np.random.default_rng(seed)
    for _ in range(30):
        config = sample(space, rng)
        validate(space, config)
        assert config == plain(config)
        json.dumps(config)  # a genotype is JSON-able
        assert all(is_active(space, key, config) for key in config)
        # The number of layer widths follows the layer counts.
        assert sum(k.startswith("n_channels_conv_") for k in config) == config["n_conv_layers"]
        assert sum(k.startswith("n_channels_fc_") for k in config) == config["n_fc_layers"]


@pytest.mark.parametrize("name", sorted(SPACES))
def test_sampling_is_fixed_by_the_generator(name: str, seed: int) -> None:
    space = get_space(name)
    first = [sample(space, np.random.default_rng(seed)) for _ in range(2)]
    assert first[0] == first[1]
    assert sample(space, np.random.default_rng(seed + 1000)) != first[0]


def test_complete_keeps_parent_values_and_draws_new_layers(seed: int) -> None:
    space = course_space()
    values = dict(DEFAULT_NETWORK, n_fc_layers=3)
    values.pop("n_channels_conv_2")
    values["n_conv_layers"] = 2

    out = complete(space, values, np.random.default_rng(seed))

    validate(space, out)
    assert "n_channels_conv_2" not in out
    assert out["n_channels_conv_1"] == DEFAULT_NETWORK["n_channels_conv_1"]
    assert 4 <= out["n_channels_fc_2"] <= 512


# --- load_config --------------------------------------------------------------------------------


def test_load_config_reference_default_with_inactive_key(caplog: pytest.LogCaptureFixture) -> None:
    reference = dict(DEFAULT_NETWORK, n_channels_fc_2=273)

    with caplog.at_level(logging.INFO, logger="evoband.space._spaces"):
        config = load_config(reference, course_space())

    assert config == DEFAULT_NETWORK
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "n_channels_fc_2" in warnings[0].getMessage()
    assert "Filled" not in caplog.text  # nothing was missing


def test_load_config_from_json_file(tmp_path: Path) -> None:
    path = tmp_path / "opt_cfg.json"
    path.write_text(json.dumps(dict(DEFAULT_NETWORK, n_channels_fc_2=273), indent=2))

    assert load_config(path, course_space()) == DEFAULT_NETWORK  # the inactive key is dropped
    # the extended space has at most 2 FC layers: no third width at all
    with pytest.raises(ConfigError, match="'n_channels_fc_2'"):
        load_config(str(path), extended_space())
    path.write_text(json.dumps(DEFAULT_NETWORK))
    assert load_config(str(path), extended_space())["n_conv_layers"] == 3


def test_load_config_accepts_integral_floats_for_integers() -> None:
    config = load_config(dict(DEFAULT_NETWORK, batch_size=290.0), course_space())
    assert config["batch_size"] == 290
    assert isinstance(config["batch_size"], int)


def test_load_config_unknown_key() -> None:
    with pytest.raises(ConfigError, match="'n_channels_conv_9'"):
        load_config(dict(DEFAULT_NETWORK, n_channels_conv_9=16), course_space())


def test_load_config_extended_key_is_unknown_in_course_space() -> None:
    with pytest.raises(ConfigError, match="'aug_flip'"):
        load_config(dict(DEFAULT_NETWORK, aug_flip=True), course_space())


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("batch_size", 1000),
        ("batch_size", 2),
        ("learning_rate_init", 0.5),
        ("n_channels_conv_0", 2048),
        ("n_conv_layers", 4),
        ("kernel_size", 4),
        ("optimizer", "rmsprop"),
        ("dropout_rate", 0.0),
    ],
)
def test_load_config_out_of_range_value(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(dict(DEFAULT_NETWORK, **{key: value}), course_space())


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("batch_size", "64"),
        ("batch_size", 64.5),
        ("batch_size", None),
        ("batch_size", {"value": 64}),
        ("learning_rate_init", "fast"),
        ("use_BN", "yes"),
        ("use_BN", 1.5),
        ("kernel_size", None),
        ("optimizer", 3),
    ],
)
def test_load_config_wrong_type(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(dict(DEFAULT_NETWORK, **{key: value}), course_space())


@pytest.mark.parametrize(
    ("key", "value"),
    [("batch_size", [64]), ("batch_size", [64, 65]), ("optimizer", ["adam"])],
)
def test_load_config_list_value_is_a_config_error_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(dict(DEFAULT_NETWORK, **{key: value}), course_space())


def test_load_config_fills_missing_keys_from_defaults(caplog: pytest.LogCaptureFixture) -> None:
    partial = {k: v for k, v in DEFAULT_NETWORK.items() if k not in ("dropout_rate", "kernel_size")}

    with caplog.at_level(logging.INFO, logger="evoband.space._spaces"):
        config = load_config(partial, course_space())

    assert_same_config(config, DEFAULT_NETWORK)
    filled = [r for r in caplog.records if "Filled" in r.getMessage()]
    assert len(filled) == 1
    assert filled[0].levelno == logging.INFO
    assert "dropout_rate" in filled[0].getMessage()
    assert "kernel_size" in filled[0].getMessage()
    assert "batch_size" not in filled[0].getMessage()


def test_load_config_empty_dict_is_the_default() -> None:
    assert_same_config(load_config({}, course_space()), DEFAULT_NETWORK)


@pytest.mark.parametrize(
    ("space_fn", "given", "missing", "default"),
    [
        (course_space, {"n_fc_layers": 3}, "n_channels_fc_2", 273),
        (extended_space, {"n_fc_layers": 2, "n_channels_fc_1": 20}, "n_channels_fc_0", 128),
    ],
)
def test_load_config_fills_keys_inactive_under_the_defaults(
    space_fn, given, missing, default
) -> None:
    base = DEFAULT_NETWORK if space_fn is course_space else RECIPES["bn-cnn"]
    config = load_config(dict(base, **given), space_fn())
    assert math.isclose(config[missing], default, rel_tol=REL)


def test_load_config_broken_json(tmp_path: Path) -> None:
    path = tmp_path / "opt_cfg.json"
    path.write_text('{\n  "batch_size": 64,\n  "kernel_size": 5,,\n}\n')

    with pytest.raises(ConfigError, match="line 3") as info:
        load_config(path, course_space())
    assert str(path) in str(info.value)


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Cannot read"):
        load_config(tmp_path / "absent.json", course_space())


def test_load_config_json_must_be_an_object(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text("[1, 2, 3]")
    with pytest.raises(ConfigError, match="JSON object"):
        load_config(path, course_space())


def test_validate_names_the_bad_key() -> None:
    with pytest.raises(ConfigError, match="'batch_size'"):
        validate(course_space(), dict(DEFAULT_NETWORK, batch_size=1))
    with pytest.raises(ConfigError, match="'colour'"):
        validate(course_space(), dict(DEFAULT_NETWORK, colour="red"))
