"""Mutations as classes: valid children on both shipped spaces, the right keys changed (and only
those), layers shifted in order, no-ops at the bounds, determinism, and bad arguments."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache

import numpy as np
import pytest
from ConfigSpace import ConfigurationSpace

from evoband.core._errors import ConfigError
from evoband.operators._base import Variation
from evoband.operators._layer_items import layer_values, with_layers
from evoband.operators._mutations import (
    ActivationMutation,
    AddLayer,
    CountMutation,
    KernelMutation,
    LearningRateMutation,
    OptimizerMutation,
    RemoveLayer,
    ToggleMutation,
    WidthMutation,
)
from evoband.space._genotype import default_config, sample, validate
from evoband.space._spaces import Config, course_space, extended_space

SPACES: dict[str, Callable[[], ConfigurationSpace]] = {
    "course": course_space,
    "extended": extended_space,
}
DRAWS = 150
LAYER_KEYS = {
    "conv": ("n_conv_layers", "n_channels_conv_"),
    "fc": ("n_fc_layers", "n_channels_fc_"),
}


@cache
def space_of(name: str) -> ConfigurationSpace:
    return SPACES[name]()


@cache
def pool(name: str, size: int = 40) -> tuple[Config, ...]:
    """Parents: the default and draws from the priors, with every layer count present."""
    space = space_of(name)
    rng = np.random.default_rng(2024)
    configs = [default_config(space)] + [sample(space, rng) for _ in range(size)]
    return tuple(configs)


def children(op: Variation, name: str, seed: int = 0) -> list[tuple[Config, Config]]:
    """(parent, child) for DRAWS parents drawn from the pool."""
    rng = np.random.default_rng(seed)
    parents = pool(name)
    pairs = []
    for _ in range(DRAWS):
        parent = dict(parents[int(rng.integers(len(parents)))])
        child = op([parent], rng)
        validate(space_of(name), child)
        pairs.append((parent, child))
    return pairs


def changed(before: Config, after: Config) -> set[str]:
    missing = object()
    return {k for k in set(before) | set(after) if before.get(k, missing) != after.get(k, missing)}


def widths(config: Config, count_key: str, prefix: str) -> list[int]:
    return [layer[prefix] for layer in layer_values(config, count_key, [prefix])]


def make_ops(space: ConfigurationSpace) -> list[Variation]:
    ops: list[Variation] = [
        WidthMutation(space),
        AddLayer(space),
        RemoveLayer(space),
        AddLayer(space, "n_fc_layers", "n_channels_fc_"),
        RemoveLayer(space, "n_fc_layers", "n_channels_fc_"),
        ToggleMutation(space, "use_BN"),
        CountMutation(space, "n_conv_layers"),
        KernelMutation(space),
        OptimizerMutation(space),
        LearningRateMutation(space),
    ]
    if "activation" in space:
        ops += [ActivationMutation(space), CountMutation(space, "convs_per_stage")]
    return ops


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_child_is_valid_and_fixed_by_the_seed(name: str) -> None:
    for op in make_ops(space_of(name)):
        first = children(op, name, seed=5)  # children() validates each one
        again = children(op, name, seed=5)
        assert first == again, type(op).__name__
        assert any(p != c for p, c in first), f"{type(op).__name__} never changed a parent"


@pytest.mark.parametrize("name", sorted(SPACES))
def test_width_mutation_changes_one_width_within_the_step(name: str) -> None:
    space = space_of(name)
    for parent, child in children(WidthMutation(space, rel_step=0.25), name):
        keys = changed(parent, child)
        assert len(keys) == 1, keys  # a width can always change (the bounds are apart)
        (key,) = keys
        assert key.startswith("n_channels_")
        old, new = parent[key], child[key]
        assert space[key].lower <= new <= space[key].upper
        assert abs(new - old) <= max(1, 0.25 * old + 0.5), (old, new)


def test_width_mutation_explicit_keys_and_bounds() -> None:
    space = space_of("course")
    op = WidthMutation(space, keys=["n_channels_fc_0"], rel_step=0.5)
    for parent, child in children(op, "course"):
        assert changed(parent, child) == {"n_channels_fc_0"}
    at_bound = {**default_config(space), "n_channels_fc_0": 4}  # the lower bound: only up
    rng = np.random.default_rng(0)
    assert all(op([at_bound], rng)["n_channels_fc_0"] > 4 for _ in range(50))


@pytest.mark.parametrize("layers", sorted(LAYER_KEYS))
@pytest.mark.parametrize("name", sorted(SPACES))
def test_add_layer_inserts_a_copy_and_keeps_the_others_in_order(name: str, layers: str) -> None:
    count_key, prefix = LAYER_KEYS[layers]
    space = space_of(name)
    upper = space[count_key].upper
    positions = set()
    for parent, child in children(AddLayer(space, count_key, prefix), name):
        before, after = widths(parent, count_key, prefix), widths(child, count_key, prefix)
        if len(before) == upper:
            assert child == parent
            continue
        assert len(after) == len(before) + 1
        assert changed(parent, child) <= {count_key} | {f"{prefix}{i}" for i in range(upper)}
        # removing one layer of the child gives back the parent's layers, in order
        inserted = [i for i in range(len(after)) if after[:i] + after[i + 1 :] == before]
        assert inserted, (before, after)
        if before:  # the new layer copies a neighbour
            assert any(after[i] in before[max(i - 1, 0) : i + 1] for i in inserted)
            positions.update(inserted)
    if layers == "conv":
        assert positions >= {0, 1, 2}  # every position is drawn


@pytest.mark.parametrize("layers", sorted(LAYER_KEYS))
@pytest.mark.parametrize("name", sorted(SPACES))
def test_remove_layer_keeps_the_others_in_order(name: str, layers: str) -> None:
    count_key, prefix = LAYER_KEYS[layers]
    space = space_of(name)
    lower = space[count_key].lower
    removed_from_middle = False
    for parent, child in children(RemoveLayer(space, count_key, prefix), name):
        before, after = widths(parent, count_key, prefix), widths(child, count_key, prefix)
        if len(before) == lower:
            assert child == parent
            continue
        assert len(after) == len(before) - 1
        assert changed(parent, child) <= {count_key} | {f"{prefix}{i}" for i in range(3)}
        gone = [i for i in range(len(before)) if before[:i] + before[i + 1 :] == after]
        assert gone, (before, after)
        removed_from_middle |= 0 < min(gone) < len(before) - 1
    if layers == "conv":
        assert removed_from_middle


def test_layer_operators_at_their_bounds_return_the_parent() -> None:
    space = space_of("extended")
    rng = np.random.default_rng(3)
    one_conv = {**default_config(space), "n_conv_layers": 1}
    one_conv = with_layers(space, one_conv, "n_conv_layers", ["n_channels_conv_"], [{}], rng)
    no_fc = default_config(space)
    assert no_fc["n_fc_layers"] == 0
    full = AddLayer(space)([default_config(space)], rng)  # 3 layers already: no change
    assert full == default_config(space)
    assert RemoveLayer(space)([one_conv], rng) == one_conv
    assert RemoveLayer(space, "n_fc_layers", "n_channels_fc_")([no_fc], rng) == no_fc
    grown = AddLayer(space, "n_fc_layers", "n_channels_fc_")([no_fc], rng)
    assert grown["n_fc_layers"] == 1 and "n_channels_fc_0" in grown
    validate(space, grown)


def test_toggle_and_choice_mutations_change_only_their_key() -> None:
    space = space_of("extended")
    for op, key in [
        (ToggleMutation(space, "use_BN"), "use_BN"),
        (ToggleMutation(space, "lr_schedule"), "lr_schedule"),
        (OptimizerMutation(space), "optimizer"),
        (ActivationMutation(space), "activation"),
    ]:
        seen = set()
        for parent, child in children(op, "extended"):
            assert changed(parent, child) == {key}
            seen.add(child[key])
        assert seen == set(space[key].choices), key  # every other choice is reachable


@pytest.mark.parametrize("name", sorted(SPACES))
def test_kernel_mutation_steps_to_a_neighbouring_size(name: str) -> None:
    sizes = [3, 5, 7]
    for parent, child in children(KernelMutation(space_of(name)), name):
        assert changed(parent, child) == {"kernel_size"}
        assert abs(sizes.index(child["kernel_size"]) - sizes.index(parent["kernel_size"])) == 1


def test_count_mutation_moves_one_step_and_fills_what_it_activates() -> None:
    space = space_of("extended")
    activated = {"n_conv_layers": "n_channels_conv_", "n_fc_layers": "n_channels_fc_"}
    for key in ("convs_per_stage", "n_conv_layers", "n_fc_layers", "aug_shift"):
        for parent, child in children(CountMutation(space, key), "extended"):
            assert abs(child[key] - parent[key]) == 1
            others = changed(parent, child) - {key}
            if key in activated:  # only the last layer's key appears or disappears
                layer = max(parent[key], child[key]) - 1
                assert others == {f"{activated[key]}{layer}"}
            else:
                assert not others


@pytest.mark.parametrize("name", sorted(SPACES))
def test_learning_rate_mutation_is_a_log_scale_step(name: str) -> None:
    space = space_of(name)
    hp = space["learning_rate_init"]
    for parent, child in children(LearningRateMutation(space, step=0.5), name):
        assert changed(parent, child) == {"learning_rate_init"}
        old, new = parent["learning_rate_init"], child["learning_rate_init"]
        assert hp.lower <= new <= hp.upper
        decades = abs(math.log10(new / old))
        clipped = new in (hp.lower, hp.upper)
        assert decades <= 0.5 + 1e-9
        assert clipped or decades >= 0.125 - 1e-9


def test_mutations_leave_inactive_keys_alone() -> None:
    space = space_of("extended")
    no_fc = default_config(space)
    rng = np.random.default_rng(0)
    width_fc = WidthMutation(space, keys=["n_channels_fc_0", "n_channels_fc_1"])
    assert width_fc([no_fc], rng) == no_fc


@pytest.mark.parametrize(
    "make",
    [
        lambda s: WidthMutation(s, rel_step=0.0),
        lambda s: WidthMutation(s, rel_step=1.5),
        lambda s: WidthMutation(s, keys="no_such_prefix"),
        lambda s: WidthMutation(s, keys=["optimizer"]),
        lambda s: AddLayer(s, count_key="kernel_size"),
        lambda s: AddLayer(s, count_key="n_conv_layers", item_prefix="n_channels_nope_"),
        lambda s: RemoveLayer(s, count_key="missing"),
        lambda s: ToggleMutation(s, "batch_size"),
        lambda s: ToggleMutation(s, "not_a_key"),
        lambda s: ToggleMutation(s),
        lambda s: CountMutation(s, "optimizer"),
        lambda s: ActivationMutation(s),  # the course space has no activation
        lambda s: LearningRateMutation(s, step=0.0),
        lambda s: LearningRateMutation(s, step=float("nan")),
        lambda s: LearningRateMutation(s, key="batch_size"),
    ],
)
def test_bad_arguments_are_config_errors(make: Callable[[ConfigurationSpace], object]) -> None:
    with pytest.raises(ConfigError) as info:
        make(space_of("course"))
    assert "\n" not in str(info.value)


def test_toggle_of_a_constant_is_refused() -> None:
    with pytest.raises(ConfigError, match="one value"):
        ToggleMutation(space_of("extended"), "train_criterion")
