"""A member is represented by its highest-budget result that finished ok; members rank as results."""

from __future__ import annotations

from evoband.search._member import Member, Origin, best_member, rank_members
from evoband.training._constraints import Constraints
from evoband.training._results import Result, Status


def result(epochs: int, status: Status, top3: float, precision: float = 0.5) -> Result:
    return Result(
        top3=top3,
        top1=0.1,
        precision=precision,
        num_params=10,
        epochs=epochs,
        seconds=1.0,
        status=status,
    )


def test_a_timed_out_continuation_keeps_the_last_ok_result() -> None:
    member = Member(member_id=0, config={}, seed=0, num_params=10)
    assert member.result is None and member.status == "pending"
    ok, timed_out = result(16, Status.OK, 0.7), result(50, Status.TIMED_OUT, 0.75)
    member.results = {2: result(2, Status.OK, 0.3), 16: ok, 50: timed_out}
    assert member.result is ok
    assert member.epochs == 50  # trained that far, whatever came of it


def test_a_member_without_ok_result_shows_its_latest() -> None:
    member = Member(member_id=0, config={}, seed=0, num_params=10)
    member.results = {2: result(2, Status.DIVERGED, 0.0), 4: result(4, Status.TIMED_OUT, 0.2)}
    assert member.result is member.results[4] and member.status == "timed_out"


def test_members_rank_feasibility_first_ties_to_the_older() -> None:
    limits = Constraints.of(100, 0.5)
    members = [
        Member(member_id=i, config={}, seed=i, num_params=10, origin=Origin.MUTATED)
        for i in range(4)
    ]
    members[0].results = {2: result(2, Status.OK, 0.9, precision=0.4)}  # infeasible
    members[1].results = {2: result(2, Status.OK, 0.6), 4: result(4, Status.OK, 0.8)}
    members[2].results = {2: result(2, Status.OK, 0.8)}  # ties with member 1: the older first
    assert [m.member_id for m in rank_members(members, limits)] == [1, 2, 0, 3]
    assert [m.member_id for m in rank_members(members[:3], limits, budget=2)] == [2, 1, 0]
    assert best_member(members, limits) is members[1]
    assert best_member(members[3:], limits) is None  # nothing evaluated
    assert members[0].describe() == "member 0 (mutated)"
