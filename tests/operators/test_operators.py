"""Variation and selection operators: validity, the parameter budget, determinism, locality."""

from __future__ import annotations

from collections import Counter
from functools import cache

import numpy as np
import pytest
from ConfigSpace import ConfigurationSpace

from evoband.core._errors import ConfigError
from evoband.nets._cnn import count_params
from evoband.operators._base import Variation
from evoband.operators._crossovers import UniformCrossover
from evoband.operators._mutations import LocalMutation, UniformMutation, neighbour
from evoband.operators._repair import ParamBudget, smallest_config
from evoband.operators._sampling import RandomSampling
from evoband.operators._selection import NeutralSelection, TournamentSelection, plus_selection
from evoband.search._optimizer import EvolutionaryOptimizer
from evoband.search._settings import SearchSettings
from evoband.space._genotype import default_config, sample, validate
from evoband.space._spaces import get_space
from evoband.store._ledger import RunStore
from evoband.training._constraints import Constraints
from evoband.training._data import load_data
from evoband.training._target import Task
from helpers import TINY_CLASSES, TINY_SHAPE, analytic_param_count, tiny_count

SPACE = get_space("course")
OPERATORS = {
    "uniform_mutation": UniformMutation,
    "local_mutation": LocalMutation,
    "uniform_crossover": UniformCrossover,
    "random_sampling": RandomSampling,
}
DEPENDENTS = {
    "n_conv_layers": "n_channels_conv_",
    "n_fc_layers": "n_channels_fc_",
    "use_weight_decay": "weight_decay",
}


def make_operator(name: str, space: ConfigurationSpace = SPACE) -> Variation:
    return OPERATORS[name](space)


@cache
def parent_pool(limit: int, space_name: str = "course", size: int = 40) -> tuple[dict, ...]:
    """Valid genotypes within ``limit`` parameters, to draw parents from."""
    space = get_space(space_name)
    rng = np.random.default_rng(1234)
    budget = ParamBudget(space, tiny_count, limit)
    pool = []
    while len(pool) < size:
        config = budget.repair(sample(space, rng), rng)
        if config is not None:
            pool.append(config)
    return tuple(pool)


@cache
def sampled_pool(space_name: str, size: int = 60) -> tuple[dict, ...]:
    """Unrepaired draws from a space's priors (sampling is the slow part: draw once)."""
    space = get_space(space_name)
    rng = np.random.default_rng(4321)
    return tuple(sample(space, rng) for _ in range(size))


def draw_parents(pool: tuple[dict, ...], rng: np.random.Generator) -> list[dict]:
    return [dict(pool[int(i)]) for i in rng.integers(len(pool), size=2)]


def changed_keys(before: dict, after: dict) -> set[str]:
    missing = object()
    return {k for k in set(before) | set(after) if before.get(k, missing) != after.get(k, missing)}


def test_analytic_count_matches_meta_device_count() -> None:
    # the operator tests below use the formula (fast); check it against the real count first
    rng = np.random.default_rng(7)
    configs = [default_config(SPACE), smallest_config(SPACE, tiny_count)]
    configs += [sample(SPACE, rng) for _ in range(25)]
    configs += [{**c, "use_BN": True, "global_avg_pooling": False} for c in configs[:5]]
    for config in configs:
        assert analytic_param_count(config, TINY_SHAPE, TINY_CLASSES) == count_params(
            config, TINY_SHAPE, TINY_CLASSES
        )


@pytest.mark.parametrize("limit", [50_000, 20_000_000], ids=["5e4", "2e7"])
@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_children_valid_and_within_max_params(name: str, limit: int) -> None:
    operator = make_operator(name)
    budget = ParamBudget(SPACE, tiny_count, limit)
    pool = parent_pool(limit)
    rng = np.random.default_rng(99)
    draws, discarded = 1000, 0
    for _ in range(draws):
        child = operator(draw_parents(pool, rng), rng)
        validate(SPACE, child)  # the operator's own output is already a valid genotype
        repaired = budget.repair(child, rng)
        if repaired is None:
            discarded += 1
            continue
        validate(SPACE, repaired)
        assert tiny_count(repaired) <= limit
    assert budget.discarded == discarded
    if limit == 50_000:
        # most children of large random draws need repair; almost all of them can be repaired
        assert discarded <= 0.02 * draws, f"{discarded} of {draws} children discarded"
    else:
        assert discarded == 0


