"""The evolutionary search with asynchronous promotion: no rung barrier.

Whenever a worker is free, the search decides what it trains next from the results known at
that moment: a member that ranks in the top ``1/eta`` of its rung so far goes up one rung
(:class:`evoband.search._asha.RungLadder`), else a new member starts at the first rung (the initial
population first, then children of the population). Every member climbs the rungs of the most
aggressive Hyperband bracket. The population is the best ``pop_size`` of the initial members
and of the members that reached the top rung; parents are selected from it.

What is decided depends on the order the results come in, so each decision is recorded in the
ledger before anything is trained for it, with how many results were known
(:mod:`evoband.store._decisions`). Resume replays the decisions against the recorded results in
their recorded order, which repeats the search's state exactly, then trains what was decided
and not finished before going on.
"""

from __future__ import annotations

import logging

from ..core._errors import ConfigError
from ..execution._batches import Evaluation, result_of, train_stream
from ..operators._selection import plus_selection
from ..space._spaces import Config
from ..store._decisions import Decision, DecisionLog
from ..training._results import Result
from ..training._target import SerialExecutor
from ._asha import RungLadder
from ._member import Member, Origin
from ._state import SearchState

logger = logging.getLogger("evoband.search._optimizer")


class AsyncLoop:
    """Runs ``optimizer``'s search with asynchronous promotion until its budget is used up
    (then raises :class:`evoband.search._state.StopSearch`, as the synchronous loop does)."""

    def __init__(self, optimizer: SearchState) -> None:
        schedule = optimizer.schedule
        if schedule is None:
            raise ConfigError("Asynchronous promotion needs Hyperband rungs (--hyperband True).")
        self.opt = optimizer
        bracket = schedule.brackets[0]
        self.bracket = bracket.s
        self.ladder = RungLadder(bracket.budgets, optimizer.settings.eta)
        self.log = DecisionLog(optimizer.store)
        self.starts = optimizer.breeder.starts(optimizer.settings.pop_size)
        self.known = 0  # results the search has taken in, replayed or new
        self.training: list[Evaluation] = []
        self.released: set[int] = set()  # checkpoints deleted before the member's last rung

    # -- deciding ------------------------------------------------------------------------------

    def decide(self, recorded: Decision | None = None) -> tuple[Member, int]:
        """The next (member, budget) to train; recorded in the ledger unless it is ``recorded``
        (replay), which it must then match."""
        opt = self.opt
        promotion = self.ladder.next_promotion(opt.rank)
        if promotion is not None:
            member, budget = promotion
            self._log(Decision(member.member_id, budget, self.known), recorded)
            return member, budget
        member_id = len(opt.members)
        if member_id >= opt.settings.pop_size:
            self._next_generation(member_id - opt.settings.pop_size)
        config, origin, parents = self._genotype(member_id)
        self._log(Decision(member_id, self.ladder.budgets[0], self.known), recorded)
        return opt.new_member(config, origin, parents, self.bracket), self.ladder.budgets[0]

    def _genotype(self, member_id: int) -> tuple[Config, Origin, tuple[int, ...]]:
        opt = self.opt
        if member_id < len(self.starts):
            config, origin = self.starts[member_id]
            return config, origin, ()
        if member_id < opt.settings.pop_size:
            return opt.breeder.sample(opt.rng), Origin.SAMPLED, ()
        return opt.child_genotype()

    def _next_generation(self, n_children: int) -> None:
        """Generations of ``num_children`` children each, for the progress rows and callbacks."""
        if n_children % self.opt.settings.num_children == 0:
            self.opt.end_generation()
            self.opt.generation += 1

    def _log(self, decision: Decision, recorded: Decision | None) -> None:
        if recorded is None:
            self.log.record(decision)
        elif (decision.member_id, decision.epochs) != (recorded.member_id, recorded.epochs):
            raise ConfigError(
                f"The ledger in {self.opt.store.run_dir} records training member "
                f"{recorded.member_id} to {recorded.epochs} epochs where this search decides "
                f"member {decision.member_id} to {decision.epochs}; it was written by a "
                "different evoband version or settings."
            )

    # -- taking results in ---------------------------------------------------------------------

    def _take(self, member: Member, budget: int, result: Result, *, replayed: bool) -> None:
        opt = self.opt
        from_scratch = member.member_id in self.released
        opt.record(
            member,
            budget,
            result,
            self.bracket,
            self.ladder.rung_of(budget),
            replayed=replayed,
            trained_from=0 if from_scratch else None,
        )
        self.released.discard(member.member_id)  # retrained: it has checkpoints again
        self.known += 1
        self.ladder.add(member, budget)
        size = opt.settings.pop_size
        if budget == self.ladder.top or member.member_id < size:
            if member not in opt.population:
                opt.population.append(member)
            opt.population = plus_selection(opt.rank(opt.population), size)
        if budget == self.ladder.top:
            opt.retention.release([member])
        unlikely = self.ladder.unlikely(budget, opt.rank, keep=size)
        gone = [m for m in unlikely if m.member_id not in self.released]
        self.released.update(m.member_id for m in gone)
        opt.retention.release(gone, keep=False)  # a promotion of them retrains them from scratch
        opt.retention.prune(opt.population)

    def _replay(self, decisions: list[Decision]) -> list[tuple[Member, int]]:
        """Repeat the recorded decisions; return those without a recorded result."""
        opt = self.opt
        order = self.log.evaluation_order()
        decided: list[tuple[Member, int]] = []

        def take_until(n: int) -> None:
            while self.known < min(n, len(order)):
                member_id, budget = order[self.known]
                result = opt.store.evaluation(member_id, budget)
                if member_id >= len(opt.members) or result is None:
                    raise ConfigError(
                        f"The ledger in {opt.store.run_dir} holds a result of member {member_id} "
                        "that no recorded decision made; it cannot be resumed asynchronously."
                    )
                opt.n_replayed += 1
                self._take(opt.members[member_id], budget, result, replayed=True)

        opt.replaying = True
        for decision in decisions:
            take_until(decision.known)
            decided.append(self.decide(decision))
        take_until(len(order))
        opt.replaying = False
        return [(m, b) for m, b in decided if b not in m.results]

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> None:
        """Replay what the ledger holds, then train until the budget is used up."""
        opt = self.opt
        unfinished = self._replay(self.log.decisions())
        stop: list[str] = []
        opt.in_training = self.training
        n_folds = len(opt.task.splits)

        def next_evaluation() -> Evaluation | None:
            while True:
                reason = opt.no_more_training(len(self.training))
                if reason:
                    stop.append(reason)
                    return None
                member, budget = unfinished.pop(0) if unfinished else self.decide()
                evaluation = opt.evaluation_of(member, budget)
                if member.member_id in self.released:
                    evaluation.checkpoint_sha256 = {}  # its checkpoints went: from scratch
                if evaluation.needs_training(n_folds):
                    refused = opt.refused(evaluation)
                    if refused is not None:
                        self._take(member, budget, refused, replayed=False)
                        continue
                    opt.mark_started(evaluation)
                    self.training.append(evaluation)
                    return evaluation
                # every fold was recorded before a crash: nothing to train
                self._take(member, budget, result_of(evaluation), replayed=False)

        def done(evaluation: Evaluation, result: Result) -> None:
            self.training.remove(evaluation)
            self._take(evaluation.owner, evaluation.epochs, result, replayed=False)

        with opt.starts_taken_back(self.training):
            train_stream(
                next_evaluation,
                opt.task,
                opt.executor or SerialExecutor(),
                on_fold=lambda evaluation, fold: opt.record_fold(
                    evaluation, evaluation.epochs, fold
                ),
                on_done=done,
            )
        opt.stop_if(stop[0] if stop else "the search ended")
