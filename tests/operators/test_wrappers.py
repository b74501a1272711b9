"""Mutation wrappers: the probability wrapper's rate, chains, filters, shielded keys that never
change, and children that always fit the parameter limit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache

import numpy as np
import pytest
from ConfigSpace import ConfigurationSpace

from evoband.core._errors import ConfigError
from evoband.operators._base import Variation
from evoband.operators._crossovers import StageSwapCrossover, TrainingCrossover, UniformCrossover
from evoband.operators._mutations import (
    AddLayer,
    LocalMutation,
    RemoveLayer,
    ToggleMutation,
    UniformMutation,
    WidthMutation,
)
from evoband.operators._repair import ParamBudget
from evoband.operators._wrappers import (
    ChainMutation,
    FilterMutation,
    Shield,
    WithinBudget,
    WithProbability,
)
from evoband.space._genotype import default_config, sample, validate
from evoband.space._spaces import Config, course_space, extended_space
from helpers import tiny_count

SPACES: dict[str, Callable[[], ConfigurationSpace]] = {
    "course": course_space,
    "extended": extended_space,
}


@cache
def space_of(name: str) -> ConfigurationSpace:
    return SPACES[name]()


@cache
def pool(name: str, size: int = 30) -> tuple[Config, ...]:
    space = space_of(name)
    rng = np.random.default_rng(77)
    return (default_config(space), *(sample(space, rng) for _ in range(size)))


def draw(name: str, rng: np.random.Generator, n: int = 1) -> list[Config]:
    parents = pool(name)
    return [dict(parents[int(i)]) for i in rng.integers(len(parents), size=n)]


class Fixed(Variation):
    """Always the same child (a helper operator, not under test)."""

    def __init__(self, child: Config) -> None:
        self.child = child

    def __call__(self, parents: Sequence[Config], rng: np.random.Generator) -> Config:
        return dict(self.child)


@pytest.mark.parametrize("p", [0.0, 0.3, 0.8, 1.0])
def test_with_probability_applies_at_its_rate(p: float) -> None:
    space = space_of("course")
    op = WithProbability(ToggleMutation(space, "use_BN"), p)  # the toggle always changes
    rng = np.random.default_rng(11)
    parent = default_config(space)
    n = 3000
    applied = sum(op([parent], rng) != parent for _ in range(n))
    # binomial standard deviation <= 0.0092 at n = 3000: 4 of them
    assert abs(applied / n - p) <= 0.037, applied / n
    if p in (0.0, 1.0):
        assert applied == p * n


def test_with_probability_keeps_the_parent_unchanged_and_is_seeded() -> None:
    space = space_of("extended")
    op = WithProbability(UniformMutation(space, k=2), 0.5)
    for seed in range(40):
        parent = draw("extended", np.random.default_rng(seed))[0]
        frozen = dict(parent)
        first = op([parent], np.random.default_rng(seed))
        assert parent == frozen  # never modified in place
        assert op([parent], np.random.default_rng(seed)) == first
        validate(space, first)


def test_chain_applies_every_operator_in_turn() -> None:
    space = space_of("extended")
    op = ChainMutation(ToggleMutation(space, "use_BN"), ToggleMutation(space, "aug_flip"))
    rng = np.random.default_rng(0)
    for _ in range(50):
        (parent,) = draw("extended", rng)
        child = op([parent], rng)
        assert child["use_BN"] != parent["use_BN"] and child["aug_flip"] != parent["aug_flip"]
        assert {k for k in child if child[k] != parent[k]} == {"use_BN", "aug_flip"}


def test_chain_passes_the_other_parents_to_a_crossover() -> None:
    space = space_of("course")
    op = ChainMutation(TrainingCrossover(space), AddLayer(space))
    assert op.n_parents == 2
    rng = np.random.default_rng(1)
    for _ in range(50):
        a, b = draw("course", rng, 2)
        child = op([a, b], rng)
        validate(space, child)
        assert child["optimizer"] == b["optimizer"]
        assert child["n_conv_layers"] == min(a["n_conv_layers"] + 1, 3)


def test_filter_applies_only_where_the_predicate_holds() -> None:
    space = space_of("course")
    op = FilterMutation(ToggleMutation(space, "optimizer"), lambda c: c["use_BN"])
    rng = np.random.default_rng(2)
    counts = {True: 0, False: 0}
    for _ in range(200):
        (parent,) = draw("course", rng)
        child = op([parent], rng)
        assert (child != parent) == parent["use_BN"]
        counts[parent["use_BN"]] += 1
    assert min(counts.values()) > 20  # both branches were exercised


@pytest.mark.parametrize("name", sorted(SPACES))
def test_shielded_keys_never_change(name: str) -> None:
    space = space_of(name)
    shielded = ["optimizer", "learning_rate_init", "n_conv_layers", "n_channels_conv_0"]
    op = Shield(UniformMutation(space, k=4), shielded)
    rng = np.random.default_rng(3)
    changed = 0
    for _ in range(200):
        (parent,) = draw(name, rng)
        child = op([parent], rng)
        validate(space, child)
        for key in shielded:
            assert child[key] == parent[key]
        changed += child != parent
    assert changed > 150  # the other keys still change


def test_shield_keeps_an_inactive_key_inactive() -> None:
    space = space_of("extended")
    parent = default_config(space)  # no hidden fc layer: n_channels_fc_0 inactive
    op = Shield(AddLayer(space, "n_fc_layers", "n_channels_fc_"), ["n_channels_fc_0"])
    with pytest.raises(ConfigError, match="n_channels_fc_0") as info:
        op([parent], np.random.default_rng(0))
    assert "\n" not in str(info.value)


def test_shield_says_which_key_it_cannot_keep() -> None:
    space = space_of("course")
    parent = default_config(space)  # three conv layers
    op = Shield(RemoveLayer(space), ["n_channels_conv_2"], tries=3)
    with pytest.raises(ConfigError, match="cannot keep 'n_channels_conv_2'"):
        op([parent], np.random.default_rng(0))
    # shielding the count too keeps the layer: the child is the parent
    assert (
        Shield(RemoveLayer(space), ["n_conv_layers", "n_channels_conv_2"])(
            [parent], np.random.default_rng(0)
        )["n_channels_conv_2"]
        == parent["n_channels_conv_2"]
    )


LIMIT = 50_000
GROWING: dict[str, Callable[[ConfigurationSpace], Variation]] = {
    "add_layer": AddLayer,
    "add_fc": lambda s: AddLayer(s, "n_fc_layers", "n_channels_fc_"),
    "width": lambda s: WidthMutation(s, rel_step=0.9),
    "uniform": lambda s: UniformMutation(s, k=3),
    "local": LocalMutation,
    "chain": lambda s: ChainMutation(AddLayer(s), WidthMutation(s, rel_step=0.9)),
    "uniform_crossover": UniformCrossover,
    "stage_swap": StageSwapCrossover,
}


@cache
def fitting_pool(name: str, size: int = 30) -> tuple[Config, ...]:
    space = space_of(name)
    budget = ParamBudget(space, tiny_count, LIMIT)
    rng = np.random.default_rng(5)
    found: list[Config] = []
    while len(found) < size:
        config = budget.repair(sample(space, rng), rng)
        if config is not None:
            found.append(config)
    return tuple(found)


@pytest.mark.parametrize("op_name", sorted(GROWING))
@pytest.mark.parametrize("name", sorted(SPACES))
def test_within_budget_children_always_fit(name: str, op_name: str) -> None:
    space = space_of(name)
    inner = GROWING[op_name](space)
    op = WithinBudget(inner, ParamBudget(space, tiny_count, LIMIT))
    parents = fitting_pool(name)
    rng = np.random.default_rng(8)
    over = 0
    for _ in range(100):
        chosen = [parents[int(i)] for i in rng.integers(len(parents), size=2)]
        over += tiny_count(inner(chosen, np.random.default_rng(int(rng.integers(1 << 30))))) > LIMIT
        child = op(chosen, rng)
        validate(space, child)
        assert tiny_count(child) <= LIMIT
    if op_name in ("width", "uniform", "add_layer"):
        assert over > 0  # the unwrapped operator does leave the limit: the wrapper is doing work


def test_within_budget_falls_back_to_a_fitting_parent_or_says_why() -> None:
    space = space_of("course")
    small = fitting_pool("course")[0]
    huge = {**default_config(space), "n_channels_conv_0": 1024, "n_channels_conv_1": 1024}
    assert tiny_count(huge) > LIMIT
    budget = ParamBudget(space, tiny_count, LIMIT, max_tries=0)  # no repair at all
    op = WithinBudget(Fixed(huge), budget, tries=2)
    assert op([small], np.random.default_rng(0)) == small
    with pytest.raises(ConfigError, match="no parent does"):
        op([huge], np.random.default_rng(0))


@pytest.mark.parametrize(
    "make",
    [
        lambda s: WithProbability(ToggleMutation(s, "use_BN"), -0.1),
        lambda s: WithProbability(ToggleMutation(s, "use_BN"), 1.5),
        lambda s: WithProbability(ToggleMutation(s, "use_BN"), float("nan")),
        lambda s: WithProbability(ToggleMutation(s, "use_BN"), True),
        lambda s: WithProbability(lambda parents, rng: parents[0], 0.5),
        lambda s: ChainMutation(),
        lambda s: FilterMutation(AddLayer(s), "n_conv_layers"),
        lambda s: Shield(AddLayer(s), []),
        lambda s: Shield(AddLayer(s), ["no_such_key"]),
        lambda s: Shield(AddLayer(s), ["optimizer"], tries=0),
        lambda s: Shield(Fixed({}), ["optimizer"]),  # no space to repair in
        lambda s: WithinBudget(AddLayer(s), LIMIT),
    ],
)
def test_bad_arguments_are_config_errors(make: Callable[[ConfigurationSpace], object]) -> None:
    with pytest.raises(ConfigError) as info:
        make(space_of("course"))
    assert "\n" not in str(info.value)
