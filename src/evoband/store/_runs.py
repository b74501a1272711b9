"""Reading recorded runs: a run directory into a :class:`RunData`, several into groups.

The frames are the ledger's (:meth:`evoband.store._ledger.RunStore.evaluations_frame`); what is computed
from them is in :mod:`evoband.store._analysis` and :mod:`evoband.report._traces`.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..core._errors import EvobandError, StoreError
from ..training._constraints import Constraints
from ._analysis import optimum, result_of
from ._exports import read_run_json
from ._ledger import RunStore

logger = logging.getLogger(__name__)


@dataclass
class RunData:
    """One run directory, read once: its ledger, its generations, its description.

    Attributes:
        path: the run directory.
        name: a short unique label (the folder name).
        algorithm: EA+HB, EA, RS+HB or RS.
        constraints: from run.json, or overridden by the caller.
        evaluations: :func:`evoband.store._ledger.load_run`'s frame, in the order results finished.
        generations: :meth:`RunStore.generations_frame`.
        info: run.json (or the ledger's run info for a run that has none yet).
    """

    path: Path
    name: str
    algorithm: str
    constraints: Constraints
    evaluations: pd.DataFrame
    generations: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def search(self) -> dict[str, Any]:
        return dict(self.info.get("search") or {})

    @property
    def seed(self) -> int | None:
        seed = self.search.get("seed")
        return None if seed is None else int(seed)

    @property
    def cv_folds(self) -> int:
        return int(self.search.get("cv_folds") or 1)

    @property
    def elapsed(self) -> float:
        """Seconds the run lasted (up to its last record for a live run)."""
        recorded = self.info.get("elapsed_seconds")
        last = [float(self.evaluations["elapsed"].max())]
        if len(self.generations):
            last.append(float(self.generations["elapsed"].max()))
        candidates = [x for x in [recorded, *last] if x is not None and math.isfinite(x)]
        return max(candidates, default=0.0)

    @property
    def final_rungs(self) -> dict[int, int]:
        """The last rung index of each Hyperband bracket, from the recorded schedule."""
        schedule = self.info.get("hyperband") or {}
        return {int(b["s"]): len(b["budgets"]) - 1 for b in schedule.get("brackets", [])}

    @property
    def uses_hyperband(self) -> bool:
        return bool(self.evaluations["bracket"].notna().any())


def algorithm_label(random_search: bool, hyperband: bool) -> str:
    """EA, EA+HB, RS or RS+HB: how runs are labelled in reports and figures."""
    name = "RS" if random_search else "EA"
    return f"{name}+HB" if hyperband else name


def algorithm_name(search: Mapping[str, Any]) -> str:
    """EA / RS, with +HB for Hyperband, as :attr:`SearchSettings.algorithm` names them."""
    return algorithm_label(bool(search.get("random_search")), bool(search.get("hyperband")))


def read_run(
    run_dir: str | Path,
    *,
    max_params: float | None = None,
    min_precision: float | None = None,
    name: str | None = None,
) -> RunData:
    """Read a run directory; constraints from its run.json unless given.

    Raises:
        StoreError: the directory is missing, holds no ledger, an unreadable one, or no
            evaluations yet, or its constraints are unknown and not given.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise StoreError(f"{path} does not exist or is not a directory.")
    try:
        store = RunStore(path, readonly=True)
    except sqlite3.Error as exc:
        raise StoreError(f"{path} has an unreadable ledger ({exc}).") from exc
    try:
        evaluations = store.evaluations_frame()
        evaluations["fold_epochs"] = [
            {k: f.epochs for k, f in store.fold_results(int(m), int(e)).items()}
            for m, e in zip(evaluations["member_id"], evaluations["epochs"], strict=True)
        ]
        generations = store.generations_frame()
        ledger_info = store.run_info()
    except (sqlite3.Error, pd.errors.DatabaseError, ValueError) as exc:
        raise StoreError(f"{path} has an unreadable ledger ({exc}).") from exc
    finally:
        store.close()
    try:
        info = read_run_json(path)
    except (OSError, json.JSONDecodeError):
        info = ledger_info
    if not isinstance(info, dict):
        info = ledger_info
    search = info.get("search") or ledger_info.get("search") or {}
    info.setdefault("search", search)
    if len(evaluations) == 0:
        raise StoreError(f"{path} holds no evaluations yet.")
    limit = max_params if max_params is not None else search.get("max_params")
    floor = min_precision if min_precision is not None else search.get("min_precision")
    if limit is None or floor is None:
        raise StoreError(
            f"{path} records no constraints; pass --constraint_max_model_size and "
            "--constraint_min_precision."
        )
    run = RunData(
        path=path,
        name=name or path.resolve().name,
        algorithm=str(info.get("algorithm") or algorithm_name(search)),
        constraints=Constraints.of(limit, floor),
        evaluations=evaluations.reset_index(drop=True),
        generations=generations,
        info=info,
    )
    recorded = (info.get("best") or {}).get("member_id")
    if recorded is not None and max_params is None and min_precision is None:
        best = optimum(run.evaluations, run.constraints)
        if best is not None and int(best["member_id"]) != int(recorded):
            logger.warning(
                "%s: run.json names member %s as the optimum, the ledger ranks member %s first.",
                path,
                recorded,
                int(best["member_id"]),
            )
    return run


def load_groups(
    entries: Sequence[tuple[str | None, str | Path]],
    *,
    max_params: float | None = None,
    min_precision: float | None = None,
) -> tuple[dict[str, list[RunData]], list[str]]:
    """Read runs into named groups; a run without a group joins the group of its algorithm.

    Args:
        entries: (group name or None, run directory), in the order to show them.
        max_params, min_precision: override every run's recorded constraints.

    Returns:
        The groups (in first-seen order, without empty ones) and one message per unusable run.
    """
    groups: dict[str, list[RunData]] = {}
    problems: list[str] = []
    used: set[str] = set()
    for group, run_dir in entries:
        try:
            run = read_run(run_dir, max_params=max_params, min_precision=min_precision)
        except EvobandError as exc:  # one unusable run does not stop the others
            problems.append(f"skipping {run_dir}: {exc}")
            continue
        base, k = run.name, 2
        while run.name in used:  # two runs named alike in different folders
            run.name = f"{base}-{k}"
            k += 1
        used.add(run.name)
        groups.setdefault(group or run.algorithm, []).append(run)
    return groups, problems


def member_config(run: RunData, member_id: int) -> dict[str, Any]:
    """A member's genotype exactly as recorded (the frame's columns have lost int / NaN types)."""
    store = RunStore(run.path, readonly=True)
    try:
        config = store.member_config(int(member_id))
    finally:
        store.close()
    if config is None:
        raise StoreError(f"{run.path} records no member {member_id}.")
    return config


def best_run(runs: Sequence[RunData]) -> RunData:
    """The run whose optimum ranks best (CV only: the test split never picks)."""

    def key(run: RunData) -> tuple[int, float]:
        best = optimum(run.evaluations, run.constraints)
        return run.constraints.rank_key(None if best is None else result_of(best))

    return min(runs, key=key)
