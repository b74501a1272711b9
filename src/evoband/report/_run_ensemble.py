"""The ensemble of a recorded run's best members on the test split (``evaluation.py --ensemble``).

The members are those of the run's final population and its optimum, ranked by the one ranking rule
(:func:`evoband.store._analysis.rank`); the ``k`` best feasible ones are retrained from scratch on the
whole training split as ``main.py -t`` retrains the optimum (:func:`evoband.report._retrain.retrain_on_test`,
each at the budget and LR cycles it was scored at) and their softmax outputs are averaged
(:func:`evoband._ensemble.combine`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from ..store._analysis import feasible_mask, member_results, optimum, rank
from ..store._runs import RunData
from ..training._loop import resolve_device
from ..training._target import Task
from ._ensembles import EnsembleResult, combine, ensemble_size
from ._retrain import retrain_on_test, test_task

logger = logging.getLogger(__name__)


def final_population(run: RunData) -> list[int]:
    """Member ids of the run's last recorded population (every member when none is recorded)."""
    if len(run.generations):
        return [int(m) for m in run.generations["population"].iloc[-1]]
    return sorted({int(m) for m in run.evaluations["member_id"]})


def ensemble_members(run: RunData, k: int | str = "half") -> list[int]:
    """The ``k`` best feasible members of the run's final population and its optimum, best first.

    ``"half"``: half the population (rounded up). Fewer when fewer are feasible. The optimum
    (the best member ever, :func:`evoband.store._analysis.optimum`) is always first when feasible; an
    elitist search keeps it in its population anyway.
    """
    population = final_population(run)
    n = ensemble_size(k, len(population))
    best = optimum(run.evaluations, run.constraints)
    candidates = [*population, int(best["member_id"])] if best is not None else population
    standing = member_results(run.evaluations)
    standing = standing[standing["member_id"].isin(candidates)]
    standing = standing[feasible_mask(standing, run.constraints)]
    ranked = rank(standing, run.constraints)
    return [int(m) for m in ranked["member_id"].iloc[:n]]


def ensemble_on_test(
    run: RunData, task: Task, k: int | str = "half", seed: int | None = None
) -> EnsembleResult | None:
    """Retrain the run's :func:`ensemble_members` and score their averaged outputs on test.

    Returns:
        The ensemble's and its best member's test scores; None when no member is feasible or a
        retraining failed.
    """
    members = ensemble_members(run, k)
    probabilities = []
    num_params = 0
    for member_id in members:
        result = retrain_on_test(run, task, seed=seed, member_id=member_id)
        if result is None or result.probabilities is None:
            logger.warning(
                "%s: member %s could not be retrained; no ensemble.", run.name, member_id
            )
            return None
        logger.info(
            "%s: member %d test top-3 %.4f, precision %.4f",
            run.name,
            member_id,
            result.top3,
            result.precision,
        )
        probabilities.append(result.probabilities)
        num_params += result.num_params
    if not probabilities:
        return None
    return combine(members, probabilities, task.data.test.labels, num_params)


def test_ensembles(
    runs: Iterable[RunData],
    k: int | str = "half",
    *,
    data_dir: str | None = None,
    device: str = "auto",
    seed: int | None = None,
) -> dict[str, EnsembleResult]:
    """:func:`ensemble_on_test` for every run that has a feasible member, by run name."""
    target = resolve_device(device)
    tasks: dict[Any, Task] = {}
    out: dict[str, EnsembleResult] = {}
    for run in runs:
        result = ensemble_on_test(run, test_task(run, tasks, data_dir, target), k, seed)
        if result is not None:
            logger.info("%s: %s", run.name, result.format())
            out[run.name] = result
    return out
