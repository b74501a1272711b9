"""The command lines' plumbing: argument types, logging, and running a CLI's ``main`` with one-line
errors and the documented exit codes."""

from __future__ import annotations

from ._plumbing import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_VIOLATED,
    HelpFormatter,
    flag,
    model_size,
    run_cli,
    setup_logging,
    word_or_count,
    workers_arg,
)

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_OK",
    "EXIT_SIGINT",
    "EXIT_SIGTERM",
    "EXIT_VIOLATED",
    "HelpFormatter",
    "flag",
    "model_size",
    "run_cli",
    "setup_logging",
    "word_or_count",
    "workers_arg",
]
