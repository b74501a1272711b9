"""Asynchronous promotion (ASHA): the promotion rule, and searches that record each decision,
repeat themselves, and resume from their decisions (serially and on a Dask LocalCluster).

The searches really train (2-fold CV, 1-4 epochs, networks of at most 20,000 parameters on 8x8
images).
"""

from __future__ import annotations

import sqlite3
from functools import partial
from pathlib import Path

import pandas as pd
import pytest

from evoband.core._errors import ConfigError
from evoband.search._asha import RungLadder
from evoband.search._member import Member, rank_members
from evoband.search._run import run_search
from evoband.search._settings import SearchSettings
from evoband.training._constraints import Constraints
from evoband.training._results import Result, Status
from helpers import InterruptAfter, make_image_folder, read_json, tiny_search_config

CONSTRAINTS = Constraints.of(1_000, 0.5)
rank = partial(rank_members, constraints=CONSTRAINTS)


def member_at(member_id: int, budget: int, top3: float, status: Status = Status.OK) -> Member:
    member = Member(member_id=member_id, config={}, seed=0, num_params=10)
    member.results[budget] = Result(top3, 0.5, 0.9, 10, budget, 1.0, status)
    return member


def test_a_member_is_promoted_once_it_ranks_in_the_top_third_of_its_rung_so_far() -> None:
    ladder = RungLadder((1, 3, 9), eta=3)
    ranked = lambda members, budget: rank(members, budget=budget)  # noqa: E731
    a, b = member_at(0, 1, 0.9), member_at(1, 1, 0.5)
    ladder.add(a, 1)
    ladder.add(b, 1)
    assert ladder.next_promotion(ranked) is None, "2 results: the top third is empty"
    c = member_at(2, 1, 0.95)
    ladder.add(c, 1)
    assert ladder.next_promotion(ranked) == (c, 3)
    assert ladder.next_promotion(ranked) is None, "each member is promoted once"
    for i, top3 in enumerate((0.1, 0.2, 0.3), start=3):
        ladder.add(member_at(i, 1, top3), 1)
    assert ladder.next_promotion(ranked) == (a, 3), "6 results: the second best goes up too"


def test_higher_rungs_first_and_never_a_member_that_did_not_finish_ok() -> None:
    ladder = RungLadder((1, 2, 4), eta=2)
    ranked = lambda members, budget: rank(members, budget=budget)  # noqa: E731
    low = [member_at(0, 1, 0.4), member_at(1, 1, 0.3)]
    failed, fine, second = (
        member_at(2, 2, 0.9, Status.TIMED_OUT),
        member_at(3, 2, 0.5),
        member_at(4, 2, 0.2),
    )
    for m in low:
        ladder.add(m, 1)
    for m in (failed, fine, second, member_at(5, 2, 0.1)):
        ladder.add(m, 2)
    assert ladder.next_promotion(ranked) == (fine, 4), "rung 2 before rung 1"
    assert ladder.next_promotion(ranked) == (second, 4), "the timed-out member stays"
    assert ladder.next_promotion(ranked) == (low[0], 2)
    assert ladder.next_promotion(ranked) is None
    assert [m.member_id for m in ladder.unlikely(1, ranked, keep=0)] == [1]
    assert ladder.unlikely(4, ranked, keep=0) == [], "the top rung promotes nobody"


def test_async_promotion_needs_hyperband() -> None:
    with pytest.raises(
        ConfigError, match="`async_promotion` is True, but must be False without Hyperband"
    ):
        SearchSettings(hyperband=False, async_promotion=True)


# -- searches -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("data") / "tiny")


def config(
    data_dir: Path,
    run_dir: Path,
    cap: int,
    *,
    workers: int = 1,
    resume: bool = False,
    predictor: bool = True,
):
    settings = SearchSettings(
        predictor=predictor,
        pop_size=3,
        num_children=2,
        min_epochs=1,
        max_epochs=4,
        eta=2,
        max_evaluations=cap,
        eval_time_limit=600,  # timings differ between runs compared here: none may time out
        seed=5,
        async_promotion=True,
    )
    return tiny_search_config(settings, data_dir, run_dir, resume=resume, workers=workers)


