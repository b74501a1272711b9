"""Tests of evoband.training._results: statuses, an evaluation's result from its folds, the standing result."""

from __future__ import annotations

import pytest

from evoband.training._results import FoldResult, Result, Status, standing_budget

OK, DIVERGED, TIMED_OUT, FAILED = Status.OK, Status.DIVERGED, Status.TIMED_OUT, Status.FAILED


def test_statuses_are_the_strings_the_ledger_stores() -> None:
    assert [str(s) for s in Status] == ["ok", "diverged", "timed_out", "failed", "error"]
    assert Status("timed_out") is TIMED_OUT and TIMED_OUT == "timed_out"
    assert f"{DIVERGED}" == "diverged"


# -- Result.from_folds ----------------------------------------------------------------------


def _fold(k: int, status: Status, top3: float = 0.5) -> FoldResult:
    return FoldResult(k, top3, 0.3, 0.2, 1.0, 2, 0.5, status, "" if status == OK else status)


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([OK, OK, OK], OK),
        ([OK, TIMED_OUT, OK], TIMED_OUT),
        ([TIMED_OUT, DIVERGED, OK], DIVERGED),
        ([DIVERGED, FAILED, TIMED_OUT], FAILED),
        ([FAILED, OK], FAILED),
        ([], FAILED),
    ],
)
def test_result_status_is_the_worst(statuses: list[Status], expected: Status) -> None:
    folds = [_fold(k, s) for k, s in enumerate(statuses)]
    result = Result.from_folds(folds, num_params=123, epochs=2)

    assert result.status == expected
    assert result.ok == (expected == OK)
    assert result.num_params == 123 and result.epochs == 2
    for k, s in enumerate(statuses):
        if s != OK:
            assert f"fold {k}: {s}" in result.message


def test_result_means_over_folds() -> None:
    folds = [_fold(0, OK, 0.2), _fold(1, OK, 0.4), _fold(2, OK, 0.9)]
    result = Result.from_folds(folds, 10, 3)
    assert result.top3 == pytest.approx(0.5)
    assert result.top1 == pytest.approx(0.3)
    assert result.seconds == pytest.approx(1.5)
    assert result.message == ""


# -- the result that stands for a member -----------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ({}, None),
        ({2: OK, 16: OK, 50: TIMED_OUT}, 16),  # a timed-out continuation keeps the last ok one
        ({2: DIVERGED, 4: TIMED_OUT}, 4),  # no ok result: the latest
        ({8: OK, 2: OK, 4: FAILED}, 8),
        ({2: "ok", 4: "diverged"}, 2),  # the ledger's plain strings
    ],
)
def test_standing_budget_is_the_highest_ok_else_the_latest(
    statuses: dict[int, str], expected: int | None
) -> None:
    assert standing_budget(statuses) == expected
