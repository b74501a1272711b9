"""Whole Repeat items shifted by the layer operators: ``repeat_items`` gives every key of each
item by role, and AddLayer, RemoveLayer and StageSwapCrossover with ``items=`` move the width,
kernel and activation (and nested counts and choices) of an item together."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pytest
from ConfigSpace import Configuration, ConfigurationSpace

from evoband.core._errors import ConfigError
from evoband.operators._crossovers import StageSwapCrossover
from evoband.operators._layer_items import layer_values
from evoband.operators._mutations import AddLayer, RemoveLayer
from evoband.space._genotype import Config, complete, sample, validate
from evoband.space._keys import repeat_items
from evoband.space._layers import BatchNorm, Chain, Choice, Conv, GlobalPool, Pool, Repeat
from evoband.space._params import FloatRange, Indexed, IntRange, OneOf
from evoband.space._shipped import SpaceDefinition, course_blocks
from evoband.space._spaces import course_space

SEEDS = range(8)
SETTINGS = (FloatRange(1e-3, 1e-1, log=True, name="learning_rate_init"),)

# one to three stages: a conv (per-stage width ch_<i>, positional kernel and activation), then BN
STAGE = Chain(
    Conv(
        Indexed(lambda i: IntRange(8, 64, name=f"ch_{i}")), OneOf([3, 5]), OneOf(["relu", "gelu"])
    ),
    BatchNorm(),
)
FLAT = SpaceDefinition(
    "flat", Chain(Repeat(STAGE, 1, 3, name="depth"), GlobalPool("avg")), SETTINGS
)

# items with a nested count and a choice: one or two convs, then a pool or a batch norm
NESTED_STAGE = Chain(
    Repeat(Conv(IntRange(4, 16), OneOf([1, 3]), "relu"), 1, 2),
    Choice(Pool(), BatchNorm()),
)
NESTED = SpaceDefinition(
    "nested", Chain(Repeat(NESTED_STAGE, 1, 3, name="stages"), GlobalPool("avg")), SETTINGS
)

Items = Sequence[Mapping[str, str]]


def parent(cs: ConfigurationSpace, count_key: str, n: int, rng: np.random.Generator) -> Config:
    """A configuration drawn from the priors with ``n`` items."""
    return complete(cs, {**sample(cs, rng), count_key: n}, rng)


def check_valid(cs: ConfigurationSpace, config: Config) -> None:
    validate(cs, config)
    Configuration(cs, values=config).check_valid_configuration()


def whole_layers(config: Config, count_key: str, items: Items) -> list[dict[str, object]]:
    """The items of ``config``, each with every role its structure makes active."""
    return layer_values(config, count_key, items)


def test_repeat_items_gives_every_key_of_each_item_by_role() -> None:
    items = repeat_items(FLAT.network, "depth")
    assert items == repeat_items(FLAT, "depth")  # a SpaceDefinition works too
    assert items == [
        {"0": f"ch_{i}", "1": f"b0_r{i}_b0_kernel", "2": f"b0_r{i}_b0_act"} for i in range(3)
    ]
    nested = repeat_items(NESTED, "stages")
    assert len(nested) == 3 and all(item.keys() == nested[0].keys() for item in nested)
    assert nested[1] == {
        "0": "b0_r1_b0_count",
        "1": "b0_r1_b0_r0_channels",
        "2": "b0_r1_b0_r0_kernel",
        "3": "b0_r1_b0_r1_channels",
        "4": "b0_r1_b0_r1_kernel",
        "5": "b0_r1_b1_choice",
        "6": "b0_r1_b1_c0_pool",
    }
    cs = NESTED.compile()
    assert all(key in cs for item in nested for key in item.values())


def test_keys_shared_between_items_are_left_out() -> None:
    conv = Conv(Indexed(lambda i: IntRange(8, 64, name=f"w_{i}")), OneOf([3, 5], name="k"), "relu")
    assert repeat_items(Repeat(conv, 1, 2, name="n"), "n") == [{"0": "w_0"}, {"0": "w_1"}]


def test_an_unknown_count_key_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError, match="'nope'") as info:
        repeat_items(FLAT.network, "nope")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "items",
    [
        repeat_items(FLAT, "depth")[:2],  # depth goes up to 3
        [*repeat_items(FLAT, "depth")[:2], {"0": "no_such_key"}],
    ],
)
def test_bad_items_are_one_line_config_errors(items: Items) -> None:
    cs = FLAT.compile()
    for make in (AddLayer, RemoveLayer, StageSwapCrossover):
        with pytest.raises(ConfigError) as info:
            make(cs, "depth", items=items)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("space, count_key", [(FLAT, "depth"), (NESTED, "stages")])
def test_add_layer_shifts_whole_items(space: SpaceDefinition, count_key: str) -> None:
    cs, items = space.compile(), repeat_items(space, count_key)
    op = AddLayer(cs, count_key, items=items)
    positions = set()
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        before = parent(cs, count_key, 2, rng)
        child = op([before], rng)
        check_valid(cs, child)
        old, new = whole_layers(before, count_key, items), whole_layers(child, count_key, items)
        assert child[count_key] == 3 and len(new) == 3
        # where the new item is: the others are the parent's, and it copies its neighbour
        inserted = [i for i in range(3) if new[:i] + new[i + 1 :] == old]
        pos = next(i for i in inserted if new[i] == old[max(i - 1, 0)])
        positions.add(pos)
        for k in range(pos, 2):  # the items after it: the parent's whole items, one further on
            assert all(
                child[items[k + 1][r]] == before[key]
                for r, key in items[k].items()
                if key in before
            )
        if space is FLAT:  # width, kernel and activation each moved
            assert all(len(layer) == 3 for layer in new)
        assert child["learning_rate_init"] == before["learning_rate_init"]
    assert len(positions) > 1


@pytest.mark.parametrize("space, count_key", [(FLAT, "depth"), (NESTED, "stages")])
def test_remove_layer_shifts_the_later_items_down(space: SpaceDefinition, count_key: str) -> None:
    cs, items = space.compile(), repeat_items(space, count_key)
    op = RemoveLayer(cs, count_key, items=items)
    removed = set()
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        before = parent(cs, count_key, 3, rng)
        child = op([before], rng)
        check_valid(cs, child)
        old, new = whole_layers(before, count_key, items), whole_layers(child, count_key, items)
        assert child[count_key] == 2
        gone = [i for i in range(3) if old[:i] + old[i + 1 :] == new]
        assert gone, (old, new)
        removed.add(gone[0])
        assert child["learning_rate_init"] == before["learning_rate_init"]
    assert len(removed) > 1
    at_lower = parent(cs, count_key, 1, np.random.default_rng(0))
    assert op([at_lower], np.random.default_rng(0)) == at_lower


@pytest.mark.parametrize("space, count_key", [(FLAT, "depth"), (NESTED, "stages")])
def test_stage_swap_keeps_whole_items_together(space: SpaceDefinition, count_key: str) -> None:
    cs, items = space.compile(), repeat_items(space, count_key)
    op = StageSwapCrossover(cs, count_key, items=items)
    took_from_b = False
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        a, b = parent(cs, count_key, 2, rng), parent(cs, count_key, 3, rng)
        child = op([a, b], rng)
        check_valid(cs, child)
        layers_a, layers_b = whole_layers(a, count_key, items), whole_layers(b, count_key, items)
        new = whole_layers(child, count_key, items)
        assert 1 <= len(new) <= 3
        assert all(layer in layers_a or layer in layers_b for layer in new)  # no mixed items
        took_from_b |= any(layer in layers_b for layer in new)
        assert child["learning_rate_init"] == a["learning_rate_init"]
    assert took_from_b


def test_items_of_a_shipped_space_give_the_prefix_operators_children() -> None:
    cs = course_space()
    items = repeat_items(course_blocks(), "n_conv_layers")
    assert items == [{"0": f"n_channels_conv_{i}"} for i in range(3)]
    for make in (AddLayer, RemoveLayer):
        by_prefix, by_items = make(cs), make(cs, "n_conv_layers", items=items)
        for seed in SEEDS:
            rng = np.random.default_rng(seed)
            config = sample(cs, rng)
            first = by_prefix([config], np.random.default_rng(seed))
            assert by_items([config], np.random.default_rng(seed)) == first
