"""The ledger's schema: its tables, its version, and opening (and checking) a ledger file.

:class:`evoband.store._ledger.RunStore` reads and writes the ledger through the connection made here.

Integrity: a ledger opened for writing passes ``PRAGMA quick_check`` first (so does one opened
for reading, up to :data:`QUICK_CHECK_READONLY_BYTES`); a damaged one raises
:class:`evoband.core._errors.LedgerDamaged` (exit status 4) naming the file: restore it from a
backup or start a new run directory.

Journal: on a local disk the ledger uses SQLite's write-ahead log (``journal_mode=WAL``: readers
such as ``evaluation.py`` never block the search). WAL needs shared memory between every process
that opens the file, which a network filesystem does not give across hosts, so where the run
directory is on one (Linux: the filesystem type of its mount in ``/proc/mounts`` is one of
:data:`NETWORK_FILESYSTEMS`) the ledger uses the rollback journal (``journal_mode=DELETE``)
instead. The environment variable ``EVOBAND_LEDGER_JOURNAL=wal`` or ``=delete`` overrides the
detection (for a filesystem it does not know, or one it misjudges).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from ..core._errors import LedgerDamaged, StoreError
from ..core._validate import require_choice

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 3
"""Version 2 added the ``predictions`` table (out-of-fold class probabilities), version 3 the
``starts`` table (evaluations started, to count crashes); an older ledger gains them when it is
opened for writing, and reads as having none."""
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


STARTS_TABLE = """CREATE TABLE IF NOT EXISTS starts (
    member_id INTEGER NOT NULL, epochs INTEGER NOT NULL, attempts INTEGER NOT NULL,
    started REAL NOT NULL, PRIMARY KEY (member_id, epochs))"""
"""Each evaluation (member, budget) whose training started: how many times, and when last. An
evaluation started and never recorded was in flight when the search process died (a kill, the
kernel's out-of-memory killer, a crash); an orderly stop takes its start back."""


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


JOURNAL_VARIABLE = "EVOBAND_LEDGER_JOURNAL"
"""The environment variable that chooses the ledger's journal: ``wal`` or ``delete``."""

NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb", "smb3", "smbfs", "fuse.sshfs", "sshfs", "lustre", "gpfs",
        "beegfs", "ceph", "fuse.ceph", "fuse.cephfs", "glusterfs", "fuse.glusterfs", "9p",
        "afs", "ocfs2", "gfs2", "panfs", "orangefs", "pvfs2", "fuse.s3fs", "fuse.gcsfuse",
        "fuse.rclone", "fuse.juicefs", "davfs", "fuse.davfs2", "virtiofs",
    }
)  # fmt: skip
"""Filesystem types (as ``/proc/mounts`` names them) on which WAL is unsafe: shared by hosts."""

QUICK_CHECK_READONLY_BYTES = 64 * 2**20
"""Read-only opens check ledgers up to this size (larger ones: the check would cost seconds)."""


def _unescape_mount(field: str) -> str:
    """A ``/proc/mounts`` field with its octal escapes (``\\040`` for a space) decoded."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def filesystem_type(path: Path, mounts: str | None = None) -> str | None:
    """The type of the filesystem holding ``path``, from ``mounts`` (the text of
    ``/proc/mounts``, read when None); None where unknown (no ``/proc``: not Linux)."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return None
    target = os.path.realpath(path)
    best, best_type = "", None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = _unescape_mount(fields[1]).rstrip("/") or "/"
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):  # the last of equal mounts is the one on top
            best, best_type = point, fields[2]
    return best_type


def journal_mode(
    run_dir: Path, environ: Mapping[str, str] | None = None, mounts: str | None = None
) -> str:
    """``"wal"`` or ``"delete"``: the journal the ledger in ``run_dir`` should use (see the
    module's docstring); ``environ`` and ``mounts`` default to the process's."""
    environ = os.environ if environ is None else environ
    chosen = environ.get(JOURNAL_VARIABLE, "").strip().lower()
    if chosen:
        return require_choice(JOURNAL_VARIABLE, chosen, ("wal", "delete"))
    kind = filesystem_type(run_dir, mounts)
    if kind is not None and (
        kind in NETWORK_FILESYSTEMS or kind.partition(".")[2] in NETWORK_FILESYSTEMS
    ):
        return "delete"
    return "wal"


