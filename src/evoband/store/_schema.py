"""The ledger's schema: its tables, its version, and opening (and checking) a ledger file.

:class:`evoband.store._ledger.RunStore` reads and writes the ledger through the connection made here.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..core._errors import StoreError

SCHEMA_VERSION = 2
"""Version 2 added the ``predictions`` table (out-of-fold class probabilities); a ledger of
version 1 gains it when it is opened for writing, and reads as having none."""
LEDGER = "history.sqlite"
APPLICATION_ID = 0x45564244  # "EVBD": marks a ledger as ours

SCHEMA = """
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

PREDICTIONS_TABLE = """CREATE TABLE IF NOT EXISTS predictions (
    member_id INTEGER NOT NULL, epochs INTEGER NOT NULL, fold INTEGER NOT NULL,
    n_rows INTEGER NOT NULL, n_classes INTEGER NOT NULL, probabilities BLOB NOT NULL,
    PRIMARY KEY (member_id, epochs, fold))"""
"""Each scored fold's class probabilities on its validation images: little-endian float16,
``n_rows x n_classes``, in the fold's order of validation images (out-of-fold predictions)."""


INHERITANCE_TABLE = """CREATE TABLE IF NOT EXISTS inheritance (
    member_id INTEGER NOT NULL, fold INTEGER NOT NULL, parent_id INTEGER NOT NULL,
    PRIMARY KEY (member_id, fold))"""
"""Which folds of which members started from a parent's weights (made on first use)."""

SOURCES_TABLE = """CREATE TABLE IF NOT EXISTS inheritance_sources (
    member_id INTEGER PRIMARY KEY, sources TEXT NOT NULL)"""
"""Per member that inherited: JSON ``[[parent_id, parent_epochs], ...]``, the first parent first
(the lineage retraining follows them; made on first use)."""

INSERT_INHERITANCE = "INSERT OR REPLACE INTO inheritance VALUES (?, ?, ?)"
INSERT_SOURCES = "INSERT OR IGNORE INTO inheritance_sources VALUES (?, ?)"


ERRORS_TABLE = """CREATE TABLE IF NOT EXISTS errors (
    member_id INTEGER NOT NULL, epochs INTEGER NOT NULL, fold INTEGER NOT NULL,
    error TEXT NOT NULL, traceback TEXT NOT NULL, PRIMARY KEY (member_id, epochs, fold))"""
"""The traceback of each fold whose training raised (status ``error``; made on first use, so
that older ledgers and runs without errors keep the schema of version 1)."""

DECISIONS_TABLE = """CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY, member_id INTEGER NOT NULL, epochs INTEGER NOT NULL,
    known INTEGER NOT NULL)"""
"""With asynchronous promotion: each decision to train a member to a budget, in the order made,
with how many evaluations were recorded then (made on first use)."""

WRITE_FAILURES = ("full", "readonly", "read-only", "disk i/o", "unable to open")
"""Words of the sqlite errors that mean the disk, not the statement, failed."""


def open_ledger(run_dir: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection to ``run_dir``'s ledger, made (with the schema) if needed and checked.

    Read-only: the ledger must exist. Otherwise the directory is created and a new ledger gets
    the whole schema in one transaction (a kill leaves either no schema or all of it). A file
    that is not an evoband ledger, or one of a newer schema version, is refused untouched.
    """
    path = run_dir / LEDGER
    if readonly:
        if not path.exists():
            raise StoreError(f"{run_dir} has no {LEDGER}; is it a run directory?")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        check_schema(conn, path)
        return conn
    run_dir.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        fresh = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
        if fresh:
            conn.executescript(
                f"BEGIN; PRAGMA application_id = {APPLICATION_ID}; {SCHEMA} {PREDICTIONS_TABLE}; "
                f"INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}'); COMMIT;"
            )
        check_schema(conn, path)  # before anything changes a file that is not ours
        upgrade(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"{path} is not an evoband ledger ({exc}).") from exc
    except StoreError:
        conn.close()
        raise
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def check_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a ledger that is not ours or is of a newer schema version than this one."""
    try:
        app = conn.execute("PRAGMA application_id").fetchone()[0]
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not an evoband ledger ({exc}).") from exc
    if app != APPLICATION_ID or row is None:
        raise StoreError(f"{path} is not an evoband ledger.")
    if int(row[0]) > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {row[0]}, newer than this evoband "
            f"understands ({SCHEMA_VERSION}); upgrade evoband to read it."
        )


def schema_version(conn: sqlite3.Connection) -> int:
    """The schema version a ledger records."""
    return int(conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])


def upgrade(conn: sqlite3.Connection) -> None:
    """Bring a ledger of an older schema version to :data:`SCHEMA_VERSION`, in one transaction
    (version 1 -> 2: the ``predictions`` table)."""
    if schema_version(conn) >= SCHEMA_VERSION:
        return
    conn.executescript(
        f"BEGIN; {PREDICTIONS_TABLE}; UPDATE meta SET value = '{SCHEMA_VERSION}' "
        "WHERE key = 'schema_version'; COMMIT;"
    )
