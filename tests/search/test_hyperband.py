"""The Hyperband bracket schedule against hand-computed tables, and its validation."""

from __future__ import annotations

import json

import pytest

from evoband.core._errors import ConfigError, EvobandError
from evoband.search._hyperband import Bracket, HyperbandSchedule, promote
from evoband.search._settings import SearchSettings

# (min_epochs, max_epochs, eta) -> {s: (members per rung, epochs per rung)}, computed by hand.
TABLES = {
    (2, 50, 2): {
        4: ((16, 8, 4, 2, 1), (2, 4, 8, 16, 50)),
        3: ((10, 5, 2, 1), (4, 8, 16, 50)),
        2: ((7, 3, 1), (8, 16, 50)),
        1: ((5, 2), (16, 50)),
        0: ((5,), (50,)),
    },
    (1, 27, 3): {
        3: ((27, 9, 3, 1), (1, 3, 9, 27)),
        2: ((12, 4, 1), (3, 9, 27)),
        1: ((6, 2), (9, 27)),
        0: ((4,), (27,)),
    },
}


@pytest.mark.parametrize("args", sorted(TABLES), ids=lambda a: "min{}-max{}-eta{}".format(*a))
def test_brackets_match_hand_computed_table(args: tuple[int, int, int]) -> None:
    schedule = HyperbandSchedule(*args)
    table = TABLES[args]
    assert schedule.s_max == max(table)
    # most aggressive bracket first, as one iteration runs them
    assert [b.s for b in schedule.brackets] == sorted(table, reverse=True)
    for bracket in schedule.brackets:
        assert (bracket.n_members, bracket.budgets) == table[bracket.s]
        assert schedule.bracket(bracket.s) == bracket


@pytest.mark.parametrize(
    "min_epochs, max_epochs, eta",
    [
        (1, 1, 2),
        (1, 2, 2),
        (2, 3, 2),
        (2, 50, 2),
        (1, 27, 3),
        (3, 100, 3),
        (1, 50, 4),
        (5, 50, 2),
        (2, 64, 2),
        (1, 10, 10),
    ],
)
def test_last_rung_is_max_epochs_and_rungs_grow(min_epochs: int, max_epochs: int, eta: int) -> None:
    schedule = HyperbandSchedule(min_epochs, max_epochs, eta)
    assert len(schedule.brackets) == schedule.s_max + 1
    for bracket in schedule.brackets:
        assert bracket.budgets[-1] == max_epochs
        assert all(isinstance(b, int) and not isinstance(b, bool) for b in bracket.budgets)
        assert bracket.budgets[0] >= min_epochs
        assert list(bracket.budgets) == sorted(set(bracket.budgets)), "budgets must strictly grow"
        assert all(n >= 1 for n in bracket.n_members)
        assert list(bracket.n_members) == sorted(bracket.n_members, reverse=True)
        assert len(bracket.n_members) == len(bracket.budgets) == bracket.s + 1
    # the most aggressive bracket starts at min_epochs (a lone bracket trains max_epochs only)
    expected_first = min_epochs if schedule.s_max > 0 else max_epochs
    assert schedule.brackets[0].budgets[0] == expected_first


def test_epochs_cost_hand_computed() -> None:
    schedule = HyperbandSchedule(2, 50, 2)
    costs = {b.s: b.epochs_cost() for b in schedule.brackets}
    # continuing from checkpoints: each rung trains only the extra epochs of its members
    assert costs == {
        4: 16 * 2 + 8 * 2 + 4 * 4 + 2 * 8 + 1 * 34,  # 114
        3: 10 * 4 + 5 * 4 + 2 * 8 + 1 * 34,  # 110
        2: 7 * 8 + 3 * 8 + 1 * 34,  # 114
        1: 5 * 16 + 2 * 34,  # 148
        0: 5 * 50,  # 250
    }
    assert schedule.epochs_cost() == 736
    assert Bracket(0, (3,), (7,)).epochs_cost() == 21


def test_the_initial_population_climbs_the_most_aggressive_brackets_rungs() -> None:
    schedule = HyperbandSchedule(4, 32, 2)
    initial = schedule.initial_bracket(10)
    assert initial == Bracket(3, (10, 5, 2, 1), (4, 8, 16, 32))
    assert initial.epochs_cost() == 40 + 20 + 16 + 16
    assert schedule.initial_bracket(3).n_members == (3, 1, 1, 1)  # at least one per rung
    assert HyperbandSchedule(1, 27, 3).initial_bracket(20).n_members == (20, 6, 2, 1)