def test_repair_leaves_a_fitting_config_alone() -> None:
    rng = np.random.default_rng(0)
    config = default_config(SPACE)
    budget = ParamBudget(SPACE, tiny_count, tiny_count(config))
    state = rng.bit_generator.state
    assert budget.repair(config, rng) is config
    assert rng.bit_generator.state == state  # no randomness used
    assert budget.discarded == 0


def test_repair_shrinks_only_structure_keys() -> None:
    rng = np.random.default_rng(3)
    config = default_config(SPACE)  # 6.4M parameters on the tiny images
    repaired = ParamBudget(SPACE, tiny_count, 50_000).repair(config, rng)
    assert repaired is not None and tiny_count(repaired) <= 50_000
    untouched = {
        k
        for k in config
        if not k.startswith(("n_channels_", "n_conv_layers", "n_fc_layers", "kernel_size"))
    }
    assert {k: repaired[k] for k in untouched} == {k: config[k] for k in untouched}


def test_unrepairable_child_is_discarded_and_counted() -> None:
    rng = np.random.default_rng(0)
    budget = ParamBudget(SPACE, tiny_count, 10, max_tries=5)  # below the smallest network
    assert budget.repair(default_config(SPACE), rng) is None
    assert budget.repair(sample(SPACE, rng), rng) is None
    assert budget.discarded == 2


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_children_deterministic_for_a_seeded_generator(name: str) -> None:
    operator = make_operator(name)
    pool = parent_pool(20_000_000)

    def children(seed: int) -> list[dict]:
        rng = np.random.default_rng(seed)
        return [operator(draw_parents(pool, rng), rng) for _ in range(30)]

    assert children(5) == children(5)
    assert children(5) != children(6)


@pytest.mark.parametrize("space_name", ["course", "extended"])
def test_local_mutation_changes_one_key_or_a_structure_key_and_its_dependents(
    space_name: str,
) -> None:
    space = get_space(space_name)
    mutation = LocalMutation(space)
    rng = np.random.default_rng(11)
    pool = sampled_pool(space_name)
    for _ in range(500):
        parent = dict(pool[int(rng.integers(len(pool)))])
        child = mutation([parent], rng)
        validate(space, child)
        changed = changed_keys(parent, child)
        assert len(changed) <= 1 or any(
            key in changed and all(k == key or k.startswith(prefix) for k in changed)
            for key, prefix in DEPENDENTS.items()
        ), f"{sorted(changed)} changed at once"
        # keys present in both and not dependents of a changed structure key keep their value
        if len(changed) > 1:
            (head,) = [k for k in changed if k in DEPENDENTS]
            assert head in parent and head in child and parent[head] != child[head]


def test_local_mutation_never_returns_a_clone() -> None:
    mutation = LocalMutation(SPACE)
    rng = np.random.default_rng(11)
    clones = Counter()
    pool = sampled_pool("course")
    for _ in range(300):
        parent = dict(pool[int(rng.integers(len(pool)))])
        child = mutation([parent], rng)
        if child == parent:
            clones["clone"] += 1
    assert clones["clone"] == 0, f"{clones['clone']} of 300 children equal their parent"


@pytest.mark.parametrize(
    "name",
    list(SPACE),
)
def test_neighbour_differs_whenever_possible(name: str) -> None:
    rng = np.random.default_rng(0)
    hp = SPACE[name]
    for config in sampled_pool("course"):
        value = config.get(name, hp.default_value)
        new = neighbour(SPACE, name, value, rng)
        assert hp.legal_value(new)
        assert new != value


@pytest.mark.parametrize("limit", [50_000, 20_000_000], ids=["5e4", "2e7"])
def test_crossover_takes_each_value_from_a_parent(limit: int) -> None:
    crossover = UniformCrossover(SPACE)
    pool = parent_pool(limit)
    rng = np.random.default_rng(21)
    for _ in range(500):
        a, b = draw_parents(pool, rng)
        child = crossover([a, b], rng)
        validate(SPACE, child)
        for key, value in child.items():
            options = [p[key] for p in (a, b) if key in p]
            if options:
                assert value in options, f"{key}={value!r} is in neither parent ({options})"


