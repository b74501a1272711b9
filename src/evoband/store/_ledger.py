"""The run store: one place that knows every file format of a run directory.

``runs/<run>/`` holds ``history.sqlite`` (the ledger, written by one process, one transaction per
finished fold and per finished evaluation), ``checkpoints/``, and exports of the ledger rewritten
atomically: ``automl_run.json``, ``opt_cfg.json``, ``progress.csv``, ``run.json``. This module
keeps the ledger; the writers of the exports are in :mod:`evoband.store._exports` (their names
are re-exported here). A failed write raises :class:`evoband.core._errors.StoreWriteError`; a
ledger that fails its integrity check on open, :class:`evoband.core._errors.LedgerDamaged`.

An evaluation is recorded as started (:meth:`RunStore.record_start`) before it trains, so that
one the search process died in (a kill, the out-of-memory killer) is counted on resume.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core._errors import write_failure
from ..core._files import json_default
from ..training._results import FoldResult, Result, Status
from ._exports import (
    evaluations_frame,
    generations_frame,
    write_exports,
    write_run_json,
)
from ._schema import (
    ERRORS_TABLE,
    INHERITANCE_TABLE,
    INSERT_INHERITANCE,
    INSERT_SOURCES,
    LEDGER,
    SOURCES_TABLE,
    STARTS_TABLE,
    WRITE_FAILURES,
    open_ledger,
)


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
        self.conn = open_ledger(self.run_dir, readonly=readonly)
        if readonly:
            return
        self.checkpoint_root.mkdir(exist_ok=True)

    # -- plumbing ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One committed transaction; time spent is added to ``write_seconds``."""
        start = time.perf_counter()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:  # sqlite ends some failed transactions itself
                    self.conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            if any(word in str(exc).lower() for word in WRITE_FAILURES):
                raise write_failure(self.run_dir, LEDGER, exc) from exc
            raise
        self.write_seconds += time.perf_counter() - start

    def _has_table(self, name: str) -> bool:
        query = "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?"
        return self.conn.execute(query, (name,)).fetchone() is not None

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

    def member_origin(self, member_id: int) -> str | None:
        """How a recorded member was made (its origin), or None when it is not recorded."""
        row = self.conn.execute(
            "SELECT origin FROM members WHERE member_id=?", (member_id,)
        ).fetchone()
        return str(row[0]) if row else None

    def add_member(self, member: Any) -> None:
        """Record a new member (a :class:`evoband.search._member.Member`)."""
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

    def record_fold(
        self,
        member_id: int,
        epochs: int,
        fold: FoldResult,
        inherited: tuple[int, Sequence[tuple[int, int]]] | None = None,
    ) -> None:
        """Commit one finished fold (so a crash redoes only the folds in flight).

        ``inherited``: ``(parent_id, sources)`` when the fold started from a parent's weights,
        recorded in the same transaction (see :meth:`record_inheritance`): a kill never leaves
        a fold without the lineage its checkpoint depends on.
        """
        with self.transaction() as c:
            if inherited is not None:
                self._put_inheritance(c, member_id, fold.fold, *inherited)
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
            if fold.probabilities is not None:
                probabilities = np.ascontiguousarray(fold.probabilities, dtype="<f2")
                c.execute(
                    "INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?, ?)",
                    (member_id, epochs, fold.fold, *probabilities.shape, probabilities.tobytes()),
                )
            if fold.traceback:
                c.execute(ERRORS_TABLE)
                c.execute(
                    "INSERT OR REPLACE INTO errors VALUES (?, ?, ?, ?, ?)",
                    (member_id, epochs, fold.fold, fold.message, fold.traceback),
                )

    def record_start(self, member_id: int, epochs: int) -> None:
        """Commit that the evaluation (``member_id``, ``epochs``) starts training, before it
        does: one more attempt (see :meth:`attempts`), or the first again when a fold of it
        finished since its last start (the process that died in it made progress: a crash
        loop makes none, while kills at random moments usually do)."""
        with self.transaction() as c:
            c.execute(STARTS_TABLE)
            c.execute(
                "INSERT INTO starts VALUES (?, ?, 1, ?) ON CONFLICT (member_id, epochs) "
                "DO UPDATE SET attempts = CASE WHEN EXISTS (SELECT 1 FROM folds WHERE "
                "folds.member_id = starts.member_id AND folds.epochs = starts.epochs AND "
                "folds.finished >= starts.started) THEN 1 ELSE attempts + 1 END, "
                "started = excluded.started",
                (member_id, epochs, time.time()),
            )

    def take_back_start(self, member_id: int, epochs: int) -> None:
        """Undo one :meth:`record_start`: the search stopped in an orderly way (Ctrl-C, an
        error) while the evaluation trained, so it did not crash the process."""
        if not self._has_table("starts"):
            return
        with self.transaction() as c:
            c.execute(
                "UPDATE starts SET attempts = attempts - 1 "
                "WHERE member_id = ? AND epochs = ? AND attempts > 0",
                (member_id, epochs),
            )

    def attempts(self, member_id: int, epochs: int) -> int:
        """How many times in a row the evaluation (``member_id``, ``epochs``) started training
        without an orderly stop and without finishing a fold; more than its recorded results
        means the search process died in it."""
        if not self._has_table("starts"):
            return 0
        row = self.conn.execute(
            "SELECT attempts FROM starts WHERE member_id=? AND epochs=?", (member_id, epochs)
        ).fetchone()
        return int(row[0]) if row else 0

    def fold_results(self, member_id: int, epochs: int) -> dict[int, FoldResult]:
        """Folds already finished for ``member_id`` at budget ``epochs``."""
        rows = self.conn.execute(
            "SELECT fold, top3, top1, precision, loss, trained_epochs, seconds, status, message, "
            "checkpoint_sha256 FROM folds WHERE member_id=? AND epochs=? ORDER BY fold",
            (member_id, epochs),
        ).fetchall()
        folds = {
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
        if any(f.status == Status.ERROR for f in folds.values()) and self._has_table("errors"):
            for fold, text in self.conn.execute(
                "SELECT fold, traceback FROM errors WHERE member_id=? AND epochs=?",
                (member_id, epochs),
            ):
                if fold in folds:
                    folds[fold].traceback = text
        return folds

    def out_of_fold(self, member_id: int, epochs: int) -> dict[int, np.ndarray]:
        """The recorded class probabilities of ``member_id`` at budget ``epochs``, per fold
        (float16, ``N_valid x n_classes``); empty for a ledger that has none."""
        if not self._has_table("predictions"):
            return {}
        rows = self.conn.execute(
            "SELECT fold, n_rows, n_classes, probabilities FROM predictions "
            "WHERE member_id=? AND epochs=? ORDER BY fold",
            (member_id, epochs),
        )
        return {
            fold: np.frombuffer(blob, dtype="<f2").reshape(n_rows, n_classes)
            for fold, n_rows, n_classes, blob in rows
        }

    def predicted(self) -> list[tuple[int, int, int]]:
        """``(member_id, epochs, folds)`` of every evaluation with recorded predictions."""
        if not self._has_table("predictions"):
            return []
        rows = self.conn.execute(
            "SELECT member_id, epochs, COUNT(*) FROM predictions GROUP BY member_id, epochs "
            "ORDER BY member_id, epochs"
        )
        return [(int(m), int(e), int(n)) for m, e, n in rows]

    def errors(self) -> list[dict[str, Any]]:
        """Folds whose training raised: member_id, epochs, fold, error, traceback (oldest first)."""
        if not self._has_table("errors"):
            return []
        rows = self.conn.execute(
            "SELECT e.member_id, e.epochs, e.fold, e.error, e.traceback FROM errors e "
            "JOIN folds f USING (member_id, epochs, fold) ORDER BY f.finished"
        )
        keys = ("member_id", "epochs", "fold", "error", "traceback")
        return [dict(zip(keys, row, strict=True)) for row in rows]

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

    # -- reading for users and exports (see :mod:`evoband.store._exports`) -----------------

    def evaluations_frame(self) -> pd.DataFrame:
        """One row per member and budget, with the configuration keys as columns."""
        return evaluations_frame(self.conn)

    def generations_frame(self) -> pd.DataFrame:
        return generations_frame(self.conn)

    def export(
        self, best_config: Mapping[str, Any] | None, training: Mapping[str, Any] | None = None
    ) -> None:
        """Rewrite ``automl_run.json``, ``progress.csv`` and ``opt_cfg.json`` from the ledger.

        ``training`` (the epochs and LR segments the optimum was scored at) goes to
        ``opt_cfg.training.json`` beside it, which ``main.py -c opt_cfg.json`` retrains with.
        A failed write raises :class:`evoband.core._errors.StoreWriteError`; the ledger is unchanged.
        """
        start = time.perf_counter()
        write_exports(self.run_dir, self.conn, best_config, training)
        self.write_seconds += time.perf_counter() - start

    def write_run_json(self, info: Mapping[str, Any]) -> None:
        write_run_json(self.run_dir, info)

    # -- weight inheritance --------------------------------------------------------------------

    def record_inheritance(
        self, member_id: int, fold: int, parent_id: int, sources: Sequence[tuple[int, int]] = ()
    ) -> None:
        """Record that a fold of ``member_id`` started from ``parent_id``'s weights, and once its
        ``sources`` (``(parent_id, parent_epochs)`` of each parent it inherits from). The tables
        are made on first use: a search without inheritance writes the ledger of before."""
        with self.transaction() as c:
            self._put_inheritance(c, member_id, fold, parent_id, sources)

    @staticmethod
    def _put_inheritance(
        c: sqlite3.Connection,
        member_id: int,
        fold: int,
        parent_id: int,
        sources: Sequence[tuple[int, int]],
    ) -> None:
        c.execute(INHERITANCE_TABLE)
        c.execute(SOURCES_TABLE)
        c.execute(INSERT_INHERITANCE, (member_id, fold, parent_id))
        c.execute(INSERT_SOURCES, (member_id, json.dumps(sources)))

    def inheritances(self) -> dict[int, dict[str, Any]]:
        """Members that inherited weights: ``{member_id: {"parent": id, "folds": [k, ...],
        "sources": [(id, epochs), ...]}}`` (``sources`` empty in ledgers older than them)."""
        if not self._has_table("inheritance"):
            return {}
        out: dict[int, dict[str, Any]] = {}
        rows = self.conn.execute("SELECT member_id, fold, parent_id FROM inheritance ORDER BY 1, 2")
        for member_id, fold, parent_id in rows:
            entry = out.setdefault(member_id, {"parent": parent_id, "folds": [], "sources": []})
            entry["folds"].append(fold)
        if self._has_table("inheritance_sources"):
            for member_id, text in self.conn.execute("SELECT * FROM inheritance_sources"):
                if member_id in out:
                    out[member_id]["sources"] = [tuple(s) for s in json.loads(text)]
        return out

    # -- checkpoints ---------------------------------------------------------------------------

    def delete_checkpoints(self, member_id: int) -> None:
        """Remove a member's checkpoints (it can no longer be trained further)."""
        shutil.rmtree(self.checkpoint_dir(member_id), ignore_errors=True)

    def checkpoint_bytes(self) -> int:
        """Bytes of all checkpoints currently on disk."""
        return sum(p.stat().st_size for p in self.checkpoint_root.rglob("*.pt") if p.is_file())
