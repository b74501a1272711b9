"""The state of a search and the helpers its loop (:mod:`evoband.search._optimizer`) builds on: the operators,
cost model and budgets made from the arguments, the members made so far, the view callbacks get.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from ConfigSpace import ConfigurationSpace

from ..core._errors import ConfigError
from ..execution._batches import Evaluation
from ..operators._base import Selection, Variation
from ..operators._repair import ParamBudget
from ..operators._sampling import FamilySampling
from ..space._genotype import plain
from ..space._spaces import Config
from ..store._ledger import RunStore
from ..training._constraints import Constraints
from ..training._cost import CostModel
from ..training._loop import derive_seed
from ..training._memory import GIB, training_bytes
from ..training._results import FoldResult, Result, Status
from ..training._target import FoldExecutor, Task, take_checkpoint
from ._breeding import Breeder
from ._faults import ErrorStreak
from ._final import Delivered, deliver, reserve_seconds
from ._hooks import Callback, CbAll, SearchView, StopRequest
from ._member import Member, Origin, best_member, population_summary, rank_members
from ._settings import SearchSettings, check_max_params
from ._steps import (
    CheckpointRetention,
    export_best,
    lineage_record,
    log_evaluation,
    parent_weights,
)

CRASH_LIMIT = 3
"""Times in a row an evaluation may be found started and unfinished on resume, no fold of it
finished in between (the search process died while it trained, without progress), before it is
recorded ``failed`` instead of being trained again. A kill at a random moment seldom lands in
the same fold three times; an out-of-memory kill or a segfault there does every time."""
CRASHED = (
    f"crashed the search process {CRASH_LIMIT} times without finishing a fold "
    "(killed or out of memory)"
)

DUPLICATE_TRIES = 20
"""Children drawn while each equals a member already made, before a fresh sample is taken."""


def genotype_key(config: Config) -> str:
    """A configuration as a canonical string: equal for equal active hyperparameters."""
    return json.dumps(plain(config), sort_keys=True)


logger = logging.getLogger("evoband.ea")


class StopSearch(Exception):
    """The budget (time or evaluations) is used up, or a callback asked to stop."""


class SearchState:
    """What :class:`evoband.search._optimizer.EvolutionaryOptimizer` knows and does besides its loop (the
    arguments are those of the optimizer)."""

    def __init__(
        self,
        space: ConfigurationSpace,
        task: Task,
        constraints: Constraints,
        settings: SearchSettings,
        store: RunStore,
        *,
        callbacks: Sequence[Callback] = (),
        selection: Selection | None = None,
        mutations: Sequence[Variation] | None = None,
        crossover: Variation | None = None,
        executor: FoldExecutor | None = None,
        workers: int = 1,
        memory_bound: int | None = None,
    ) -> None:
        self.space = space
        self.task = task
        self.constraints = constraints
        self.settings = settings
        self.store = store
        self.callback = CbAll(*callbacks)
        self.executor = executor
        self.workers = workers  # processes the final predictor's retrains may use
        self.memory_bound = memory_bound  # bytes one evaluation may need (None: no bound)
        family = task.family  # builds and counts the networks (see evoband.nets._family)
        n_train = len(task.splits[0].y_train)
        self.cost_model = CostModel(task.input_shape, task.n_classes, n_train, family)
        self.param_budget = ParamBudget(
            space,
            self.task.count_params,
            constraints.max_params.limit,
            cost=self.full_evaluation_cost,
            cost_limit=settings.max_eval_seconds,
            keys=family.structure_keys(space),
        )
        check_max_params(space, constraints, self.task.count_params)
        self.breeder = Breeder(
            space,
            self.param_budget,
            constraints.max_params,
            settings,
            selection=selection,
            mutations=mutations,
            crossover=crossover,
            starts=family.recipes(space),
            sampler=FamilySampling(family, space, task.input_shape),
        )
        self.schedule = settings.schedule
        self.rng = np.random.default_rng(settings.seed)
        self.members: list[Member] = []
        self.population: list[Member] = []
        self.generation = 0
        self.n_evaluations = 0
        self.n_replayed = 0
        self.epochs_spent = 0
        saved = store.state()
        self._spent_before = float(saved.get("elapsed", 0.0))
        self.peak_checkpoint_bytes = int(saved.get("peak_checkpoint_bytes", 0))
        self._session_start = time.monotonic()
        self.stopped_by = ""
        self.stop_request = StopRequest()  # shared by every view: callbacks may ask to stop
        self.replaying = False
        self.retention = CheckpointRetention(store, keep_for_children=settings.inherit_weights)
        self.in_training: list[Evaluation] = []  # evaluations started and not finished
        self._waiting = 0  # evaluations of the current batch not started yet
        self._made: set[str] = set()  # genotype keys of the members made so far
        self.n_duplicates = 0  # children drawn again because they equalled a member
        self.predictor: Delivered | None = None  # the final predictor, once delivered
        self.errors = ErrorStreak()  # the same error evaluation after evaluation stops the search

    # -- helpers -------------------------------------------------------------------------------

    def full_evaluation_cost(self, config: Config) -> float:
        """Predicted seconds to train ``config`` to max_epochs on every fold, by the seed-only
        reference constants (:meth:`CostModel.full_evaluation_seconds`)."""
        folds = len(self.task.splits)
        return self.cost_model.full_evaluation_seconds(config, self.settings.max_epochs, folds)

    def time_limit(self, member: Member, budget: int) -> float:
        """Seconds the evaluation of ``member`` at ``budget`` may train: the explicit
        ``eval_time_limit``, else :meth:`CostModel.time_limit` of the step."""
        if self.settings.eval_time_limit is not None:
            return self.settings.eval_time_limit
        folds = len(self.task.splits)
        return self.cost_model.time_limit(member.config, budget - member.epochs, folds)

    def segments(self, member: Member) -> tuple[int, ...]:
        """The budgets ``member``'s LR schedule is planned over: its bracket's rungs."""
        return self.settings.lr_segments(member.bracket)

    def elapsed(self) -> float:
        """Seconds spent on this run, over all sessions."""
        return self._spent_before + time.monotonic() - self._session_start

    def rank(self, members: Sequence[Member], budget: int | None = None) -> list[Member]:
        """:func:`evoband.search._member.rank_members` under the search's constraints."""
        return rank_members(members, self.constraints, budget)

    def best_member(self) -> Member | None:
        """The best member evaluated so far (the most precise one if none is feasible)."""
        return best_member(self.members, self.constraints)

    def view(self) -> SearchView:
        """The search as callbacks see it now."""
        return SearchView(
            settings=self.settings,
            constraints=self.constraints,
            run_dir=self.store.run_dir,
            generation=self.generation,
            members=tuple(self.members),
            population=tuple(self.population),
            n_evaluations=self.n_evaluations,
            elapsed=self.elapsed(),
            replaying=0 < self.n_evaluations == self.n_replayed,
            training=len(self.in_training),
            waiting=self._waiting,
            stop=self.stop_request,
        )

    # -- making members ------------------------------------------------------------------------

    def new_member(
        self, config: Config, origin: Origin, parents: tuple[int, ...], bracket: int | None
    ) -> Member:
        member = Member(
            member_id=len(self.members),
            config=config,
            seed=derive_seed(self.settings.seed, len(self.members)),
            num_params=self.task.count_params(config),
            origin=origin,
            parents=parents,
            generation=self.generation,
            bracket=bracket,
            checkpoint_dir=self.store.checkpoint_dir(len(self.members)),
        )
        recorded = self.store.member_config(member.member_id)
        if recorded is None:
            self.store.add_member(member)
        elif recorded != member.config:
            raise ConfigError(
                f"The ledger in {self.store.run_dir} holds another member {member.member_id} than this "
                "search makes; it was written by a different evoband version or settings."
            )
        self.members.append(member)
        self._made.add(genotype_key(member.config))
        return member

    def _make_child(self, bracket: int | None) -> Member:
        return self.new_member(*self.child_genotype(), bracket)

    def child_genotype(self) -> tuple[Config, Origin, tuple[int, ...]]:
        """A child of the population (its genotype, origin and parents), not yet a member; with
        ``distinct_children``, drawn again while it equals a member already made (a fresh
        sample after :data:`DUPLICATE_TRIES`)."""
        usable = [m for m in self.rank(self.population) if m.result is not None and m.result.ok]
        for _ in range(DUPLICATE_TRIES):
            child = self.breeder.child(usable, self.rng)
            if not self.settings.distinct_children or genotype_key(child[0]) not in self._made:
                return child
            self.n_duplicates += 1
        return self.breeder.sample(self.rng), Origin.SAMPLED, ()

    # -- recording ----------------------------------------------------------------------------

    def evaluation_of(self, member: Member, budget: int) -> Evaluation:
        return Evaluation(
            member,
            member.num_params,
            member.config,
            budget,
            member.seed,
            tuple(self.segments(member)),
            member.checkpoint_dir,
            self.store.latest_checkpoint_hashes(member.member_id),
            self.time_limit(member, budget),
            self.deadline(),
            parent_weights(member, self.members, self.store, self.settings.inherit_weights),
            dict(self.store.fold_results(member.member_id, budget)),
        )

    def record(
        self,
        member: Member,
        budget: int,
        result: Result,
        bracket: int | None,
        rung: int | None,
        *,
        replayed: bool,
        trained_from: int | None = None,
    ) -> None:
        """Account for ``member``'s result at ``budget``: ledger, exports, log and callbacks.

        ``trained_from``: the epochs its training continued from (default its last budget; 0 when
        it was retrained from scratch)."""
        previous = member.epochs if trained_from is None else trained_from
        if result.ok:
            self.cost_model.observe(
                member.config, budget - previous, len(result.folds), result.seconds
            )
        member.results[budget] = result
        self.n_evaluations += 1
        # what was trained: a fold that timed out stopped short of the budget
        self.epochs_spent += sum(max(f.epochs - previous, 0) for f in result.folds)
        if not replayed:
            self.peak_checkpoint_bytes = max(
                self.peak_checkpoint_bytes, self.store.checkpoint_bytes()
            )
            self.store.record_evaluation(
                member.member_id,
                result,
                generation=self.generation,
                bracket=bracket,
                rung=rung,
                elapsed=self.elapsed(),
                state={
                    "elapsed": self.elapsed(),
                    "generation": self.generation,
                    "bracket": bracket,
                    "rung": rung,
                    "n_evaluations": self.n_evaluations,
                    "rng": self.rng.bit_generator.state,
                    "peak_checkpoint_bytes": self.peak_checkpoint_bytes,
                },
            )
            self._export()
            log_evaluation(member, result, self.constraints)
        self.callback.on_evaluation(self.view(), member, result)
        where = f"{member.describe()} at {budget} epochs"
        self.stop_if(self.errors.observe(result, where, replayed=replayed))

    # -- crashes ------------------------------------------------------------------------------

    def refused(self, evaluation: Evaluation) -> Result | None:
        """The ``failed`` result of an evaluation that must not train: over the memory bound
        (:meth:`over_memory`) or crashed too often (:meth:`crashed`); None: it may train."""
        return self.over_memory(evaluation) or self.crashed(evaluation)

    def over_memory(self, evaluation: Evaluation) -> Result | None:
        """The ``failed`` result of an evaluation whose training is estimated to need more
        memory than :attr:`memory_bound` (:func:`evoband.training._memory.training_bytes`)."""
        if self.memory_bound is None:
            return None
        member = evaluation.owner
        need = training_bytes(member.config, self.task.input_shape, self.task.n_classes,
                              self.task.family)  # fmt: skip
        if need <= self.memory_bound:
            return None
        message = (
            f"needs an estimated {need / GIB:.2f} GiB to train, over the bound of "
            f"{self.memory_bound / GIB:.2f} GiB (--max_memory)"
        )
        return refusal(evaluation, message)

    def crashed(self, evaluation: Evaluation) -> Result | None:
        """The ``failed`` result of an evaluation that the search process died in
        :data:`CRASH_LIMIT` times (a kill, the out-of-memory killer, a segfault), or None: it
        may train (again)."""
        if self.store.attempts(evaluation.owner.member_id, evaluation.epochs) < CRASH_LIMIT:
            return None
        return refusal(evaluation, CRASHED)

    def mark_started(self, evaluation: Evaluation) -> None:
        """Record in the ledger that ``evaluation`` starts training (see :meth:`crashed`)."""
        self.store.record_start(evaluation.owner.member_id, evaluation.epochs)

    @contextlib.contextmanager
    def starts_taken_back(self, in_flight: list[Evaluation]) -> Iterator[None]:
        """On an orderly stop (Ctrl-C, SIGTERM, an exception) the evaluations still in
        ``in_flight`` did not crash the process: their starts are taken back. A kill runs no
        code, so its evaluations stay started."""
        try:
            yield
        except BaseException:
            for evaluation in list(in_flight):
                try:
                    self.store.take_back_start(evaluation.owner.member_id, evaluation.epochs)
                except Exception as exc:  # the ledger may be what failed: keep the first error
                    logger.debug("Start of %s not taken back: %s", evaluation.owner, exc)
            raise

    def record_fold(self, evaluation: Evaluation, budget: int, fold: FoldResult) -> None:
        """Take the fold's checkpoint (see :func:`evoband.training._target.take_checkpoint`),
        then record the fold and the weights it inherited in one transaction."""
        take_checkpoint(fold, evaluation.checkpoint_dir)
        member_id = evaluation.owner.member_id
        source = evaluation.inherit
        inherited: tuple[int, list[tuple[int, int]]] | None = None
        if fold.inherited and source is not None:
            # the parents it started from: a donor whose checkpoint was unusable is not one
            parents = (source, *source.donors)
            sources = [
                (p.member_id, p.epochs) for p in parents if p.member_id in fold.inherited_from
            ]
            inherited = (source.member_id, sources)
        self.store.record_fold(member_id, budget, fold, inherited)  # one transaction

    def end_generation(self) -> None:
        row = {
            "elapsed": self.elapsed(),
            **population_summary(self.population, self.members, self.constraints),
            "n_evaluated": self.n_evaluations,
            "epochs_spent": self.epochs_spent,
        }
        # A generation replayed to its end keeps the row the original session wrote.
        if not (self.replaying and self.store.has_generation(self.generation)):
            self.store.record_generation(self.generation, row)
        self._export()
        self.callback.on_generation_end(self.view(), self.generation, self.population)

    # -- stopping -----------------------------------------------------------------------------

    def stop_if(self, reason: str) -> None:
        """End the search (``StopSearch``) when ``reason`` is given: it becomes ``stopped_by``."""
        if reason:
            self.stopped_by = reason
            raise StopSearch

    def _budget_used_up(self, in_flight: int = 0) -> str:
        """Why no more evaluations may start (a stop request or the evaluation cap, counting
        ``in_flight`` ones started but not finished), or ""."""
        cap = self.settings.max_evaluations
        if self.stop_request:
            return self.stop_request.describe()
        used = self.n_evaluations + in_flight
        return f"max_evaluations ({cap}) reached" if cap and used >= cap else ""

    def reserve(self) -> float:
        """Seconds kept at the end of ``max_time`` for the final predictor (0 without one)."""
        return reserve_seconds(
            self.settings, self.best_member(), self.cost_model, self.workers,
            max_params=self.constraints.max_params.limit,
        )  # fmt: skip

    def search_seconds(self) -> float:
        """Seconds of ``max_time`` the search itself may use (the rest makes the predictor)."""
        return self.settings.max_time - self.reserve()

    def no_more_training(self, in_flight: int, evaluation: Evaluation | None = None) -> str:
        """Why no more training may start now (:meth:`_budget_used_up`, or the search's share of
        max_time used up, or ``evaluation`` predicted to run past it), or "". Only real training
        is timed: replayed evaluations happened within the budget."""
        left = self.search_seconds() - self.elapsed()
        if evaluation is not None and left > 0:
            member = evaluation.owner
            step = self.cost_model.seconds(member.config, evaluation.epochs - member.epochs)
            if step > left:
                left = 0.0
        reason = self._budget_used_up(in_flight)
        if reason or left > 0:
            return reason
        kept = self.settings.max_time - self.search_seconds()
        return f"max_time ({self.settings.max_time:g} s) reached" + (
            f" ({kept:.0f} s kept for the predictor)" if self.settings.predictor else ""
        )

    def deadline(self) -> float:
        """The ``time.monotonic()`` value at which the search's share of max_time ends: no
        evaluation trains beyond it."""
        return self._session_start + self.search_seconds() - self._spent_before

    def deliver_predictor(self) -> Delivered | None:
        """Select the final predictor and write it into the run directory, with the time left
        of ``max_time`` for the members it retrains (see :mod:`evoband.search._final`)."""
        if not self.settings.predictor:
            return None
        deadline = time.monotonic() + self.settings.max_time - self.elapsed()
        inherited = self.store.inheritances()
        sources = {m: entry["sources"] for m, entry in inherited.items()}

        def lineage(member: Member, epochs: int) -> dict[str, Any] | None:
            if member.member_id not in inherited:
                return None
            nodes = lineage_record(member, epochs, self.members, sources)
            return {"lineage": nodes, "segments": list(self.segments(member))}

        delivered = deliver(
            self.store, self.members, self.task, self.constraints, self.settings,
            self.cost_model, deadline=deadline, workers=self.workers, lineage=lineage,
        )  # fmt: skip
        if delivered is not None:
            logger.info("Predictor: %s", delivered.describe())
        return delivered

    def _export(self) -> None:
        best = self.best_member()
        export_best(
            self.store,
            best,
            self.segments(best) if best else (),
            self.settings.seed,
            self.members,
        )


def refusal(evaluation: Evaluation, message: str) -> Result:
    """The ``failed`` result of an evaluation refused before it trains (again), with the folds
    it had finished; logged."""
    member, budget = evaluation.owner, evaluation.epochs
    logger.warning("%s at %d epochs %s; recorded as failed.", member.describe(), budget, message)
    folds = [evaluation.done[k] for k in sorted(evaluation.done)]
    return Result(
        0.0, 0.0, 0.0, member.num_params, budget, sum(f.seconds for f in folds),
        Status.FAILED, message, folds,
    )  # fmt: skip
