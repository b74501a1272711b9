"""Evolution strategies: elite and (mu + lambda) survival, stochastic universal sampling's
proportions (robust to negative, equal and non-finite fitness), combined counts, bad arguments."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from evoband.core._errors import ConfigError
from evoband.operators._base import Selection
from evoband.operators._fitness import NanGuard, TopK, member_fitness
from evoband.operators._selection import NeutralSelection, TournamentSelection, plus_selection
from evoband.operators._strategies import (
    CombinedSelection,
    EliteSelection,
    PlusStrategy,
    Strategy,
    SUSSelection,
    sus_weights,
)
from evoband.search._member import Member, rank_members
from evoband.training._constraints import Constraints
from evoband.training._results import Result, Status

RANKED = list(range(10))  # items ranked best first: 0 is the best


def by_value(fitness: list[float]):
    return lambda i: fitness[i]


def test_every_strategy_is_a_selection() -> None:
    for strategy in (
        EliteSelection(2),
        PlusStrategy(3),
        SUSSelection(float),
        CombinedSelection(EliteSelection(1)),
    ):
        assert isinstance(strategy, Selection) and isinstance(strategy, Strategy)


def test_elite_selection_takes_the_best_in_order() -> None:
    rng = np.random.default_rng(0)
    elite = EliteSelection(3)
    assert elite.survivors(RANKED, rng) == [0, 1, 2]
    assert elite.select(RANKED, 4, rng) == [0, 1, 2, 3]
    assert elite.select(RANKED[:3], 5, rng) == [0, 1, 2, 0, 1]  # parents may repeat
    assert elite.survivors(RANKED[:2], rng) == [0, 1]  # survivors never repeat
    assert EliteSelection().select(RANKED, 0, rng) == []
    with pytest.raises(ConfigError, match="no size"):
        EliteSelection().survivors(RANKED, rng)


def test_plus_strategy_is_the_course_survival() -> None:
    rng = np.random.default_rng(0)
    assert PlusStrategy(4).survivors(RANKED, rng) == plus_selection(RANKED, 4) == [0, 1, 2, 3]
    assert PlusStrategy(20).survivors(RANKED, rng) == RANKED
    # parents and offspring ranked together; on ties the parents (listed first) stay
    parents, offspring = [5, 3, 9], [4, 3, 1]
    survivors = PlusStrategy(3).survive(parents, offspring, rank=lambda xs: sorted(xs))
    assert survivors == [1, 3, 3]


def test_plus_strategy_with_members_and_constraints() -> None:
    constraints = Constraints.of(max_params=10_000, min_precision=0.5)

    def member(i: int, top3: float, num_params: int = 5_000, status=Status.OK) -> Member:
        m = Member(member_id=i, config={}, seed=i, num_params=num_params)
        m.results[9] = Result(top3, top3, 0.8, num_params, 9, 1.0, status)
        return m

    parents = [member(0, 0.7), member(1, 0.9, num_params=50_000)]  # 1 is infeasible
    offspring = [member(2, 0.8), member(3, 0.99, status=Status.DIVERGED)]
    survivors = PlusStrategy(2).survive(
        parents, offspring, lambda ms: rank_members(ms, constraints)
    )
    assert [m.member_id for m in survivors] == [2, 0]


@pytest.mark.parametrize("n", [10, 7, 3, 25])
def test_sus_picks_each_member_floor_or_ceil_of_its_share(n: int) -> None:
    fitness = [4.0, 3.0, 2.0, 1.0, 0.0]
    sus = SUSSelection(by_value(fitness))
    shares = np.array(fitness) / sum(fitness)
    totals = Counter()
    draws = 2000
    for seed in range(draws):
        picks = sus.select(list(range(5)), n, np.random.default_rng(seed))
        assert len(picks) == n and picks == sorted(picks)  # returned in rank order
        counts = Counter(picks)
        for i, share in enumerate(shares):
            assert np.floor(n * share) <= counts[i] <= np.ceil(n * share), (seed, counts)
        totals.update(counts)
    # averaged over draws, the picks follow the shares
    for i, share in enumerate(shares):
        assert totals[i] / (draws * n) == pytest.approx(share, abs=0.01)


def test_sus_with_equal_fitness_picks_everyone_once() -> None:
    sus = SUSSelection(lambda i: 0.5)
    for seed in range(50):
        assert sus.select(RANKED, 10, np.random.default_rng(seed)) == RANKED


def test_sus_with_negative_fitness_shifts_the_worst_to_zero() -> None:
    fitness = [-1.0, -2.0, -3.0, -5.0]
    assert sus_weights(fitness) == pytest.approx([4 / 9, 3 / 9, 2 / 9, 0.0])
    sus = SUSSelection(by_value(fitness))
    for seed in range(200):
        picks = sus.select(list(range(4)), 9, np.random.default_rng(seed))
        assert Counter(picks) == {0: 4, 1: 3, 2: 2}


def test_sus_weights_of_non_finite_and_degenerate_fitness() -> None:
    nan, inf = float("nan"), float("inf")
    assert sus_weights([1.0, nan, 3.0]) == pytest.approx([0.2, 0.2, 0.6])  # NaN as the lowest
    assert sus_weights([1.0, 3.0, -inf, inf]) == pytest.approx([1 / 8, 3 / 8, 1 / 8, 3 / 8])
    assert sus_weights([nan, nan]) == pytest.approx([0.5, 0.5])
    assert sus_weights([0.0, 0.0, 0.0]) == pytest.approx([1 / 3] * 3)
    assert sus_weights([-2.0, -2.0]) == pytest.approx([0.5, 0.5])
    assert sus_weights([]).size == 0


def test_sus_is_fixed_by_the_seed_and_reads_members() -> None:
    def member(i: int, top3: float | None) -> Member:
        m = Member(member_id=i, config={}, seed=i, num_params=1)
        if top3 is not None:
            m.results[9] = Result(top3, top3, 0.5, 1, 9, 1.0, Status.OK)
        return m

    members = [member(0, 0.9), member(1, 0.6), member(2, None), member(3, 0.3)]
    sus = SUSSelection(member_fitness(NanGuard(TopK(3), 0.0)), n=6)
    first = sus.survivors(members, np.random.default_rng(3))
    assert first == sus.survivors(members, np.random.default_rng(3))
    counts = Counter(m.member_id for m in first)
    assert counts[2] == 0  # not evaluated: fitness 0, no share
    assert counts == {0: 3, 1: 2, 3: 1}  # shares 0.5, 1/3, 1/6 of 6 picks


def test_combined_selection_counts() -> None:
    rng = np.random.default_rng(0)
    combined = CombinedSelection(EliteSelection(2), (TournamentSelection(3), None))
    assert combined.size is None
    for n in (2, 5, 10, 30):
        picks = combined.select(RANKED, n, rng)
        assert len(picks) == n and picks[:2] == [0, 1]
        assert all(p in RANKED for p in picks)
    fixed = CombinedSelection((EliteSelection(), 3), (NeutralSelection(), 4))
    assert fixed.size == 7
    survivors = fixed.survivors(RANKED, rng)
    assert len(survivors) == 7 and survivors[:3] == [0, 1, 2]
    assert fixed.survivors(RANKED[:2], rng)[:2] == [0, 1]  # the elites do not repeat
    assert len(fixed.survivors(RANKED[:2], rng)) == 2 + 4


def test_combined_selection_is_fixed_by_the_seed() -> None:
    combined = CombinedSelection((EliteSelection(), 1), (SUSSelection(lambda i: 10 - i), None))
    runs = [combined.select(RANKED, 8, np.random.default_rng(5)) for _ in range(2)]
    assert runs[0] == runs[1] and runs[0][0] == 0


def test_combined_selection_refuses_counts_that_do_not_add_up() -> None:
    rng = np.random.default_rng(0)
    fixed = CombinedSelection(EliteSelection(2), (TournamentSelection(3), 3))
    with pytest.raises(ConfigError, match="add up to 5, but 4"):
        fixed.select(RANKED, 4, rng)
    rest = CombinedSelection(EliteSelection(4), (TournamentSelection(3), None))
    with pytest.raises(ConfigError, match="more than the 3"):
        rest.select(RANKED, 3, rng)
    with pytest.raises(ConfigError, match="without a count"):
        rest.survivors(RANKED, rng)


@pytest.mark.parametrize(
    "make",
    [
        lambda: EliteSelection(-1),
        lambda: EliteSelection(2.5),
        lambda: PlusStrategy(0),
        lambda: PlusStrategy(None),
        lambda: SUSSelection(0.5),
        lambda: SUSSelection(float, n=-3),
        lambda: CombinedSelection(EliteSelection()),  # no size, no count
        lambda: CombinedSelection((TournamentSelection(3), None), (NeutralSelection(), None)),
        lambda: CombinedSelection((TournamentSelection(3), -1)),
        lambda: CombinedSelection(("elite", 2)),
        lambda: SUSSelection(float).select([], 2, np.random.default_rng(0)),
        lambda: EliteSelection().select(RANKED, -1, np.random.default_rng(0)),
    ],
)
def test_bad_arguments_are_config_errors(make) -> None:
    with pytest.raises(ConfigError) as info:
        make()
    assert "\n" not in str(info.value)
