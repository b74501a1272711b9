"""A run's members as Optuna-style trials: the mapping behind the live dashboard, free of optuna.

One trial per member that has a recorded evaluation, with one intermediate value per budget (its
CV top-3 at that many epochs, the step being the epochs) and a state read from the ledger:

- ``FAIL``: its latest evaluation did not end ``ok`` (diverged, timed out, failed, error);
- ``COMPLETE``: it reached the top budget (``max_epochs``), or its evaluation was final by
  construction (a re-measurement, a search without Hyperband, the last rung of its bracket);
  its value is its best feasible top-3 (an infeasible member's: its top-3 at its last budget);
- ``PRUNED``: successive halving stopped it: the search has moved past the rung it would have
  been promoted to (synchronous Hyperband: an evaluation of a later stage finished after it), or
  the run ended (``run.json`` has ``"finished"``) with the member below the top budget; its value
  is its top-3 at its last budget, as Optuna records a pruned trial's last intermediate value;
- ``RUNNING``: it may still be promoted.

:func:`member_trials` is pure (a ledger frame and :class:`RunFacts` in, :class:`MemberTrial`
out); :class:`RunFollower` reads a live or finished run directory without writing into it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..core._errors import ConfigError, EvobandError, StoreError
from ..core._files import builtin
from ..store._exports import read_run_json
from ..store._ledger import RunStore
from ..store._predictor_file import ENSEMBLE, read_predictor_record
from ..store._schema import LEDGER

logger = logging.getLogger(__name__)

RUNNING, COMPLETE, PRUNED, FAIL = "RUNNING", "COMPLETE", "PRUNED", "FAIL"
"""The trial states, named as Optuna's ``TrialState`` members."""
FINISHED = (COMPLETE, PRUNED, FAIL)


@dataclass(frozen=True)
class RunFacts:
    """What the mapping needs to know of a run besides its evaluations.

    Attributes:
        max_epochs: the top budget (``run.json``'s ``search.max_epochs``).
        max_params, min_precision: the constraints (None where the run records none).
        hyperband: whether budgets are Hyperband rungs.
        async_promotion: rungs without a barrier (ASHA): a member may be promoted as long as the
            run goes on.
        final_rungs: the last rung index of each bracket ``s``.
        ended: the run has finished or stopped (``run.json`` has ``"finished"``).
    """

    max_epochs: int
    max_params: int | None = None
    min_precision: float | None = None
    hyperband: bool = True
    async_promotion: bool = False
    final_rungs: Mapping[int, int] = field(default_factory=dict)
    ended: bool = False

    @classmethod
    def of(cls, info: Mapping[str, Any], evaluations: pd.DataFrame) -> RunFacts:
        """The facts ``run.json`` (or the ledger's run info) records; the top budget falls back
        to the highest recorded one."""
        search = info.get("search") or {}
        top = search.get("max_epochs")
        if top is None:
            top = int(evaluations["epochs"].max()) if len(evaluations) else 1
        schedule = info.get("hyperband") or {}
        limit, floor = search.get("max_params"), search.get("min_precision")
        return cls(
            max_epochs=int(top),
            max_params=None if limit is None else int(limit),
            min_precision=None if floor is None else float(floor),
            hyperband=bool(search.get("hyperband", True)),
            async_promotion=bool(search.get("async_promotion", False)),
            final_rungs={int(b["s"]): len(b["budgets"]) - 1 for b in schedule.get("brackets", [])},
            ended="finished" in info,
        )


@dataclass(frozen=True)
class MemberTrial:
    """One member as a trial.

    Attributes:
        member_id: the member.
        state: RUNNING, COMPLETE, PRUNED or FAIL.
        value: the objective (CV top-3) of a COMPLETE or PRUNED trial, else None.
        intermediate: ``{epochs: CV top-3}`` of its ``ok`` evaluations.
        config: its genotype, exactly as recorded.
        user_attrs: member_id, origin, parents, generation, bracket, epochs, num_params,
            precision, feasible, status.
        constraints: ``[num_params - max_params, min_precision - precision]`` of the result its
            value comes from (each <= 0 when met), for COMPLETE and PRUNED trials.
        started: Unix time its first evaluation started.
        completed: Unix time of its last evaluation for a finished trial, else None.
    """

    member_id: int
    state: str
    value: float | None
    intermediate: dict[int, float]
    config: dict[str, Any]
    user_attrs: dict[str, Any]
    constraints: tuple[float, ...] | None
    started: float
    completed: float | None


