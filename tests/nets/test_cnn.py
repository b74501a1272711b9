"""Tests of evoband.nets._cnn: the network family, its module names and its parameter count."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import torch

from evoband.core._errors import ConfigError
from evoband.nets._cnn import (
    ACTIVATIONS,
    COURSE_FAMILY,
    build_model,
    conv_widths,
    count_params,
    fc_widths,
)
from evoband.space._genotype import sample
from evoband.space._shipped import DEFAULT_NETWORK
from evoband.space._spaces import course_space, extended_space
from helpers import SMALL_CONFIG, analytic_param_count

TINY: dict[str, Any] = dict(SMALL_CONFIG, batch_size=32)


def analytic_params(
    config: Mapping[str, Any], input_shape: tuple[int, int, int], n_classes: int
) -> int:
    """The parameter count worked out by hand from the module docstring's layout."""
    return analytic_param_count(config, input_shape, n_classes)


def real_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_default_network_parameter_count() -> None:
    assert count_params(DEFAULT_NETWORK, (3, 16, 16), 17) == 6_360_741
    assert analytic_params(DEFAULT_NETWORK, (3, 16, 16), 17) == 6_360_741


@pytest.mark.parametrize(("space_fn", "n_configs"), [(course_space, 50), (extended_space, 20)])
def test_meta_count_equals_real_count(space_fn, n_configs: int, seed: int) -> None:
    space = space_fn()
    rng = np.random.default_rng(seed)
    for _ in range(n_configs):
        config = sample(space, rng)
        meta = count_params(config, (3, 16, 16), 17)
        assert meta == real_params(build_model(config, (3, 16, 16), 17)), config
        assert meta == analytic_params(config, (3, 16, 16), 17), config


def test_count_params_allocates_no_real_tensors() -> None:
    # A network far too big to allocate is still counted (on the meta device).
    huge = dict(
        TINY,
        n_conv_layers=3,
        n_channels_conv_0=100_000,
        n_channels_conv_1=100_000,
        n_channels_conv_2=16,
        kernel_size=7,
    )
    assert count_params(huge, (3, 16, 16), 10) == analytic_params(huge, (3, 16, 16), 10)


SMOKE_CONFIGS = {
    "one_layer": TINY,
    "bn_flatten_three_layers": dict(
        TINY,
        use_BN=True,
        global_avg_pooling=False,
        n_conv_layers=3,
        n_channels_conv_1=16,
        n_channels_conv_2=16,
        n_fc_layers=3,
        n_channels_fc_1=8,
        n_channels_fc_2=4,
    ),
    "bn_gap_two_layers_k5": dict(
        TINY,
        use_BN=True,
        kernel_size=5,
        n_conv_layers=2,
        n_channels_conv_1=16,
        n_fc_layers=2,
        n_channels_fc_1=8,
    ),
    "flatten_one_layer_k7": dict(TINY, global_avg_pooling=False, kernel_size=7),
    **{
        f"activation_{name}": dict(TINY, activation=name, n_conv_layers=2, n_channels_conv_1=16)
        for name in sorted(extended_space()["activation"].choices)
    },
}


@pytest.mark.parametrize("input_shape", [(3, 8, 8), (1, 8, 12)])
@pytest.mark.parametrize("name", sorted(SMOKE_CONFIGS))
def test_forward_backward_smoke(name: str, input_shape: tuple[int, int, int], seed: int) -> None:
    config = SMOKE_CONFIGS[name]
    torch.manual_seed(seed)
    model = build_model(config, input_shape, 5)
    x = torch.randn(6, *input_shape, generator=torch.Generator().manual_seed(seed))
    y = torch.arange(6) % 5

    model.train()
    logits = model(x)
    assert logits.shape == (6, 5)
    assert torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, y).backward()

    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{param_name} got no gradient"
        assert torch.isfinite(param.grad).all(), param_name
    assert any(bool(p.grad.abs().sum() > 0) for p in model.parameters())
    assert real_params(model) == count_params(config, input_shape, 5)
    assert real_params(model) == analytic_params(config, input_shape, 5)

    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == (6, 5) and torch.isfinite(out).all()


def test_every_extended_activation_is_built() -> None:
    for name in extended_space()["activation"].choices:
        model = build_model(dict(TINY, activation=name), (3, 8, 8), 3)
        assert isinstance(model.conv[0].act, ACTIVATIONS[name])
        assert isinstance(model.fc[0].act, ACTIVATIONS[name])


def test_module_names_are_stable() -> None:
    config = dict(
        TINY, use_BN=True, n_conv_layers=2, n_channels_conv_1=16, n_fc_layers=2, n_channels_fc_1=8
    )
    model = build_model(config, (3, 8, 8), 4)

    assert [name for name, _ in model.named_parameters()] == [
        "conv.0.conv.weight",
        "conv.0.conv.bias",
        "conv.0.bn.weight",
        "conv.0.bn.bias",
        "conv.1.conv.weight",
        "conv.1.conv.bias",
        "conv.1.bn.weight",
        "conv.1.bn.bias",
        "fc.0.linear.weight",
        "fc.0.linear.bias",
        "fc.1.linear.weight",
        "fc.1.linear.bias",
        "head.weight",
        "head.bias",
    ]
    buffers = [name for name, _ in model.named_buffers()]
    assert "conv.0.bn.running_mean" in buffers and "conv.1.bn.running_var" in buffers


