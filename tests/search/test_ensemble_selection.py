"""Ensemble selection on out-of-fold predictions: the greedy steps, the constraints, the guard."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evoband.search._ensemble_selection import Candidate, fold_scores, select_ensemble

# One fold of four images of five classes; labels 0, 1, 2, 3. A is right (in its top-3) on the
# first three images, B on the last one, C on none.
LABELS = [np.array([0, 1, 2, 3])]
A = np.array(
    [
        [0.60, 0.10, 0.10, 0.10, 0.10],
        [0.10, 0.60, 0.10, 0.10, 0.10],
        [0.10, 0.10, 0.60, 0.10, 0.10],
        [0.32, 0.30, 0.28, 0.05, 0.05],
    ]
)
B = np.array(
    [
        [0.05, 0.05, 0.25, 0.30, 0.35],
        [0.30, 0.04, 0.25, 0.35, 0.06],
        [0.30, 0.25, 0.05, 0.35, 0.05],
        [0.05, 0.05, 0.05, 0.80, 0.05],
    ]
)
C = np.array(
    [
        [0.01, 0.33, 0.33, 0.32, 0.01],
        [0.33, 0.01, 0.33, 0.32, 0.01],
        [0.33, 0.33, 0.01, 0.32, 0.01],
        [0.40, 0.30, 0.28, 0.01, 0.01],
    ]
)


def pool(params: tuple[int, int, int] = (10, 10, 10), seconds=(0.0, 0.0, 0.0)) -> list[Candidate]:
    return [
        Candidate((i, 8), (p,), n, s)
        for i, (p, n, s) in enumerate(zip((A, B, C), params, seconds, strict=True))
    ]


def test_greedy_selection_with_replacement_matches_the_hand_computed_example() -> None:
    # Step 1: A alone is right on 3 of 4 images (B on 1, C on none).
    # Step 2: (A + B) / 2 is right on all 4 (A + A stays at 3, A + C at most 3).
    # Step 3: all of +A, +B keep 4 of 4; the NLL decides: (2A + B) / 3 gives the true classes
    #   0.4167, 0.4133, 0.4167, 0.3 (NLL 0.9596), (A + 2B) / 3 gives 0.2333, 0.2267, 0.2333,
    #   0.55 (NLL 1.2482), and (A + B) / 2 had 1.0607: A is picked again.
    chosen = select_ensemble(pool(), LABELS, max_params=100, min_precision=0.0, steps=3)
    assert chosen is not None
    assert chosen.weights == {(0, 8): pytest.approx(2 / 3), (1, 8): pytest.approx(1 / 3)}
    assert chosen.scores.top3 == 1.0
    assert chosen.scores.nll == pytest.approx(0.9596, abs=1e-4)
    assert chosen.scores.precision == 1.0  # every argmax right
    assert chosen.trace == [0.75, 1.0, 1.0]
    assert chosen.num_params == 20  # distinct members: A and B once each
    assert chosen.single is not None and chosen.single[0] == (0, 8)


def test_the_parameter_limit_counts_distinct_members_and_can_leave_a_single_network() -> None:
    chosen = select_ensemble(pool((10, 95, 10)), LABELS, max_params=100, min_precision=0.0, steps=3)
    assert chosen is not None and list(chosen.weights) == [(0, 8)]  # A + B would be 105
    assert chosen.num_params == 10 and chosen.scores.top3 == 0.75


def test_the_time_to_produce_members_bounds_them() -> None:
    chosen = select_ensemble(
        pool(seconds=(5.0, 30.0, 0.0)), LABELS, max_params=100, min_precision=0.0, seconds=20.0
    )
    assert chosen is not None and (1, 8) not in chosen.weights and chosen.seconds <= 20.0


def test_nothing_fits_gives_none() -> None:
    assert select_ensemble(pool((200, 200, 200)), LABELS, max_params=100, min_precision=0.0) is None


def test_a_single_network_is_kept_when_no_ensemble_beats_it() -> None:
    only_a = [Candidate((0, 8), (A,), 10), Candidate((2, 8), (C,), 10)]
    chosen = select_ensemble(only_a, LABELS, max_params=100, min_precision=0.0, bags=5)
    assert chosen is not None and list(chosen.weights) == [(0, 8)]


@pytest.mark.parametrize("bags", [0, 7])
def test_every_selected_ensemble_meets_the_constraints(bags: int) -> None:
    """Random pools of 3-fold predictions: the summed parameters of the distinct members stay
    within the limit, the time within its bound, and the precision is the mean over folds of
    each fold's macro precision of the averaged predictions."""
    rng = np.random.default_rng(0)
    for trial in range(12):
        labels = [rng.integers(0, 6, size=n) for n in (20, 21, 19)]
        candidates = []
        for i in range(8):
            folds = tuple(
                rng.dirichlet(np.ones(6), size=len(y)) * 0.5 + np.eye(6)[y] * rng.uniform(0, 0.5)
                for y in labels
            )
            candidates.append(
                Candidate((i, 4), folds, int(rng.integers(5, 60)), float(rng.uniform(0, 5)))
            )
        max_params, min_precision = 100, float(rng.uniform(0.1, 0.6))
        chosen = select_ensemble(
            candidates, labels, max_params=max_params, min_precision=min_precision,
            seconds=8.0, steps=6, bags=bags, seed=trial,
        )  # fmt: skip
        assert chosen is not None
        members = {c.key: c for c in candidates}
        assert sum(members[k].num_params for k in chosen.weights) == chosen.num_params <= max_params
        assert sum(members[k].seconds for k in chosen.weights) <= 8.0
        assert math.isclose(sum(chosen.weights.values()), 1.0)
        averaged = [
            sum(members[k].folds[f] * w for k, w in chosen.weights.items()) for f in range(3)
        ]
        expected = fold_scores(averaged, labels)
        assert chosen.scores.precision == pytest.approx(expected.precision)
        assert chosen.scores.top3 == pytest.approx(expected.top3)
        assert chosen.feasible == (expected.precision >= min_precision)
