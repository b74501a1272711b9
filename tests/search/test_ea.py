"""The evolutionary search end to end on tiny data: budgets, constraints, outputs, resume.

Every search here really trains (2-fold CV, 1-2 epochs, networks of at most 20,000 parameters on
8x8 images), so each evaluation takes about a second.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import sqlite3
from pathlib import Path

import pytest

import AutoML
from evoband.core._errors import ConfigError, StoreError
from evoband.nets._cnn import count_params
from evoband.search._member import Origin
from evoband.search._run import SearchReport, run_search
from evoband.search._settings import SearchSettings
from evoband.search._setup import SearchConfig
from evoband.search._state import SearchState
from evoband.space._recipes import RECIPES
from evoband.store._exports import PROGRESS_COLUMNS, load_run
from evoband.training._cost import CostModel
from evoband.training._data import load_data
from evoband.training._target import Task
from helpers import (
    TINY_CLASSES,
    TINY_SHAPE,
    call_cli,
    error_lines,
    make_image_folder,
    read_json,
    run_scripts_concurrently,
    script,
    snapshot,
)

MAX_PARAMS = 20_000
OUTPUTS = ("history.sqlite", "opt_cfg.json", "automl_run.json", "progress.csv", "run.json")


def search_config(
    data_dir: Path,
    run_dir: Path,
    *,
    cap: int | None,
    hyperband: bool = True,
    seed: int = 1,
    min_precision: float = 0.1,
    max_params: float = MAX_PARAMS,
    resume: bool = False,
    random_search: bool = False,
) -> SearchConfig:
    settings = SearchSettings(
        pop_size=3,
        num_children=2,
        hyperband=hyperband,
        min_epochs=1,
        max_epochs=2,
        eta=2,
        max_evaluations=cap,
        seed=seed,
        random_search=random_search,
        eval_time_limit=600,  # time limits depend on the machine's load: keep them out
        remeasure=False,  # the schedule alone (re-measuring has tests of its own)
    )
    return SearchConfig(
        settings=settings,
        max_params=max_params,
        min_precision=min_precision,
        space="course",
        data_dir=str(data_dir),
        cv_folds=2,
        run_dir=str(run_dir),
        resume=resume,
        progress=False,
    )


def records(run_dir: Path) -> list[dict]:
    return read_json(run_dir / "automl_run.json")


def assert_same_evaluations(a: list[dict], b: list[dict], tol: float = 1e-6) -> None:
    assert [(r["member_id"], r["epochs"]) for r in a] == [(r["member_id"], r["epochs"]) for r in b]
    for x, y in zip(a, b, strict=True):
        where = f"member {x['member_id']} at {x['epochs']} epochs"
        assert x["configuration"] == y["configuration"], where
        assert (x["parents"], x["origin"], x["status"], x["num_params"]) == (
            y["parents"],
            y["origin"],
            y["status"],
            y["num_params"],
        ), where
        for key in ("top3", "top1", "precision"):
            assert abs(x[key] - y[key]) <= tol, f"{key} of {where}: {x[key]} != {y[key]}"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("data") / "tiny")


@pytest.fixture(scope="module")
def reference(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path
) -> tuple[Path, SearchReport]:
    """A Hyperband search stopped by max_evaluations=6, done in one go (never modified)."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    report = run_search(search_config(data_dir, run_dir, cap=6))
    return run_dir, report