def test_names_match_between_configs_of_different_depth() -> None:
    shallow = build_model(dict(TINY), (3, 8, 8), 4).state_dict()
    deep = build_model(dict(TINY, n_conv_layers=2, n_channels_conv_1=16), (3, 8, 8), 4).state_dict()
    shared = set(shallow) & set(deep)
    assert {"conv.0.conv.weight", "fc.0.linear.weight", "head.weight"} <= shared
    assert shallow["conv.0.conv.weight"].shape == deep["conv.0.conv.weight"].shape


def test_three_conv_layers_fit_an_8x8_input() -> None:
    config = dict(
        TINY, n_conv_layers=3, n_channels_conv_1=16, n_channels_conv_2=16, global_avg_pooling=False
    )
    model = build_model(config, (3, 8, 8), 3)  # 8 -> 4 -> 2 -> 1
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 3)
    assert model.fc[0].linear.in_features == 16


@pytest.mark.parametrize("input_shape", [(3, 4, 4), (3, 8, 4), (1, 2, 16)])
def test_too_many_conv_layers_for_the_input_is_a_config_error(
    input_shape: tuple[int, int, int],
) -> None:
    config = dict(TINY, n_conv_layers=3, n_channels_conv_1=16, n_channels_conv_2=16)
    with pytest.raises(ConfigError, match="n_conv_layers"):
        build_model(config, input_shape, 3)
    with pytest.raises(ConfigError, match="n_conv_layers"):
        count_params(config, input_shape, 3)


def test_layer_widths_follow_the_config() -> None:
    assert conv_widths(DEFAULT_NETWORK) == [457, 511, 38]
    assert fc_widths(DEFAULT_NETWORK) == [27, 17]
    # An inactive key of a deeper layer is not used.
    assert fc_widths(dict(DEFAULT_NETWORK, n_channels_fc_2=273)) == [27, 17]
    model = build_model(DEFAULT_NETWORK, (3, 16, 16), 17)
    assert [block.conv.out_channels for block in model.conv] == [457, 511, 38]
    assert [block.conv.kernel_size for block in model.conv] == [(5, 5)] * 3
    assert [block.linear.out_features for block in model.fc] == [27, 17]
    assert model.head.out_features == 17


@pytest.mark.parametrize(
    "missing", ["n_channels_conv_0", "n_fc_layers", "kernel_size", "use_BN", "dropout_rate"]
)
def test_an_incomplete_genotype_is_refused_not_filled(missing: str) -> None:
    config = {k: v for k, v in TINY.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        build_model(config, (3, 16, 16), 17)
    with pytest.raises(ConfigError, match=missing):
        count_params(config, (3, 16, 16), 17)


def test_only_keys_outside_the_course_space_have_defaults() -> None:
    # a course genotype has no activation, convs_per_stage or tta_flip: those make the course network
    assert set(COURSE_FAMILY) == {"activation", "convs_per_stage", "tta_flip"}
    assert not set(COURSE_FAMILY) & set(DEFAULT_NETWORK)
    model = build_model(DEFAULT_NETWORK, (3, 16, 16), 17)
    assert isinstance(model.conv[0].act, torch.nn.ReLU) and len(model.conv[0].extra) == 0
    assert not model.tta_flip


def test_flip_test_time_averaging_changes_evaluation_only() -> None:
    config = {**TINY, "tta_flip": True}
    torch.manual_seed(0)
    model = build_model(config, (3, 16, 16), 17)
    torch.manual_seed(0)
    plain = build_model({**TINY, "tta_flip": False}, (3, 16, 16), 17)
    x = torch.randn(5, 3, 16, 16)
    model.train(), plain.train()
    torch.manual_seed(1)
    trained = model(x)
    torch.manual_seed(1)
    assert torch.equal(trained, plain(x))
    model.eval(), plain.eval()
    with torch.no_grad():
        expected = (plain(x) + plain(x.flip(3))) / 2
        torch.testing.assert_close(model(x), expected)
        torch.testing.assert_close(model(x.flip(3)), model(x))  # mirror images score the same


@pytest.mark.parametrize("space_fn", [course_space, extended_space], ids=["course", "extended"])
def test_two_hundred_random_configurations_build_train_and_count(space_fn) -> None:
    """Every sampled configuration (widths at their lower bounds, for speed) builds on 3x16x16
    and 1x8x8, gives finite logits of the right shape (per tower, in training mode), gets a gradient in every parameter, and
    counts exactly on the meta device."""
    space = space_fn()
    rng = np.random.default_rng(0)
    for i in range(200):
        config = {
            key: space[key].lower if key.startswith("n_channels_") else value
            for key, value in sample(space, rng).items()
        }
        for shape in [(3, 16, 16), (1, 8, 8)]:
            torch.manual_seed(i)
            model = build_model(config, shape, 7)
            x = torch.randn(4, *shape)
            logits = model(x)
            towers = config.get("towers", 1)  # in training mode, one set of logits per tower
            expected = (4, 7) if towers == 1 else (4, towers, 7)
            assert logits.shape == expected and torch.isfinite(logits).all(), config
            logits.square().mean().backward()
            assert all(p.grad is not None for p in model.parameters()), config
            assert real_params(model) == count_params(config, shape, 7)
