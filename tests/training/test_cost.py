"""Tests of evoband.training._cost and of the cost cap the search enforces with it."""

from __future__ import annotations

import numpy as np
import pytest

from evoband.operators._repair import ParamBudget
from evoband.operators._sampling import RandomSampling
from evoband.space._recipes import RECIPES
from evoband.space._spaces import extended_space
from evoband.training._cost import CostModel
from helpers import tiny_count

SHAPE, CLASSES, N_TRAIN = (3, 16, 16), 17, 680


def model() -> CostModel:
    return CostModel(SHAPE, CLASSES, N_TRAIN)


def test_bigger_networks_and_smaller_batches_cost_more() -> None:
    m = model()
    base = RECIPES["bn-cnn"]
    assert m.seconds_per_epoch(RECIPES["bn-cnn-small"]) < m.seconds_per_epoch(base)
    assert m.seconds_per_epoch(dict(base, n_channels_conv_2=256)) > m.seconds_per_epoch(base)
    assert m.seconds_per_epoch(dict(base, batch_size=16)) > m.seconds_per_epoch(base)
    assert m.seconds(base, 10, folds=3) == pytest.approx(30 * m.seconds_per_epoch(base))


def test_observed_timings_refit_the_correction_as_a_median_ratio() -> None:
    m = model()
    config = RECIPES["bn-cnn"]
    predicted = m.seconds(config, 4, folds=3)
    assert m.correction == 1.0
    m.observe(config, 4, 3, 2 * predicted)
    m.observe(config, 4, 3, 3 * predicted)
    m.observe(config, 4, 3, 100 * predicted)  # one outlier does not move a median far
    assert m.correction == pytest.approx(3.0)
    assert m.seconds(config, 4, folds=3) == pytest.approx(3 * predicted)
    m.observe(config, 0, 3, 5.0)  # nothing trained: ignored
    assert m.correction == pytest.approx(3.0)


def test_full_evaluation_ignores_the_refit_and_time_limits_follow_it() -> None:
    m, config = model(), RECIPES["bn-cnn"]
    full = m.full_evaluation_seconds(config, 32, 3)
    assert full == pytest.approx(m.seconds(config, 32, folds=3))
    assert m.time_limit(config, 32, 3) == pytest.approx(max(10.0, 4 * full))
    m.observe(config, 4, 3, 50 * m.seconds(config, 4, folds=3))
    assert m.full_evaluation_seconds(config, 32, 3) == full  # the same seed, the same search
    assert m.time_limit(config, 32, 3) == pytest.approx(4 * 50 * full)
    assert m.time_limit(config, 0, 3) == 10.0


def test_cost_cap_repairs_every_sampled_child_under_the_cap() -> None:
    space, m = extended_space(), model()
    cap = m.seconds(RECIPES["bn-cnn"], 32, folds=3)
    budget = ParamBudget(
        space, tiny_count, 10**9, cost=lambda c: m.seconds(c, 32, folds=3), cost_limit=cap
    )
    sampler, rng = RandomSampling(space), np.random.default_rng(0)
    repaired = [budget.repair(sampler([], rng), rng) for _ in range(200)]
    kept = [c for c in repaired if c is not None]
    assert len(kept) >= 190
    assert all(m.seconds(c, 32, folds=3) <= cap for c in kept)
    # without the cap a fair share of the space's samples would be over it
    raw = [sampler([], np.random.default_rng(i)) for i in range(200)]
    assert sum(m.seconds(c, 32, folds=3) > cap for c in raw) > 20