# -- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"pop_size": 1}, "pop_size"),
        ({"num_children": 0}, "num_children"),
        ({"max_epochs": 0, "hyperband": False}, "epochs"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**32}, "seed"),
        ({"max_time": 0}, "max_time"),
        ({"max_time": -5}, "max_time"),
        ({"max_evaluations": 0}, "max_evaluations"),
        ({"eval_time_limit": 0}, "eval_time_limit"),
        ({"eval_cost_share": 0}, "eval_cost_share"),
        ({"eval_cost_share": 1.5}, "eval_cost_share"),
        ({"crossover_prob": 1.5}, "crossover_prob"),
        ({"hyperband": True, "eta": 1}, "eta"),
        ({"hyperband": True, "min_epochs": 60, "max_epochs": 50}, "min_epochs"),
    ],
)
def test_settings_validated_at_construction(kwargs: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        SearchSettings(**kwargs)


def test_tournament_size_validated_at_construction() -> None:
    with pytest.raises(ConfigError, match="tournament"):
        SearchSettings(tournament_size=0)


def test_settings_algorithm_names() -> None:
    assert SearchSettings(hyperband=True).algorithm == "EA+HB"
    assert SearchSettings(hyperband=False).algorithm == "EA"
    assert SearchSettings(hyperband=False, random_search=True).algorithm == "RS"
    assert SearchSettings(max_time=120).max_eval_seconds == pytest.approx(40.0)
    assert SearchSettings(max_time=900, eval_cost_share=0.5).max_eval_seconds == 450.0


# -- real searches --------------------------------------------------------------------------------


def test_hyperband_search_respects_the_budget_and_max_params(reference) -> None:
    run_dir, report = reference
    for name in OUTPUTS:
        assert (run_dir / name).is_file(), name
    rows = records(run_dir)
    assert len(rows) == 6 == report.n_evaluations
    assert "max_evaluations (6)" in report.stopped_by
    for row in rows:
        assert row["status"] == "ok"
        assert row["num_params"] <= MAX_PARAMS
        assert count_params(row["configuration"], TINY_SHAPE, TINY_CLASSES) == row["num_params"]
    # the initial population (recipes and the default network are too big here: all sampled)
    # climbs bracket s=1 of min 1 / max 2 epochs: 3 members at 1 epoch, the best goes on to 2;
    # then the first bracket of generation 1: two children at 1 epoch
    assert [(r["member_id"], r["epochs"]) for r in rows[:3]] == [(i, 1) for i in range(3)]
    assert rows[3]["member_id"] in (0, 1, 2) and rows[3]["epochs"] == 2
    assert [(r["member_id"], r["epochs"]) for r in rows[4:]] == [(3, 1), (4, 1)]
    assert [r["origin"] for r in rows[:3]] == [Origin.SAMPLED] * 3
    assert all(
        r["origin"] in (Origin.MUTATED, Origin.RECOMBINED) and r["parents"] for r in rows[4:]
    )
    assert all(set(r["parents"]) <= {0, 1, 2} for r in rows[4:])
    frame = load_run(run_dir)
    assert frame["bracket"].tolist() == [1] * 6 and frame["rung"].tolist() == [0, 0, 0, 1, 0, 0]
    run_json = read_json(run_dir / "run.json")
    assert run_json["algorithm"] == "EA+HB"
    assert run_json["n_evaluations"] == 6 and run_json["n_replayed"] == 0
    assert run_json["hyperband"]["brackets"][0] == {"s": 1, "n_members": [2, 1], "budgets": [1, 2]}
    assert run_json["search"]["max_params"] == MAX_PARAMS
    assert report.best is not None and report.feasible
    assert read_json(run_dir / "opt_cfg.json") == report.best.config
    assert run_json["best"]["member_id"] == report.best.member_id
    assert (run_dir / "progress.csv").read_text().splitlines()[0].split(",") == PROGRESS_COLUMNS
    assert "Best feasible configuration" in report.format()
    assert f"main.py -c {run_dir / 'ensemble.json'} -t True" in report.format()
    alone = dataclasses.replace(report, n_feasible_members=1)  # nothing to average it with
    assert "--ensemble" not in alone.format() and "Best feasible configuration" in alone.format()


def test_search_without_hyperband(data_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    report = run_search(search_config(data_dir, run_dir, cap=5, hyperband=False))
    rows = records(run_dir)
    assert len(rows) == 5 == report.n_evaluations
    # every member trains the full budget at once
    assert all(r["epochs"] == 2 for r in rows)
    assert [r["member_id"] for r in rows] == [0, 1, 2, 3, 4]
    assert all(r["origin"] in (Origin.MUTATED, Origin.RECOMBINED) for r in rows[3:])
    assert all(r["num_params"] <= MAX_PARAMS for r in rows)
    frame = load_run(run_dir)
    assert frame["bracket"].isna().all()
    run_json = read_json(run_dir / "run.json")
    assert run_json["algorithm"] == "EA" and "hyperband" not in run_json
    assert not list((run_dir / "checkpoints").rglob("*.pt")), "finished members keep no checkpoints"


def test_random_search_children_are_fresh_samples(data_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_search(search_config(data_dir, run_dir, cap=4, hyperband=False, random_search=True))
    rows = records(run_dir)
    assert len(rows) == 4
    assert all(r["origin"] == Origin.SAMPLED and r["parents"] == [] for r in rows)
    assert read_json(run_dir / "run.json")["algorithm"] == "RS"


def test_a_time_budget_spent_on_the_initial_population_is_pointed_out(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every finished evaluation counts 10 s: 25 s end a population of 6 at its first rung, 55 s
    end a population of 3 (3 + 1 evaluations) among its children."""
    monkeypatch.setattr(SearchState, "elapsed", lambda self: 10.0 * self.n_evaluations)
    for pop_size, max_time, inside in ((6, 25.0, True), (3, 55.0, False)):
        config = search_config(data_dir, tmp_path / f"pop{pop_size}", cap=None)
        settings = dataclasses.replace(config.settings, pop_size=pop_size, max_time=max_time)
        report = run_search(dataclasses.replace(config, settings=settings))
        assert report.stopped_by.startswith("max_time")
        assert report.ended_in_initial_population is inside
        assert ("a smaller --pop_size" in report.format()) is inside
        rows = records(tmp_path / f"pop{pop_size}")
        assert any(r["origin"] != Origin.SAMPLED for r in rows) is not inside


def test_unmeetable_precision_reports_infeasible_and_still_writes_outputs(tmp_path: Path) -> None:
    noise = make_image_folder(tmp_path / "noise", informative=False)
    run_dir = tmp_path / "run"
    report = run_search(search_config(noise, run_dir, cap=3, min_precision=0.99))
    assert report.feasible is False
    assert report.n_feasible == 0 and report.n_evaluations == 3
    assert report.best is not None  # the most precise one is still returned
    text = report.format()
    assert "NO FEASIBLE CONFIGURATION FOUND" in text and "precision >= 0.99" in text
    assert "--ensemble" not in text  # no feasible members to average
    for name in OUTPUTS:
        assert (run_dir / name).is_file(), name
    rows = records(run_dir)
    most_precise = max(rows, key=lambda r: r["precision"])
    assert most_precise["precision"] < 0.99
    assert read_json(run_dir / "opt_cfg.json") == most_precise["configuration"]
    run_json = read_json(run_dir / "run.json")
    assert run_json["feasible"] is False and run_json["n_feasible"] == 0
    assert run_json["best"]["member_id"] == most_precise["member_id"]


# -- resume ---------------------------------------------------------------------------------------


def test_resume_with_a_larger_cap_equals_one_go(reference, data_dir: Path, tmp_path: Path) -> None:
    ref_dir, _ = reference
    run_dir = tmp_path / "run"
    first = run_search(search_config(data_dir, run_dir, cap=5))
    assert first.n_evaluations == 5
    # the member promoted to the next rung keeps its checkpoints to continue from
    assert list((run_dir / "checkpoints").rglob("*.pt"))
    second = run_search(search_config(data_dir, run_dir, cap=6, resume=True))
    assert second.n_evaluations == 6
    assert_same_evaluations(records(run_dir), records(ref_dir))
    run_json = read_json(run_dir / "run.json")
    assert run_json["n_replayed"] == 5, "recorded evaluations are replayed, not retrained"
    assert read_json(run_dir / "opt_cfg.json") == read_json(ref_dir / "opt_cfg.json")


def test_corrupted_checkpoint_on_resume_is_retrained(
    reference, data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ref_dir, _ = reference
    run_dir = tmp_path / "run"
    run_search(search_config(data_dir, run_dir, cap=3))
    checkpoints = list((run_dir / "checkpoints").rglob("*.pt"))
    assert checkpoints
    for path in checkpoints:
        path.write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING, logger="evoband"):
        report = run_search(search_config(data_dir, run_dir, cap=4, resume=True))
    assert "retraining from scratch" in caplog.text
    assert report.n_evaluations == 4
    rows = records(run_dir)
    assert rows[-1]["epochs"] == 2 and rows[-1]["status"] == "ok"
    # retraining 2 epochs from scratch gives the network that 1 + 1 epochs would have given
    assert_same_evaluations(rows, records(ref_dir)[:4])


def test_resume_with_different_seed_or_constraint_refused(
    reference, data_dir: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(reference[0], run_dir)
    before = snapshot(run_dir)
    with pytest.raises(StoreError) as info:
        run_search(search_config(data_dir, run_dir, cap=8, seed=2, min_precision=0.5, resume=True))
    message = str(info.value)
    assert "seed: run has 1, now 2" in message
    assert "min_precision: run has 0.1, now 0.5" in message
    assert "max_params" not in message and "pop_size" not in message
    with pytest.raises(
        StoreError, match=r"^Cannot resume .*\(max_params: run has 20000, now 30000\)"
    ):
        run_search(search_config(data_dir, run_dir, cap=8, max_params=30_000, resume=True))
    after = snapshot(run_dir)
    exports = [name for name in before if not name.startswith("history.sqlite")]
    assert {k: after[k] for k in exports} == {k: before[k] for k in exports}
    conn = sqlite3.connect(run_dir / "history.sqlite")
    try:
        assert conn.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0] == 6
    finally:
        conn.close()


def test_resume_of_a_folder_that_is_not_a_run_refused(data_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a run")
    before = snapshot(folder)
    with pytest.raises(StoreError, match="Cannot resume"):
        run_search(search_config(data_dir, folder, cap=2, resume=True))
    assert snapshot(folder) == before and not (folder / "history.sqlite").exists()


def test_resume_of_a_run_killed_before_its_ledger_starts_afresh(
    data_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "new" / "checkpoints").mkdir(parents=True)
    report = run_search(search_config(data_dir, tmp_path / "new", cap=1, resume=True))
    assert report.n_evaluations == 1 and len(records(tmp_path / "new")) == 1


def test_resume_of_a_missing_run_dir_refused(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="Nothing to resume"):
        run_search(search_config(data_dir, tmp_path / "missing", cap=1, resume=True))
    assert not (tmp_path / "missing").exists()


def test_refused_overwrite_of_a_used_run_dir(reference, data_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(reference[0], run_dir)
    before = snapshot(run_dir)
    code, _, stderr = call_cli(
        AutoML.main,
        [
            "--data_dir",
            str(data_dir),
            "--run_dir",
            str(run_dir),
            "--epochs",
            "2",
            "--min_epochs",
            "1",
            "--pop_size",
            "3",
            "--hyperband",
            "--max_evaluations",
            "6",
            "-s",
            str(MAX_PARAMS),
            "-p",
            "0.1",
            "--cv_folds",
            "2",
            "--seed",
            "1",
            "--no_progress",
        ],
    )
    assert code == 2
    lines = error_lines(stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--resume" in lines[0]
    assert snapshot(run_dir) == before


# -- reproducibility ------------------------------------------------------------------------------


@pytest.mark.slow
def test_same_seed_same_search_in_fresh_processes(
    reference, data_dir: Path, tmp_path: Path
) -> None:
    def command(run: str) -> list[str]:
        return script(
            "AutoML.py",
            "--data_dir",
            str(data_dir),
            "--run_dir",
            str(tmp_path / run),
            "--epochs",
            "2",
            "--min_epochs",
            "1",
            "--pop_size",
            "3",
            "--hyperband",
            "--max_evaluations",
            "6",
            "-s",
            str(MAX_PARAMS),
            "-p",
            "0.1",
            "--cv_folds",
            "2",
            "--seed",
            "5",
            "--workers",
            "1",  # one at a time: the ledger's order too is the same (more workers: same set)
            "--no_progress",
        )

    results = run_scripts_concurrently([command("a"), command("b")])
    for code, _, stderr in results:
        assert code == 0, stderr[-2000:]
    a, b = records(tmp_path / "a"), records(tmp_path / "b")
    assert len(a) == 6
    assert [r["configuration"] for r in a] == [r["configuration"] for r in b]
    assert [r["member_id"] for r in a] == [r["member_id"] for r in b]
    assert [r["epochs"] for r in a] == [r["epochs"] for r in b]
    assert_same_evaluations(a, b)
    assert read_json(tmp_path / "a" / "opt_cfg.json") == read_json(tmp_path / "b" / "opt_cfg.json")
    # ... while another seed (the reference run: seed 1, same settings) searches differently
    assert [r["configuration"] for r in a] != [r["configuration"] for r in records(reference[0])]


def test_search_on_images_too_small_for_three_poolings(tmp_path: Path) -> None:
    # 4x4 images allow at most 2 conv layers: the default network and 3-layer children are
    # repaired like oversized ones instead of crashing the search
    root = make_image_folder(tmp_path / "small_images", size=4)
    settings = SearchSettings(
        pop_size=3, hyperband=True, min_epochs=1, max_epochs=2, max_evaluations=4, seed=1
    )
    config = SearchConfig(
        settings=settings,
        max_params=50_000,
        min_precision=0.3,
        data_dir=str(root),
        run_dir=str(tmp_path / "run"),
        progress=False,
    )
    report = run_search(config)
    assert report.n_evaluations == 4
    records = json.loads((tmp_path / "run" / "automl_run.json").read_text())
    assert all(r["configuration"]["n_conv_layers"] <= 2 for r in records)


def extended_search(data_dir: Path, run_dir: Path, **settings: object) -> SearchConfig:
    """Population 4 on the extended space, 100k parameters, 1-2 epochs (see below)."""
    return SearchConfig(
        settings=SearchSettings(
            pop_size=4, hyperband=True, min_epochs=1, max_epochs=2, eta=2, seed=1, max_time=3600,
            **settings,  # type: ignore[arg-type]
        ),
        max_params=100_000,
        min_precision=0.1,
        space="extended",
        data_dir=str(data_dir),
        cv_folds=2,
        run_dir=str(run_dir),
        progress=False,
    )  # fmt: skip


def test_initial_population_starts_from_the_recipes_that_fit(
    data_dir: Path, tmp_path: Path
) -> None:
    run_search(extended_search(data_dir, tmp_path / "run", max_evaluations=5))
    rows = records(tmp_path / "run")
    # bn-cnn (290k parameters) and sgd-cosine are over the limit; bn-cnn-small fits
    assert (
        rows[0]["configuration"] == RECIPES["bn-cnn-small"] and rows[0]["origin"] == Origin.RECIPE
    )
    # the extended default is bn-cnn itself: nothing else to add before the samples
    assert [r["origin"] for r in rows[1:4]] == [Origin.SAMPLED] * 3
    # all four climb the first rung; the best goes on to the second
    assert [r["epochs"] for r in rows] == [1, 1, 1, 1, 2]
    assert read_json(tmp_path / "run" / "opt_cfg.training.json")["segments"] == [1, 2]


def test_without_recipe_starts_every_initial_member_is_sampled(
    data_dir: Path, tmp_path: Path
) -> None:
    run_search(extended_search(data_dir, tmp_path / "run", max_evaluations=4, recipe_starts=False))
    rows = records(tmp_path / "run")
    assert [r["origin"] for r in rows] == [Origin.SAMPLED] * 4
    assert RECIPES["bn-cnn-small"] not in [r["configuration"] for r in rows]
    assert read_json(tmp_path / "run" / "run.json")["search"]["recipe_starts"] is False
    parser = AutoML.build_parser()
    assert AutoML.config_from_args(parser.parse_args([])).settings.recipe_starts is True
    args = parser.parse_args(["--recipes", "False"])
    assert AutoML.config_from_args(args).settings.recipe_starts is False


def test_cost_cap_keeps_every_trained_member_under_it(data_dir: Path, tmp_path: Path) -> None:
    settings = SearchSettings(
        pop_size=6,
        hyperband=False,
        max_epochs=2,
        max_evaluations=8,
        seed=3,
        max_time=1.0,
        eval_cost_share=1.0,
    )
    config = SearchConfig(
        settings=settings,
        max_params=1e7,
        min_precision=0.1,
        space="extended",
        data_dir=str(data_dir),
        cv_folds=2,
        run_dir=str(tmp_path / "run"),
        progress=False,
    )
    task = Task(load_data(data_dir), cv_folds=2, split_seed=3)
    model = CostModel(task.input_shape, task.n_classes, len(task.splits[0].y_train))
    run_search(config)
    members = read_json(tmp_path / "run" / "automl_run.json")
    assert members  # at least one member fits 1 s of predicted training
    assert all(model.seconds(r["configuration"], 2, folds=2) <= 1.0 for r in members)