def _number(value: Any) -> float | None:
    """A finite float, or None for None / NaN / infinities."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _stage(row: Mapping[str, Any]) -> tuple[int | None, int | None, int | None]:
    """(generation, bracket, rung) of an evaluation: the unit the synchronous search completes
    before it starts the next one."""
    return _int(row["generation"]), _int(row["bracket"]), _int(row["rung"])


def _feasible(row: Mapping[str, Any], facts: RunFacts) -> bool:
    if row["status"] != "ok" or facts.max_params is None or facts.min_precision is None:
        return False
    precision, num_params = _number(row["precision"]), _number(row["num_params"])
    return (
        precision is not None
        and num_params is not None
        and num_params <= facts.max_params
        and precision >= facts.min_precision
    )


def _constraints(row: Mapping[str, Any], facts: RunFacts) -> tuple[float, ...] | None:
    if facts.max_params is None or facts.min_precision is None:
        return None
    precision = _number(row["precision"])
    num_params = _number(row["num_params"])
    if precision is None or num_params is None:
        return None
    return (float(num_params - facts.max_params), float(facts.min_precision - precision))


def _superseded(last: Mapping[str, Any], records: Sequence[Mapping[str, Any]], at: int) -> bool:
    """Whether the synchronous search has moved past the rung above ``last`` (``records[at]``):
    an evaluation of neither its stage nor the next rung of its bracket finished after it.

    Scanned from the newest record back: only the rows of the stages it waits on are passed."""
    generation, bracket, rung = _stage(last)
    if rung is None:
        return False
    waiting = {(generation, bracket, rung), (generation, bracket, rung + 1)}
    return any(_stage(records[j]) not in waiting for j in range(len(records) - 1, at, -1))


def _state(
    rows: Sequence[Mapping[str, Any]],
    facts: RunFacts,
    records: Sequence[Mapping[str, Any]],
    at: int,
) -> str:
    """The trial state of a member from its evaluations (by budget) and the run's (in the order
    they finished; ``records[at]`` is the member's last)."""
    last = rows[-1]
    if last["status"] != "ok":
        return FAIL
    if int(last["epochs"]) >= facts.max_epochs:
        return COMPLETE
    rung, bracket = _int(last["rung"]), _int(last["bracket"])
    if not facts.hyperband or rung is None:
        return COMPLETE  # trained straight to its budget (a re-measurement): nothing promotes it
    if bracket is not None and bracket in facts.final_rungs and rung >= facts.final_rungs[bracket]:
        return COMPLETE
    if facts.ended:
        return PRUNED
    if not facts.async_promotion and _superseded(last, records, at):
        return PRUNED
    return RUNNING


_COLUMNS = (
    "member_id", "epochs", "status", "top3", "precision", "num_params", "seconds", "finished",
    "generation", "bracket", "rung", "origin", "parents", "config",
)  # fmt: skip
"""The ledger frame's columns the mapping reads."""


def member_trials(evaluations: pd.DataFrame, facts: RunFacts) -> list[MemberTrial]:
    """Every member with a recorded evaluation as a :class:`MemberTrial`, in the order of their
    first results.

    Args:
        evaluations: the ledger's frame (:meth:`evoband.store.RunStore.evaluations_frame`,
            :func:`evoband.load_run`): member_id, epochs, status, top3, precision, num_params,
            seconds, finished, generation, bracket, rung, origin, parents, config.
        facts: the run's top budget, constraints, schedule and whether it ended.
    """
    if not len(evaluations):
        return []
    frame = evaluations.sort_values(["finished", "member_id"], kind="stable")
    records: list[dict[str, Any]] = frame[[c for c in _COLUMNS if c in frame]].to_dict("records")
    by_member: dict[int, list[dict[str, Any]]] = {}
    last_index: dict[int, int] = {}
    for index, row in enumerate(records):
        member_id = int(row["member_id"])
        by_member.setdefault(member_id, []).append(row)
        last_index[member_id] = index
    trials = []
    for member_id, rows in by_member.items():  # dicts keep the order of first results
        rows = sorted(rows, key=lambda r: int(r["epochs"]))
        ok = [r for r in rows if r["status"] == "ok"]
        state = _state(rows, facts, records, last_index[member_id])
        feasible = [r for r in ok if _feasible(r, facts)]
        if feasible:
            score: dict[str, Any] | None = max(
                feasible, key=lambda r: (_number(r["top3"]) or 0.0, int(r["epochs"]))
            )
        else:
            score = ok[-1] if ok else None
        value: float | None = None
        if state == COMPLETE and score is not None:
            value = _number(score["top3"])
        elif state == PRUNED and ok:
            value = _number(ok[-1]["top3"])
        if state == COMPLETE and value is None:
            state = FAIL  # an ok evaluation without a score: nothing to complete it with
        first, last = rows[0], rows[-1]
        attrs: dict[str, Any] = {
            "member_id": member_id,
            "origin": str(first["origin"]),
            "parents": [int(p) for p in first["parents"]],
            "generation": _int(first["generation"]),
            "bracket": _int(first["bracket"]),
            "epochs": int(last["epochs"]),
            "num_params": _int(last["num_params"]),
            "precision": None if score is None else _number(score["precision"]),
            "feasible": bool(feasible),
            "status": str(last["status"]),
        }
        seconds = _number(first.get("seconds")) or 0.0
        trials.append(
            MemberTrial(
                member_id=member_id,
                state=state,
                value=value,
                intermediate={
                    int(r["epochs"]): top3 for r in ok if (top3 := _number(r["top3"])) is not None
                },
                config={k: builtin(v) for k, v in dict(first["config"]).items()},
                user_attrs={k: v for k, v in attrs.items() if v is not None},
                constraints=(
                    _constraints(score, facts)
                    if state in (COMPLETE, PRUNED) and score is not None
                    else None
                ),
                started=float(first["finished"]) - max(seconds, 0.0),
                completed=float(last["finished"]) if state in FINISHED else None,
            )
        )
    return trials


