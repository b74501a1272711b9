"""benchmarks/search_quality.py: its pure parts, and one real ``--quick`` run end to end."""

from __future__ import annotations

import csv
import importlib.util
import math
import subprocess
import sys
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from evoband.search._hyperband import HyperbandSchedule
from evoband.search._settings import SearchSettings
from evoband.space._genotype import complete
from evoband.space._spaces import get_space
from evoband.training._constraints import Constraints
from evoband.training._results import Result

pytestmark = [pytest.mark.benchmark, pytest.mark.slow]  # out of `-m "not slow"` too


REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "benchmarks" / "search_quality.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("search_quality", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["search_quality"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


sq = _load()


def _ev(elapsed: float, top3: float, feasible: bool) -> object:
    return sq.Evaluation(elapsed, 2, top3, 0.5, 1000, "ok", feasible, 6)


def test_best_so_far_is_nan_until_feasible_then_a_running_max():
    evs = [_ev(1, 0.9, False), _ev(2, 0.5, True), _ev(3, 0.4, True), _ev(4, 0.7, True)]
    best = sq.best_so_far(evs)
    assert math.isnan(best[0])
    assert best[1:] == [0.5, 0.5, 0.7]
    assert math.isnan(sq.best_at(evs, 1.5))
    assert sq.best_at(evs, 3.0) == 0.5
    assert sq.best_at(evs, 10.0) == 0.7


def _result(top3: float, precision: float, num_params: int = 1000, status: str = "ok") -> Result:
    return Result(top3, top3, precision, num_params, 4, 1.0, status)


def test_rank_cost_orders_results_as_evoband_ranks_them():
    constraints = Constraints.of(2000, 0.39)
    worst_feasible = _result(0.0, 0.39)
    best_infeasible = _result(1.0, 0.389)
    best_timed_out = _result(1.0, 1.0, status="timed_out")
    costs = [
        sq.rank_cost(constraints, r)
        for r in (_result(0.9, 0.5), worst_feasible, best_infeasible, _result(1.0, 0.0),
                  best_timed_out, _result(0.0, 0.0, status="diverged"), None)
    ]  # fmt: skip
    assert costs == sorted(costs) and len(set(costs)) == len(costs)
    assert sq.rank_cost(constraints, _result(0.9, 0.5)) == pytest.approx(0.1)


@pytest.mark.parametrize(("lo", "hi", "eta"), [(1, 8, 2), (4, 32, 2), (2, 50, 2), (1, 27, 3)])
def test_optuna_rungs_are_evobands_most_aggressive_bracket(lo: int, hi: int, eta: int):
    assert tuple(sq.rung_budgets(lo, hi, eta)) == HyperbandSchedule(lo, hi, eta).brackets[0].budgets


@pytest.mark.parametrize(("lo", "hi"), [(1, 8), (4, 32)])
def test_dehb_fidelities_become_evobands_rungs(tmp_path: Path, lo: int, hi: int):
    pytest.importorskip("dehb")
    from dehb import DEHB

    bench = sq.Bench(10.0, "course", int(2e7), 0.39, "digits", 4, lo, hi, 2)
    with warnings.catch_warnings():  # DEHB calls ConfigSpace's deprecated names
        warnings.simplefilter("ignore")
        dehb = DEHB(cs=get_space("course", 0), min_fidelity=lo, max_fidelity=hi, eta=2,
                    n_workers=1, seed=0, output_path=str(tmp_path), log_level="ERROR")  # fmt: skip
    epochs = sorted({sq.fidelity_epochs(f, bench) for f in dehb.fidelities})
    assert epochs == sq.rung_budgets(lo, hi, 2)


@pytest.mark.parametrize("space_name", ["course", "extended"])
def test_optuna_suggests_exactly_the_active_hyperparameters(space_name: str):
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = get_space(space_name, 0)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    layers = set()
    for _ in range(40):
        trial = study.ask()
        config = sq.suggest_config(trial, space)  # validates against the space
        # complete() drops inactive keys and draws missing active ones: nothing to change
        assert complete(space, config, np.random.default_rng(0)) == config
        constants = {k for k in config if type(space[k]).__name__ == "Constant"}
        assert set(config) - constants == set(trial.params)
        layers.add(config["n_conv_layers"])
        study.tell(trial, 1.0)
    assert layers == {1, 2, 3}  # the conditional widths were exercised


