"""The run store: one place that knows every file format of a run directory.

``runs/<run>/`` holds ``history.sqlite`` (the ledger, written by one process, one transaction per
finished fold and per finished evaluation), ``checkpoints/``, and exports of the ledger rewritten
atomically: ``automl_run.json``, ``opt_cfg.json``, ``progress.csv``, ``run.json``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import sqlite3
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import StoreError
from .files import json_default, write_json, write_text
from .results import FoldResult, Result, Status

SCHEMA_VERSION = 1
LEDGER = "history.sqlite"
APPLICATION_ID = 0x45564244  # "EVBD": marks a ledger as ours

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS run (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    member_id INTEGER PRIMARY KEY, config TEXT NOT NULL, seed INTEGER NOT NULL,
    num_params INTEGER NOT NULL, origin TEXT NOT NULL, parents TEXT NOT NULL,
    generation INTEGER NOT NULL, bracket INTEGER, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS evaluations (
    member_id INTEGER NOT NULL REFERENCES members(member_id), epochs INTEGER NOT NULL,
    status TEXT NOT NULL, top3 REAL, top1 REAL, precision REAL, num_params INTEGER,
    seconds REAL, message TEXT, generation INTEGER, bracket INTEGER, rung INTEGER,
    elapsed REAL, finished REAL NOT NULL, PRIMARY KEY (member_id, epochs));
CREATE TABLE IF NOT EXISTS folds (
    member_id INTEGER NOT NULL, epochs INTEGER NOT NULL, fold INTEGER NOT NULL,
    status TEXT NOT NULL, top3 REAL, top1 REAL, precision REAL, loss REAL, trained_epochs INTEGER,
    seconds REAL, message TEXT, checkpoint_sha256 TEXT, finished REAL NOT NULL,
    PRIMARY KEY (member_id, epochs, fold));
CREATE TABLE IF NOT EXISTS generations (
    generation INTEGER PRIMARY KEY, elapsed REAL, population TEXT NOT NULL,
    avg_acc REAL, best_acc REAL, avg_prec REAL, best_prec REAL, best_feasible_acc REAL,
    n_evaluated INTEGER, n_feasible INTEGER, epochs_spent INTEGER);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


_INHERITANCE_TABLE = """CREATE TABLE IF NOT EXISTS inheritance (
    member_id INTEGER NOT NULL, fold INTEGER NOT NULL, parent_id INTEGER NOT NULL,
    PRIMARY KEY (member_id, fold))"""
"""Which folds of which members started from a parent's weights (made on first use)."""


def _nan_to_none(x: float | None) -> float | None:
    return None if x is None or x != x else x


