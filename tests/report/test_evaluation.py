"""Tests of src/evaluation.py (and evoband.report._plots, .run_plots) on synthetic run directories."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import evaluation
from evoband.report import _panels as plot_panels
from evoband.report import _plots as plots
from evoband.report import _run_plots as run_plots
from evoband.store._runs import read_run
from helpers import call_cli, error_lines, write_run

FIGURES = (
    "best_over_time",
    "best_over_evaluations",
    "best_over_epochs",
    "scatter_precision_top3",
    "scatter_params_top3",
    "pareto_params_top3",
    "feasible_fraction",
)


def _assert_written(out: Path, names: list[str], suffix: str = "png") -> None:
    for name in names:
        path = out / f"{name}.{suffix}"
        assert path.is_file() and path.stat().st_size > 1000, path


def test_one_run_writes_every_figure_into_its_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path / "run")
    assert evaluation.main([str(run)]) == 0
    out = run / "figures"
    _assert_written(out, [*FIGURES, "hyperband_rungs_run"])
    summary = pd.read_csv(out / "summary.csv")
    assert summary["level"].tolist() == ["run", "group"]
    printed = capsys.readouterr().out
    assert printed.startswith("|  | group | run | optimum |") and "EA+HB" in printed


def test_two_groups_with_test_split_write_every_figure_and_compare_groups(
    tmp_path: Path, tiny_image_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ea = [write_run(tmp_path / f"ea{i}", seed=i, data=str(tiny_image_root)) for i in range(2)]
    rs = [write_run(tmp_path / "rs0", seed=10, random_search=True, data=str(tiny_image_root))]
    out = tmp_path / "figs"
    argv = [
        "--group",
        f"EA={ea[0]},{ea[1]}",
        "--group",
        f"RS={rs[0]}",
        "--out",
        str(out),
        "--test",
        "--epochs",
        "1",
        "--device",
        "cpu",
    ]
    assert evaluation.main(argv) == 0
    names = [p.name for p in ea + rs]
    _assert_written(
        out,
        [
            *FIGURES,
            *(f"hyperband_rungs_{n}" for n in names),
            *(f"confusion_matrix_{n}" for n in names),
        ],
    )
    summary = pd.read_csv(out / "summary.csv")
    groups = summary[summary["level"] == "group"]
    assert groups["group"].tolist() == ["EA", "RS"] and groups["n_runs"].tolist() == [2, 1]
    assert summary["test_top3"].between(0, 1).all()
    tests = pd.read_csv(out / "tests.csv")
    assert tests["test"].str.split().str[0].tolist() == ["McNemar", "Wilcoxon"]
    assert 0 <= tests["pvalue"].iloc[0] <= 1
    assert tests["pvalue"].isna().iloc[1] and "3 runs" in tests["note"].iloc[1]  # RS has 1 run
    results = json.loads((out / "test_results.json").read_text())
    assert len(results["ea0"]["labels"]) == 12  # 3 classes x 4 test images
    printed = capsys.readouterr().out
    assert "test top-3" in printed and "McNemar" in printed


@pytest.fixture
def no_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip drawing where a test is about the tables (drawing is what takes time)."""
    monkeypatch.setattr(evaluation, "save_figures", lambda *args, **kwargs: [])


@pytest.mark.usefixtures("no_figures")
def test_runs_without_groups_are_grouped_by_algorithm(tmp_path: Path) -> None:
    runs = [
        write_run(tmp_path / "a", seed=1),
        write_run(tmp_path / "b", seed=2, random_search=True),
    ]
    out = tmp_path / "figs"
    assert evaluation.main([*map(str, runs), "--out", str(out)]) == 0
    summary = pd.read_csv(out / "summary.csv")
    assert summary.loc[summary["level"] == "group", "group"].tolist() == ["EA+HB", "RS+HB"]
    assert not (out / "tests.csv").exists()  # tests between groups need --test


def test_figures_as_pdf(tmp_path: Path) -> None:
    run = read_run(write_run(tmp_path / "run"))
    path = plot_panels.save(
        plots.feasible_fraction({"EA+HB": [run]}), tmp_path / "feasible_fraction.pdf"
    )
    assert path.read_bytes().startswith(b"%PDF")