def test_quick_changes_only_the_defaults_not_given():
    quick = sq.parse_args(["--quick", "--budget", "7"])
    assert (quick.budget, quick.seeds, quick.data_dir) == (7.0, [0], "digits")
    assert quick.methods == ["ea_hb", "dehb", "optuna"]
    full = sq.parse_args([])
    defaults = SearchSettings()
    assert (full.budget, full.seeds) == (900.0, [0, 1, 2])
    assert (full.min_epochs, full.max_epochs, full.eta) == (
        defaults.min_epochs, defaults.max_epochs, defaults.eta,
    )  # fmt: skip
    assert full.methods == list(sq.ALL_METHODS)
    with pytest.raises(SystemExit):
        sq.parse_args(["--methods", "ea_hb,smac"])
    assert sq.parse_args(["--ensemble", "half"]).ensemble == "half"
    assert sq.parse_args(["--ensemble", "3"]).ensemble == 3
    assert (sq.parse_args([]).distill, sq.parse_args(["--distill", "4"]).distill) == (0, 4)
    for bad in (
        ["--ensemble", "0"], ["--ensemble", "best"], ["--ensemble", "2", "--no_retrain"],
        ["--distill", "-1"], ["--distill", "2", "--no_retrain"],
    ):  # fmt: skip
        with pytest.raises(SystemExit):
            sq.parse_args(bad)


def test_a_missing_peer_is_skipped_with_a_clear_message(monkeypatch, capsys):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "dehb" else find_spec(name, *a),
    )
    assert sq.available_methods(["ea_hb", "dehb"]) == ["ea_hb"]
    out = capsys.readouterr().out
    assert "skipping dehb" in out and "not installed" in out and "requirements-dev.txt" in out


def test_markdown_table_gives_mean_and_std_over_seeds():
    rows = [
        {"method": "ea_hb", "best_cv_top3_25": 0.5, "best_cv_top3_50": 0.6, "best_cv_top3_100": 0.7,
         "n_evaluations": 10, "feasible_rate": 0.5, "epoch_folds": 100, "test_top3": 0.8,
         "test_precision": 0.6},
        {"method": "ea_hb", "best_cv_top3_25": 0.7, "best_cv_top3_50": 0.8, "best_cv_top3_100": 0.9,
         "n_evaluations": 20, "feasible_rate": 1.0, "epoch_folds": 300, "test_top3": math.nan,
         "test_precision": math.nan},
    ]  # fmt: skip
    table = sq.markdown_table(rows).splitlines()
    assert len(table) == 3
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    assert cells[:3] == ["ea_hb", "2", "0.600 ± 0.141"]
    assert cells[5] == "15 ± 7"  # evaluations
    assert cells[6] == "75 ± 35%"  # feasible rate
    assert cells[8] == "0.800"  # one finite test value: its mean only
    one = sq.markdown_table(rows[:1]).splitlines()[2]
    assert "| 10 |" in one and "| 50% |" in one  # counts stay whole numbers below 10 too
    assert "ensemble" not in sq.markdown_table(rows)  # no run has an ensemble: no columns
    rows[0].update(ensemble_top3=0.9, ensemble_precision=0.7, ensemble_members="3 1")
    rows[1].update(ensemble_top3=0.8, ensemble_precision=0.5, ensemble_members="2 0")
    head, _, line = sq.markdown_table(rows).splitlines()
    assert head.rstrip(" |").endswith("ensemble test top-3 | ensemble precision")
    assert line.rstrip(" |").endswith("0.850 ± 0.071 | 0.600 ± 0.141")
    assert "distilled" not in sq.markdown_table(rows)
    rows[0].update(distilled_top3=0.95, distilled_precision=0.8, distill_teachers=4)
    rows[1].update(distilled_top3=0.85, distilled_precision=0.6, distill_teachers=4)
    head, _, line = sq.markdown_table(rows).splitlines()
    assert head.rstrip(" |").endswith("distilled test top-3 | distilled precision")
    assert line.rstrip(" |").endswith("0.900 ± 0.071 | 0.700 ± 0.141")