class RunStore:
    """A run directory and its ledger. One writer (the optimizer process); readers may be many.

    Args:
        run_dir: the run directory (created if needed).
        readonly: open an existing ledger for reading only (safe while a run is live).
    """

    def __init__(self, run_dir: str | Path, *, readonly: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.readonly = readonly
        self.write_seconds = 0.0
        path = self.run_dir / LEDGER
        if readonly:
            if not path.exists():
                raise StoreError(f"{self.run_dir} has no {LEDGER}; is it a run directory?")
            self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
            self._check_schema()
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            fresh = self.conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise StoreError(f"{path} is not an evoband ledger ({exc}).") from exc
        if fresh:  # one transaction: a kill leaves either no schema or all of it
            self.conn.executescript(
                f"BEGIN; PRAGMA application_id = {APPLICATION_ID}; {_SCHEMA} "
                f"INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}'); COMMIT;"
            )
        try:
            self._check_schema()  # before anything changes a file that is not ours
        except StoreError:
            self.conn.close()
            raise
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.checkpoint_root.mkdir(exist_ok=True)

    # -- plumbing ------------------------------------------------------------------------------

    def _check_schema(self) -> None:
        try:
            app = self.conn.execute("PRAGMA application_id").fetchone()[0]
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.run_dir / LEDGER} is not an evoband ledger ({exc}).") from exc
        if app != APPLICATION_ID or row is None:
            raise StoreError(f"{self.run_dir / LEDGER} is not an evoband ledger.")
        if int(row[0]) > SCHEMA_VERSION:
            raise StoreError(
                f"{self.run_dir / LEDGER} has schema version {row[0]}, newer than this evoband "
                f"understands ({SCHEMA_VERSION}); upgrade evoband to read it."
            )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One committed transaction; time spent is added to ``write_seconds``."""
        start = time.perf_counter()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        self.write_seconds += time.perf_counter() - start

    def close(self) -> None:
        self.conn.close()

    @property
    def checkpoint_root(self) -> Path:
        return self.run_dir / "checkpoints"

    def checkpoint_dir(self, member_id: int) -> Path:
        """Where a member keeps its fold checkpoints."""
        return self.checkpoint_root / f"member_{member_id:05d}"

    # -- run description -----------------------------------------------------------------------

    def is_empty(self) -> bool:
        return self.conn.execute("SELECT COUNT(*) FROM run").fetchone()[0] == 0

    def set_run_info(self, info: Mapping[str, Any]) -> None:
        """Record (or update) run-level facts: arguments, seed, versions, space."""
        with self.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO run VALUES (?, ?)",
                [(k, json.dumps(v, default=json_default)) for k, v in info.items()],
            )

    def run_info(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.conn.execute("SELECT key, value FROM run")}

    def set_state(self, values: Mapping[str, Any]) -> None:
        with self.transaction() as c:
            self._put_state(c, values)

    @staticmethod
    def _put_state(c: sqlite3.Connection, values: Mapping[str, Any]) -> None:
        c.executemany(
            "INSERT OR REPLACE INTO state VALUES (?, ?)",
            [(k, json.dumps(v, default=json_default)) for k, v in values.items()],
        )

    def state(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.conn.execute("SELECT key, value FROM state")}

    # -- members and results -------------------------------------------------------------------

    def member_config(self, member_id: int) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT config FROM members WHERE member_id=?", (member_id,)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def add_member(self, member: Any) -> None:
        """Record a new member (a :class:`evoband.member.Member`)."""
        with self.transaction() as c:
            c.execute(
                "INSERT INTO members VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    member.member_id,
                    json.dumps(member.config),
                    member.seed,
                    member.num_params,
                    member.origin,
                    json.dumps(list(member.parents)),
                    member.generation,
                    member.bracket,
                    time.time(),
                ),
            )

    def record_fold(self, member_id: int, epochs: int, fold: FoldResult) -> None:
        """Commit one finished fold (so a crash redoes only the folds in flight)."""
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO folds VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    member_id,
                    epochs,
                    fold.fold,
                    fold.status,
                    fold.top3,
                    fold.top1,
                    fold.precision,
                    _nan_to_none(fold.loss),
                    fold.epochs,
                    fold.seconds,
                    fold.message,
                    fold.checkpoint_sha256,
                    time.time(),
                ),
            )

    def fold_results(self, member_id: int, epochs: int) -> dict[int, FoldResult]:
        """Folds already finished for ``member_id`` at budget ``epochs``."""
        rows = self.conn.execute(
            "SELECT fold, top3, top1, precision, loss, trained_epochs, seconds, status, message, "
            "checkpoint_sha256 FROM folds WHERE member_id=? AND epochs=? ORDER BY fold",
            (member_id, epochs),
        ).fetchall()
        return {
            r[0]: FoldResult(
                r[0],
                r[1],
                r[2],
                r[3],
                float("nan") if r[4] is None else r[4],
                r[5],
                r[6],
                Status(r[7]),
                r[8],
                r[9],
            )
            for r in rows
        }

    def latest_checkpoint_hashes(self, member_id: int) -> dict[int, str]:
        """Hash of each fold's newest recorded checkpoint of a member."""
        rows = self.conn.execute(
            "SELECT fold, checkpoint_sha256 FROM folds WHERE member_id=? AND checkpoint_sha256 != '' "
            "ORDER BY epochs",
            (member_id,),
        ).fetchall()
        return {fold: sha for fold, sha in rows}

    def record_evaluation(
        self,
        member_id: int,
        result: Result,
        *,
        generation: int,
        bracket: int | None,
        rung: int | None,
        elapsed: float,
        state: Mapping[str, Any],
    ) -> None:
        """Commit a finished evaluation together with the optimizer state that follows it."""
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO evaluations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    member_id,
                    result.epochs,
                    result.status,
                    result.top3,
                    result.top1,
                    result.precision,
                    result.num_params,
                    result.seconds,
                    result.message,
                    generation,
                    bracket,
                    rung,
                    elapsed,
                    time.time(),
                ),
            )
            self._put_state(c, state)

    def evaluation(self, member_id: int, epochs: int) -> Result | None:
        """A recorded evaluation (with its folds), or None."""
        row = self.conn.execute(
            "SELECT top3, top1, precision, num_params, epochs, seconds, status, message "
            "FROM evaluations WHERE member_id=? AND epochs=?",
            (member_id, epochs),
        ).fetchone()
        if row is None:
            return None
        top3, top1, precision, num_params, n_epochs, seconds, status, message = row
        folds = list(self.fold_results(member_id, epochs).values())
        return Result(
            top3, top1, precision, num_params, n_epochs, seconds, Status(status), message, folds
        )

    def record_generation(self, generation: int, row: Mapping[str, Any]) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    generation,
                    row["elapsed"],
                    json.dumps(row["population"]),
                    row["avg_acc"],
                    row["best_acc"],
                    row["avg_prec"],
                    row["best_prec"],
                    row["best_feasible_acc"],
                    row["n_evaluated"],
                    row["n_feasible"],
                    row["epochs_spent"],
                ),
            )

    def has_generation(self, generation: int) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM generations WHERE generation=?", (generation,)
        ).fetchone()
        return row is not None

    # -- reading for users ---------------------------------------------------------------------

    def evaluations_frame(self) -> pd.DataFrame:
        """One row per member and budget, with the configuration keys as columns."""
        query = (
            "SELECT e.member_id, e.epochs, e.status, e.top3, e.top1, e.precision, e.num_params, "
            "e.seconds, e.elapsed, e.finished, e.generation, e.bracket, e.rung, m.origin, m.parents, "
            "(SELECT COUNT(*) FROM folds f WHERE f.member_id = e.member_id AND f.epochs = e.epochs) AS n_folds, "
            "m.config FROM evaluations e JOIN members m USING (member_id) ORDER BY e.finished, e.member_id"
        )
        frame = pd.read_sql_query(query, self.conn)
        frame["config"] = [json.loads(c) for c in frame["config"]]
        configs = pd.DataFrame(list(frame["config"]), index=frame.index)
        frame["parents"] = [tuple(json.loads(p)) for p in frame["parents"]]
        return pd.concat([frame, configs], axis=1)

    def generations_frame(self) -> pd.DataFrame:
        frame = pd.read_sql_query("SELECT * FROM generations ORDER BY generation", self.conn)
        frame["population"] = [json.loads(p) for p in frame["population"]]
        return frame

    # -- exports -------------------------------------------------------------------------------

    def export(
        self, best_config: Mapping[str, Any] | None, training: Mapping[str, Any] | None = None
    ) -> None:
        """Rewrite ``automl_run.json``, ``progress.csv`` and ``opt_cfg.json`` from the ledger.

        ``training`` (the epochs and LR segments the optimum was scored at) goes to
        ``opt_cfg.training.json`` beside it, which ``main.py -c opt_cfg.json`` retrains with.
        """
        start = time.perf_counter()
        rows = self.conn.execute(
            "SELECT e.member_id, m.parents, m.origin, m.generation, m.config, e.top3, e.top1, "
            "e.precision, e.num_params, e.epochs, e.status, e.seconds FROM evaluations e "
            "JOIN members m USING (member_id) ORDER BY e.finished, e.member_id"
        ).fetchall()
        records = [
            {
                "member_id": r[0],
                "parents": json.loads(r[1]),
                "origin": r[2],
                "generation": r[3],
                "configuration": json.loads(r[4]),
                "top3": r[5],
                "top1": r[6],
                "precision": r[7],
                "num_params": r[8],
                "epochs": r[9],
                "status": r[10],
                "seconds": r[11],
            }
            for r in rows
        ]
        write_json(self.run_dir / "automl_run.json", records)
        gens = self.generations_frame()
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(PROGRESS_COLUMNS)
        for row in gens.itertuples(index=False):
            writer.writerow(
                [
                    row.avg_acc,
                    row.best_acc,
                    row.avg_prec,
                    row.best_prec,
                    row.generation,
                    row.elapsed,
                    row.best_feasible_acc,
                    row.n_evaluated,
                    row.n_feasible,
                    row.epochs_spent,
                ]
            )
        write_text(self.run_dir / "progress.csv", buffer.getvalue())
        if best_config is not None:
            write_json(self.run_dir / "opt_cfg.json", dict(best_config))
            if training is not None:
                write_json(training_record_path(self.run_dir / "opt_cfg.json"), dict(training))
        self.write_seconds += time.perf_counter() - start

    def write_run_json(self, info: Mapping[str, Any]) -> None:
        write_json(self.run_dir / "run.json", dict(info))

    # -- weight inheritance --------------------------------------------------------------------

    def record_inheritance(self, member_id: int, fold: int, parent_id: int) -> None:
        """Record that a fold of ``member_id`` started from ``parent_id``'s weights.

        The table is made by the first such record, so that a search without inheritance writes
        the same ledger as before inheritance existed.
        """
        with self.transaction() as c:
            c.execute(_INHERITANCE_TABLE)
            c.execute(
                "INSERT OR REPLACE INTO inheritance VALUES (?, ?, ?)", (member_id, fold, parent_id)
            )

    def inheritances(self) -> dict[int, dict[str, Any]]:
        """Members that inherited weights: ``{member_id: {"parent": id, "folds": [k, ...]}}``."""
        exists = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='inheritance'"
        ).fetchone()
        if exists is None:
            return {}
        out: dict[int, dict[str, Any]] = {}
        rows = self.conn.execute(
            "SELECT member_id, fold, parent_id FROM inheritance ORDER BY member_id, fold"
        )
        for member_id, fold, parent_id in rows:
            out.setdefault(member_id, {"parent": parent_id, "folds": []})["folds"].append(fold)
        return out

    # -- checkpoints ---------------------------------------------------------------------------

    def delete_checkpoints(self, member_id: int) -> None:
        """Remove a member's checkpoints (it can no longer be trained further)."""
        shutil.rmtree(self.checkpoint_dir(member_id), ignore_errors=True)

    def checkpoint_bytes(self) -> int:
        """Bytes of all checkpoints currently on disk."""
        return sum(p.stat().st_size for p in self.checkpoint_root.rglob("*.pt") if p.is_file())


