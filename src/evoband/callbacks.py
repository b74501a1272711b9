"""Callbacks: hooks the optimizer calls as a search goes; every hook is a no-op by default."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

if TYPE_CHECKING:
    from .ea import EvolutionaryOptimizer
    from .member import Member
    from .target import Result


class Callback:
    """Base class; override the hooks you need."""

    def on_run_start(self, optimizer: EvolutionaryOptimizer) -> None:
        """Before the first evaluation (also on resume)."""

    def on_evaluation(self, optimizer: EvolutionaryOptimizer, member: Member, result: Result) -> None:
        """After each evaluation (replayed ones included)."""

    def on_generation_end(self, optimizer: EvolutionaryOptimizer, generation: int, population: Sequence[Member]) -> None:
        """After each generation, with the surviving population (best first)."""

    def on_run_end(self, optimizer: EvolutionaryOptimizer, best: Member | None) -> None:
        """When the search stops, for whatever reason."""


class CbAll(Callback):
    """Several callbacks as one, called in order."""

    def __init__(self, *callbacks: Callback) -> None:
        self.callbacks = callbacks

    def on_run_start(self, optimizer: EvolutionaryOptimizer) -> None:
        for cb in self.callbacks:
            cb.on_run_start(optimizer)

    def on_evaluation(self, optimizer: EvolutionaryOptimizer, member: Member, result: Result) -> None:
        for cb in self.callbacks:
            cb.on_evaluation(optimizer, member, result)

    def on_generation_end(self, optimizer: EvolutionaryOptimizer, generation: int, population: Sequence[Member]) -> None:
        for cb in self.callbacks:
            cb.on_generation_end(optimizer, generation, population)

    def on_run_end(self, optimizer: EvolutionaryOptimizer, best: Member | None) -> None:
        for cb in self.callbacks:
            cb.on_run_end(optimizer, best)


class ProgressBar(Callback):
    """A tqdm bar over the time budget; its postfix shows generation, evaluations and the best."""

    def __init__(self, **tqdm_kwargs: Any) -> None:
        self.kwargs = tqdm_kwargs
        self.bar: tqdm | None = None

    def on_run_start(self, optimizer: EvolutionaryOptimizer) -> None:
        total = float(optimizer.settings.max_time)
        self.bar = tqdm(total=total, unit="s", desc="search", bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f}s {postfix}", **self.kwargs)
        self._update(optimizer)

    def _update(self, optimizer: EvolutionaryOptimizer) -> None:
        if self.bar is None:
            return
        self.bar.n = min(optimizer.elapsed(), self.bar.total)
        best = optimizer.best_member()
        postfix: dict[str, object] = {"gen": optimizer.generation, "evals": optimizer.n_evaluations}
        if best is not None and best.result is not None:
            tag = "best" if optimizer.constraints.feasible(best.result) else "best(infeasible)"
            postfix[tag] = f"top3 {best.result.top3:.3f} prec {best.result.precision:.3f}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.refresh()

    def on_evaluation(self, optimizer: EvolutionaryOptimizer, member: Member, result: Result) -> None:
        self._update(optimizer)

    def on_generation_end(self, optimizer: EvolutionaryOptimizer, generation: int, population: Sequence[Member]) -> None:
        self._update(optimizer)

    def on_run_end(self, optimizer: EvolutionaryOptimizer, best: Member | None) -> None:
        if self.bar is not None:
            self._update(optimizer)
            self.bar.close()
            self.bar = None
