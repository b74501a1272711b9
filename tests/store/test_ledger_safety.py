"""The ledger's safety: integrity check on open, the journal chosen by filesystem, the two
``opt_cfg`` files as one unit, a fold and its inheritance in one transaction."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

import evoband.store._exports as exports_module
from evoband.core._errors import ConfigError, EnvironmentFailure, LedgerDamaged
from evoband.store._exports import read_training_record
from evoband.store._ledger import RunStore
from evoband.store._schema import (
    JOURNAL_VARIABLE,
    LEDGER,
    SCHEMA_VERSION,
    filesystem_type,
    journal_mode,
    schema_version,
)
from evoband.training._results import FoldResult, Status
from helpers import SMALL_CONFIG

MOUNTS = """\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
/dev/sda1 / ext4 rw,relatime 0 0
tmpfs /tmp tmpfs rw,nosuid,nodev 0 0
server:/export/home /home nfs4 rw,relatime,vers=4.2 0 0
//nas/share /mnt/my\\040share cifs rw,relatime 0 0
user@host:/data /mnt/remote fuse.sshfs rw,nosuid,nodev 0 0
/dev/sdb1 /home/local ext4 rw,relatime 0 0
"""


@pytest.mark.parametrize(
    ("path", "kind", "mode"),
    [
        ("/srv/runs/a", "ext4", "wal"),
        ("/tmp/runs/a", "tmpfs", "wal"),
        ("/home/user/runs/a", "nfs4", "delete"),
        ("/home", "nfs4", "delete"),
        ("/home/local/runs", "ext4", "wal"),  # a local disk mounted inside the NFS one
        ("/home/localx/runs", "nfs4", "delete"),  # a prefix of a name is not the mount
        ("/mnt/my share/runs", "cifs", "delete"),  # \040 in /proc/mounts is a space
        ("/mnt/remote/runs", "fuse.sshfs", "delete"),
    ],
)
def test_journal_follows_the_filesystem(path: str, kind: str, mode: str) -> None:
    assert filesystem_type(Path(path), MOUNTS) == kind
    assert journal_mode(Path(path), environ={}, mounts=MOUNTS) == mode


def test_journal_environment_variable_overrides_the_detection() -> None:
    home = Path("/home/user/runs")
    assert journal_mode(home, environ={JOURNAL_VARIABLE: "wal"}, mounts=MOUNTS) == "wal"
    assert journal_mode(Path("/srv"), environ={JOURNAL_VARIABLE: "DELETE"}, mounts=MOUNTS) == (
        "delete"
    )
    with pytest.raises(ConfigError, match=JOURNAL_VARIABLE):
        journal_mode(home, environ={JOURNAL_VARIABLE: "truncate"}, mounts=MOUNTS)


def test_unknown_mounts_mean_a_local_disk() -> None:
    assert filesystem_type(Path("/x"), "") is None
    assert journal_mode(Path("/x"), environ={}, mounts="") == "wal"


def _mode(run_dir: Path) -> str:
    conn = sqlite3.connect(run_dir / LEDGER)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


def test_ledger_journal_is_set_on_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(JOURNAL_VARIABLE, raising=False)
    monkeypatch.setattr("evoband.store._schema.filesystem_type", lambda path, mounts=None: "ext4")
    RunStore(tmp_path / "run").close()
    assert _mode(tmp_path / "run") == "wal"
    monkeypatch.setattr("evoband.store._schema.filesystem_type", lambda path, mounts=None: "nfs")
    store = RunStore(tmp_path / "run")  # the same ledger, now found on NFS: switched
    store.set_state({"x": 1})
    store.close()
    assert _mode(tmp_path / "run") == "delete"
    assert not (tmp_path / "run" / f"{LEDGER}-wal").exists()
    monkeypatch.setenv(JOURNAL_VARIABLE, "wal")
    RunStore(tmp_path / "run").close()
    assert _mode(tmp_path / "run") == "wal"


def _ledger_with_rows(run_dir: Path) -> RunStore:
    store = RunStore(run_dir)
    with store.transaction() as c:
        c.executemany("INSERT INTO run VALUES (?, ?)", [(f"k{i}", "x" * 200) for i in range(400)])
    return store


@pytest.mark.parametrize("readonly", [False, True])
def test_damaged_page_is_an_environment_failure_naming_the_file(
    tmp_path: Path, readonly: bool
) -> None:
    run_dir = tmp_path / "run"
    _ledger_with_rows(run_dir).close()
    path = run_dir / LEDGER
    conn = sqlite3.connect(path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name='run'").fetchone()[0]
    conn.close()
    data = bytearray(path.read_bytes())
    data[(root - 1) * page_size : root * page_size] = b"\xff" * page_size
    path.write_bytes(bytes(data))
    with pytest.raises(LedgerDamaged) as info:
        RunStore(run_dir, readonly=readonly)
    assert isinstance(info.value, EnvironmentFailure)  # exit status 4
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "backup" in message and "new run directory" in message
    assert path.read_bytes() == bytes(data)  # left as it was, for whoever restores it


def test_truncated_wal_loses_only_the_uncommitted_tail(tmp_path: Path) -> None:
    live = tmp_path / "live"
    store = RunStore(live)  # held open: the WAL is not checkpointed into the ledger
    for i in range(20):
        store.set_state({f"k{i}": i})
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(live / LEDGER, copy / LEDGER)
    wal = (live / f"{LEDGER}-wal").read_bytes()
    assert len(wal) > 10_000
    (copy / f"{LEDGER}-wal").write_bytes(wal[: len(wal) // 2 + 100])  # cut inside a frame
    store.close()
    reopened = RunStore(copy)
    state = reopened.state()
    reopened.close()
    keys = sorted(int(k[1:]) for k in state)
    assert 0 < len(keys) < 20 and keys == list(range(len(keys)))  # a prefix of the commits


def _export(store: RunStore, member_id: int, epochs: int) -> None:
    config = {**SMALL_CONFIG, "learning_rate_init": 0.001 * member_id}
    store.export(config, {"epochs": epochs, "segments": [1], "seed": 0, "member_id": member_id})


def test_opt_cfg_pair_survives_a_kill_between_its_two_renames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RunStore(tmp_path / "run")
    config_path = store.run_dir / "opt_cfg.json"
    _export(store, 1, 2)
    assert read_training_record(config_path) == {"epochs": 2, "segments": [1], "member_id": 1}
    real = exports_module.write_json

    def killed_before_opt_cfg(path: Path, data: object) -> None:
        if path.name == "opt_cfg.json":
            raise KeyboardInterrupt  # the process dies after the record's rename
        real(path, data)

    monkeypatch.setattr(exports_module, "write_json", killed_before_opt_cfg)
    with pytest.raises(KeyboardInterrupt):
        _export(store, 2, 4)
    monkeypatch.undo()
    # the record on disk is the new one, yet the pair read is the old one, whole
    assert json.loads(store.run_dir.joinpath("opt_cfg.training.json").read_text())["epochs"] == 4
    assert json.loads(config_path.read_text())["learning_rate_init"] == 0.001
    assert read_training_record(config_path) == {"epochs": 2, "segments": [1], "member_id": 1}
    _export(store, 3, 8)  # the next export completes: the new pair
    assert json.loads(config_path.read_text())["learning_rate_init"] == 0.003
    assert read_training_record(config_path) == {"epochs": 8, "segments": [1], "member_id": 3}
    store.close()


def test_edited_opt_cfg_ignores_the_record_of_another_configuration(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    _export(store, 1, 2)
    store.close()
    config_path = tmp_path / "run" / "opt_cfg.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps(config))  # reformatted: still the same configuration
    assert read_training_record(config_path) is not None
    config_path.write_text(json.dumps({**config, "learning_rate_init": 0.5}))
    assert read_training_record(config_path) is None


def test_record_written_by_hand_without_hash_is_read_as_before(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json.dumps(SMALL_CONFIG))
    (tmp_path / "c.training.json").write_text('{"epochs": 3, "segments": [1, 3]}')
    assert read_training_record(tmp_path / "c.json") == {"epochs": 3, "segments": [1, 3]}


def _fold(fold: int, message: object = "") -> FoldResult:
    return FoldResult(fold, 0.9, 0.5, 0.6, 0.1, 2, 1.0, Status.OK, message)  # type: ignore[arg-type]


def test_fold_and_its_inheritance_are_one_transaction(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    store.record_fold(2, 2, _fold(0), (1, [(1, 2)]))
    assert store.fold_results(2, 2)[0].top3 == 0.9
    assert store.inheritances() == {2: {"parent": 1, "folds": [0], "sources": [(1, 2)]}}
    with pytest.raises(sqlite3.Error):  # the fold row fails after the inheritance row
        store.record_fold(2, 2, _fold(1, message=object()), (1, [(1, 2)]))
    assert list(store.fold_results(2, 2)) == [0]
    assert store.inheritances()[2]["folds"] == [0]  # rolled back together
    store.close()


def test_a_ledger_of_version_2_reads_and_upgrades_to_count_starts(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    RunStore(run_dir).close()
    with sqlite3.connect(run_dir / LEDGER) as conn:  # as evoband wrote it before ``starts``
        conn.execute("DROP TABLE starts")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.close()
    reader = RunStore(run_dir, readonly=True)
    assert reader.attempts(0, 1) == 0
    reader.close()
    store = RunStore(run_dir)
    assert schema_version(store.conn) == SCHEMA_VERSION == 3
    store.record_start(0, 1)
    store.record_start(0, 1)
    store.take_back_start(0, 1)
    assert store.attempts(0, 1) == 1 and store.attempts(0, 2) == 0
    store.close()


def test_starts_count_in_a_row_only_while_no_fold_finishes(tmp_path: Path) -> None:
    """A crash loop dies in the same fold every time; a kill at a random moment usually lands
    after a fold finished, and then the count starts again."""
    store = RunStore(tmp_path / "run")
    store.record_start(3, 2)
    store.record_start(3, 2)
    assert store.attempts(3, 2) == 2  # died twice before any fold finished
    store.record_fold(3, 2, _fold(0))
    store.record_start(3, 2)
    assert store.attempts(3, 2) == 1  # fold 0 finished in the last attempt: progress
    store.record_start(3, 2)
    assert store.attempts(3, 2) == 2
    store.close()
