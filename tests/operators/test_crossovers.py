"""Crossovers as classes: a segment of layers from the other parent (every segment reachable, the
count valid, the rest from the first parent), and training keys apart from the structure."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import pytest
from ConfigSpace import ConfigurationSpace

from evoband.core._errors import ConfigError
from evoband.operators._crossovers import TRAINING_KEYS, StageSwapCrossover, TrainingCrossover
from evoband.operators._layer_items import layer_values
from evoband.space._genotype import default_config, sample, validate
from evoband.space._spaces import Config, course_space, extended_space

SPACES: dict[str, Callable[[], ConfigurationSpace]] = {
    "course": course_space,
    "extended": extended_space,
}
LAYER_KEYS = {
    "conv": ("n_conv_layers", "n_channels_conv_"),
    "fc": ("n_fc_layers", "n_channels_fc_"),
}


@cache
def space_of(name: str) -> ConfigurationSpace:
    return SPACES[name]()


@cache
def pool(name: str, size: int = 30) -> tuple[Config, ...]:
    space = space_of(name)
    rng = np.random.default_rng(99)
    return (default_config(space), *(sample(space, rng) for _ in range(size)))


def widths(config: Config, count_key: str, prefix: str) -> list[int]:
    return [layer[prefix] for layer in layer_values(config, count_key, [prefix])]


def segment_children(a: list[int], b: list[int]) -> set[tuple[int, ...]]:
    """Every ``a[:i] + b[j:k] + a[l:]`` with a non-empty segment of b (any, if b is empty)."""
    found = set()
    for i in range(len(a) + 1):
        for stop in range(i, len(a) + 1):
            for j in range(len(b) + 1):
                for k in range(j, len(b) + 1):
                    if (k > j or not b) and (k > j or stop > i):
                        found.add(tuple(a[:i] + b[j:k] + a[stop:]))
    return found


@pytest.mark.parametrize("layers", sorted(LAYER_KEYS))
@pytest.mark.parametrize("name", sorted(SPACES))
def test_stage_swap_takes_a_segment_of_the_other_parent(name: str, layers: str) -> None:
    count_key, prefix = LAYER_KEYS[layers]
    space = space_of(name)
    lower, upper = space[count_key].lower, space[count_key].upper
    op = StageSwapCrossover(space, count_key, prefix)
    parents = pool(name)
    rng = np.random.default_rng(4)
    for _ in range(150):
        a, b = (dict(parents[int(i)]) for i in rng.integers(len(parents), size=2))
        child = op([a, b], rng)
        validate(space, child)
        wa, wb, wc = (widths(c, count_key, prefix) for c in (a, b, child))
        assert lower <= len(wc) <= upper
        assert tuple(wc) in segment_children(wa, wb) | {tuple(wa)}
        if wa != wb:
            assert wc != wa  # differs from A whenever B has something else to give
        layer_keys = {count_key} | {f"{prefix}{i}" for i in range(3)}
        assert {k: v for k, v in child.items() if k not in layer_keys} == {
            k: v for k, v in a.items() if k not in layer_keys
        }


def test_stage_swap_reaches_every_valid_segment() -> None:
    space = space_of("course")
    a = {**default_config(space), "n_channels_conv_0": 16, "n_channels_conv_1": 17}
    a = {k: v for k, v in a.items() if k != "n_channels_conv_2"} | {"n_conv_layers": 2}
    b = {**default_config(space), "n_channels_conv_0": 100, "n_channels_conv_1": 200}
    b["n_channels_conv_2"] = 300
    validate(space, a)
    validate(space, b)
    wa, wb = widths(a, "n_conv_layers", "n_channels_conv_"), [100, 200, 300]
    expected = {c for c in segment_children(wa, wb) if 1 <= len(c) <= 3 and list(c) != wa}
    op = StageSwapCrossover(space)
    rng = np.random.default_rng(6)
    seen = {tuple(widths(op([a, b], rng), "n_conv_layers", "n_channels_conv_")) for _ in range(800)}
    assert seen == expected
    assert (16, 300) in seen and (100, 200, 300) in seen and (200, 17) in seen


def test_stage_swap_is_fixed_by_the_seed() -> None:
    space = space_of("extended")
    op = StageSwapCrossover(space)
    a, b = pool("extended")[1], pool("extended")[2]
    runs = [[op([a, b], np.random.default_rng(s)) for s in range(20)] for _ in range(2)]
    assert runs[0] == runs[1]
    assert len({tuple(sorted(c.items())) for c in runs[0]}) > 1


@pytest.mark.parametrize("name", sorted(SPACES))
def test_training_crossover_splits_structure_and_training(name: str) -> None:
    space = space_of(name)
    op = TrainingCrossover(space)
    training = [k for k in TRAINING_KEYS if k in space]
    assert set(op.keys) == set(training) and "optimizer" in training
    parents = pool(name)
    rng = np.random.default_rng(7)
    for _ in range(150):
        a, b = (dict(parents[int(i)]) for i in rng.integers(len(parents), size=2))
        child = op([a, b], rng)
        validate(space, child)
        for key in child:
            assert child[key] == (b[key] if key in training and key in b else a[key]), key
        assert set(child) == set(a)  # the structure, and so the active keys, of A


def test_training_crossover_with_chosen_keys() -> None:
    space = space_of("extended")
    op = TrainingCrossover(space, keys=["learning_rate_init", "not_in_this_space"])
    a, b = pool("extended")[3], pool("extended")[4]
    child = op([a, b], np.random.default_rng(0))
    assert child == {**a, "learning_rate_init": b["learning_rate_init"]}


@pytest.mark.parametrize(
    "make",
    [
        lambda s: TrainingCrossover(s, keys=["activation"]),  # not in the course space
        lambda s: TrainingCrossover(s, keys=[]),
        lambda s: StageSwapCrossover(s, "optimizer", "n_channels_conv_"),
        lambda s: StageSwapCrossover(s, "n_conv_layers", "n_channels_missing_"),
        lambda s: StageSwapCrossover(s, "n_conv_layers", []),
    ],
)
def test_bad_arguments_are_config_errors(make: Callable[[ConfigurationSpace], object]) -> None:
    with pytest.raises(ConfigError) as info:
        make(space_of("course"))
    assert "\n" not in str(info.value)
