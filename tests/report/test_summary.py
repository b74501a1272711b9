"""Summary tables of runs and groups, and compact configuration labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evoband.report import _summary as summary
from evoband.space._shipped import DEFAULT_NETWORK
from evoband.store import _analysis as an
from evoband.store._runs import best_run, read_run
from helpers import write_run


def test_summary_table_rows(tmp_path: Path) -> None:
    runs = [read_run(write_run(tmp_path / f"r{i}", seed=i)) for i in range(3)]
    table = summary.summary_table({"EA+HB": runs})
    assert table["level"].tolist() == ["run", "run", "run", "group"]
    group = table.iloc[-1]
    assert group["cv_top3"] == pytest.approx(table["cv_top3"].iloc[:3].mean())
    assert group["evaluations"] == pytest.approx(np.mean([len(r.evaluations) for r in runs]))
    best = best_run(runs)
    assert group["run"] == best.name
    first = table.iloc[0]
    assert first["feasible_rate"] == pytest.approx(
        an.feasible_mask(runs[0].evaluations, runs[0].constraints).mean()
    )
    text = summary.markdown_summary(table)
    assert text.count("\n") == 1 + len(table) and "test top-3" not in text


def test_compact_config_of_the_default_network() -> None:
    text = summary.compact_config(DEFAULT_NETWORK)
    assert text == "conv[457,511,38] k5 GAP fc[27,17] drop0.20 bs290 lr1.7e-03 adamw"
    extended = {
        **DEFAULT_NETWORK,
        "use_BN": True,
        "aug_flip": True,
        "aug_shift": 2,
        "use_weight_decay": True,
        "weight_decay": 1e-4,
        "lr_schedule": "cosine",
        "activation": "relu",
        "train_criterion": "mse",
    }
    assert summary.compact_config(extended).endswith("adamw flip shift2 cosine mse wd0.0001")
    assert " BN GAP " in summary.compact_config(extended)
