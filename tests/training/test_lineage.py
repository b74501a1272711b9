"""Retraining along the lineage: a member that inherited weights is retrained after its
ancestors, as it was scored, by main.py and evaluation.py alike."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import main as main_script
from evoband.search._member import Member, Origin
from evoband.search._run import run_search
from evoband.search._steps import lineage_record
from evoband.store._exports import load_run
from evoband.store._ledger import RunStore
from evoband.training._data import load_data
from evoband.training._lineage import lineage_source, train_lineage
from evoband.training._loop import derive_seed
from evoband.training._target import Task, evaluate
from helpers import SMALL_CONFIG, call_cli, make_image_folder, read_json
from nets.test_inherit import FOUR, search

WIDE = dict(SMALL_CONFIG, n_channels_conv_0=20)


def member(member_id: int, parents: tuple[int, ...] = ()) -> Member:
    origin = (
        Origin.RECOMBINED if len(parents) > 1 else Origin.MUTATED if parents else Origin.SAMPLED
    )
    config = dict(SMALL_CONFIG, n_channels_fc_0=8 + member_id)
    return Member(member_id, config, seed=member_id, num_params=1, origin=origin, parents=parents)


def test_the_record_lists_each_ancestor_once_before_its_descendants() -> None:
    members = [member(0), member(1), member(2, (0, 1)), member(3, (2,)), member(4, (0, 3))]
    sources = {2: [(0, 8), (1, 4)], 3: [(2, 16)], 4: [(0, 8), (3, 4)]}
    nodes = lineage_record(members[4], 32, members, sources)
    assert [(n["member_id"], n["epochs"]) for n in nodes] == [
        (0, 8),
        (1, 4),
        (2, 16),
        (3, 4),
        (4, 32),
    ]
    assert nodes[2]["sources"] == [[0, 8], [1, 4]]
    assert nodes[2]["config"] == members[2].config and nodes[0]["sources"] == []
    # a member that inherited nothing is its own lineage
    assert lineage_record(members[1], 8, members, sources) == [
        {"member_id": 1, "config": members[1].config, "epochs": 8, "sources": []}
    ]


def test_ancestors_are_trained_to_their_epochs_and_passed_on(tmp_path: Path) -> None:
    task = Task(load_data(make_image_folder(tmp_path / "data")), use_test=True)
    lineage = [
        {"member_id": 5, "config": SMALL_CONFIG, "epochs": 2, "sources": []},
        {"member_id": 9, "config": WIDE, "epochs": 3, "sources": [[5, 2]]},
    ]
    source = train_lineage(lineage, task, seed=1, segments=[1, 2, 4], workdir=tmp_path / "w")
    assert source is not None and source.member_id == 5 and source.epochs == 2
    alone = evaluate(
        SMALL_CONFIG, 2, task=task, seed=derive_seed(1, 5), segments=[1, 2], keep_predictions=True
    )
    saved = torch.load(tmp_path / "w" / "member5_2epochs" / "fold0.pt", weights_only=True)
    for name, tensor in alone.folds[0].model.state_dict().items():
        assert torch.equal(saved["model"][name], tensor), name
    child = evaluate(WIDE, 3, task=task, seed=1, inherit=source)
    assert child.folds[0].inherited


def test_a_record_for_another_configuration_trains_from_scratch(tmp_path: Path) -> None:
    task = Task(load_data(make_image_folder(tmp_path / "data")), use_test=True)
    record = {
        "segments": [],
        "lineage": [
            {"member_id": 0, "config": SMALL_CONFIG, "epochs": 1, "sources": []},
            {"member_id": 1, "config": WIDE, "epochs": 1, "sources": [[0, 1]]},
        ],
    }
    assert lineage_source(record, SMALL_CONFIG, task, seed=0, workdir=tmp_path) is None
    assert lineage_source({"segments": []}, WIDE, task, seed=0, workdir=tmp_path) is None
    assert lineage_source(record, WIDE, task, seed=0, workdir=tmp_path / "w") is not None


def test_a_search_records_sources_and_main_retrains_the_lineage(tmp_path: Path) -> None:
    data_dir = make_image_folder(tmp_path / "data", classes=FOUR)
    run_dir = tmp_path / "run"
    main_script_args = ["--data_dir", str(data_dir), "--no_progress", "-t", "True"]
    run_search(search(data_dir, run_dir, inherit_weights=True))
    store = RunStore(run_dir, readonly=True)
    try:
        inherited = store.inheritances()
    finally:
        store.close()
    frame = load_run(run_dir)
    epochs = frame.groupby("member_id")["epochs"].max().to_dict()
    child_id = max(inherited)
    for parent_id, parent_epochs in inherited[child_id]["sources"]:
        assert 1 <= parent_epochs <= epochs[parent_id]
    assert inherited[child_id]["sources"][0][0] == inherited[child_id]["parent"]
    # a configuration file and training record for that child, as the search exports its optimum
    members = [
        Member(int(r.member_id), r.config, 0, 1, parents=tuple(r.parents))
        for r in frame.sort_values("member_id").drop_duplicates("member_id").itertuples()
    ]
    sources = {m: row["sources"] for m, row in inherited.items()}
    lineage = lineage_record(members[child_id], 2, members, sources)
    assert len(lineage) >= 2
    cfg = tmp_path / "child.json"
    cfg.write_text(json.dumps(members[child_id].config))
    record = {"epochs": 2, "segments": [1, 2], "seed": 2, "member_id": child_id}
    cfg.with_name("child.training.json").write_text(json.dumps({**record, "lineage": lineage}))
    outs = {}
    for flag in ("True", "False"):
        out = tmp_path / f"result_{flag}.json"
        args = ["-c", str(cfg), *main_script_args, "--lineage", flag, "--out", str(out)]
        code, _, stderr = call_cli(main_script.main, args)
        assert code in (0, 1), stderr
        outs[flag] = read_json(out)
    assert outs["True"]["lineage"] == len(lineage) - 1 and outs["False"]["lineage"] == 0
    assert outs["True"]["folds"][0]["inherited"] and not outs["False"]["folds"][0].get("inherited")
