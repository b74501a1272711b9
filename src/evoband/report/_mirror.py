"""A run mirrored into an Optuna study kept in a journal file.

This module imports optuna and optuna-dashboard (the ``evoband[dashboard]`` extra): only
:mod:`evoband.report._dashboard` imports it, inside its functions, so that evoband itself never
needs them. The mapping of members to trials is :func:`evoband.report._trials.member_trials`;
here it becomes Optuna's own objects: a study named after the run (direction maximize), one trial
per member with distributions derived from the run's ConfigSpace, intermediate values, user
attributes, the ``constraints`` system attribute that Optuna's constrained samplers write, and the
delivered predictor as the study's note (optuna-dashboard's note API).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from ConfigSpace import ConfigurationSpace
from ConfigSpace.hyperparameters import (
    CategoricalHyperparameter,
    Constant,
    FloatHyperparameter,
    IntegerHyperparameter,
    OrdinalHyperparameter,
)
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from optuna_dashboard import get_note, save_note

from ..core._errors import ConfigError
from ..core._files import builtin
from ..space._genotype import is_active
from ._trials import (
    FINISHED,
    RUNNING,
    MemberTrial,
    RunView,
    ensemble_note,
    ensemble_summary,
    member_trials,
    space_of,
)

logger = logging.getLogger(__name__)

RUN_MARK = "evoband_run"
"""The study user attribute naming the run directory a mirrored study follows."""
CONSTRAINTS_KEY = "constraints"
"""The trial system attribute Optuna's constrained samplers record (each value <= 0: met)."""


def distribution_of(hp: Any) -> BaseDistribution | None:
    """The Optuna distribution of a ConfigSpace hyperparameter (None for a kind without one):
    categorical and ordinal values as they are, constants as one choice, ints and floats with
    their bounds and log scale."""
    if isinstance(hp, CategoricalHyperparameter):
        return CategoricalDistribution([builtin(v) for v in hp.choices])
    if isinstance(hp, OrdinalHyperparameter):
        return CategoricalDistribution([builtin(v) for v in hp.sequence])
    if isinstance(hp, Constant):
        return CategoricalDistribution([builtin(hp.value)])
    if isinstance(hp, IntegerHyperparameter):
        return IntDistribution(int(hp.lower), int(hp.upper), log=bool(hp.log))
    if isinstance(hp, FloatHyperparameter):
        return FloatDistribution(float(hp.lower), float(hp.upper), log=bool(hp.log))
    return None


def distributions_of(space: ConfigurationSpace | None) -> dict[str, BaseDistribution]:
    """``{name: distribution}`` of every hyperparameter of ``space`` that has one."""
    if space is None:
        return {}
    out = {}
    for name in space:
        distribution = distribution_of(space[name])
        if distribution is not None:
            out[name] = distribution
    return out


