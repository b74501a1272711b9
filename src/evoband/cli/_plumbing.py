"""Shared command-line plumbing: argument types, logging, error handling and exit codes."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import os
import signal
import sqlite3
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from types import FrameType

from tqdm.auto import tqdm

from ..core._errors import EnvironmentFailure, EvobandError
from ..core._files import write_text
from ..core._validate import require, require_int
from ..core._version import __version__

EXIT_OK, EXIT_VIOLATED, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_ENVIRONMENT = 0, 1, 2, 3, 4
EXIT_SIGINT, EXIT_SIGTERM = 130, 143

ERROR_LOG = "error.log"
"""The file in a run directory that an internal error's traceback is appended to."""

SEED_LIMIT = 2**32
"""A search's seeds are below this: numpy's and ConfigSpace's legacy seeding takes 32 bits."""
TRAINING_SEED_LIMIT = 2**63
"""Training seeds (``main.py --seed``, ``evaluation.py --seed``) are below this: a member's own
seed, drawn by the search, takes 63 bits, and torch takes them."""


def exit_codes(ok: str, violated: str | None = None, *, search: bool = False) -> str:
    """The ``--help`` epilog of every command line: its exit codes.

    Args:
        ok: what status 0 means for this command line.
        violated: what status 1 means (None: it never exits 1).
        search: the command line runs a search (its statuses 4, 130 and 143 can be resumed).
    """
    codes = [f"0 {ok}"]
    if violated is not None:
        codes.append(f"1 {violated}")
    codes += [
        "2 bad input or usage, including a run directory that cannot be written at start",
        "3 an internal error (a bug: the line names the file holding the traceback, "
        f"RUN/{ERROR_LOG} or a temporary file)",
        "4 the environment failed during the run (disk full or an I/O error, a damaged ledger, "
        "a lost Dask cluster"
        + (", the same error in evaluation after evaluation)" if search else ")"),
        "130 / 143 interrupted by Ctrl-C / SIGTERM",
    ]
    text = "exit codes: " + "; ".join(codes) + ". Every failure is one 'error:' line on stderr."
    if search:
        text += " After 4, 130 or 143 every finished evaluation is in the ledger: continue with --resume."
    return text


def require_seed(seed: int | None, limit: int = SEED_LIMIT) -> None:
    """Refuse a ``--seed`` outside ``0 <= seed < limit`` (one line, before any work)."""
    if seed is not None:
        require_int("seed", seed, low=0, high=limit, high_open=True)


