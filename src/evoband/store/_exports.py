"""The exports of a run's ledger and the small JSON files beside it: their file formats.

:mod:`evoband.store._ledger` keeps the ledger (schema, transactions, records) and calls these writers;
``automl_run.json``, ``progress.csv``, ``opt_cfg.json`` (+ ``opt_cfg.training.json``),
``run.json`` and ``population.json`` are each rewritten atomically. A failed write raises
:class:`evoband.core._errors.StoreWriteError`.

``opt_cfg.json`` and its training record ``opt_cfg.training.json`` are one unit, though two
renames: ``opt_cfg.json`` stays in the course's format (a configuration and nothing else), so the
record names the configuration it belongs to by a hash of it (``config_sha256``) and keeps the
record of the configuration it replaces (``previous``). The record is renamed into place first,
``opt_cfg.json`` last; a reader takes the record whose hash matches the configuration it read, so a
kill between the two renames leaves the old pair readable, and after both the new pair.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ..core._errors import StoreError, write_failure
from ..core._files import json_default, write_json, write_text
from ._schema import open_ledger

logger = logging.getLogger(__name__)

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
        write_optimum(run_dir, best_config, training)


OPT_CFG = "opt_cfg.json"


def config_sha256(config: Mapping[str, Any]) -> str:
    """The hash a training record names its configuration by (of the JSON it reads back as,
    keys sorted: independent of the file's layout)."""
    plain = json.loads(json.dumps(dict(config), default=json_default))
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()


def write_optimum(
    run_dir: Path, config: Mapping[str, Any], training: Mapping[str, Any] | None
) -> None:
    """Write ``opt_cfg.json`` and ``opt_cfg.training.json`` as one unit (see the module's
    docstring): the record first, holding the one it replaces, then the configuration."""
    config_path = run_dir / OPT_CFG
    record_path = training_record_path(config_path)
    digest = config_sha256(config)
    if training is None:  # no record: a record left beside the new configuration would lie
        try:
            record_path.unlink(missing_ok=True)
        except OSError as exc:
            raise write_failure(run_dir, record_path.name, exc) from exc
    else:
        record: dict[str, Any] = {**training, "config_sha256": digest}
        try:
            current = _matching_record(config_path)
        except StoreError:  # an unreadable record is replaced, not kept
            current = None
        if current is not None and current.get("config_sha256") != digest:
            current.pop("previous", None)
            record["previous"] = current
        _written(run_dir, record_path.name, lambda path: write_json(path, record))
    _written(run_dir, OPT_CFG, lambda path: write_json(path, dict(config)))


def _raw_record(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StoreError(
            f"{path} is not a valid training record ({exc}); delete it or fix it."
        ) from exc
    if not isinstance(data, dict):
        raise StoreError(
            f"{path} is not a valid training record (not an object); delete it or fix it."
        )
    return data


def _matching_record(config_path: Path) -> dict[str, Any] | None:
    """The raw training record beside ``config_path`` that belongs to the configuration in it:
    the record itself or the one it replaced (a writer killed between the two renames); a
    record without ``config_sha256`` (written before it existed, or by hand) is taken as it is.
    None when there is none, or none matches (the configuration was edited)."""
    path = training_record_path(config_path)
    record = _raw_record(path)
    if record is None or "config_sha256" not in record:
        return record
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError):
        return record  # no readable configuration to match: the caller reports it
    if not isinstance(config, dict):
        return record
    digest = config_sha256(config)
    previous = record.get("previous")
    for candidate in (record, previous):
        if isinstance(candidate, dict) and candidate.get("config_sha256") == digest:
            return candidate
    logger.warning(
        "%s belongs to another configuration than %s (it was edited?); it is ignored.",
        path,
        config_path,
    )
    return None


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
    record = _matching_record(config_path)
    if record is None:
        return None
    try:
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
