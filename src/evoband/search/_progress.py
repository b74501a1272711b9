"""The progress bar a search shows by default: a tqdm bar over its time budget."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from ..search._hooks import BaseCallback, SearchView
from ..training._results import Result
from ._member import Member


class ProgressBar(BaseCallback):
    """A tqdm bar over the time budget; its postfix shows generation, evaluations (done, training
    and waiting for a worker) and the best."""

    def __init__(self, **tqdm_kwargs: Any) -> None:
        self.kwargs = tqdm_kwargs
        self.bar: tqdm | None = None

    def on_run_start(self, search: SearchView) -> None:
        total = float(search.settings.max_time)
        self.bar = tqdm(
            total=total,
            unit="s",
            desc="search",
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f}s {postfix}",
            **self.kwargs,
        )
        self._update(search)

    def _update(self, search: SearchView) -> None:
        if self.bar is None:
            return
        self.bar.n = min(search.elapsed, self.bar.total)
        best = search.best
        postfix: dict[str, object] = {"gen": search.generation, "evals": search.n_evaluations}
        if search.training or search.waiting:
            postfix["jobs"] = f"{search.training} training, {search.waiting} waiting"
        if best is not None and best.result is not None:
            tag = "best" if search.constraints.feasible(best.result) else "best(infeasible)"
            postfix[tag] = f"top3 {best.result.top3:.3f} prec {best.result.precision:.3f}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.refresh()

    def on_evaluation(self, search: SearchView, member: Member, result: Result) -> None:
        self._update(search)

    def on_generation_end(
        self, search: SearchView, generation: int, population: Sequence[Member]
    ) -> None:
        self._update(search)

    def on_run_end(self, search: SearchView, best: Member | None) -> None:
        if self.bar is not None:
            self._update(search)
            self.bar.close()
            self.bar = None