def require_image_size(image_size: Sequence[int] | None) -> None:
    """Refuse an ``--image_size H W`` with a side below 1 (one line, before any work)."""
    if image_size is not None:
        shown = " ".join(map(str, image_size))
        require(min(image_size) >= 1, "image_size", image_size, "two sides >= 1", shown=shown)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, cleanly formatted, except where there is none or the help text already
    says it."""

    @staticmethod
    def format_default(value: object) -> str:
        """A default as a user would write it: ``86400`` not ``86400.0``, ``1/3`` not
        ``0.3333333333333333``; other values as ``str`` gives them."""
        if not isinstance(value, float) or not math.isfinite(value):
            return str(value)
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        shortest = repr(value)
        if len(shortest) <= 8:  # 0.39, 0.001, 1e-05
            return shortest
        fraction = Fraction(value).limit_denominator(1000)
        if float(fraction) == value:
            return f"{fraction.numerator}/{fraction.denominator}"
        return f"{value:.4g}"

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            action.default is None
            or "default:" in text
            or (action.default is False and action.nargs == 0)
        ):
            return text
        help_string = super()._get_help_string(action)
        if help_string and "%(default)s" in help_string and isinstance(action.default, float):
            shown = self.format_default(action.default).replace("%", "%%")
            help_string = help_string.replace("%(default)s", shown)
        return help_string


def str2bool(value: str | bool) -> bool:
    """Booleans as the reference scripts' users type them: True/False/1/0/yes/no."""
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "y", "t"):
        return True
    if lowered in ("false", "0", "no", "n", "f"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {value!r}")


def flag(parser: argparse.ArgumentParser, *names: str, help: str, default: bool = False) -> None:
    """A boolean option usable as ``--x``, ``--x True`` or ``--x no``."""
    parser.add_argument(
        *names, type=str2bool, nargs="?", const=True, default=default, metavar="BOOL", help=help
    )


def model_size(value: str) -> int:
    """A parameter count written as 20000000 or 2e7."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 2e7, got {value!r}") from None
    if number < 1 or not number.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value!r}")
    return int(number)


def word_or_count(word: str) -> Callable[[str], int | str]:
    """An argparse type accepting ``word`` or a whole number >= 1."""

    def parse(value: str) -> int | str:
        if value == word:
            return value
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number < 1:
            raise argparse.ArgumentTypeError(
                f"expected {word!r} or a whole number >= 1, got {value!r}"
            )
        return number

    return parse


workers_arg = word_or_count("auto")
"""``auto`` or a whole number >= 1 (``--workers``)."""


class _TqdmHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stderr)


def setup_logging(verbose: bool) -> None:
    """INFO lines (DEBUG with ``-v``) that do not break progress bars."""
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("evoband").setLevel(logging.DEBUG if verbose else logging.INFO)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so the same clean-up runs."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


_run_dir: list[Path] = []
"""The run directory of the command line running now, once it named one (see :func:`use_run_dir`)."""


def use_run_dir(run_dir: Path | None) -> None:
    """Name the run directory of the running command line: an internal error's traceback then
    goes to ``RUN/error.log`` instead of a temporary file.

    Call it once the directory holds an evoband run (its ledger exists), so that a start that
    fails leaves no stray file in a folder that a new run should find empty.
    """
    _run_dir[:] = [] if run_dir is None else [Path(run_dir)]


def is_environment_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the environment failing rather than a bug: an operating-system error
    (disk full, I/O error, a file changed under the run, a dropped connection), memory, a
    damaged or locked ledger, or the Dask cluster's own failures."""
    if isinstance(exc, EnvironmentFailure | OSError | MemoryError):
        return True
    if isinstance(exc, sqlite3.DatabaseError):
        # a malformed disk image, a locked or read-only ledger; misuse of the API is a bug
        return not isinstance(exc, sqlite3.ProgrammingError)
    return type(exc).__module__.partition(".")[0] == "distributed"


def _one_line(text: str, limit: int = 500) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _save_traceback(exc: BaseException) -> Path | None:
    """Append ``exc``'s traceback to ``RUN/error.log`` (else a new temporary file); its path, or
    None when neither can be written (a full disk)."""
    text = (
        f"--- {dt.datetime.now().isoformat(timespec='seconds')}  evoband {__version__}  "
        f"{' '.join(sys.argv)}\n" + "".join(traceback.format_exception(exc)) + "\n"
    )
    if _run_dir and _run_dir[0].is_dir():
        path = _run_dir[0] / ERROR_LOG
        try:
            previous = path.read_text(errors="replace") if path.is_file() else ""
            write_text(path, previous + text)
            return path
        except OSError:
            pass  # a full or read-only run directory: the temporary folder may still do
    try:
        fd, name = tempfile.mkstemp(prefix="evoband-error-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        return Path(name)
    except OSError:
        return None


def report_failure(exc: Exception) -> int:
    """Print the one ``error:`` line for ``exc`` on stderr; its exit status.

    Errors of this package are their message (status 2, or 4 for an
    :class:`~evoband.core._errors.EnvironmentFailure`); other environment failures and internal
    errors (status 4 and 3) name the file their traceback was written to.
    """
    if isinstance(exc, EvobandError):
        print(f"error: {_one_line(str(exc), limit=2000)}", file=sys.stderr)
        return EXIT_ENVIRONMENT if isinstance(exc, EnvironmentFailure) else EXIT_BAD_INPUT
    what = f"{type(exc).__name__}: {_one_line(str(exc))}" if str(exc) else type(exc).__name__
    saved = _save_traceback(exc)
    if is_environment_failure(exc):
        where = f"; traceback in {saved}" if saved else ""
        print(
            f"error: the environment failed ({what}){where}; fix the cause, then run the "
            "command again (a search: with --resume).",
            file=sys.stderr,
        )
        return EXIT_ENVIRONMENT
    where = f"the traceback is in {saved}" if saved else "the traceback could not be saved"
    print(
        f"error: internal error ({what}); {where}; please report it with that file.",
        file=sys.stderr,
    )
    return EXIT_INTERNAL


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> None:
    """Run a CLI ``main`` and exit with its status, or the documented status of its failure.

    0 and 1 are ``main``'s to return; a failure is one ``error:`` line on stderr and exits 2
    (bad input: an :class:`~evoband.core._errors.EvobandError`), 3 (an internal error: any
    other exception, its traceback saved to ``RUN/error.log`` or a temporary file) or 4 (the
    environment failed: :func:`is_environment_failure`); Ctrl-C and SIGTERM exit 130 and 143.
    """
    use_run_dir(None)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        code = main(argv)
    except Terminated:
        code = EXIT_SIGTERM
    except KeyboardInterrupt:
        code = EXIT_SIGINT
    except Exception as exc:
        code = report_failure(exc)
    finally:
        signal.signal(signal.SIGTERM, previous)
    sys.exit(code)
