"""The command lines' plumbing: argument types and checks, logging, and running a CLI's ``main``
with one-line errors and the documented exit codes (:func:`exit_codes` says them in ``--help``)."""

from __future__ import annotations

from ._plumbing import (
    ERROR_LOG,
    EXIT_BAD_INPUT,
    EXIT_ENVIRONMENT,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_VIOLATED,
    TRAINING_SEED_LIMIT,
    HelpFormatter,
    exit_codes,
    flag,
    model_size,
    require_image_size,
    require_seed,
    run_cli,
    setup_logging,
    use_run_dir,
    word_or_count,
    workers_arg,
)

__all__ = [
    "ERROR_LOG",
    "EXIT_BAD_INPUT",
    "EXIT_ENVIRONMENT",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_SIGINT",
    "EXIT_SIGTERM",
    "EXIT_VIOLATED",
    "HelpFormatter",
    "TRAINING_SEED_LIMIT",
    "exit_codes",
    "flag",
    "model_size",
    "require_image_size",
    "require_seed",
    "run_cli",
    "setup_logging",
    "use_run_dir",
    "word_or_count",
    "workers_arg",
]
