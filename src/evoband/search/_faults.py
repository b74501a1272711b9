"""Fault limits: the same error evaluation after evaluation is a bug, and stops the search.

An evaluation whose training raised an unexpected exception has status ``error`` (see
:func:`evoband.training.failed_fold`); its traceback is in the ledger. The same error (type and
message) in :data:`REPEATED_ERROR_LIMIT` evaluations in a row is a bug that every further
evaluation would hit too, so the search stops with a summary instead of burning its budget.
Running out of memory, diverging and timing out are not errors and do not count.
"""

from __future__ import annotations

import logging

from ..training._results import Result, Status

logger = logging.getLogger(__name__)

REPEATED_ERROR_LIMIT = 3
"""Evaluations in a row failing with the same error that stop a search."""


class ErrorStreak:
    """Counts evaluations in a row that failed with the same error; logs each error once.

    Args:
        limit: the streak length that stops the search.
    """

    def __init__(self, limit: int = REPEATED_ERROR_LIMIT) -> None:
        self.limit = limit
        self.error = ""
        self.count = 0
        self._logged: set[str] = set()

    def observe(self, result: Result, where: str, *, replayed: bool = False) -> str:
        """Count ``result`` (of the evaluation ``where``); the stop summary once the limit is hit.

        The first occurrence of an error is logged with its traceback, repeats in one line.
        Evaluations replayed from the ledger on resume count without logging and never stop the
        search themselves: a run stopped by a bug resumes once it is fixed (a new evaluation
        that fails the same way again stops it at once).
        """
        log = not replayed
        folds = [f for f in result.folds if f.status == Status.ERROR]
        if result.status != Status.ERROR or not folds:
            self.error, self.count = "", 0
            return ""
        error = folds[0].message
        self.count = self.count + 1 if error == self.error else 1
        self.error = error
        if log and error not in self._logged:
            self._logged.add(error)
            logger.error(
                "%s raised %s (recorded as status 'error' with its traceback in the ledger's "
                "errors table):\n%s",
                where,
                error,
                folds[0].traceback.rstrip() or "(no traceback)",
            )
        elif log:
            logger.error(
                "%s raised the same error again (%d in a row): %s", where, self.count, error
            )
        if self.count < self.limit or replayed:
            return ""
        return (
            f"the same error in {self.count} evaluations in a row ({error}; last: {where}); "
            "tracebacks are in the ledger's errors table"
        )
