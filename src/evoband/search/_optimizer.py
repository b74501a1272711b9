"""The evolutionary loop, with or without Hyperband rungs, and resume by replay.

Every decision is a function of the seed and of the recorded results, so a stopped run resumes
by running the loop again: evaluations found in the ledger are replayed instead of trained, and
the search continues exactly where it stopped with the same population and RNG stream.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..core._errors import StoreWriteError
from ..execution._batches import Evaluation, result_of, train_together
from ..operators._selection import plus_selection
from ..training._results import Result
from ..training._target import SerialExecutor
from ._async import AsyncLoop
from ._hyperband import Bracket
from ._member import Member, Origin, repeats_of
from ._state import SearchState, StopSearch
from ._steps import successive_halving

logger = logging.getLogger(__name__)


class EvolutionaryOptimizer(SearchState):
    """Constrained (mu + lambda) evolution whose children climb Hyperband rungs.

    Args:
        space: the search space.
        task: prepared data and folds; its network family builds and counts the networks.
        constraints: max parameters (enforced before training) and min precision.
        settings: budgets and schedule.
        store: the run directory's ledger; replayed on resume.
        callbacks: hooks called as the search goes.
        selection: parent selection (tournament by default).
        mutations: variation operators applied to one parent, chosen uniformly.
        crossover: recombination of two parents.
        executor: runs the fold jobs, those of a rung's members together (default: serially, in
            this process).
    """

    # -- evaluating ----------------------------------------------------------------------------

    def evaluate(
        self, member: Member, budget: int, bracket: int | None = None, rung: int | None = None
    ) -> Result:
        """Train ``member`` to ``budget`` epochs (continuing from its checkpoint) and record it."""
        self.evaluate_all([member], budget, bracket, rung)
        return member.results[budget]

    def evaluate_all(
        self,
        members: Sequence[Member],
        budget: int,
        bracket: int | None = None,
        rung: int | None = None,
    ) -> None:
        """Train each of ``members`` to ``budget`` epochs and record each result as it comes.

        Results in the ledger are replayed first; the others train together, their folds
        interleaved on the executor's workers (:func:`evoband.execution._batches.train_together`).
        Raises ``StopSearch`` (after recording what finished) when the budget ends first.
        """
        fresh: list[Evaluation] = []
        for member in members:
            self.stop_if(self._budget_used_up())
            cached = self.store.evaluation(member.member_id, budget)
            if cached is None:
                evaluation = self.evaluation_of(member, budget)
                refused = None
                if evaluation.needs_training(len(self.task.splits)):
                    refused = self.refused(evaluation)
                if refused is None:
                    fresh.append(evaluation)
                else:
                    self.record(member, budget, refused, bracket, rung, replayed=False)
                continue
            self.n_replayed += 1
            self.record(member, budget, cached, bracket, rung, replayed=True)
        self.replaying = not fresh
        started = self.in_training = []  # started, not finished
        self._waiting = len(fresh)
        stop: list[str] = []

        def may_start(evaluation: Evaluation) -> bool:
            reason = self.no_more_training(len(started), evaluation)
            if reason:
                stop.append(reason)
                return False
            self.mark_started(evaluation)
            started.append(evaluation)
            self._waiting -= 1
            return True

        def done(evaluation: Evaluation, result: Result) -> None:
            if evaluation in started:
                started.remove(evaluation)
            else:  # nothing left to train
                self._waiting -= 1
            self.record(evaluation.owner, budget, result, bracket, rung, replayed=False)

        ready = [e for e in fresh if not e.needs_training(len(self.task.splits))]
        for evaluation in ready:  # every fold was recorded before a crash: nothing to train
            done(evaluation, result_of(evaluation))
        with self.starts_taken_back(started):
            train_together(
                [e for e in fresh if e not in ready],
                self.task,
                self.executor or SerialExecutor(),
                may_start=may_start,
                on_fold=lambda evaluation, fold: self.record_fold(evaluation, budget, fold),
                on_done=done,
            )
        self._waiting = 0
        self.stop_if(stop[0] if stop else "")

    # -- the loop ------------------------------------------------------------------------------

    def _initial_population(self) -> None:
        """Recipes, the space's default (when within the limits) and samples: ``pop_size`` members.

        With Hyperband they climb the rungs of the most aggressive bracket like any children;
        without, each trains to max_epochs.
        """
        pop_size = self.settings.pop_size
        bracket = self.schedule.initial_bracket(pop_size) if self.schedule is not None else None
        s = bracket.s if bracket is not None else None
        initial = [
            self.new_member(config, origin, (), s)
            for config, origin in self.breeder.starts(pop_size)
        ]
        while len(initial) < pop_size:
            initial.append(self.new_member(self.breeder.sample(self.rng), Origin.SAMPLED, (), s))
        if bracket is None:
            try:
                self.evaluate_all(initial, self.settings.max_epochs)
            finally:  # stopped part way: the population is what was evaluated
                self.population = [m for m in initial if self.settings.max_epochs in m.results]
                self.retention.release(self.population)
        else:
            self._halving(initial, bracket.n_members, bracket.budgets, s)
            self.population = list(initial)
        self.population = self.rank(self.population)
        self.retention.prune(self.population)

    def _halving(
        self, members: list[Member], sizes: Sequence[int], budgets: Sequence[int], s: int | None
    ) -> list[Member]:
        return successive_halving(
            members, sizes, budgets, s, self.evaluate_all, self.rank, self.retention.release
        )

    def _run_bracket(self, bracket: Bracket) -> list[Member]:
        """Successive halving over fresh children; returns the members of the last rung."""
        children = [self._make_child(bracket.s) for _ in range(bracket.n_members[0])]
        return self._halving(children, bracket.n_members, bracket.budgets, bracket.s)

    def _generation(self) -> None:
        if self.schedule is None:
            children = [self._make_child(None) for _ in range(self.settings.num_children)]
            self.evaluate_all(children, self.settings.max_epochs)
            self.retention.release(children)
            self.population = plus_selection(
                self.rank(self.population + children), self.settings.pop_size
            )
            self.retention.prune(self.population)
            return
        for bracket in self.schedule.brackets:
            survivors = self._run_bracket(bracket)
            self.population = plus_selection(
                self.rank(self.population + survivors), self.settings.pop_size
            )
            self._remeasure_best()
            self.retention.prune(self.population)

    def _remeasure_best(self) -> None:
        """Re-measure the best configuration under a second seed (a member of origin
        ``repeated``, trained straight to the budget it stands at with its LR cycles), so that
        it stands as the optimum by the mean of its seeds, not by one lucky draw (SMAC's
        intensification). Only when the time left allows; a resumed run follows its ledger."""
        if not self.settings.remeasure:
            return
        best = self.best_member()
        if best is None or best.result is None or not best.result.ok:
            return
        if best.member_id in repeats_of(self.members):
            return
        recorded = self.store.member_origin(len(self.members))
        if recorded is not None:
            if recorded != Origin.REPEATED:
                return  # the run this one resumes went on without it
        else:
            budget = best.result.epochs
            predicted = self.cost_model.seconds(best.config, budget)  # the folds run in parallel
            if predicted > self.search_seconds() - self.elapsed():
                return
        repeat = self.new_member(
            dict(best.config), Origin.REPEATED, (best.member_id,), best.bracket
        )
        self.evaluate_all([repeat], best.result.epochs, best.bracket, None)
        self.retention.release([repeat])

    def run(self) -> Member | None:
        """Search until the budget is used up; return the best member (see :meth:`best_member`).

        A ``KeyboardInterrupt`` (or any exception) leaves the ledger and exports consistent and
        propagates; the run can then be resumed. So does a failure to write into the run
        directory (:class:`evoband.core._errors.StoreWriteError`), after which nothing more is written.
        """
        self.callback.on_run_start(self.view())
        writable = True
        try:
            if self.settings.async_promotion:
                AsyncLoop(self).run()
            self._initial_population()
            self.end_generation()
            while True:
                self.generation += 1
                self._generation()
                self.end_generation()
        except StopSearch:
            self.end_generation()
            self._export()
            self.predictor = self.deliver_predictor()
        except StoreWriteError:
            writable = False
            self.stopped_by = "cannot write to the run directory"
            raise
        finally:
            if writable:
                self._export()
            self.callback.on_run_end(self.view(), self.best_member())
        return self.best_member()