def test_str_prints_every_bracket() -> None:
    text = str(HyperbandSchedule(2, 50, 2))
    lines = text.splitlines()
    assert lines[0] == "Hyperband schedule: epochs 2..50, eta 2, s_max 4"
    assert "bracket s=4: 16x2  8x4  4x8  2x16  1x50" in text
    assert "bracket s=0: 5x50" in text
    assert "(members x epochs; 114 epochs per fold)" in lines[1]
    assert lines[-1].strip() == "one generation: 736 epochs per fold"
    assert len(lines) == 1 + 5 + 1


def test_to_dict_is_json_and_rebuilds_the_schedule() -> None:
    schedule = HyperbandSchedule(1, 27, 3)
    data = json.loads(json.dumps(schedule.to_dict()))
    assert (data["min_epochs"], data["max_epochs"], data["eta"]) == (1, 27, 3)
    assert data["brackets"][0] == {"s": 3, "n_members": [27, 9, 3, 1], "budgets": [1, 3, 9, 27]}
    rebuilt = HyperbandSchedule(data["min_epochs"], data["max_epochs"], data["eta"])
    assert rebuilt == schedule
    assert rebuilt.brackets == schedule.brackets


@pytest.mark.parametrize(
    "min_epochs, max_epochs, eta, words",
    [
        (2, 50, 1, "`eta`"),
        (2, 50, 0, "`eta`"),
        (2, 50, -3, "`eta`"),
        (0, 50, 2, "`min_epochs`"),
        (-1, 50, 2, "`min_epochs`"),
        (51, 50, 2, "`min_epochs`"),
    ],
)
def test_bad_arguments_refused(min_epochs: int, max_epochs: int, eta: int, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as info:
        HyperbandSchedule(min_epochs, max_epochs, eta)
    assert isinstance(info.value, EvobandError)
    assert str(eta if "eta" in words else min_epochs) in str(info.value)


@pytest.mark.parametrize("min_epochs, eta", [(1, 2.5), (1.5, 3)])
def test_non_integer_eta_or_min_epochs_refused(min_epochs: float, eta: float) -> None:
    with pytest.raises(ConfigError):
        HyperbandSchedule(min_epochs, 27, eta)  # type: ignore[arg-type]


# ranked ids (best first), ids that finished ok, places on the next rung -> (promoted, released)
PROMOTIONS = [
    ([3, 1, 2, 0], {0, 1, 2, 3}, 2, ([3, 1], [2, 0])),
    ([3, 1, 2, 0], {1, 2, 0}, 2, ([1, 2], [3, 0])),  # a timed-out leader is not promoted
    ([3, 1, 2, 0], set(), 2, ([], [3, 1, 2, 0])),
    ([5, 4], {4, 5}, 0, ([], [5, 4])),  # the last rung: nobody goes on
    ([7], {7}, 1, ([7], [])),
    ([2, 9, 4], {2, 9, 4}, 5, ([2, 9, 4], [])),  # more places than members
]


@pytest.mark.parametrize("ranked, ok, n_next, expected", PROMOTIONS)
def test_promotion_table(ranked: list[int], ok: set[int], n_next: int, expected) -> None:
    assert promote(ranked, lambda m: m in ok, n_next) == (expected[0], expected[1])


@pytest.mark.parametrize(
    ("hyperband", "bracket", "up_to", "expected"),
    [
        (True, 3, None, (4, 8, 16, 32)),
        (True, 3, 8, (4, 8)),
        (True, 1, None, (16, 32)),
        (True, 0, None, (32,)),
        (True, None, None, (32,)),
        (False, 3, None, (32,)),
        (False, None, 16, ()),
    ],
)
def test_lr_segments_are_the_rungs_of_the_bracket(
    hyperband: bool, bracket: int | None, up_to: int | None, expected: tuple[int, ...]
) -> None:
    settings = SearchSettings(hyperband=hyperband, min_epochs=4, max_epochs=32, eta=2)
    assert settings.lr_segments(bracket, up_to=up_to) == expected