# --------------------------------------------------------------------------------------------


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _num(text: str) -> float:
    return float(text) if text not in ("", "None") else math.nan


@pytest.mark.slow
def test_quick_benchmark_end_to_end(tmp_path: Path):
    """One real ``--quick`` run (about 1.5 minutes): real searches, retraining, ensembles of
    evoband's runs and outputs."""
    out, runs = tmp_path / "quick.csv", tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--ensemble", "2",
         "--out", str(out), "--runs_dir", str(runs)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = sq.available_methods(sq.QUICK_DEFAULTS["methods"].split(","))
    rows = _read(out)
    assert [(r["method"], r["seed"]) for r in rows] == [(m, "0") for m in expected]
    budget = float(sq.QUICK_DEFAULTS["budget"])
    limit = float(sq.QUICK_DEFAULTS["eval_time_limit"])
    trace = _read(out.with_name("quick_traces.csv"))
    for row in rows:
        method = row["method"]
        n = int(row["n_evaluations"])
        assert n >= 1, row
        assert int(row["n_feasible"]) == round(float(row["feasible_rate"]) * n)
        # the budget is checked before every evaluation; the last may overrun by its time limit
        assert budget <= float(row["search_seconds"]) <= budget + limit + 10.0, row
        points = [t for t in trace if t["method"] == method]
        if int(row["epoch_folds"]) == 0:
            # evoband's methods train under its cost cap; a peer's samples (DEHB ignores the
            # space's weights) may all run into the time limit of this 20-s run before one epoch
            assert method not in sq.EVOBAND_METHODS, row
            assert {t["status"] for t in points} == {"timed_out"}, row
        assert len(points) == n
        assert all(float(t["started"]) < budget + 1.0 for t in points), method
        elapsed = [float(t["elapsed"]) for t in points]
        assert elapsed == sorted(elapsed), method
        best = [_num(t["best_feasible_top3"]) for t in points]
        finite = [b for b in best if not math.isnan(b)]
        assert finite == sorted(finite) and best[len(best) - len(finite) :] == finite, method
        feasible = [float(t["top3"]) for t in points if t["feasible"] == "True"]
        best_100 = _num(row["best_cv_top3_100"])
        if feasible:
            assert best_100 == pytest.approx(max(feasible)) and best_100 == pytest.approx(best[-1])
        else:
            assert math.isnan(best_100)
        at = [_num(row[f"best_cv_top3_{p}"]) for p in (25, 50, 100)]
        assert [a for a in at if not math.isnan(a)] == sorted(a for a in at if not math.isnan(a))
        # the optimum was retrained on the test split by main.py, at the epochs it was scored at,
        # unless the search never finished scoring it
        run_dir = Path(row["run_dir"])
        assert (run_dir / "opt_cfg.json").exists()
        if row["test_status"].startswith("not retrained"):
            assert method not in sq.EVOBAND_METHODS, row
            assert "ok" not in {t["status"] for t in points}, row
            assert not (run_dir / "result_test.json").exists()
        else:
            assert (run_dir / "result_test.json").exists()
            assert row["test_status"] == "ok", row
            assert 0.0 <= float(row["test_top3"]) <= 1.0
            assert 0.0 <= float(row["test_precision"]) <= 1.0
            assert row["test_epochs"] == row["opt_epochs"]
        # evoband's runs: an ensemble of its 2 best feasible members (fewer if fewer are)
        if method in sq.EVOBAND_METHODS and row["opt_feasible"] == "True":
            assert 1 <= len(row["ensemble_members"].split()) <= 2, row
            assert 0.0 <= float(row["ensemble_top3"]) <= 1.0
            assert int(row["ensemble_params"]) >= int(row["opt_num_params"]) > 0
            assert (run_dir / "ensemble" / "ensembles.csv").exists()
        else:
            assert row["ensemble_members"] == "" and math.isnan(_num(row["ensemble_top3"]))
        assert f"| {method} | 1 |" in proc.stdout
    assert out.with_name("quick_best_over_time.png").stat().st_size > 0
    for method in expected:
        if method in sq.PEERS:  # the peers delete their checkpoints when they finish
            assert not (runs / f"{method}_seed0" / "checkpoints").exists()
