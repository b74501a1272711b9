"""The run store: ledger schema, round trips, refusal of foreign files, exports, live reading."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import evoband.core._files as files_module
from evoband.core._errors import StoreError, StoreWriteError
from evoband.search._member import Member, Origin
from evoband.store._exports import PROGRESS_COLUMNS, load_run
from evoband.store._ledger import RunStore
from evoband.store._schema import APPLICATION_ID, LEDGER, SCHEMA_VERSION
from evoband.training._results import FoldResult, Result, Status
from helpers import SMALL_CONFIG

TABLES = {"meta", "run", "members", "evaluations", "folds", "generations", "state"}
LOAD_RUN_COLUMNS = {
    "member_id",
    "epochs",
    "status",
    "top3",
    "top1",
    "precision",
    "num_params",
    "seconds",
    "elapsed",
    "generation",
    "bracket",
    "rung",
    "origin",
    "parents",
}


def make_member(
    member_id: int, config: dict | None = None, parents: tuple[int, ...] = ()
) -> Member:
    return Member(
        member_id=member_id,
        config=dict(config or SMALL_CONFIG),
        seed=1000 + member_id,
        num_params=811,
        origin=Origin.MUTATED if parents else Origin.SAMPLED,
        parents=parents,
        generation=1 if parents else 0,
        bracket=2 if parents else None,
    )


def make_result(
    epochs: int = 2, top3: float = 0.9, precision: float = 0.6, folds: int = 2
) -> Result:
    fold_results = [
        FoldResult(
            fold=k,
            top3=top3 + 0.01 * k,
            top1=0.5,
            precision=precision - 0.01 * k,
            loss=0.25 + k,
            epochs=epochs,
            seconds=1.5,
            status=Status.OK,
            message="",
            checkpoint_sha256=f"{k:064x}",
        )
        for k in range(folds)
    ]
    return Result.from_folds(fold_results, num_params=811, epochs=epochs)


def record(store: RunStore, member: Member, result: Result, generation: int = 0) -> None:
    for fold in result.folds:
        store.record_fold(member.member_id, result.epochs, fold)
    store.record_evaluation(
        member.member_id,
        result,
        generation=generation,
        bracket=member.bracket,
        rung=0,
        elapsed=12.5,
        state={"generation": generation, "n": 1},
    )


@pytest.fixture
def store(tmp_path: Path):
    s = RunStore(tmp_path / "run")
    yield s
    s.close()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_schema_created(tmp_path: Path) -> None:
    RunStore(tmp_path / "run").close()
    conn = sqlite3.connect(tmp_path / "run" / LEDGER)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert TABLES <= tables
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        assert int(version) == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    assert (tmp_path / "run" / "checkpoints").is_dir()
    # opening it again neither fails nor adds a second schema_version row
    again = RunStore(tmp_path / "run")
    assert again.conn.execute("SELECT COUNT(*) FROM meta").fetchone()[0] == 1
    assert again.is_empty()
    again.close()


def test_record_and_read_evaluation_round_trip(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    member = make_member(0)
    result = make_result()
    store.add_member(member)
    assert store.member_config(0) == SMALL_CONFIG
    assert store.member_config(1) is None
    assert store.evaluation(0, 2) is None
    record(store, member, result)
    store.close()

    reopened = RunStore(tmp_path / "run", readonly=True)
    try:
        back = reopened.evaluation(0, 2)
        assert back == result
        assert back.folds == result.folds
        assert reopened.fold_results(0, 2) == {f.fold: f for f in result.folds}
        assert reopened.evaluation(0, 4) is None
        assert reopened.state() == {"generation": 0, "n": 1}
        assert reopened.latest_checkpoint_hashes(0) == {0: f"{0:064x}", 1: f"{1:064x}"}
    finally:
        reopened.close()


def test_nan_loss_survives_round_trip(store: RunStore) -> None:
    member = make_member(0)
    store.add_member(member)
    fold = FoldResult(0, 0.0, 0.0, 0.0, float("nan"), 0, 0.1, "failed", "out of memory")
    store.record_fold(0, 2, fold)
    back = store.fold_results(0, 2)[0]
    assert np.isnan(back.loss) and back.status == "failed" and back.message == "out of memory"


def test_latest_checkpoint_hash_is_the_highest_budget(store: RunStore) -> None:
    member = make_member(0)
    store.add_member(member)
    for epochs, digest in ((1, "a" * 64), (4, "c" * 64), (2, "b" * 64)):
        store.record_fold(
            0, epochs, FoldResult(0, 1, 1, 1, 0.1, epochs, 1.0, checkpoint_sha256=digest)
        )
    assert store.latest_checkpoint_hashes(0) == {0: "c" * 64}


def test_run_info_and_state(store: RunStore) -> None:
    store.set_run_info({"search": {"seed": 3, "space": "course"}, "versions": {"evoband": "x"}})
    store.set_run_info({"versions": {"evoband": "y"}})
    assert store.run_info() == {
        "search": {"seed": 3, "space": "course"},
        "versions": {"evoband": "y"},
    }
    assert not store.is_empty()
    store.set_state({"rng": {"state": 2**100}, "elapsed": 3.5})
    assert store.state() == {"rng": {"state": 2**100}, "elapsed": 3.5}


def test_foreign_sqlite_file_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    conn = sqlite3.connect(run / LEDGER)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.execute("INSERT INTO notes VALUES ('mine')")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not an evoband ledger"):
        RunStore(run, readonly=True)
    with pytest.raises(StoreError, match="not an evoband ledger"):
        RunStore(run)
    with pytest.raises(StoreError):
        load_run(run)


def test_sqlite_file_with_a_meta_table_but_no_application_id_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    conn = sqlite3.connect(run / LEDGER)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not an evoband ledger"):
        RunStore(run, readonly=True)


def test_refusing_a_foreign_sqlite_file_leaves_it_untouched(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    conn = sqlite3.connect(run / LEDGER)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.commit()
    conn.close()
    before = sha(run / LEDGER)
    with pytest.raises(StoreError):
        RunStore(run)
    assert sha(run / LEDGER) == before
    assert sorted(p.name for p in run.iterdir()) == [LEDGER]


def test_file_that_is_not_a_database_refused_when_reading(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / LEDGER).write_text("not a database\n" * 200)
    with pytest.raises(StoreError):
        RunStore(run, readonly=True)


def test_file_that_is_not_a_database_refused_when_writing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / LEDGER).write_text("not a database\n" * 200)
    with pytest.raises(StoreError):
        RunStore(run)


@pytest.mark.parametrize("readonly", [False, True], ids=["writer", "reader"])
def test_newer_schema_version_refused(tmp_path: Path, readonly: bool) -> None:
    RunStore(tmp_path / "run").close()
    conn = sqlite3.connect(tmp_path / "run" / LEDGER)
    conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}"):
        RunStore(tmp_path / "run", readonly=readonly)


def test_readonly_needs_an_existing_ledger(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="run directory"):
        RunStore(tmp_path / "nothing", readonly=True)
    assert not (tmp_path / "nothing").exists()
    with pytest.raises(StoreError):
        load_run(tmp_path / "nothing")


def fill(store: RunStore) -> tuple[Member, Member]:
    a, b = make_member(0), make_member(1, {**SMALL_CONFIG, "kernel_size": 5}, parents=(0,))
    for member, result in (
        (a, make_result(1, 0.8, 0.3)),
        (b, make_result(1, 0.95, 0.7)),
        (b, make_result(2, 0.97, 0.8)),
    ):
        if store.member_config(member.member_id) is None:
            store.add_member(member)
        record(store, member, result)
    store.record_generation(
        0,
        {
            "elapsed": 30.0,
            "population": [1, 0],
            "avg_acc": 0.9,
            "best_acc": 0.97,
            "avg_prec": 0.55,
            "best_prec": 0.8,
            "best_feasible_acc": 0.97,
            "n_evaluated": 3,
            "n_feasible": 2,
            "epochs_spent": 8,
        },
    )
    return a, b


def test_load_run_columns(store: RunStore) -> None:
    fill(store)
    frame = load_run(store.run_dir)
    assert LOAD_RUN_COLUMNS | set(SMALL_CONFIG) <= set(frame.columns)
    assert len(frame) == 3
    assert list(zip(frame["member_id"], frame["epochs"], strict=True)) == [(0, 1), (1, 1), (1, 2)]
    assert frame["parents"].tolist() == [(), (0,), (0,)]
    assert frame["kernel_size"].tolist() == [3, 5, 5]
    assert frame["origin"].tolist() == ["sampled", "mutated", "mutated"]


def test_exports_written_atomically(store: RunStore) -> None:
    _, b = fill(store)
    store.export(b.config)
    run = store.run_dir
    assert not [name for name in os.listdir(run) if name.endswith(".tmp")]
    records = json.loads((run / "automl_run.json").read_text())
    assert len(records) == 3
    for rec in records:
        assert {
            "configuration",
            "top3",
            "precision",
            "num_params",
            "epochs",
            "status",
            "member_id",
            "parents",
            "seconds",
        } <= set(rec)
    assert [(r["member_id"], r["epochs"]) for r in records] == [(0, 1), (1, 1), (1, 2)]
    assert records[2]["configuration"] == b.config
    assert records[2]["parents"] == [0]
    assert records[2]["top3"] == pytest.approx(0.975) and records[2]["num_params"] == 811
    assert json.loads((run / "opt_cfg.json").read_text()) == b.config
    with open(run / "progress.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == PROGRESS_COLUMNS
    assert rows[0][:6] == ["avg_acc", "best_acc", "avg_prec", "best_prec", "step", "time"]
    assert len(rows) == 2 and rows[1][4] == "0" and float(rows[1][1]) == 0.97


def test_export_without_best_writes_no_opt_cfg(store: RunStore) -> None:
    store.export(None)
    assert (store.run_dir / "automl_run.json").read_text().strip() == "[]"
    assert not (store.run_dir / "opt_cfg.json").exists()


def test_failed_export_is_not_swallowed_and_keeps_the_old_file(
    store: RunStore, monkeypatch
) -> None:
    fill(store)
    store.export(SMALL_CONFIG)
    before = (store.run_dir / "automl_run.json").read_bytes()
    store.add_member(make_member(2))
    record(store, make_member(2), make_result(1))

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files_module.os, "replace", broken_replace)
    with pytest.raises(StoreWriteError, match="No space left on device while writing automl_run"):
        store.export(SMALL_CONFIG)
    # a reader still sees the complete previous export, never half of a new one
    assert (store.run_dir / "automl_run.json").read_bytes() == before
    assert len(json.loads(before)) == 3


def test_load_run_while_a_writer_holds_the_ledger_open(store: RunStore) -> None:
    fill(store)
    # the writer is in the middle of a transaction: readers see the last committed state at once
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO members VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (7, json.dumps(SMALL_CONFIG), 1, 811, "sampled", "[]", 0, None, 0.0),
        )
        conn.execute(
            "INSERT INTO evaluations (member_id, epochs, status, finished) VALUES (7, 1, 'ok', 1e12)"
        )
        live = load_run(store.run_dir)
        assert len(live) == 3 and 7 not in set(live["member_id"])
    after = load_run(store.run_dir)
    assert len(after) == 4 and 7 in set(after["member_id"])
    # and the writer can go on writing after readers came and went
    store.set_state({"after": True})
    assert store.state()["after"] is True


def test_transaction_rolls_back_on_error(store: RunStore) -> None:
    with pytest.raises(RuntimeError):
        with store.transaction() as conn:
            conn.execute("INSERT INTO state VALUES ('k', '1')")
            raise RuntimeError("boom")
    assert "k" not in store.state()


def test_checkpoint_bytes_and_delete(store: RunStore) -> None:
    folder = store.checkpoint_dir(3)
    folder.mkdir(parents=True)
    (folder / "fold0.pt").write_bytes(b"x" * 100)
    (folder / "fold1.pt").write_bytes(b"x" * 50)
    assert folder.name == "member_00003"
    assert store.checkpoint_bytes() == 150
    store.delete_checkpoints(3)
    assert not folder.exists() and store.checkpoint_bytes() == 0
    store.delete_checkpoints(3)  # already gone: fine
