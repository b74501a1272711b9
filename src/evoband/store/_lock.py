"""One search per run directory: the lock file ``RUN/search.lock``.

A search (``AutoML.py``, a resume, :func:`evoband.fit`) holds an exclusive ``flock`` on the file
for as long as it runs, and writes its holder into it: pid, host, start time and command. The
kernel drops the lock when the process ends, however it ends, so a lock left by a killed search
is free: the next search takes it over and says whose it was. A second search while the first
runs is refused with one line naming the holder.

On a network filesystem ``flock`` reaches the server where the filesystem supports it (NFSv4
on Linux forwards it as a POSIX lock); where it does not, two hosts could both get it. A free
lock whose file names another host is therefore not taken over: that search may still be
running there, so the second search is refused, and the message says to delete the file once
that search is known to have stopped. ``evaluation.py`` and ``main.py`` take no lock: they never
write the ledger or the checkpoints.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core._errors import StoreError
from ..core._files import is_temporary

try:
    import fcntl
except ImportError:  # Windows: no flock; the lock file alone guards, dead holders included
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

LOCK_FILE = "search.lock"
"""The lock file's name inside a run directory."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or held) a run directory's lock, as its lock file says."""

    pid: int | None
    host: str
    started: str
    command: str

    @classmethod
    def read(cls, path: Path) -> LockHolder | None:
        """The holder written in ``path``; None for a missing, empty or unreadable file."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        pid = data.get("pid")
        return cls(
            pid=pid if isinstance(pid, int) else None,
            host=str(data.get("host", "?")),
            started=str(data.get("started", "?")),
            command=str(data.get("command", "")),
        )

    def describe(self) -> str:
        """``pid 123 on host h, started 2026-...``."""
        return f"pid {self.pid} on host {self.host}, started {self.started}"


def _this_host() -> str:
    return socket.gethostname()


class RunLock:
    """The exclusive lock of one run directory, held until :meth:`release`.

    Args:
        run_dir: the run directory (made if missing).

    Raises:
        StoreError: another search holds it (or may: a lock of another host), or the lock file
            cannot be written.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None
        self.taken_over: LockHolder | None = None
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"Cannot create the run directory {self.run_dir} ({exc.strerror or exc}); "
                "choose another --run_dir."
            ) from None
        self._acquire()

    def _acquire(self) -> None:
        for _ in range(10):  # the file may be replaced between open and flock: try again
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise StoreError(
                    f"Cannot write the lock file {self.path} ({exc.strerror or exc}); "
                    "the run directory must be writable."
                ) from None
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    raise _held(self.run_dir, LockHolder.read(self.path)) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder removed the file as we opened it: lock the new one
                os.close(fd)
                continue
            self._fd = fd
            self._claim()
            return
        raise StoreError(f"The lock file {self.path} keeps being replaced; try again.")

    def _claim(self) -> None:
        """Write this process as the holder, after checking whom the lock was left by."""
        assert self._fd is not None
        previous = LockHolder.read(self.path)
        if previous is not None and previous.pid is not None:
            alive = previous.host == _this_host() and _alive(previous.pid)
            if previous.host != _this_host() or (fcntl is None and alive):
                self.release(remove=False)
                raise _held(self.run_dir, previous, other_host=previous.host != _this_host())
            if previous.pid != os.getpid():
                self.taken_over = previous
                logger.warning(
                    "Taking over the lock of %s left by a search that is no longer running (%s).",
                    self.run_dir,
                    previous.describe(),
                )
        record: dict[str, Any] = {
            "pid": os.getpid(),
            "host": _this_host(),
            "started": dt.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        }
        data = (json.dumps(record) + "\n").encode()
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)
            os.fsync(self._fd)
        except OSError as exc:
            self.release(remove=False)
            raise StoreError(
                f"Cannot write the lock file {self.path} ({exc.strerror or exc})."
            ) from None

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock."""
        return self._fd is not None

    def release(self, remove: bool = True) -> None:
        """Give the lock up (and remove its file); calling it again does nothing."""
        if self._fd is None:
            return
        if remove:
            try:  # removed while still locked, so that no one locks a file about to vanish
                self.path.unlink(missing_ok=True)
            except OSError as exc:
                logger.debug("Lock file %s not removed: %s", self.path, exc)
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _held(run_dir: Path, holder: LockHolder | None, other_host: bool = False) -> StoreError:
    who = holder.describe() if holder else "another process"
    if other_host:
        return StoreError(
            f"Another search may be running in {run_dir} ({who}): one search per run directory; "
            f"once it has surely stopped, delete {run_dir / LOCK_FILE} and try again."
        )
    return StoreError(
        f"Another search is running in {run_dir} ({who}): one search per run directory; wait "
        "for it to finish or stop it, or choose another --run_dir."
    )


def lock_holder(run_dir: str | Path) -> LockHolder | None:
    """The search holding ``run_dir``'s lock now, or None when it is free (a peek: the lock is
    not taken)."""
    path = Path(run_dir) / LOCK_FILE
    if not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        if fcntl is None:
            holder = LockHolder.read(path)
            return holder if holder and holder.pid and _alive(holder.pid) else None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return LockHolder.read(path) or LockHolder(None, "?", "?", "")
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


STALE_AFTER_SECONDS = 60.0
"""A temporary file younger than this may belong to a report being written (``evaluation.py``,
``main.py``): it is left alone."""
SEARCH_FOLDERS = (".", "checkpoints", "predictor")
"""Where a search writes (its temporary files included)."""


def remove_stale_temporaries(run_dir: str | Path) -> int:
    """Remove the atomic writer's temporary files that a killed search left in ``run_dir``
    (call it holding the lock); returns how many were removed."""
    removed = 0
    now = time.time()
    for folder in SEARCH_FOLDERS:
        base = Path(run_dir) / folder
        if not base.is_dir():
            continue
        for path in base.rglob("*.tmp") if folder != "." else base.glob(".*.tmp"):
            try:
                if (
                    is_temporary(path)
                    and path.is_file()
                    and now - path.stat().st_mtime > STALE_AFTER_SECONDS
                ):
                    path.unlink()
                    removed += 1
            except OSError as exc:
                logger.debug("Temporary file %s not removed: %s", path, exc)
    return removed