PROGRESS_COLUMNS = [
    "avg_acc",
    "best_acc",
    "avg_prec",
    "best_prec",
    "step",
    "time",
    "best_feasible_acc",
    "n_evaluated",
    "n_feasible",
    "epochs_spent",
]


def load_run(run_dir: str | Path) -> pd.DataFrame:
    """All evaluations of a run, one row per member and budget (usable while the run is live).

    Columns: member_id, epochs, status, top3, top1, precision, num_params, seconds, elapsed,
    finished, generation (of the evaluation), bracket, rung, origin, parents, n_folds, config
    (the genotype dict, exact types) and one column per configuration key (NaN where inactive).
    """
    store = RunStore(run_dir, readonly=True)
    try:
        return store.evaluations_frame()
    finally:
        store.close()


def load_generations(run_dir: str | Path) -> pd.DataFrame:
    """The generation rows of a run (:meth:`RunStore.generations_frame`), also while it is live."""
    store = RunStore(run_dir, readonly=True)
    try:
        return store.generations_frame()
    finally:
        store.close()


def training_record_path(config_path: Path) -> Path:
    """Where the training record of a configuration file lives: ``<name>.training.json``."""
    return config_path.with_name(config_path.stem + ".training.json")


def read_training_record(config_path: Path) -> dict[str, Any] | None:
    """The epochs and LR segments a configuration was selected at, if recorded beside it."""
    path = training_record_path(config_path)
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
        out: dict[str, Any] = {
            "epochs": int(record["epochs"]),
            "segments": [int(b) for b in record.get("segments", [])],
        }
        if "member_id" in record:
            out["member_id"] = int(record["member_id"])
        return out
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(
            f"{path} is not a valid training record ({exc}); delete it or fix it."
        ) from exc


POPULATION = "population.json"
"""The population file :class:`evoband.callbacks.Persist` writes into a run directory."""


def write_population(run_dir: str | Path, record: Mapping[str, Any]) -> Path:
    """Write ``population.json`` atomically (and synced to disk); return its path."""
    path = Path(run_dir) / POPULATION
    write_json(path, dict(record))
    return path


def read_population(run_dir: str | Path) -> dict[str, Any]:
    """The ``population.json`` of a run (see :func:`write_population`)."""
    path = Path(run_dir) / POPULATION
    if not path.exists():
        raise StoreError(f"{run_dir} has no {POPULATION}; pass the persist callback to write it.")
    return json.loads(path.read_text())


def read_run_json(run_dir: str | Path) -> dict[str, Any]:
    """The ``run.json`` of a run."""
    return json.loads((Path(run_dir) / "run.json").read_text())
