"""benchmarks/scaling.py: its pure parts (the real runs are the benchmark's own ``--quick``)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

pytestmark = [pytest.mark.benchmark, pytest.mark.slow]  # out of `-m "not slow"` too


REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "benchmarks" / "scaling.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scaling", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["scaling"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


scaling = _load()


def test_the_setups_are_serial_and_a_dask_cluster_with_either_promotion_or_without_tls() -> None:
    assert scaling.SETUPS == {
        "serial": {"workers": 1, "async_promotion": False},
        "dask2": {"workers": 2, "async_promotion": False},
        "dask2_async": {"workers": 2, "async_promotion": True},
        "dask2_plain": {"workers": 2, "async_promotion": False, "dask_tls": False},
    }


def test_speedup_on_the_serial_runs_evaluations() -> None:
    serial = pd.DataFrame({"member_id": [0, 1, 0], "epochs": [2, 2, 4], "elapsed": [10, 20, 60.0]})
    faster = pd.DataFrame(
        {"member_id": [0, 1, 0, 2], "epochs": [2, 2, 4, 2], "elapsed": [6, 7, 30.0, 40]}
    )
    assert scaling.same_evaluations_speedup(faster, serial) == pytest.approx(2.0)
    assert math.isnan(scaling.same_evaluations_speedup(faster.iloc[:2], serial))


def test_every_setup_leads_once_in_turn() -> None:
    setups = ["serial", "dask2", "other"]
    orders = [scaling.setup_order(setups, i) for i in range(3)]
    assert [order[0] for order in orders] == setups
    assert all(sorted(order) == sorted(setups) for order in orders)


def test_epoch_folds_count_from_the_last_scored_budget() -> None:
    frame = pd.DataFrame(
        [
            {"member_id": 0, "epochs": 2, "n_folds": 3, "status": "ok"},
            {"member_id": 0, "epochs": 4, "n_folds": 3, "status": "ok"},  # continues: 2 more
            {"member_id": 1, "epochs": 2, "n_folds": 1, "status": "timed_out"},
            {"member_id": 1, "epochs": 4, "n_folds": 3, "status": "ok"},  # no checkpoint: 4
        ]
    )
    assert scaling.epoch_folds(frame) == 2 * 3 + 2 * 3 + 2 * 1 + 4 * 3


def test_quick_changes_only_the_defaults_not_given() -> None:
    args = scaling.parse_args(["--quick", "--budget", "7"])
    assert (args.budget, args.data_dir, args.pop_size, args.seeds) == (7.0, "digits", 4, [0])
    full = scaling.parse_args(["--seeds", "0,1", "--setups", "dask2,serial"])
    assert full.data_dir is None and full.budget == 300 and full.setups == ["dask2", "serial"]
    with pytest.raises(SystemExit):
        scaling.parse_args(["--setups", "threads4"])


def test_the_table_gives_the_speed_up_over_serial() -> None:
    def row(setup: str, rate: float, top3: float) -> dict:
        return {
            "setup": setup, "evals_per_min": rate, "epoch_folds_per_min": rate * 5,
            "best_feasible_cv_top3": top3, "n_evaluations": rate, "startup_s": 1.0,
            "load_before": 0.1, "same_evals_speedup": 1.0 if setup == "serial" else 1.7,
        }  # fmt: skip

    rows = [row("serial", 10, 0.8), row("serial", 12, 0.82), row("dask2", 19.8, math.nan)]
    table = scaling.markdown_table(rows).splitlines()
    assert table[2].startswith("| serial | 2 | 11.0 ± 1.4 | 1.00x ± 0.00x |")
    assert table[2].endswith("| 1.00x |")
    assert table[3].startswith("| dask2 | 1 | 19.8 | 1.70x |") and table[3].endswith("| 1.80x |")
    assert "| - |" in table[3]  # no feasible result