def check_integrity(conn: sqlite3.Connection, path: Path) -> None:
    """Raise :class:`LedgerDamaged` unless ``PRAGMA quick_check`` finds the ledger sound."""
    try:
        rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as exc:
        if _is_damage(exc):
            raise damaged(path, str(exc)) from exc
        raise  # not a database at all: the caller refuses it as not a ledger
    if rows != ["ok"]:
        raise damaged(path, "; ".join(rows))


def damaged(path: Path, detail: str) -> LedgerDamaged:
    """The one-line error for a damaged ledger."""
    detail = " ".join(detail.split())[:300]
    return LedgerDamaged(
        f"The ledger {path} is damaged ({detail}); restore it from a backup, or start a new run "
        "directory (another --run_dir)."
    )


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    text = str(exc).lower()
    return "malformed" in text or "corrupt" in text


def open_ledger(run_dir: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection to ``run_dir``'s ledger, made (with the schema) if needed and checked.

    Read-only: the ledger must exist. Otherwise the directory is created and a new ledger gets
    the whole schema in one transaction (a kill leaves either no schema or all of it). A file
    that is not an evoband ledger, or one of a newer schema version, is refused untouched; a
    damaged one raises :class:`LedgerDamaged`.
    """
    path = run_dir / LEDGER
    if readonly:
        if not path.exists():
            raise StoreError(f"{run_dir} has no {LEDGER}; is it a run directory?")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            check_schema(conn, path)
            if path.stat().st_size <= QUICK_CHECK_READONLY_BYTES:
                check_integrity(conn, path)
        except BaseException:
            conn.close()
            raise
        return conn
    run_dir.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        if path.stat().st_size > 0:
            check_integrity(conn, path)  # before the schema check: damage is not foreignness
        fresh = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
        if fresh:
            conn.executescript(
                f"BEGIN; PRAGMA application_id = {APPLICATION_ID}; {SCHEMA} {PREDICTIONS_TABLE}; "
                f"{STARTS_TABLE}; "
                f"INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}'); COMMIT;"
            )
        check_schema(conn, path)  # before anything changes a file that is not ours
        upgrade(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        if _is_damage(exc):
            raise damaged(path, str(exc)) from exc
        raise StoreError(f"{path} is not an evoband ledger ({exc}).") from exc
    except (StoreError, OSError):
        conn.close()
        raise
    try:
        set_journal(conn, journal_mode(run_dir), path)
        conn.execute("PRAGMA synchronous = FULL")
    except BaseException:
        conn.close()
        raise
    return conn


def set_journal(conn: sqlite3.Connection, mode: str, path: Path) -> None:
    """Switch the ledger to journal ``mode`` (``wal`` or ``delete``); a ledger another process
    holds open keeps its journal, with a warning (switching needs the file to itself)."""
    now = str(conn.execute(f"PRAGMA journal_mode = {mode.upper()}").fetchone()[0]).lower()
    if now != mode:
        logger.warning(
            "The ledger %s keeps journal_mode=%s (asked for %s): another process has it open.",
            path,
            now,
            mode,
        )


def check_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a ledger that is not ours or is of a newer schema version than this one."""
    try:
        app = conn.execute("PRAGMA application_id").fetchone()[0]
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        if _is_damage(exc):
            raise damaged(path, str(exc)) from exc
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
    (version 1 -> 2: the ``predictions`` table; 2 -> 3: the ``starts`` table)."""
    if schema_version(conn) >= SCHEMA_VERSION:
        return
    conn.executescript(
        f"BEGIN; {PREDICTIONS_TABLE}; {STARTS_TABLE}; UPDATE meta SET value = '{SCHEMA_VERSION}' "
        "WHERE key = 'schema_version'; COMMIT;"
    )