def ledger(run_dir: Path) -> tuple[list[tuple], list[tuple], list[tuple]]:
    conn = sqlite3.connect(run_dir / "history.sqlite")
    try:
        decisions = conn.execute("SELECT member_id, epochs, known FROM decisions ORDER BY seq")
        evaluations = conn.execute(
            "SELECT member_id, epochs, status, round(precision, 6), rung FROM evaluations ORDER BY rowid"
        )
        members = conn.execute("SELECT member_id, config, parents FROM members ORDER BY 1")
        return list(decisions), list(evaluations), list(members)
    finally:
        conn.close()


def check_history(decisions: list[tuple], evaluations: list[tuple], cap: int) -> None:
    """Every decision trained once; a promotion only of a member whose lower rung was known."""
    assert len(evaluations) == cap
    assert sorted(d[:2] for d in decisions) == sorted(e[:2] for e in evaluations)
    budgets = sorted({e[1] for e in evaluations})
    for member_id, epochs, known in decisions:
        if epochs != budgets[0]:
            lower = budgets[budgets.index(epochs) - 1]
            assert (member_id, lower) in [e[:2] for e in evaluations[:known]]


def test_serial_async_search_is_reproducible_and_resumes_exactly(
    data_dir: Path, tmp_path: Path
) -> None:
    one_go = tmp_path / "one_go"
    report = run_search(config(data_dir, one_go, 14))
    decisions, evaluations, members = ledger(one_go)
    check_history(decisions, evaluations, 14)
    assert {e[1] for e in evaluations} == {1, 2, 4}, "members climb to the top rung"
    assert report.n_evaluations == 14

    again = tmp_path / "again"
    run_search(config(data_dir, again, 14))
    assert ledger(again) == (decisions, evaluations, members), "same seed, same search"

    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_search(config(data_dir, resumed, 14), callbacks=[InterruptAfter(after=6)])
    assert len(ledger(resumed)[1]) == 6
    run_search(config(data_dir, resumed, 14, resume=True))
    assert ledger(resumed) == (decisions, evaluations, members)
    assert read_json(resumed / "run.json")["n_replayed"] == 6


@pytest.mark.slow
def test_two_dask_workers_record_every_decision_and_resume_without_duplicates(
    data_dir: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_search(config(data_dir, run_dir, 16, workers=2), callbacks=[InterruptAfter(after=7)])
    first_decisions, first_evaluations, _ = ledger(run_dir)
    assert len(first_evaluations) == 7
    assert len(first_decisions) >= 7, "the job in flight was decided, and recorded, too"

    run_search(config(data_dir, run_dir, 16, workers=2, resume=True))
    decisions, evaluations, _ = ledger(run_dir)
    assert decisions[: len(first_decisions)] == first_decisions, "the recorded decisions stand"
    assert evaluations[:7] == first_evaluations, "nothing recorded is lost or retrained"
    check_history(decisions, evaluations, 16)
    assert read_json(run_dir / "run.json")["n_replayed"] == 7


def test_epochs_spent_counts_a_released_member_retrained_from_scratch(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member promoted after its checkpoints were released trains again from epoch 0: the
    search's ``epochs_spent`` counts those epochs, as the training loop ran them."""
    import evoband.training._loop

    trained = []
    train_epoch = evoband.training._loop._train_epoch

    def counting(*args, **kwargs):
        out = train_epoch(*args, **kwargs)
        trained.append(out[0] == Status.OK)
        return out

    monkeypatch.setattr(evoband.training._loop, "_train_epoch", counting)
    run_search(config(data_dir, tmp_path / "run", 30, predictor=False))  # the search's epochs only
    evaluations = ledger(tmp_path / "run")[1]
    last: dict[int, int] = {}
    continued = 0  # epoch-folds if every member had continued from its last budget
    for member_id, epochs, *_ in evaluations:
        continued += 2 * (epochs - last.get(member_id, 0))
        last[member_id] = epochs
    spent = int(pd.read_csv(tmp_path / "run" / "progress.csv")["epochs_spent"].iloc[-1])
    assert sum(trained) > continued, "the run promotes a released member (else this tests nothing)"
    assert spent == sum(trained)
