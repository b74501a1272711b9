"""Watch a run live in the browser: its ledger mirrored into an Optuna study, served by
optuna-dashboard.

    python src/evaluation.py runs/<run> --dashboard [--port 8080] [--host 127.0.0.1] [--journal PATH]

A :class:`Dashboard` follows one run directory read-only (live or finished, a read-only folder
included), mirrors it into an Optuna journal file outside it (by default under the user's cache
folder, see :func:`default_journal_path`) and serves that file with optuna-dashboard's WSGI app
on a local HTTP server. The search process knows nothing of it. The ledger is looked at every
``poll_seconds`` (a few ``stat`` calls) and read again only when it changed; only what changed
is written to the journal (:class:`evoband.report._mirror.JournalMirror`). The page is
read-only: requests that would change the study are refused.

optuna and optuna-dashboard are the optional extra ``evoband[dashboard]``; they are imported here
only when a dashboard is made, so evoband itself never needs them.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from ..core._errors import ConfigError, EvobandError
from ..core._validate import require_int, require_number
from ..store._schema import LEDGER
from ._trials import RunFollower

if TYPE_CHECKING:
    from ._mirror import JournalMirror

logger = logging.getLogger(__name__)

EXTRA = "pip install 'evoband[dashboard]' (or: pip install optuna optuna-dashboard)"
"""How to install what the dashboard needs."""
NICENESS = 10
"""How far ``evaluation.py --dashboard`` lowers its own CPU priority: on a machine whose cores the
search keeps busy, following it and serving pages wait for the search, never the other way."""
READ_METHODS = ("GET", "HEAD")
"""The only HTTP methods the served page may use: it shows the run, it changes nothing."""


def default_journal_path(run_dir: str | Path) -> Path:
    """Where the journal of a run goes by default: ``$XDG_CACHE_HOME`` (else ``~/.cache``)
    ``/evoband/dashboard/<run name>-<8 hex digits of its absolute path>.log``."""
    resolved = Path(run_dir).resolve()
    cache = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(cache) if cache and Path(cache).is_absolute() else Path.home() / ".cache"
    digest = hashlib.sha256(str(resolved).encode("utf-8")).hexdigest()[:8]
    return base / "evoband" / "dashboard" / f"{resolved.name}-{digest}.log"


def lower_priority(niceness: int = NICENESS) -> None:
    """Lower this process's CPU priority by ``niceness`` where the system allows (POSIX); the
    dashboard command calls it, so that a search on the same cores runs at full speed."""
    try:
        os.nice(niceness)
    except (AttributeError, OSError) as exc:  # no os.nice (Windows), or not permitted
        logger.debug("CPU priority not lowered: %s", exc)


def require_dashboard() -> None:
    """Raise a one-line ConfigError naming the extra when optuna or optuna-dashboard is missing."""
    try:
        import optuna  # noqa: F401
        import optuna_dashboard  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"The dashboard needs optuna and optuna-dashboard ({exc.name or exc} is missing): "
            f"{EXTRA}."
        ) from None


def check_run_dir(run_dir: Path) -> None:
    """A ConfigError unless ``run_dir`` is a run directory (a folder holding a ledger)."""
    if not run_dir.is_dir():
        raise ConfigError(f"The run directory {run_dir} does not exist or is not a directory.")
    if not (run_dir / LEDGER).is_file():
        raise ConfigError(f"{run_dir} has no {LEDGER}; is it a run directory?")


def check_journal(journal: Path, run_dir: Path) -> Path:
    """The journal's absolute path; a ConfigError if it lies inside the run directory or is a
    folder."""
    journal = journal.expanduser().resolve()
    if journal.is_relative_to(run_dir.resolve()):
        raise ConfigError(
            f"The journal {journal} lies inside the run directory; the dashboard never writes "
            "there: choose a --journal outside it."
        )
    if journal.is_dir():
        raise ConfigError(f"The journal {journal} is a folder; name a file with --journal.")
    return journal


class _JournalLock:
    """An exclusive lock on the journal file for as long as one mirror writes it."""

    def __init__(self, journal: Path) -> None:
        try:
            journal.parent.mkdir(parents=True, exist_ok=True)
            self.fh: IO[bytes] | None = open(journal, "ab")  # noqa: SIM115 - held until close
        except OSError as exc:
            raise ConfigError(
                f"Cannot write the journal {journal} ({exc.strerror or exc}); choose another "
                "--journal."
            ) from None
        try:
            import fcntl
        except ImportError:  # no flock (Windows): one dashboard per journal is the user's care
            return
        try:
            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.close()
            raise ConfigError(
                f"Another dashboard is writing the journal {journal}; stop it, or choose "
                "another --journal."
            ) from None

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()  # closing releases the lock
            self.fh = None


def _open_mirror(run_dir: Path, journal: Path) -> JournalMirror:
    from ._mirror import JournalMirror, open_storage, trim_partial_line

    trim_partial_line(journal)
    try:
        storage = open_storage(journal, writer=True)
    except (ValueError, OSError, KeyError) as exc:
        raise ConfigError(
            f"The journal {journal} cannot be read as an Optuna journal ({exc}); delete it or "
            "choose another --journal."
        ) from None
    return JournalMirror(storage, run_dir, run_dir.resolve().name)


def mirror_run(run_dir: str | Path, journal: str | Path | None = None) -> int:
    """Mirror a run into an Optuna journal once (the dashboard's first step, without serving).

    Running it again continues the study: no trial is written twice.

    Args:
        run_dir: the run directory (only read).
        journal: the journal file (default: :func:`default_journal_path`).

    Returns:
        How many trials the run's study holds.

    Raises:
        ConfigError: not a run directory, the extra is missing, or the journal cannot be used.
        StoreError: the ledger cannot be read.
    """
    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    require_dashboard()
    path = check_journal(Path(journal) if journal else default_journal_path(run_dir), run_dir)
    lock = _JournalLock(path)
    follower = RunFollower(run_dir, path.with_name(path.name + ".d"))
    try:
        mirror = _open_mirror(run_dir, path)
        mirror.sync(follower.read())
        return len(mirror.trial_numbers)
    finally:
        follower.close()
        lock.close()


# -- serving -----------------------------------------------------------------------------------------


class _Server(ThreadingMixIn, WSGIServer):
    """wsgiref's server, one thread per request (a page loads several resources at once)."""

    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr (one line per request of a polling page); at DEBUG instead."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        logger.debug("%s %s", self.address_string(), format % args)


def read_only(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """A WSGI app that passes reads to ``app`` and refuses every request that would write."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET") in READ_METHODS:
            return app(environ, start_response)
        body = (
            b'{"reason": "This dashboard mirrors an evoband run read-only; '
            b'nothing can be changed here."}'
        )
        start_response(
            "405 Method Not Allowed",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Allow", ", ".join(READ_METHODS)),
            ],
        )
        return [body]

    return guarded


def _bind(host: str, port: int) -> _Server:
    """The HTTP server bound to ``host:port``; a ConfigError when that cannot be done."""
    server_class = _Server6 if ":" in host else _Server
    try:
        server = server_class((host, port), _QuietHandler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"Port {port} on {host} is in use; choose another with --port."
            ) from None
        raise ConfigError(
            f"Cannot serve on {host}:{port} ({exc.strerror or exc}); check --host and --port."
        ) from None
    return server


class Dashboard:
    """A run mirrored into an Optuna journal and served by optuna-dashboard.

    Opening it checks everything before it writes anything: the run directory, the extra, the
    journal's place, the port (bound at once), then the journal (locked: one mirror per
    journal). It then mirrors the run as it is and starts serving. :meth:`follow` keeps the
    mirror current until interrupted; :meth:`close` (or leaving the ``with`` block) stops it.

    Args:
        run_dir: the run directory (never written).
        host: the address to serve on.
        port: the TCP port (0: any free one; :attr:`url` tells which).
        journal: the journal file (default: :func:`default_journal_path`); never inside the run.
        poll_seconds: how often :meth:`follow` looks for new results (>= 0.1; default 1 s).

    Raises:
        ConfigError: bad input (see above); StoreError: the ledger cannot be read.
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        journal: str | Path | None = None,
        poll_seconds: float = 1.0,
    ) -> None:
        self.run_dir = Path(run_dir)
        check_run_dir(self.run_dir)
        require_int("port", port, low=0, high=65535)
        require_number("poll_seconds", poll_seconds, low=0.1)
        require_dashboard()
        self.journal = check_journal(
            Path(journal) if journal else default_journal_path(self.run_dir), self.run_dir
        )
        self.poll_seconds = float(poll_seconds)
        self.host = host
        self._server = _bind(host, port)
        self.port = int(self._server.server_address[1])
        self._lock: _JournalLock | None = None
        self._follower = RunFollower(self.run_dir, self.journal.with_name(self.journal.name + ".d"))
        self._thread: threading.Thread | None = None
        self._last_problem = ""
        try:
            self._lock = _JournalLock(self.journal)
            self.mirror = _open_mirror(self.run_dir, self.journal)
            self.sync()
            self._serve()
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        """The page's address."""
        host = self.host
        if host in ("", "0.0.0.0", "::"):
            host = "localhost"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/dashboard/"

    def _serve(self) -> None:
        import optuna_dashboard

        from ._mirror import open_storage

        app = optuna_dashboard.wsgi(open_storage(self.journal, writer=False))
        self._server.set_app(read_only(app))
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name="evoband-dashboard",
            daemon=True,
        )
        self._thread.start()

    def sync(self) -> int:
        """Mirror what changed since the last call; returns the journal operations written."""
        if not self._follower.changed():
            return 0
        return self.mirror.sync(self._follower.read())

    def follow(self, stop: threading.Event | None = None) -> None:
        """Keep the mirror current until ``stop`` is set (or Ctrl-C).

        A read that fails (a ledger caught mid-copy, a run directory gone for a moment) is
        logged once and tried again at the next poll; after any other failure the mirror is
        made again from the journal, so that what it holds and what it knows agree.
        """
        stop = stop or threading.Event()
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.sync()
                self._last_problem = ""
            except EvobandError as exc:
                self._problem(f"Cannot read the run now (trying again): {exc}")
            except Exception as exc:  # noqa: BLE001 - keep serving; start from the journal again
                self._problem(f"Mirroring failed (starting again from the journal): {exc!r}")
                self._follower.forget()
                with contextlib.suppress(EvobandError):
                    self.mirror = _open_mirror(self.run_dir, self.journal)
            spent = time.monotonic() - started
            # a big ledger read less often, so that following never costs much of a core
            stop.wait(min(max(self.poll_seconds, 2.0 * spent), 3.0))

    def _problem(self, message: str) -> None:
        """Log ``message`` unless it repeats the last one."""
        if message != self._last_problem:
            logger.warning("%s", message)
        self._last_problem = message

    def close(self) -> None:
        """Stop serving, release the journal, remove the private ledger copy."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
        self._follower.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(Exception):
            self.close()