@pytest.mark.usefixtures("no_figures")
def test_missing_run_is_one_line_and_the_rest_is_processed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path / "good")
    junk = tmp_path / "junk"
    junk.mkdir()
    out = tmp_path / "figs"
    assert evaluation.main([str(run), str(tmp_path / "missing"), str(junk), "--out", str(out)]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(err) == 2
    assert "missing" in err[0] and "junk" in err[1]
    assert pd.read_csv(out / "summary.csv")["run"].tolist() == ["good", "good"]


def test_no_usable_run_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluation.main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "none of the 1 runs is usable" in err


@pytest.mark.parametrize("argv", [["--group", "nameonly"], ["--epochs", "0", "x"], []])
def test_bad_arguments_raise_config_errors(argv: list[str]) -> None:
    with pytest.raises(evaluation.ConfigError):
        evaluation.main(argv)


@pytest.mark.usefixtures("no_figures")
def test_constraint_flags_override_run_json(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", max_params=10_000, min_precision=0.5)
    out = tmp_path / "figs"
    assert evaluation.main([str(run), "--out", str(out), "-s", "1e9", "-p", "0.01"]) == 0
    row = pd.read_csv(out / "summary.csv").iloc[0]
    assert row["max_params"] == 1_000_000_000 and row["min_precision"] == 0.01
    assert row["feasible_rate"] > 0.9  # everything that did not diverge is feasible now


def test_hyperband_figure_of_a_run_without_rungs_says_so(tmp_path: Path) -> None:
    run = read_run(write_run(tmp_path / "run", generations=0))
    assert not run.uses_hyperband
    fig = run_plots.hyperband_rungs(run)
    assert any("no Hyperband" in t.get_text() for ax in fig.axes for t in ax.texts)


def test_ensemble_members_are_the_best_feasible_of_the_final_population(tmp_path: Path) -> None:
    from evoband.report._run_ensemble import ensemble_members, final_population
    from evoband.store._analysis import feasible_mask, member_results, optimum

    run = read_run(write_run(tmp_path / "run", min_precision=0.3, generations=3))
    population = final_population(run)
    assert population == [int(m) for m in run.generations["population"].iloc[-1]]
    best = int(optimum(run.evaluations, run.constraints)["member_id"])
    standing = member_results(run.evaluations)
    standing = standing[standing["member_id"].isin([*population, best])]
    feasible = standing[feasible_mask(standing, run.constraints)]
    expected = feasible.sort_values(["top3", "member_id"], ascending=[False, True])["member_id"]
    everyone = ensemble_members(run, k=100)
    assert everyone == [int(m) for m in expected] and everyone[0] == best
    assert ensemble_members(run) == everyone[:2]  # half of a population of 4
    assert ensemble_members(run, k=1) == everyone[:1]


def test_selected_training_of_a_member_follows_its_bracket(tmp_path: Path) -> None:
    from evoband.report._retrain import selected_training
    from evoband.store._analysis import member_results

    run = read_run(write_run(tmp_path / "run"))
    standing = member_results(run.evaluations)
    bracketed = standing[standing["bracket"].notna() & (standing["status"] == "ok")].iloc[0]
    epochs, segments = selected_training(run, int(bracketed["member_id"]))
    brackets = {b["s"]: b["budgets"] for b in run.info["hyperband"]["brackets"]}
    assert epochs == int(bracketed["epochs"])
    assert segments == [b for b in brackets[int(bracketed["bracket"])] if b <= epochs]
    assert segments[-1] == epochs


@pytest.mark.usefixtures("no_figures")
def test_ensemble_is_scored_beside_the_optimum_on_test(
    tmp_path: Path, tiny_image_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path / "run", data=str(tiny_image_root), min_precision=0.3)
    out = tmp_path / "figs"
    argv = [str(run), "--out", str(out), "--test", "--ensemble", "2", "--device", "cpu"]
    assert evaluation.main(argv) == 0
    table = pd.read_csv(out / "ensembles.csv")
    assert table["run"].tolist() == ["run"] and table["k"].tolist() == [2]
    results = json.loads((out / "test_results.json").read_text())["run"]
    # the ensemble's first member is the optimum, retrained the same way as by --test
    assert int(table["members"].iloc[0].split()[0]) == results["member_id"]
    assert table["best_top3"].iloc[0] == pytest.approx(results["top3"])
    assert table[["ensemble_top3", "ensemble_precision"]].stack().between(0, 1).all()
    # the parameters of its two networks together: more than the optimum's own
    assert table["num_params"].iloc[0] > results["num_params"] > 0
    printed = capsys.readouterr().out
    assert "Ensembles on the test split" in printed
    assert f"| {int(table['num_params'].iloc[0]):,} |" in printed


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_ensemble_size_is_refused(
    tmp_path: Path, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path / "run")
    with pytest.raises(SystemExit) as exit_info:
        evaluation.main([str(run), "--ensemble", value])
    assert exit_info.value.code == 2
    assert "expected 'half' or a whole number >= 1" in capsys.readouterr().err


def test_test_split_of_a_run_on_in_memory_arrays_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path / "run")
    info = json.loads((run / "run.json").read_text())
    info["data"] = {"name": "arrays", "location": "arrays:sha256:0123"}
    (run / "run.json").write_text(json.dumps(info))
    code, _, err = call_cli(evaluation.main, [str(run), "--test", "--device", "cpu"])
    assert code == 2
    assert len(error_lines(err)) == 1 and "in-memory arrays" in error_lines(err)[0]
    assert not (run / "figures").exists()
