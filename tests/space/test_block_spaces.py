"""The shipped spaces written with the builders (evoband.space._shipped) against the hand-written
ones they replaced (frozen as ConfigSpace JSON in tests/data/) and the network family of
evoband.nets._cnn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ConfigSpace import ConfigurationSpace, GreaterThanCondition

from block_examples import narrow
from evoband.nets._cnn import build_model, count_params
from evoband.nets._composed import build_network, count_parameters
from evoband.space._genotype import default_config, sample, validate
from evoband.space._shipped import SpaceDefinition, course_blocks, extended_blocks
from evoband.space._spaces import course_space, extended_space, get_space

DEAD_KEY = "n_channels_fc_2"
"""The hand-written extended space held it under ``n_fc_layers > 2`` with ``n_fc_layers <= 2``."""

FROZEN = Path(__file__).parent / "data"


def hand_written(name: str) -> ConfigurationSpace:
    """The hand-written space ``name`` as it was before the builders (its ConfigSpace JSON)."""
    return ConfigurationSpace.from_json(FROZEN / f"{name}_space.json")


def assert_same_space(got: ConfigurationSpace, expected: ConfigurationSpace) -> None:
    """Equal in every hyperparameter and condition (messages name the first difference)."""
    assert got.name == expected.name
    assert list(got) == list(expected)
    for name in expected:
        assert got[name] == expected[name], name
    key = lambda c: c.child.name  # noqa: E731
    assert sorted(got.conditions, key=key) == sorted(expected.conditions, key=key)
    assert got.forbidden_clauses == expected.forbidden_clauses == []
    assert got == expected  # ConfigSpace's own equality: the whole condition graph


def test_course_space_compiles_to_the_hand_written_one_exactly() -> None:
    compiled = course_blocks().compile(seed=3)
    assert_same_space(compiled, hand_written("course"))
    assert_same_space(course_space(), hand_written("course"))
    assert default_config(compiled) == default_config(hand_written("course"))


def test_extended_space_compiles_to_the_hand_written_one_but_its_dead_key() -> None:
    today = hand_written("extended")
    # the one difference: a key that no configuration of today's space can hold
    assert today["n_fc_layers"].upper == 2
    assert today.parent_conditions_of[DEAD_KEY] == [
        GreaterThanCondition(today[DEAD_KEY], today["n_fc_layers"], 2)
    ]
    expected = ConfigurationSpace(name="extended")
    expected.add([hp for name, hp in today.items() if name != DEAD_KEY])
    expected.add([c for c in today.conditions if c.child.name != DEAD_KEY])
    compiled = extended_blocks().compile()
    assert_same_space(compiled, expected)
    assert_same_space(extended_space(), expected)
    assert default_config(compiled) == default_config(today)


@pytest.mark.parametrize("name", ["course", "extended"])
def test_a_seed_samples_what_the_hand_written_space_sampled(name: str) -> None:
    ours, theirs = get_space(name), hand_written(name)
    for seed in range(20):
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        assert [sample(ours, a) for _ in range(5)] == [sample(theirs, b) for _ in range(5)]


@pytest.mark.parametrize(
    ("definition", "today"),
    [(course_blocks(), course_space()), (extended_blocks(), extended_space())],
    ids=["course", "extended"],
)
def test_todays_configurations_build_the_same_networks(
    definition: SpaceDefinition, today: ConfigurationSpace
) -> None:
    compiled = definition.compile()
    rng = np.random.default_rng(0)
    for _ in range(200):
        config = sample(today, rng)
        validate(compiled, config)
        for shape in [(3, 16, 16), (1, 8, 8)]:
            assert count_parameters(definition.network, config, shape, 10) == count_params(
                config, shape, 10
            )


@pytest.mark.parametrize(
    ("definition", "today"),
    [(course_blocks(), course_space()), (extended_blocks(), extended_space())],
    ids=["course", "extended"],
)
def test_the_networks_compute_what_todays_compute(
    definition: SpaceDefinition, today: ConfigurationSpace
) -> None:
    """In evaluation mode (no dropout; without flip averaging, which is a setting here) with
    today's weights, the builders' network gives today's logits: the layers line up one to one."""
    rng = np.random.default_rng(1)
    torch.manual_seed(1)
    shape = (3, 16, 16)
    for _ in range(20):
        config = dict(narrow(today, sample(today, rng)), tta_flip=False)
        config = {k: v for k, v in config.items() if k in today}
        reference = build_model(config, shape, 4).eval()
        network = build_network(definition.network, config, shape, 4).eval()
        theirs, ours = reference.state_dict(), network.state_dict()
        assert [t.shape for t in theirs.values()] == [t.shape for t in ours.values()]
        network.load_state_dict(dict(zip(ours, theirs.values(), strict=True)))
        x = torch.randn(3, *shape)
        torch.testing.assert_close(network(x), reference(x))
