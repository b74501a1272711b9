"""The evolutionary loop, with or without Hyperband rungs, and resume by replay.

Every decision is a function of the seed and of the recorded results, so a stopped run resumes
by running the loop again: evaluations found in the ledger are replayed instead of trained, and
the search continues exactly where it stopped with the same population and RNG stream.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from ConfigSpace import ConfigurationSpace

from .callbacks import Callback, CbAll
from .cnn import count_params
from .constraints import Constraints
from .cost import CostModel
from .errors import ConfigError
from .hyperband import Bracket, HyperbandSchedule
from .member import DEFAULT, MUTATED, RECIPE, RECOMBINED, SAMPLED, Member
from .operators import (
    LocalMutation,
    ParamBudget,
    RandomSampling,
    Selection,
    TournamentSelection,
    UniformCrossover,
    UniformMutation,
    Variation,
    plus_selection,
    smallest_config,
)
from .space import Config, default_config, recipes
from .store import RunStore
from .target import FoldExecutor, Result, Task, evaluate
from .train import OK, derive_seed

logger = logging.getLogger(__name__)


@dataclass
class SearchSettings:
    """Everything that defines a search's budget and schedule.

    Attributes:
        pop_size: members kept between generations (mu).
        num_children: children per generation without Hyperband (lambda).
        hyperband: one Hyperband iteration per generation instead of plain children.
        min_epochs, max_epochs, eta: the Hyperband budgets and halving rate.
        max_time: seconds; checked before every training job.
        max_evaluations: optional cap on evaluations (member x budget).
        eval_time_limit: seconds one evaluation may train; None derives it from the step's
            predicted cost (see :attr:`EvolutionaryOptimizer.time_limit`).
        eval_cost_share: no member is trained whose full evaluation (max_epochs on every fold)
            is predicted to take more than this share of max_time; larger children are repaired.
        seed: fixes every random decision.
        crossover_prob: chance that a child is recombined from two parents.
        tournament_size: parent selection pressure.
        random_search: children are fresh samples instead of variations of the population.
    """

    pop_size: int = 10
    num_children: int = 5
    hyperband: bool = True
    min_epochs: int = 4
    max_epochs: int = 32
    eta: int = 2
    max_time: float = 86400.0
    max_evaluations: int | None = None
    eval_time_limit: float | None = None
    eval_cost_share: float = 1 / 3
    seed: int = 123
    crossover_prob: float = 0.5
    tournament_size: int = 3
    random_search: bool = False

    def __post_init__(self) -> None:
        checks = [
            (self.pop_size >= 2, f"The value of `pop_size` is {self.pop_size}, but must be `pop_size >= 2`."),
            (self.num_children >= 1, f"The value of `num_children` is {self.num_children}, but must be `num_children >= 1`."),
            (self.max_epochs >= 1, f"The value of `epochs` is {self.max_epochs}, but must be `epochs >= 1`."),
            (self.max_time > 0, f"The value of `max_time` is {self.max_time}, but must be `max_time > 0`."),
            (self.max_evaluations is None or self.max_evaluations >= 1,
             f"The value of `max_evaluations` is {self.max_evaluations}, but must be `max_evaluations >= 1`."),
            (0 < self.eval_cost_share <= 1, f"The value of `eval_cost_share` is {self.eval_cost_share}, but must be in (0, 1]."),
            (self.eval_time_limit is None or self.eval_time_limit > 0,
             f"The value of `eval_time_limit` is {self.eval_time_limit}, but must be `eval_time_limit > 0`."),
            (0.0 <= self.crossover_prob <= 1.0, f"The value of `crossover_prob` is {self.crossover_prob}, but must be in [0, 1]."),
            (self.tournament_size >= 1, f"The value of `tournament_size` is {self.tournament_size}, but must be `tournament_size >= 1`."),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        # eta and min_epochs are checked with or without Hyperband, so that a bad value never
        # reaches run.json; min_epochs <= epochs only matters with Hyperband
        top = self.max_epochs if self.hyperband else max(self.max_epochs, self.min_epochs)
        HyperbandSchedule(self.min_epochs, top, self.eta)

    @property
    def max_eval_seconds(self) -> float:
        """The predicted cost cap of one full evaluation (see ``eval_cost_share``)."""
        return self.max_time * self.eval_cost_share

    @property
    def algorithm(self) -> str:
        name = "RS" if self.random_search else "EA"
        return f"{name}+HB" if self.hyperband else name

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def check_max_params(space: ConfigurationSpace, constraints: Constraints, count: Callable[[Config], int]) -> None:
    """Refuse a parameter limit below the smallest network the space can make."""
    smallest = count(smallest_config(space, count))
    if smallest > constraints.max_params.limit:
        raise ConfigError(
            f"The max model size {constraints.max_params.limit:,} is smaller than the smallest "
            f"network of the {space.name} space ({smallest:,} parameters); raise it."
        )


class StopSearch(Exception):
    """The budget (time or evaluations) is used up."""


class EvolutionaryOptimizer:
    """Constrained (mu + lambda) evolution whose children climb Hyperband rungs.

    Args:
        space: the search space.
        task: prepared data and folds.
        constraints: max parameters (enforced before training) and min precision.
        settings: budgets and schedule.
        store: the run directory's ledger; replayed on resume.
        callbacks: hooks called as the search goes.
        selection: parent selection (tournament by default).
        mutations: variation operators applied to one parent, chosen uniformly.
        crossover: recombination of two parents.
        executor: runs the folds of each evaluation (default: serially, in this process).
    """

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
    ) -> None:
        self.space = space
        self.task = task
        self.constraints = constraints
        self.settings = settings
        self.store = store
        self.callback = CbAll(*callbacks)
        self.selection = selection or TournamentSelection(settings.tournament_size)
        self.mutations = list(mutations) if mutations is not None else [UniformMutation(space), LocalMutation(space)]
        self.crossover = crossover or UniformCrossover(space)
        self.executor = executor
        self.sampler = RandomSampling(space)
        self.cost_model = CostModel(task.input_shape, task.n_classes, len(task.splits[0].y_train))
        self.param_budget = ParamBudget(
            space, self.count_params, constraints.max_params.limit,
            cost=self.full_evaluation_cost, cost_limit=settings.max_eval_seconds,
        )
        check_max_params(space, constraints, self.count_params)
        self.schedule = HyperbandSchedule(settings.min_epochs, settings.max_epochs, settings.eta) if settings.hyperband else None
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
        self._replaying = False

    # -- helpers -------------------------------------------------------------------------------

    def count_params(self, config: Config) -> int:
        """Parameters of ``config`` on this task, without allocating it.

        A network the input is too small for (more poolings than pixels) counts as infinitely
        large, so that the parameter repair shrinks it like any other oversized child.
        """
        try:
            return count_params(config, self.task.input_shape, self.task.n_classes)
        except ConfigError:
            return sys.maxsize

    def full_evaluation_cost(self, config: Config) -> float:
        """Predicted seconds to train ``config`` to max_epochs on every fold.

        Uses the cost model's fixed reference constants, not its refit, so that which children
        are repaired depends on the seed only (the same seed gives the same search anywhere).
        """
        try:
            per_epoch = self.cost_model.base_seconds_per_epoch(config)
        except ConfigError:
            return float("inf")
        return per_epoch * self.settings.max_epochs * len(self.task.splits)

    def time_limit(self, member: Member, budget: int) -> float:
        """Seconds the evaluation of ``member`` at ``budget`` may train.

        The explicit ``eval_time_limit``, else four times the step's predicted cost (refitted to
        this machine's timings so far) and at least 10 s.
        """
        if self.settings.eval_time_limit is not None:
            return self.settings.eval_time_limit
        predicted = self.cost_model.seconds(member.config, budget - member.epochs, len(self.task.splits))
        return max(10.0, 4.0 * predicted)

    def segments(self, member: Member) -> tuple[int, ...]:
        """The budgets ``member``'s LR schedule is planned over: its bracket's rungs."""
        if self.schedule is not None and member.bracket is not None:
            return self.schedule.bracket(member.bracket).budgets
        return (self.settings.max_epochs,)

    def elapsed(self) -> float:
        """Seconds spent on this run, over all sessions."""
        return self._spent_before + time.monotonic() - self._session_start

    def rank(self, members: Sequence[Member], budget: int | None = None) -> list[Member]:
        """Feasibility-first order, best first (ties: older member first).

        Members are compared by their :attr:`Member.result`, or by their result at ``budget``.
        """
        def key(m: Member) -> tuple[tuple[int, float], int]:
            result = m.results.get(budget) if budget is not None else m.result
            return self.constraints.rank_key(result), m.member_id

        return sorted(members, key=key)

    def best_member(self) -> Member | None:
        """The best member evaluated so far (the most precise one if none is feasible)."""
        evaluated = [m for m in self.members if m.results]
        return self.rank(evaluated)[0] if evaluated else None

    # -- making members ------------------------------------------------------------------------

    def _new_member(self, config: Config, origin: str, parents: tuple[int, ...], bracket: int | None) -> Member:
        member = Member(
            member_id=len(self.members),
            config=config,
            seed=derive_seed(self.settings.seed, len(self.members)),
            num_params=self.count_params(config),
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
        return member

    def _sample_config(self) -> Config:
        while True:
            config = self.param_budget.repair(self.sampler([], self.rng), self.rng)
            if config is not None:
                return config

    def _make_child(self, bracket: int | None) -> Member:
        ranked = self.rank(self.population)
        usable = [m for m in ranked if m.result is not None and m.result.ok]
        if self.settings.random_search or not usable:
            return self._new_member(self._sample_config(), SAMPLED, (), bracket)
        for _ in range(10):
            if len(usable) >= 2 and self.rng.random() < self.settings.crossover_prob:
                first = self.selection.select(usable, 1, self.rng)[0]
                parents = [first, self.selection.select([m for m in usable if m is not first], 1, self.rng)[0]]
                config = self.crossover([p.config for p in parents], self.rng)
                origin = RECOMBINED
            else:
                parents = self.selection.select(usable, 1, self.rng)
                mutation = self.mutations[int(self.rng.integers(len(self.mutations)))]
                config = mutation([parents[0].config], self.rng)
                origin = MUTATED
            repaired = self.param_budget.repair(config, self.rng)
            if repaired is not None:
                ids = tuple(dict.fromkeys(p.member_id for p in parents))
                return self._new_member(repaired, origin, ids, bracket)
        logger.warning("No child within %s after 10 tries; sampling a fresh one.", self.constraints.max_params.describe())
        return self._new_member(self._sample_config(), SAMPLED, (), bracket)

    # -- evaluating ----------------------------------------------------------------------------

    def _check_evaluation_cap(self) -> None:
        if self.settings.max_evaluations is not None and self.n_evaluations >= self.settings.max_evaluations:
            self.stopped_by = f"max_evaluations ({self.settings.max_evaluations}) reached"
            raise StopSearch

    def _check_time(self) -> None:
        # Only real training is checked: replayed evaluations already happened within budget.
        if self.elapsed() >= self.settings.max_time:
            self.stopped_by = f"max_time ({self.settings.max_time:g} s) reached"
            raise StopSearch

    def evaluate(self, member: Member, budget: int, bracket: int | None = None, rung: int | None = None) -> Result:
        """Train ``member`` to ``budget`` epochs (continuing from its checkpoint) and record it."""
        self._check_evaluation_cap()
        previous = member.epochs
        cached = self.store.evaluation(member.member_id, budget)
        self._replaying = cached is not None
        if cached is not None:
            self.n_replayed += 1
            result = cached
        else:
            self._check_time()
            start = time.monotonic()
            result = evaluate(
                member.config, budget, task=self.task, seed=member.seed,
                segments=self.segments(member),
                checkpoint_dir=member.checkpoint_dir,
                checkpoint_sha256=self.store.latest_checkpoint_hashes(member.member_id),
                deadline=start + self.time_limit(member, budget),
                done_folds=self.store.fold_results(member.member_id, budget),
                on_fold=lambda fold: self.store.record_fold(member.member_id, budget, fold),
                executor=self.executor,
            )
        if result.ok:
            self.cost_model.observe(member.config, budget - previous, len(result.folds), result.seconds)
        member.results[budget] = result
        self.n_evaluations += 1
        self.epochs_spent += (budget - previous) * len(result.folds)
        if cached is None:
            self.peak_checkpoint_bytes = max(self.peak_checkpoint_bytes, self.store.checkpoint_bytes())
            self.store.record_evaluation(
                member.member_id, result, generation=self.generation, bracket=bracket, rung=rung,
                elapsed=self.elapsed(),
                state={
                    "elapsed": self.elapsed(), "generation": self.generation, "bracket": bracket,
                    "rung": rung, "n_evaluations": self.n_evaluations,
                    "rng": self.rng.bit_generator.state, "peak_checkpoint_bytes": self.peak_checkpoint_bytes,
                },
            )
            self._export()
            self._log(member, result)
        self.callback.on_evaluation(self, member, result)
        return result

    def _log(self, member: Member, result: Result) -> None:
        verdict = "feasible" if self.constraints.feasible(result) else (
            result.status if not result.ok else "violates " + ", ".join(c.describe() for c in self.constraints.violated(result))
        )
        logger.info(
            "%s, %d epochs: top3 %.3f, precision %.3f, %s params, %.1f s [%s]",
            member.describe(), result.epochs, result.top3, result.precision, f"{result.num_params:,}",
            result.seconds, verdict,
        )

    def _release(self, members: Sequence[Member]) -> None:
        """Delete checkpoints of members that will not be trained further."""
        for member in members:
            self.store.delete_checkpoints(member.member_id)

    def _export(self) -> None:
        best = self.best_member()
        if best is None or best.result is None:
            self.store.export(None)
            return
        training = {"epochs": best.result.epochs, "segments": list(self.segments(best)),
                    "seed": self.settings.seed, "member_id": best.member_id}
        self.store.export(best.config, training)

    # -- the loop ------------------------------------------------------------------------------

    def _initial_population(self) -> None:
        """Recipes, the space's default (when within the limits) and samples: ``pop_size`` members.

        With Hyperband they climb the rungs of the most aggressive bracket like any children;
        without, each trains to max_epochs.
        """
        bracket = self.schedule.brackets[0] if self.schedule is not None else None
        s = bracket.s if bracket is not None else None
        initial: list[Member] = []
        starts = [(c, RECIPE) for c in recipes(self.space)] + [(default_config(self.space), DEFAULT)]
        for config, origin in starts:
            if len(initial) < self.settings.pop_size and config not in [m.config for m in initial] and self.param_budget.fits(config):
                initial.append(self._new_member(config, origin, (), s))
        while len(initial) < self.settings.pop_size:
            initial.append(self._new_member(self._sample_config(), SAMPLED, (), s))
        if bracket is None:
            for member in initial:
                self.evaluate(member, self.settings.max_epochs)
                self.population.append(member)
                self._release([member])
        else:
            eta = self.settings.eta
            sizes = tuple(max(1, len(initial) // eta**i) for i in range(len(bracket.budgets)))
            self._successive_halving(initial, sizes, bracket.budgets, s)
            self.population = list(initial)
        self.population = self.rank(self.population)

    def _successive_halving(
        self, members: list[Member], sizes: Sequence[int], budgets: Sequence[int], s: int | None
    ) -> list[Member]:
        """Train ``members`` rung by rung, keeping the best ``sizes[i]`` for rung ``i``."""
        alive = members
        for rung, (n, budget) in enumerate(zip(sizes, budgets, strict=True)):
            alive = alive[:n]
            for member in alive:
                self.evaluate(member, budget, s, rung)
            ranked = self.rank(alive, budget)
            promotable = [m for m in ranked if budget in m.results and m.results[budget].status == OK]
            next_n = sizes[rung + 1] if rung + 1 < len(sizes) else 0
            self._release([m for m in ranked if m not in promotable[:next_n]])
            alive = promotable[:next_n] if next_n else ranked
        return alive

    def _run_bracket(self, bracket: Bracket) -> list[Member]:
        """Successive halving over fresh children; returns the members of the last rung."""
        children = [self._make_child(bracket.s) for _ in range(bracket.n_members[0])]
        return self._successive_halving(children, bracket.n_members, bracket.budgets, bracket.s)

    def _generation(self) -> None:
        if self.schedule is None:
            children = [self._make_child(None) for _ in range(self.settings.num_children)]
            for child in children:
                self.evaluate(child, self.settings.max_epochs)
                self._release([child])
            self.population = plus_selection(self.rank(self.population + children), self.settings.pop_size)
            return
        for bracket in self.schedule.brackets:
            survivors = self._run_bracket(bracket)
            self.population = plus_selection(self.rank(self.population + survivors), self.settings.pop_size)

    def _end_generation(self) -> None:
        results = [m.result for m in self.population if m.result is not None and m.result.ok]
        evaluated = [m for m in self.members if m.results]
        feasible = [m for m in evaluated if m.result is not None and self.constraints.feasible(m.result)]
        row = {
            "elapsed": self.elapsed(),
            "population": [m.member_id for m in self.population],
            "avg_acc": float(np.mean([r.top3 for r in results])) if results else None,
            "best_acc": max((r.top3 for r in results), default=None),
            "avg_prec": float(np.mean([r.precision for r in results])) if results else None,
            "best_prec": max((r.precision for r in results), default=None),
            "best_feasible_acc": max((m.result.top3 for m in feasible if m.result), default=None),
            "n_evaluated": self.n_evaluations,
            "n_feasible": len(feasible),
            "epochs_spent": self.epochs_spent,
        }
        # A generation replayed to its end keeps the row the original session wrote.
        if not (self._replaying and self.store.has_generation(self.generation)):
            self.store.record_generation(self.generation, row)
        self._export()
        self.callback.on_generation_end(self, self.generation, self.population)

    def run(self) -> Member | None:
        """Search until the budget is used up; return the best member (see :meth:`best_member`).

        A ``KeyboardInterrupt`` (or any exception) leaves the ledger and exports consistent and
        propagates; the run can then be resumed.
        """
        self.callback.on_run_start(self)
        try:
            self._initial_population()
            self._end_generation()
            while True:
                self.generation += 1
                self._generation()
                self._end_generation()
        except StopSearch:
            self._end_generation()
        finally:
            self._export()
            self.callback.on_run_end(self, self.best_member())
        return self.best_member()
