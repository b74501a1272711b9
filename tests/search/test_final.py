"""The final predictor a search delivers: within the constraints, reproducible on resume, scored by
main.py from its saved weights; duplicate children; the one retrain of fitted members."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import main as main_script
from evoband import fit
from evoband.search._breeding import Breeder
from evoband.search._ensemble_selection import fold_scores
from evoband.search._run import run_search
from evoband.search._settings import SearchSettings
from evoband.search._state import genotype_key
from evoband.store._ledger import RunStore
from evoband.training._data import load_data
from evoband.training._target import Task
from helpers import call_cli, error_lines, make_image_folder, read_json, tiny_search_config

FIVE = ("a", "b", "c", "d", "e")
MAX_PARAMS = 20_000


def settings(cap: int, **changes: Any) -> SearchSettings:
    return SearchSettings(
        pop_size=3, hyperband=True, min_epochs=1, max_epochs=2, max_evaluations=cap, seed=4,
        eval_time_limit=600, **changes,
    )  # fmt: skip


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("data") / "five", classes=FIVE, n_train=9)


@pytest.fixture(scope="module")
def delivered(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A search of 10 evaluations in one go, with its predictor (never modified)."""
    run_dir = tmp_path_factory.mktemp("final") / "run"
    config = tiny_search_config(settings(10), data_dir, run_dir, max_params=MAX_PARAMS)
    report = run_search(config)
    assert report.predictor is not None
    return run_dir


def test_the_predictor_meets_the_constraints(delivered: Path, data_dir: Path) -> None:
    record = read_json(delivered / "ensemble.json")
    assert record["format"] == "evoband-ensemble" and record["format_version"] == 1
    members = record["members"]
    networks = sum(m["num_params"] * m["networks"] for m in members)
    assert networks == record["num_params"] <= MAX_PARAMS
    assert sum(m["weight"] for m in members) == pytest.approx(1.0)
    # its out-of-fold scores, recomputed from the ledger: precision per fold, then the mean
    task = Task(load_data(str(data_dir)), cv_folds=2, split_seed=4)
    store = RunStore(delivered, readonly=True)
    try:
        folds = [
            sum(
                m["weight"] * store.out_of_fold(m["member_id"], m["epochs"])[k].astype(np.float64)
                for m in members
            )
            for k in range(2)
        ]
    finally:
        store.close()
    scores = fold_scores(folds, [s.y_valid.numpy() for s in task.splits])
    assert scores.top3 == pytest.approx(record["out_of_fold"]["top3"])
    assert scores.precision == pytest.approx(record["out_of_fold"]["precision"])
    assert record["feasible"] == (scores.precision >= record["constraints"]["min_precision"])
    for member in members:
        assert all((delivered / f).is_file() for f in member["weights"])


def test_main_scores_the_predictor_from_its_weights(delivered: Path, data_dir: Path) -> None:
    out = delivered.parent / "scored.json"
    argv = ["-c", str(delivered / "ensemble.json"), "-t", "True", "--data_dir", str(data_dir)]
    code, stdout, stderr = call_cli(main_script.main, [*argv, "--no_progress", "--out", str(out)])
    assert code in (0, 1), stderr
    result = read_json(out)
    assert result["retrained"] == 0 and 0.0 <= result["top3"] <= 1.0
    assert "precision (on test)" in stdout
    assert len(result["probabilities"]) == len(result["labels"])


