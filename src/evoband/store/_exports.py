"""The exports of a run's ledger and the small JSON files beside it: their file formats.

:mod:`evoband.store._ledger` keeps the ledger (schema, transactions, records) and calls these writers;
``automl_run.json``, ``progress.csv``, ``opt_cfg.json`` (+ ``opt_cfg.training.json``),
``run.json`` and ``population.json`` are each rewritten atomically. A failed write raises
:class:`evoband.core._errors.StoreWriteError`.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ..core._errors import StoreError, write_failure
from ..core._files import write_json, write_text
from ._schema import open_ledger

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


def evaluations_frame(conn: sqlite3.Connection) -> pd.DataFrame:
    """One row per member and budget, with the configuration keys as columns."""
    query = (
        "SELECT e.member_id, e.epochs, e.status, e.top3, e.top1, e.precision, e.num_params, "
        "e.seconds, e.elapsed, e.finished, e.generation, e.bracket, e.rung, m.origin, m.parents, "
        "(SELECT COUNT(*) FROM folds f WHERE f.member_id = e.member_id AND f.epochs = e.epochs) AS n_folds, "
        "m.config FROM evaluations e JOIN members m USING (member_id) ORDER BY e.finished, e.member_id"
    )
    frame = pd.read_sql_query(query, conn)
    frame["config"] = [json.loads(c) for c in frame["config"]]
    configs = pd.DataFrame(list(frame["config"]), index=frame.index)
    frame["parents"] = [tuple(json.loads(p)) for p in frame["parents"]]
    return pd.concat([frame, configs], axis=1)


def generations_frame(conn: sqlite3.Connection) -> pd.DataFrame:
    """The generation rows of the ledger, the population as a list of member ids."""
    frame = pd.read_sql_query("SELECT * FROM generations ORDER BY generation", conn)
    frame["population"] = [json.loads(p) for p in frame["population"]]
    return frame


def load_run(run_dir: str | Path) -> pd.DataFrame:
    """All evaluations of a run, one row per member and budget (usable while the run is live).

    Columns: member_id, epochs, status, top3, top1, precision, num_params, seconds, elapsed,
    finished, generation (of the evaluation), bracket, rung, origin, parents, n_folds, config
    (the genotype dict, exact types) and one column per configuration key (NaN where inactive).
    """
    conn = open_ledger(Path(run_dir), readonly=True)
    try:
        return evaluations_frame(conn)
    finally:
        conn.close()


def load_generations(run_dir: str | Path) -> pd.DataFrame:
    """The generation rows of a run (:func:`generations_frame`), also while it is live."""
    conn = open_ledger(Path(run_dir), readonly=True)
    try:
        return generations_frame(conn)
    finally:
        conn.close()


def _written(run_dir: Path, name: str, write: Callable[[Path], None]) -> None:
    """``write(run_dir / name)``, a failure as :class:`evoband.core._errors.StoreWriteError`."""
    try:
        write(run_dir / name)
    except OSError as exc:
        raise write_failure(run_dir, name, exc) from exc


def write_exports(
    run_dir: Path,
    conn: sqlite3.Connection,
    best_config: Mapping[str, Any] | None,
    training: Mapping[str, Any] | None = None,
) -> None:
    """Rewrite ``automl_run.json``, ``progress.csv`` and (with a best) ``opt_cfg.json`` and
    ``opt_cfg.training.json`` from the ledger behind ``conn``."""
    rows = conn.execute(
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
    _written(run_dir, "automl_run.json", lambda path: write_json(path, records))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(PROGRESS_COLUMNS)
    for row in generations_frame(conn).itertuples(index=False):
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
    _written(run_dir, "progress.csv", lambda path: write_text(path, buffer.getvalue()))
    if best_config is not None:
        _written(run_dir, "opt_cfg.json", lambda path: write_json(path, dict(best_config)))
        if training is not None:
            name = training_record_path(run_dir / "opt_cfg.json").name
            _written(run_dir, name, lambda path: write_json(path, dict(training)))


def write_run_json(run_dir: Path, info: Mapping[str, Any]) -> None:
    """Rewrite ``run.json`` (arguments, versions, data, end report)."""
    _written(run_dir, "run.json", lambda path: write_json(path, dict(info)))


def training_record_path(config_path: Path) -> Path:
    """Where the training record of a configuration file lives: ``<name>.training.json``."""
    return config_path.with_name(config_path.stem + ".training.json")


def read_training_record(config_path: Path) -> dict[str, Any] | None:
    """The epochs and LR segments a configuration was selected at, if recorded beside it, with
    the member's id and, when it inherited weights, its lineage (:mod:`evoband.training._lineage`)."""
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
        if "lineage" in record:
            out["lineage"] = [
                {
                    "member_id": int(node["member_id"]),
                    "config": dict(node["config"]),
                    "epochs": int(node["epochs"]),
                    "sources": [[int(m), int(e)] for m, e in node["sources"]],
                }
                for node in record["lineage"]
            ]
        return out
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(
            f"{path} is not a valid training record ({exc}); delete it or fix it."
        ) from exc


POPULATION = "population.json"
"""The population file :class:`evoband.callbacks._callbacks.Persist` writes into a run directory."""


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