def ensemble_note(record: Mapping[str, Any], trial_numbers: Mapping[int, int]) -> str:
    """The delivered predictor (an ``ensemble.json``) as a Markdown note: its scores, its size
    against the limit, and a table of its members with their trial numbers."""
    members = list(record.get("members") or [])
    oof = record.get("out_of_fold") or {}
    limits = record.get("constraints") or {}
    networks = sum(int(m.get("networks", 1)) for m in members)
    head = (
        f"{len(members)} member(s), {networks} network(s), "
        f"{int(record.get('num_params', 0)):,} parameters"
    )
    if limits.get("max_params") is not None:
        head += f" (at most {int(limits['max_params']):,})"
    scores = ", ".join(
        f"{name} {float(oof[key]):.4f}"
        for key, name in (("top3", "top-3"), ("precision", "precision"))
        if _number(oof.get(key)) is not None
    )
    if scores:
        head += f"; out-of-fold {scores}"
    if limits.get("min_precision") is not None:
        head += f" (precision at least {float(limits['min_precision']):g})"
    feasible = record.get("feasible")
    if feasible is not None:
        head += "; meets the constraints" if feasible else "; does NOT meet the constraints"
    lines = [
        "## Delivered predictor (ensemble.json)",
        "",
        head + ".",
        "",
        "| trial | member | epochs | weight | parameters | networks | form |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for m in members:
        member_id = int(m["member_id"])
        number = trial_numbers.get(member_id)
        lines.append(
            f"| {'-' if number is None else number} | {member_id} | {int(m['epochs'])} | "
            f"{float(m['weight']):.2f} | {int(m.get('num_params', 0)):,} | "
            f"{int(m.get('networks', 1))} | {m.get('form', '')} |"
        )
    return "\n".join(lines) + "\n"


def ensemble_summary(record: Mapping[str, Any]) -> dict[str, Any]:
    """A compact, JSON-able summary of an ``ensemble.json`` (a study user attribute)."""
    return {
        "members": [
            [int(m["member_id"]), int(m["epochs"]), float(m["weight"])]
            for m in record.get("members") or []
        ],
        "num_params": record.get("num_params"),
        "out_of_fold": {
            k: v for k, v in (record.get("out_of_fold") or {}).items() if _number(v) is not None
        },
        "feasible": record.get("feasible"),
    }


# -- reading a run without writing into it ---------------------------------------------------------


@dataclass
class RunView:
    """One read of a run directory.

    Attributes:
        evaluations: the ledger's frame.
        info: ``run.json`` (the ledger's run info for a run that has none yet), with the
            ledger's ``space_definition`` added when run.json lacks it.
        facts: :class:`RunFacts` of it.
        predictor: the delivered ``ensemble.json`` (checked), or None.
    """

    evaluations: pd.DataFrame
    info: dict[str, Any]
    facts: RunFacts
    predictor: dict[str, Any] | None


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


class RunFollower:
    """Follows a run directory read-only, live or finished, writable or not.

    A live ledger (results in its ``-wal`` file: a writer has it open, or had) is read in place
    through :class:`evoband.store.RunStore` opened read-only, as SQLite shares it with its
    writer. A ledger whose every result is in the main file (a finished run) is read from a
    private copy under ``scratch``: opening it in place would make SQLite create its ``-wal`` and
    ``-shm`` files in the run directory (and fails in a read-only one). ``run.json`` and
    ``ensemble.json`` are read when they change.

    Args:
        run_dir: the run directory.
        scratch: a private folder outside the run directory for the copy (made when needed).
    """

    def __init__(self, run_dir: str | Path, scratch: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.scratch = Path(scratch)
        self._seen: tuple[Any, ...] | None = None
        self._copied: tuple[Any, ...] | None = None

    @property
    def ledger(self) -> Path:
        return self.run_dir / LEDGER

    def _watched(self) -> tuple[Any, ...]:
        names = (LEDGER, f"{LEDGER}-wal", "run.json", ENSEMBLE)
        return tuple(_signature(self.run_dir / name) for name in names)

    def changed(self) -> bool:
        """Whether the ledger, run.json or ensemble.json changed since the last :meth:`read`
        (a few ``stat`` calls: cheap enough to ask every second)."""
        return self._watched() != self._seen

    def read(self) -> RunView:
        """The run as it is now.

        Raises:
            StoreError: the run directory or its ledger cannot be read.
        """
        seen = self._watched()
        store = self._open()
        try:
            evaluations = store.evaluations_frame()
            ledger_info = store.run_info()
        except (sqlite3.Error, pd.errors.DatabaseError, ValueError) as exc:
            raise StoreError(f"{self.run_dir} has an unreadable ledger ({exc}).") from exc
        finally:
            store.close()
        info: dict[str, Any]
        try:
            info = read_run_json(self.run_dir)
        except (OSError, ValueError):
            info = {}
        if not isinstance(info, dict) or not info.get("search"):
            info = {**ledger_info, **(info if isinstance(info, dict) else {})}
        if "space_definition" in ledger_info:
            info.setdefault("space_definition", ledger_info["space_definition"])
        predictor = None
        if (self.run_dir / ENSEMBLE).exists():
            try:
                predictor = read_predictor_record(self.run_dir / ENSEMBLE)
            except ConfigError as exc:
                logger.warning("Not showing the predictor: %s", exc)
        self._seen = seen
        return RunView(evaluations, info, RunFacts.of(info, evaluations), predictor)

    def _open(self) -> RunStore:
        if not self.ledger.exists():
            raise StoreError(f"{self.run_dir} has no {LEDGER}; is it a run directory?")
        wal = _signature(self.run_dir / f"{LEDGER}-wal")
        if wal is not None and wal[0] > 0 and (self.run_dir / f"{LEDGER}-shm").exists():
            try:  # results not yet checkpointed into the ledger: a writer has it open, or had
                return RunStore(self.run_dir, readonly=True)
            except (EvobandError, sqlite3.Error) as exc:
                if os.access(self.run_dir, os.W_OK):
                    raise StoreError(f"{self.run_dir} has an unreadable ledger ({exc}).") from exc
                # a read-only folder whose -shm SQLite cannot use: read a copy
        return RunStore(self._copy(), readonly=True)

    def _copy(self) -> Path:
        """A private copy of the ledger (with its WAL, if any), refreshed when it changed."""
        target = self.scratch / "ledger"
        sources = [self.ledger, self.run_dir / f"{LEDGER}-wal"]
        for _ in range(5):
            before = tuple(_signature(p) for p in sources)
            if before == self._copied and (target / LEDGER).exists():
                return target
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            for source in sources:  # a WAL with results only in a read-only folder
                with contextlib.suppress(FileNotFoundError):
                    if source.stat().st_size > 0:
                        shutil.copyfile(source, target / source.name)
            if tuple(_signature(p) for p in sources) == before:
                self._copied = before
                return target
        raise StoreError(f"{self.ledger} kept changing while it was copied; try again.")

    def forget(self) -> None:
        """Read the run again at the next :meth:`changed`, changed or not."""
        self._seen = None

    def close(self) -> None:
        """Remove the private folder (and the copy in it)."""
        shutil.rmtree(self.scratch, ignore_errors=True)


def space_of(info: Mapping[str, Any]) -> Any:
    """The run's search space as a ConfigSpace ``ConfigurationSpace``: a shipped space by name,
    else the one the run recorded (``run.json``'s ``space.configspace`` or the ledger's
    ``space_definition``); None when neither can be had."""
    from ConfigSpace import ConfigurationSpace

    from ..space._spaces import SPACES, get_space

    name = (info.get("search") or {}).get("space")
    if isinstance(name, str) and name in SPACES:
        return get_space(name)
    recorded = [(info.get("space") or {}).get("configspace"), info.get("space_definition")]
    for serialized in recorded:
        if not serialized:
            continue
        try:
            if isinstance(serialized, str):
                serialized = json.loads(serialized)
            return ConfigurationSpace.from_serialized_dict(serialized)
        except Exception as exc:  # noqa: BLE001 - a space we cannot rebuild: params as attributes
            logger.debug("Cannot rebuild the recorded space: %s", exc)
    return None