def test_resume_with_max_evaluations_reproduces_the_same_ensemble(
    delivered: Path, data_dir: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    run_search(tiny_search_config(settings(6), data_dir, run_dir, max_params=MAX_PARAMS))
    run_search(
        tiny_search_config(settings(10), data_dir, run_dir, max_params=MAX_PARAMS, resume=True)
    )
    once, resumed = read_json(delivered / "ensemble.json"), read_json(run_dir / "ensemble.json")
    keys = ("member_id", "epochs", "weight", "networks", "config", "seed")
    assert [{k: m[k] for k in keys} for m in resumed["members"]] == [
        {k: m[k] for k in keys} for m in once["members"]
    ]
    assert resumed["out_of_fold"] == pytest.approx(once["out_of_fold"])


def test_a_duplicate_child_is_drawn_again_not_trained(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[dict[str, Any]] = []
    child = Breeder.child

    def every_other_a_copy(self, usable, rng):  # noqa: ANN001, ANN202
        made.append({})
        if len(made) % 2 and usable:  # a copy of the best parent
            return dict(usable[0].config), usable[0].origin, (usable[0].member_id,)
        return child(self, usable, rng)

    monkeypatch.setattr(Breeder, "child", every_other_a_copy)
    run_dir = tmp_path / "run"
    report = run_search(tiny_search_config(settings(12), data_dir, run_dir, max_params=MAX_PARAMS))
    assert report.duplicates >= 1
    store = RunStore(run_dir, readonly=True)
    try:
        rows = store.conn.execute("SELECT config, origin FROM members").fetchall()
    finally:
        store.close()
    keys = [genotype_key(json.loads(c)) for c, origin in rows if origin != "repeated"]
    assert len(keys) == len(set(keys)), "a configuration was trained twice as a new member"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ({"format": "evoband-ensemble", "format_version": 1, "members": []}, "no members"),
        ({"format": "evoband-ensemble", "format_version": 99, "members": [{}]}, "format_version"),
        ({"format": "evoband-ensemble", "format_version": 1, "members": [{"member_id": 1}]},
         "lacks"),
    ],
)  # fmt: skip
def test_a_bad_ensemble_json_gets_one_line_and_exit_2(
    content: dict[str, Any], words: str, tmp_path: Path, data_dir: Path
) -> None:
    path = tmp_path / "ensemble.json"
    path.write_text(json.dumps(content))
    code, _, stderr = call_cli(
        main_script.main, ["-c", str(path), "-t", "True", "--data_dir", str(data_dir)]
    )
    assert code == 2
    lines = error_lines(stderr)
    assert len(lines) == 1 and words in lines[0], stderr


def test_an_ensemble_json_with_a_missing_weight_file_is_retrained(
    delivered: Path, data_dir: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(delivered, tmp_path / "copy"))
    record = read_json(copy / "ensemble.json")
    (copy / record["members"][0]["weights"][0]).unlink()
    out = tmp_path / "scored.json"
    argv = ["-c", str(copy / "ensemble.json"), "-t", "True", "--data_dir", str(data_dir)]
    code, _, stderr = call_cli(main_script.main, [*argv, "--no_progress", "--out", str(out)])
    assert code in (0, 1), stderr
    assert read_json(out)["retrained"] == 1


def test_a_fitted_member_retrains_as_main_does_along_its_lineage(
    data_dir: Path, tmp_path: Path
) -> None:
    population = fit(
        str(data_dir), constraints=(MAX_PARAMS, 0.01), space="course", run_dir=tmp_path / "run",
        settings=settings(9, inherit_weights=True, predictor=False), progress=False,
    )  # fmt: skip
    inherited = [m for m in population if m.training_record is not None]
    assert inherited, "no member of the population inherited weights"
    member = inherited[0]
    model = member.model()
    cfg = tmp_path / "member.json"
    cfg.write_text(json.dumps(member.config))
    record = {**member.training_record, "epochs": member.epochs, "member_id": member.member_id}
    cfg.with_name("member.training.json").write_text(json.dumps(record))
    out = tmp_path / "result.json"
    argv = [
        "-c",
        str(cfg),
        "-t",
        "True",
        "--data_dir",
        str(data_dir),
        "--seed",
        str(member.member.seed),
    ]
    code, _, stderr = call_cli(main_script.main, [*argv, "--no_progress", "--out", str(out)])
    assert code in (0, 1), stderr
    result = read_json(out)
    assert result["lineage"] == len(member.training_record["lineage"]) - 1 >= 1
    assert member.test_result is not None
    assert result["top3"] == pytest.approx(member.test_result.top3)
    assert result["precision"] == pytest.approx(member.test_result.precision)
    assert model is member.model()  # cached


def test_the_reserve_counts_only_the_copies_the_parameter_limit_allows() -> None:
    from evoband.search._final import reserve_seconds, retrain_seconds
    from evoband.search._member import Member
    from evoband.space import get_space, recipes
    from evoband.training._cost import CostModel
    from evoband.training._results import Result, Status

    config = recipes(get_space("course"))[0]
    best = Member(0, config, seed=1, num_params=50_000)
    best.results[32] = Result(0.9, 0.6, 0.6, 50_000, 32, 10.0, Status.OK, "", [])
    cost = CostModel((3, 16, 16), 17, 680)
    settings = SearchSettings(max_time=10_000, predictor_share=0.5)
    one = retrain_seconds(cost, config, 32)
    assert reserve_seconds(settings, best, cost, 2, max_params=20_000_000) == pytest.approx(
        min(5_000, one * settings.ensemble_networks / 2)
    )
    # a limit that holds one copy of the best: one retrain, not 32
    assert reserve_seconds(settings, best, cost, 2, max_params=100_000) == pytest.approx(
        one
    )  # 2 copies, 2 workers
    assert reserve_seconds(settings, best, cost, 2, max_params=60_000) == pytest.approx(one)
