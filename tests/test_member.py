"""A member is represented by its highest-budget result that finished ok."""

from __future__ import annotations

import pandas as pd

from evoband.analysis import member_results
from evoband.member import Member
from evoband.target import Result


def result(epochs: int, status: str, top3: float) -> Result:
    return Result(top3=top3, top1=0.1, precision=0.5, num_params=10, epochs=epochs, seconds=1.0, status=status)


def test_a_timed_out_continuation_keeps_the_last_ok_result() -> None:
    member = Member(member_id=0, config={}, seed=0, num_params=10)
    assert member.result is None and member.status == "pending"
    ok, timed_out = result(16, "ok", 0.7), result(50, "timed_out", 0.75)
    member.results = {2: result(2, "ok", 0.3), 16: ok, 50: timed_out}
    assert member.result is ok
    assert member.epochs == 50  # trained that far, whatever came of it


def test_a_member_without_ok_result_shows_its_latest() -> None:
    member = Member(member_id=0, config={}, seed=0, num_params=10)
    member.results = {2: result(2, "diverged", 0.0), 4: result(4, "timed_out", 0.2)}
    assert member.result is member.results[4] and member.status == "timed_out"


def test_run_analysis_uses_the_same_rule() -> None:
    frame = pd.DataFrame({
        "member_id": [0, 0, 0, 1, 1],
        "epochs": [2, 16, 50, 2, 4],
        "status": ["ok", "ok", "timed_out", "diverged", "timed_out"],
    })
    picked = member_results(frame)
    assert picked[["member_id", "epochs"]].values.tolist() == [[0, 16], [1, 4]]
