"""McNemar and Wilcoxon tests between groups of runs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from evoband.core._errors import ConfigError
from evoband.report import _retrain as retrain
from evoband.report import _significance as significance
from evoband.report import _summary as summary
from evoband.store._runs import RunData, read_run
from helpers import write_run


def test_mcnemar_known_case() -> None:
    # 8 images only A gets right, 2 only B, 5 both, 3 neither: p = P(Bin(10, .5) far from 5) = 0.109375
    a = [True] * 8 + [False] * 2 + [True] * 5 + [False] * 3
    b = [False] * 8 + [True] * 2 + [True] * 5 + [False] * 3
    result = significance.mcnemar(a, b)
    assert (result.b, result.c) == (8, 2)
    assert result.pvalue == pytest.approx(0.109375)
    assert significance.mcnemar([True, False], [True, False]).pvalue == 1.0
    with pytest.raises(ConfigError, match="same samples"):
        significance.mcnemar([True], [True, False])


def test_wilcoxon_paired_by_seed() -> None:
    a = {1: 0.6, 2: 0.7, 3: 0.8, 4: 0.65, 5: 0.9, 6: 0.75}
    b = {1: 0.5, 2: 0.55, 3: 0.7, 4: 0.6, 5: 0.7, 6: 0.7, 99: 0.1}
    n, stat, p = significance.wilcoxon_paired(a, b)
    assert n == 6 and p == pytest.approx(stats.wilcoxon(list(a.values()), [b[k] for k in a]).pvalue)
    assert math.isnan(significance.wilcoxon_paired({1: 0.5, 2: 0.6}, {1: 0.4, 2: 0.3})[2])


def _fake_test(run: RunData, top3: float, correct: list[bool]) -> retrain.TestResult:
    labels = np.arange(len(correct)) % 3
    predicted = np.where(correct, labels, (labels + 1) % 3)
    return retrain.TestResult(
        run.name, {}, 1, run.seed or 0, top3, 0.5, 0.5, 1, "ok", predicted, labels, ("a", "b", "c")
    )


def test_significance_tests_between_groups(tmp_path: Path) -> None:
    ea = [read_run(write_run(tmp_path / f"ea{s}", seed=s, generations=1)) for s in range(3)]
    rs = [
        read_run(write_run(tmp_path / f"rs{s}", seed=s, generations=1, random_search=True))
        for s in range(3)
    ]
    a = [True] * 8 + [False] * 2 + [True] * 5 + [False] * 3
    b = [False] * 8 + [True] * 2 + [True] * 5 + [False] * 3
    tests = {r.name: _fake_test(r, 0.7 + 0.05 * i, a) for i, r in enumerate(ea)}
    tests |= {r.name: _fake_test(r, 0.6 + 0.01 * i, b) for i, r in enumerate(rs)}
    table = significance.significance_tests({"EA": ea, "RS": rs}, tests)
    assert table["test"].str.split().str[0].tolist() == ["McNemar", "Wilcoxon"]
    assert table["pvalue"].iloc[0] == pytest.approx(0.109375)
    expected = stats.wilcoxon([0.7, 0.75, 0.8], [0.6, 0.61, 0.62]).pvalue
    assert table["n"].iloc[1] == 3 and table["pvalue"].iloc[1] == pytest.approx(expected)
    assert "McNemar" in summary.markdown_tests(table)