def _contains(distribution: BaseDistribution, value: Any) -> bool:
    try:
        return bool(distribution._contains(distribution.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


def params_of(
    config: Mapping[str, Any],
    space: ConfigurationSpace | None,
    distributions: Mapping[str, BaseDistribution],
) -> tuple[dict[str, Any], dict[str, BaseDistribution], dict[str, Any]]:
    """A configuration as Optuna parameters: the active hyperparameters (in the space's order)
    with their distributions, and the keys that have none (unknown to the space, or a value
    outside its range) kept apart."""
    params: dict[str, Any] = {}
    used: dict[str, BaseDistribution] = {}
    for name, value in config.items():
        distribution = distributions.get(name)
        if distribution is None or value is None or not _contains(distribution, value):
            continue
        if space is not None and not is_active(space, name, config):
            continue
        params[name], used[name] = value, distribution
    other = {k: v for k, v in config.items() if k not in params}
    return params, used, other


def _datetime(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp)


class MirrorFile(JournalFileBackend):
    """A journal file the mirror alone writes (it holds an exclusive lock on it while it runs).

    Appends skip Optuna's lock files and ``fsync``: the journal is a disposable view of the
    ledger, and a lost tail is rebuilt from it on the next start.
    """

    def __init__(self, file_path: str) -> None:
        super().__init__(file_path)
        self.path = file_path

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
        with open(self.path, "ab") as fh:
            fh.write(text.encode("utf-8"))


class ServedJournal(JournalStorage):
    """The storage the dashboard reads: a journal whose best trial is evoband's optimum.

    Feasible trials (every ``constraints`` value <= 0) rank first by value; when none is
    feasible, the most precise one (the ``precision`` user attribute) stands first, as evoband
    ranks infeasible members. Studies of other directions keep Optuna's rule.
    """

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        if self.get_study_directions(study_id) != [StudyDirection.MAXIMIZE]:
            return super().get_best_trial(study_id)
        trials = self.get_all_trials(study_id, deepcopy=False, states=[TrialState.COMPLETE])
        if not trials:
            raise ValueError("No trials are completed yet.")  # protocol: Optuna storages raise it
        feasible = [
            t for t in trials if all(c <= 0 for c in t.system_attrs.get(CONSTRAINTS_KEY, []))
        ]
        if feasible:
            best = max(feasible, key=lambda t: (t.value or 0.0, -t.number))
        else:
            best = max(trials, key=lambda t: (t.user_attrs.get("precision") or 0.0, -t.number))
        return copy.deepcopy(best)


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna's INFO lines (e.g. "A new study created") off while the mirror writes."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


@dataclass
class _Mirrored:
    """What the journal holds of one member's trial."""

    trial_id: int
    number: int
    state: str
    value: float | None
    intermediate: dict[int, float]
    user_attrs: dict[str, Any]
    constraints: tuple[float, ...] | None

    @classmethod
    def of(cls, trial: FrozenTrial) -> _Mirrored:
        constraints = trial.system_attrs.get(CONSTRAINTS_KEY)
        return cls(
            trial._trial_id,
            trial.number,
            trial.state.name,
            trial.value,
            dict(trial.intermediate_values),
            dict(trial.user_attrs),
            None if constraints is None else tuple(float(c) for c in constraints),
        )

    def agrees(self, trial: MemberTrial, user_attrs: Mapping[str, Any]) -> bool:
        """Whether a finished trial already shows ``trial`` (it cannot be changed any more)."""
        return (
            self.state == trial.state
            and self.value == trial.value
            and self.intermediate == trial.intermediate
            and self.user_attrs == dict(user_attrs)
            and self.constraints == trial.constraints
        )


class JournalMirror:
    """Keeps one Optuna study in ``storage`` equal to a run's ledger, incrementally.

    Each :meth:`sync` writes only what changed: new trials, new intermediate values and
    attributes of running ones, and their end. A finished trial cannot change in Optuna; should
    the ledger contradict one (a run resumed after it ended, or a member promoted after it was
    judged pruned), the study is deleted and written again in full, so that it never holds a
    trial twice. The mirror is the study's only writer.

    Args:
        storage: a journal storage (:class:`MirrorFile` backend).
        run_dir: the run directory (recorded in the study's ``evoband_run`` user attribute).
        study_name: the study's name (the run's folder name).

    Raises:
        ConfigError: the journal holds a study of that name that mirrors another run.
    """

    def __init__(self, storage: JournalStorage, run_dir: str | Path, study_name: str) -> None:
        self.storage = storage
        self.run_dir = str(Path(run_dir).resolve())
        self.study_name = study_name
        self.study_id: int | None = None
        self.rebuilds = 0
        self._space: ConfigurationSpace | None = None
        self._distributions: dict[str, BaseDistribution] = {}
        self._space_read = False
        self._params_of: dict[
            int, tuple[dict[str, Any], dict[str, BaseDistribution], dict[str, Any]]
        ] = {}
        self._mirrored: dict[int, _Mirrored] = {}
        self._study_attrs: dict[str, Any] = {}
        self._note = ""
        self._load()

    # -- the study in the journal ------------------------------------------------------------------

    def _load(self) -> None:
        """Adopt this run's study from the journal (a restart continues it)."""
        found = [s for s in self.storage.get_all_studies() if s.study_name == self.study_name]
        if not found:
            return
        study = found[0]
        mark = study.user_attrs.get(RUN_MARK)
        if mark is None and not self.storage.get_all_trials(study._study_id, deepcopy=False):
            self.storage.delete_study(study._study_id)  # made, then stopped before it was marked
            return
        if mark != self.run_dir:
            raise ConfigError(
                f"The journal already holds a study named {self.study_name!r} that mirrors "
                f"{mark or 'something else'}, not {self.run_dir}; choose another --journal."
            )
        self.study_id = study._study_id
        self._study_attrs = dict(study.user_attrs)
        trials = self.storage.get_all_trials(self.study_id, deepcopy=False)
        members = [t.user_attrs.get("member_id") for t in trials]
        if None in members or len(set(members)) != len(members):
            self._delete_study()  # not a mirror we can continue: written again at the next sync
            return
        self._mirrored = {int(t.user_attrs["member_id"]): _Mirrored.of(t) for t in trials}
        study_object = optuna.load_study(study_name=self.study_name, storage=self.storage)
        self._note = get_note(study_object)

    def _delete_study(self) -> None:
        if self.study_id is not None:
            self.storage.delete_study(self.study_id)
        self.study_id = None
        self._mirrored, self._study_attrs, self._note = {}, {}, ""

    def _create_study(self) -> int:
        with _quiet_optuna():
            self.study_id = self.storage.create_new_study(
                [StudyDirection.MAXIMIZE], study_name=self.study_name
            )
        self.storage.set_study_user_attr(self.study_id, RUN_MARK, self.run_dir)
        self._study_attrs = {RUN_MARK: self.run_dir}
        return self.study_id

    @property
    def trial_numbers(self) -> dict[int, int]:
        """``{member_id: trial number}`` of the mirrored members."""
        return {member_id: m.number for member_id, m in self._mirrored.items()}

    # -- syncing -----------------------------------------------------------------------------------

    def sync(self, view: RunView) -> int:
        """Bring the study up to ``view``; returns how many journal operations were written."""
        if not self._space_read:
            self._space = space_of(view.info)
            self._distributions = distributions_of(self._space)
            self._space_read = self._space is not None or bool(view.info.get("search"))
            self._params_of.clear()
        trials = member_trials(view.evaluations, view.facts)
        wanted = {t.member_id: t for t in trials}
        attrs = {t.member_id: self._user_attrs(t) for t in trials}
        contradicted = [
            member_id
            for member_id, m in self._mirrored.items()
            if member_id not in wanted
            or (m.state != RUNNING and not m.agrees(wanted[member_id], attrs[member_id]))
        ]
        if contradicted:
            logger.info(
                "Writing the study %s again: the ledger changed member(s) %s after their trials "
                "ended (a resumed run?).",
                self.study_name,
                ", ".join(map(str, contradicted[:5])),
            )
            self._delete_study()
            self.rebuilds += 1
        ops = 0
        if self.study_id is None:
            self._create_study()
            ops += 2
        assert self.study_id is not None
        for trial in trials:
            mirrored = self._mirrored.get(trial.member_id)
            if mirrored is None:
                self._create(trial, attrs[trial.member_id])
                ops += 1
            elif mirrored.state == RUNNING:
                ops += self._update(mirrored, trial, attrs[trial.member_id])
        ops += self._sync_study(view)
        return ops

    def _params(
        self, trial: MemberTrial
    ) -> tuple[dict[str, Any], dict[str, BaseDistribution], dict[str, Any]]:
        """:func:`params_of` a member's configuration (once: it never changes)."""
        if trial.member_id not in self._params_of:
            self._params_of[trial.member_id] = params_of(
                trial.config, self._space, self._distributions
            )
        return self._params_of[trial.member_id]

    def _user_attrs(self, trial: MemberTrial) -> dict[str, Any]:
        other = self._params(trial)[2]
        attrs = dict(trial.user_attrs)
        if other:
            attrs["other_config"] = other
        return attrs

    def _create(self, trial: MemberTrial, user_attrs: dict[str, Any]) -> None:
        params, distributions, _ = self._params(trial)
        finished = trial.state in FINISHED
        template = FrozenTrial(
            number=-1,
            state=TrialState[trial.state],
            value=trial.value if finished else None,
            datetime_start=_datetime(trial.started),
            datetime_complete=_datetime(trial.completed) if finished else None,
            params=params,
            distributions=distributions,
            user_attrs=user_attrs,
            system_attrs=(
                {} if trial.constraints is None else {CONSTRAINTS_KEY: list(trial.constraints)}
            ),
            intermediate_values=dict(trial.intermediate),
            trial_id=-1,
        )
        assert self.study_id is not None
        trial_id = self.storage.create_new_trial(self.study_id, template_trial=template)
        frozen = self.storage.get_trial(trial_id)
        self._mirrored[trial.member_id] = _Mirrored.of(frozen)

    def _update(self, mirrored: _Mirrored, trial: MemberTrial, user_attrs: dict[str, Any]) -> int:
        ops = 0
        for step, value in trial.intermediate.items():
            if mirrored.intermediate.get(step) != value:
                self.storage.set_trial_intermediate_value(mirrored.trial_id, step, value)
                mirrored.intermediate[step] = value
                ops += 1
        for key, value in user_attrs.items():
            if mirrored.user_attrs.get(key) != value:
                self.storage.set_trial_user_attr(mirrored.trial_id, key, value)
                mirrored.user_attrs[key] = value
                ops += 1
        if trial.state == RUNNING:
            return ops
        if trial.constraints is not None:
            self.storage.set_trial_system_attr(
                mirrored.trial_id, CONSTRAINTS_KEY, list(trial.constraints)
            )
            mirrored.constraints = trial.constraints
            ops += 1
        values = None if trial.value is None else [trial.value]
        self.storage.set_trial_state_values(mirrored.trial_id, TrialState[trial.state], values)
        mirrored.state, mirrored.value = trial.state, trial.value
        return ops + 1

    def _sync_study(self, view: RunView) -> int:
        """The study's user attributes (the run's facts, its end, the predictor) and note."""
        assert self.study_id is not None
        facts, search = view.facts, view.info.get("search") or {}
        attrs: dict[str, Any] = {
            "algorithm": view.info.get("algorithm"),
            "space": search.get("space") if isinstance(search.get("space"), str) else None,
            "max_params": facts.max_params,
            "min_precision": facts.min_precision,
            "max_epochs": facts.max_epochs,
            "run_state": "ended" if facts.ended else "running",
            "stopped_by": view.info.get("stopped_by") if facts.ended else None,
        }
        if view.predictor is not None:
            attrs["ensemble"] = ensemble_summary(view.predictor)
        ops = 0
        for key, value in attrs.items():
            if value is not None and self._study_attrs.get(key) != value:
                self.storage.set_study_user_attr(self.study_id, key, value)
                self._study_attrs[key] = value
                ops += 1
        note = "" if view.predictor is None else ensemble_note(view.predictor, self.trial_numbers)
        if note != self._note:
            study = optuna.load_study(study_name=self.study_name, storage=self.storage)
            save_note(study, note)
            self._note = note
            ops += 1
        return ops


def open_storage(journal: Path, *, writer: bool) -> JournalStorage:
    """The journal at ``journal``: for the mirror (``writer``) or for the dashboard to read."""
    if writer:
        return JournalStorage(MirrorFile(str(journal)))
    return ServedJournal(JournalFileBackend(str(journal)))


def trim_partial_line(journal: Path, chunk: int = 1 << 16) -> None:
    """Cut an unfinished last line (a writer killed mid-append), which would corrupt the next."""
    if not journal.exists() or journal.stat().st_size == 0:
        return
    with open(journal, "rb+") as fh:
        end = fh.seek(0, 2)
        fh.seek(end - 1)
        if fh.read(1) == b"\n":
            return
        position = end
        while position > 0:  # back to the last newline, a chunk at a time
            start = max(0, position - chunk)
            fh.seek(start)
            found = fh.read(position - start).rfind(b"\n")
            if found >= 0:
                fh.truncate(start + found + 1)
                return
            position = start
        fh.truncate(0)
