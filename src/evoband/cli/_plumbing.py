"""Shared command-line plumbing: argument types, logging, error handling and exit codes."""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
from collections.abc import Callable
from fractions import Fraction
from types import FrameType

from tqdm.auto import tqdm

from ..core._errors import EvobandError

EXIT_OK, EXIT_VIOLATED, EXIT_BAD_INPUT = 0, 1, 2
EXIT_SIGINT, EXIT_SIGTERM = 130, 143


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


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> None:
    """Run a CLI ``main``: bad input -> one ``error:`` line and exit 2; signals -> 130 / 143."""
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        code = main(argv)
    except EvobandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = EXIT_BAD_INPUT
    except Terminated:
        code = EXIT_SIGTERM
    except KeyboardInterrupt:
        code = EXIT_SIGINT
    sys.exit(code)
