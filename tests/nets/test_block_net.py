"""Tests of building networks from composed search spaces (evoband.nets._composed, block_plan)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from ConfigSpace import ConfigurationSpace

from block_examples import CONV_REPEAT, EXAMPLES, narrow
from evoband.core._errors import ConfigError
from evoband.nets._composed import build_network, count_parameters
from evoband.nets._plan import (
    ResidualStep,
    ShapeError,
    is_valid,
    output_shape,
    plan_network,
    projection_stride,
    sample_config,
)
from evoband.nets._towers import tower_mean
from evoband.space._builders import compile_space
from evoband.space._genotype import complete, sample
from evoband.space._layers import (
    Chain,
    Choice,
    Conv,
    Dense,
    Fork,
    GlobalPool,
    Pool,
    Repeat,
    Residual,
    Space,
)
from evoband.space._params import IntRange, OneOf
from evoband.space._shipped import course_blocks, extended_blocks

N_SAMPLES = 200
N_CLASSES = 5
SHAPES = [(3, 16, 16), (1, 8, 8)]


def example(name: str) -> tuple[Space, ConfigurationSpace, bool]:
    """The space, its compiled space and whether widths are narrowed for speed (shipped ones)."""
    if name in EXAMPLES:
        return EXAMPLES[name], compile_space(EXAMPLES[name], name=name), False
    definition = {"course": course_blocks, "extended": extended_blocks}[name]()
    return definition.network, definition.compile(), True


@pytest.mark.parametrize("name", [*sorted(EXAMPLES), "course", "extended"])
def test_random_configurations_build_train_and_count(name: str) -> None:
    space, compiled, narrowed = example(name)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    built = dict.fromkeys(SHAPES, 0)
    for _ in range(N_SAMPLES):
        config = sample(compiled, rng)
        if narrowed:
            config = narrow(compiled, config)
        for shape in SHAPES:
            if not is_valid(space, config, shape):
                with pytest.raises(ShapeError):
                    build_network(space, config, shape, N_CLASSES)
                continue
            built[shape] += 1
            model = build_network(space, config, shape, N_CLASSES)
            out = tower_mean(model(torch.randn(4, *shape)))  # the towers' mean, if any
            assert out.shape == (4, N_CLASSES)
            assert torch.isfinite(out).all()
            torch.nn.functional.cross_entropy(out, torch.arange(4) % N_CLASSES).backward()
            missing = [n for n, p in model.named_parameters() if p.grad is None]
            assert not missing, f"{config}: no gradient for {missing}"
            real = sum(p.numel() for p in model.parameters())
            assert count_parameters(space, config, shape, N_CLASSES) == real
    assert all(n >= N_SAMPLES // 10 for n in built.values()), built


def test_dense_only_on_feature_input() -> None:
    space, compiled, _ = example("dense")
    config = sample(compiled, np.random.default_rng(1))
    model = build_network(space, config, (12,), 3)
    assert model(torch.randn(2, 12)).shape == (2, 3)
    with pytest.raises(ShapeError, match="needs an image input"):
        build_network(Chain(Dense(4, "relu"), Conv(4, 3, "relu")), {}, (3, 8, 8), 3)


def test_sampling_returns_only_configurations_that_fit() -> None:
    compiled = compile_space(CONV_REPEAT)
    rng = np.random.default_rng(0)
    configs = [sample_config(CONV_REPEAT, compiled, (1, 4, 4), rng) for _ in range(50)]
    assert all(is_valid(CONV_REPEAT, config, (1, 4, 4)) for config in configs)
    assert len({config["b0_count"] for config in configs}) == 2  # 1 or 2 stages fit 4x4
    # without the filter, most draws do not fit
    unfiltered = [sample(compiled, rng) for _ in range(50)]
    assert sum(is_valid(CONV_REPEAT, c, (1, 4, 4)) for c in unfiltered) < 40
    again = [sample_config(CONV_REPEAT, compiled, (1, 4, 4), np.random.default_rng(0))]
    assert again[0] == configs[0]


def test_sampling_gives_up_with_a_clear_error() -> None:
    space = Chain(Pool(), Pool(), Pool())
    with pytest.raises(ShapeError, match=r"None of 7 configurations .* fits the input \(1, 4, 4\)"):
        sample_config(
            space, compile_space(space, name="pools"), (1, 4, 4), np.random.default_rng(0), 7
        )


def test_too_many_pools_are_invalid() -> None:
    config = {"b0_count": 4, "b1_pool": "max"}
    space = Chain(Repeat(Pool("max"), 1, 4), Pool())
    assert is_valid(space, {"b0_count": 3, "b1_pool": "max"}, (1, 16, 16))
    assert not is_valid(space, config, (1, 16, 16))
    with pytest.raises(ShapeError, match="pools a 1x1 image below 1x1"):
        build_network(space, config, (1, 16, 16), 2)


def test_strides_shrink_like_ceil_division() -> None:
    space = Chain(Conv(4, 3, "relu", stride=2), Conv(4, 5, "relu", stride=3))
    assert output_shape(space, {}, (1, 11, 7)) == (4, 2, 2)  # 11 -> 6 -> 2, 7 -> 4 -> 2
    model = build_network(space, {}, (1, 11, 7), 2)
    assert model(torch.randn(1, 1, 11, 7)).shape == (1, 2)


@pytest.mark.parametrize(
    ("n_in", "n_out", "stride"),
    [(8, 4, 2), (7, 3, 3), (16, 2, 8), (5, 5, 1), (4, 1, 4), (9, 4, None)],
)
def test_projection_stride(n_in: int, n_out: int, stride: int | None) -> None:
    assert projection_stride(n_in, n_out) == stride


def test_residual_projects_when_the_shape_changes() -> None:
    space = Chain(Residual(Conv(6, 3, "relu", stride=2)), Residual(Pool("avg")))
    plan = plan_network(space, {}, (3, 9, 9))
    first, second = plan.steps  # type: ignore[union-attr]
    assert isinstance(first, ResidualStep) and isinstance(second, ResidualStep)
    assert (first.projection, first.stride, first.out_shape) == ("b0_proj", (2, 2), (6, 5, 5))
    assert (second.projection, second.stride, second.out_shape) == ("b1_proj", (3, 3), (6, 2, 2))
    model = build_network(space, {}, (3, 9, 9), 2)
    assert model.layers["b0_proj"].weight.shape == (6, 3, 1, 1)
    assert model(torch.randn(2, 3, 9, 9)).shape == (2, 2)
    with pytest.raises(ShapeError, match="no strided 1x1 conv maps 9x9 onto 4x4"):
        build_network(Residual(Pool()), {"res_pool": "max"}, (3, 9, 9), 2)
    with pytest.raises(ShapeError, match="keep images images"):
        build_network(Residual(GlobalPool("avg")), {}, (3, 8, 8), 2)


def test_residual_without_projection_adds_the_input() -> None:
    space = Residual(Conv(3, 3, "identity"))
    model = build_network(space, {}, (3, 6, 6), 2)
    assert set(model.layers) == {"res"}
    features: list[torch.Tensor] = []
    model.head.register_forward_hook(lambda _m, inputs, _o: features.append(inputs[0]))
    x = torch.randn(2, 3, 6, 6)
    model(x)
    torch.testing.assert_close(features[0], (x + model.layers["res"](x)).flatten(1))


def test_residual_on_features_uses_a_linear_projection() -> None:
    model = build_network(Residual(Dense(8, "relu")), {}, (5,), 2)
    assert model.layers["proj"].weight.shape == (8, 5) and model.layers["proj"].bias is None
    assert model(torch.randn(3, 5)).shape == (3, 2)


def test_fork_concatenates_its_paths() -> None:
    space = Fork(Conv(IntRange(2, 6), 3, "relu"), 2, 3)
    config = {"paths": 3, "p0_channels": 2, "p1_channels": 5, "p2_channels": 6}
    assert output_shape(space, config, (1, 8, 8)) == (13, 8, 8)
    model = build_network(space, config, (1, 8, 8), 2)
    assert set(model.layers) == {"p0", "p1", "p2"}
    uneven = Fork(Conv(4, 3, "relu", stride=OneOf([1, 2])), 2, 2)
    assert not is_valid(uneven, {"p0_stride": 1, "p1_stride": 2}, (1, 8, 8))
    with pytest.raises(ShapeError, match="paths end at different shapes"):
        plan_network(uneven, {"p0_stride": 1, "p1_stride": 2}, (1, 8, 8))


def test_module_names_follow_the_keys_and_match_between_configurations() -> None:
    compiled = compile_space(CONV_REPEAT)
    rng = np.random.default_rng(3)
    small = dict(sample(compiled, rng), b0_count=1, b2_count=0)
    small = complete(compiled, small, rng)
    large = complete(compiled, dict(small, b0_count=3, b2_count=2), rng)
    # a large input fits any number of pools and strides: only the names are compared here
    small_net = build_network(CONV_REPEAT, small, (3, 512, 512), 4)
    large_net = build_network(CONV_REPEAT, large, (3, 512, 512), 4)
    for name, module in large_net.layers.items():
        if hasattr(module, "conv"):
            assert f"{name}_channels" in large
        if hasattr(module, "linear"):
            assert f"{name}_units" in large
    small_state, large_state = small_net.state_dict(), large_net.state_dict()
    shared = [k for k in small_state if k != "head.weight"]
    assert "layers.b0_r0_b0_r0.conv.weight" in shared and set(shared) <= set(large_state)
    assert all(small_state[k].shape == large_state[k].shape for k in shared)
    result = large_net.load_state_dict({k: small_state[k] for k in shared}, strict=False)
    assert not result.unexpected_keys
    assert "layers.b0_r1_b0_r0.conv.weight" in result.missing_keys


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"b0_count": 1}, "lacks 'b0_r0_b0_count'"),
        ({"b0_count": 9}, r"b0_count=9 is not allowed: it must be an int in \[1, 4\]"),
    ],
)
def test_incomplete_or_wrong_configurations_are_config_errors(
    config: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        is_valid(CONV_REPEAT, config, (3, 16, 16))
    assert not isinstance(info.value, ShapeError)


def test_wrong_values_are_config_errors() -> None:
    space = Choice(Conv(IntRange(2, 4), 3, "relu"), Pool())
    with pytest.raises(ConfigError, match="c0_channels=0 is not allowed: it must be a positive"):
        build_network(space, {"choice": 0, "c0_channels": 0}, (1, 4, 4), 2)
    with pytest.raises(ConfigError, match="choice=7 is none of the labels"):
        build_network(space, {"choice": 7}, (1, 4, 4), 2)


@pytest.mark.parametrize(
    ("shape", "n_classes", "match"),
    [((3, 8), 2, "`input_shape`"), ((3, 0, 8), 2, "`input_shape`"), ((3, 8, 8), 0, "`n_classes`")],
)
def test_bad_shapes_and_class_counts(shape: Any, n_classes: int, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_network(Conv(4, 3, "relu"), {}, shape, n_classes)


def test_meta_count_allocates_nothing_for_wide_networks() -> None:
    space = Repeat(Conv(4096, 7, "relu"), 4, 4)
    n = count_parameters(space, {}, (3, 32, 32), 10)
    expected = 4096 * 3 * 49 + 4096 + 3 * (4096 * 4096 * 49 + 4096) + 4096 * 32 * 32 * 10 + 10
    assert n == expected  # about 2.5e9 parameters: 10 GB if it were allocated