def test_crossover_of_a_config_with_itself_is_that_config() -> None:
    rng = np.random.default_rng(0)
    for parent in parent_pool(20_000_000)[:10]:
        assert UniformCrossover(SPACE)([parent, parent], rng) == parent


def test_random_sampling_ignores_parents() -> None:
    sampler = RandomSampling(SPACE)
    assert sampler.n_parents == 0
    a = sampler([], np.random.default_rng(4))
    b = sampler([default_config(SPACE)], np.random.default_rng(4))
    assert a == b
    validate(SPACE, a)


def test_neutral_selection_is_uniform_and_deterministic() -> None:
    ranked = list(range(10))
    picks = NeutralSelection().select(ranked, 20_000, np.random.default_rng(0))
    assert len(picks) == 20_000 and set(picks) == set(ranked)
    counts = Counter(picks)
    assert all(1700 < counts[i] < 2300 for i in ranked)
    again = NeutralSelection().select(ranked, 20_000, np.random.default_rng(0))
    assert picks == again


def test_tournament_selection_prefers_the_front_of_the_ranking() -> None:
    ranked = [f"m{i}" for i in range(10)]
    picks = TournamentSelection(3).select(ranked, 20_000, np.random.default_rng(0))
    counts = Counter(picks)
    assert len(picks) == 20_000 and set(picks) <= set(ranked)
    # P(best of 3 draws with replacement is rank 0) = 1 - 0.9**3 = 0.271
    assert abs(counts["m0"] / 20_000 - 0.271) < 0.02
    frequencies = [counts[m] for m in ranked]
    assert frequencies == sorted(frequencies, reverse=True)
    assert TournamentSelection(3).select(
        ranked, 50, np.random.default_rng(1)
    ) == TournamentSelection(3).select(ranked, 50, np.random.default_rng(1))


def test_tournament_selection_single_member_and_bad_size() -> None:
    assert TournamentSelection(5).select(["only"], 4, np.random.default_rng(0)) == ["only"] * 4
    with pytest.raises(ConfigError, match="size"):
        TournamentSelection(0)


def test_plus_selection_keeps_the_best_mu() -> None:
    assert plus_selection(["a", "b", "c", "d"], 2) == ["a", "b"]
    assert plus_selection(["a"], 3) == ["a"]


@pytest.mark.parametrize(
    "space_name",
    [
        "course",
        "extended",
    ],
)
def test_smallest_config_is_valid_and_smaller_than_anything_sampled(space_name: str) -> None:
    space = get_space(space_name)
    smallest = smallest_config(space, tiny_count)
    validate(space, smallest)
    assert tiny_count(smallest) < tiny_count(default_config(space))
    assert smallest["n_conv_layers"] == 1 and smallest["n_fc_layers"] == space["n_fc_layers"].lower
    assert smallest["global_avg_pooling"] is True and smallest["use_BN"] is False
    assert all(tiny_count(smallest) <= tiny_count(c) for c in sampled_pool(space_name))


@pytest.fixture
def tiny_task(tiny_image_root) -> Task:
    return Task(load_data(tiny_image_root), cv_folds=2, split_seed=0)


def test_max_size_below_smallest_network_refused_at_construction(tiny_task: Task, tmp_path) -> None:
    smallest = count_params(smallest_config(SPACE, tiny_count), TINY_SHAPE, TINY_CLASSES)
    store = RunStore(tmp_path / "run")
    try:
        with pytest.raises(ConfigError, match="smaller than the smallest network") as info:
            EvolutionaryOptimizer(
                SPACE,
                tiny_task,
                Constraints.of(smallest - 1, 0.5),
                SearchSettings(pop_size=2, max_epochs=1, hyperband=False),
                store,
            )
        assert f"{smallest:,}" in str(info.value)
        # exactly the smallest network is allowed
        EvolutionaryOptimizer(
            SPACE,
            tiny_task,
            Constraints.of(smallest, 0.5),
            SearchSettings(pop_size=2, max_epochs=1, hyperband=False),
            store,
        )
    finally:
        store.close()
