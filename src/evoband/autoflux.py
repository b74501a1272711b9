"""One call to search: ``population = fit("micro17flower", constraints=..., run_dir=...)``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .constraints import Constraints
from .hooks import BaseCallback, Callback, SearchView
from .member import Member
from .search import SearchConfig, run_search
from .settings import SearchSettings


class _KeepPopulation(BaseCallback):
    def __init__(self) -> None:
        self.population: list[Member] = []

    def on_run_end(self, search: SearchView, best: Member | None) -> None:
        self.population = list(search.population)


def fit(
    data: str | Path | None = None,
    *,
    constraints: Constraints | tuple[float, float] = (2e7, 0.39),
    settings: SearchSettings | None = None,
    callbacks: Sequence[Callback] = (),
    run_dir: str | Path = "runs/fit",
    space: str = "course",
    device: str = "auto",
    progress: bool = True,
) -> list[Member]:
    """Search (or resume the search in ``run_dir``) and return the final population, best first.

    Args:
        data: ``"micro17flower"`` / None (the default data), ``"digits"``, or an image folder.
        constraints: a :class:`Constraints` or ``(max_params, min_precision)``.
        settings: budgets and schedule (defaults: population 10, Hyperband, 24 h).
        callbacks: hooks called as the search goes (see :mod:`evoband.callbacks`).
        run_dir: where everything is written; an existing run there is resumed.
        space: ``course`` or ``extended``.
        device: ``auto``, ``cpu``, ``cuda``, ...
        progress: show a progress bar.
    """
    if isinstance(constraints, Constraints):
        max_params, min_precision = (
            float(constraints.max_params.limit),
            constraints.min_precision.limit,
        )
    else:
        max_params, min_precision = float(constraints[0]), float(constraints[1])
    data_dir = None if data in (None, "micro17flower") else str(data)
    resume = (Path(run_dir) / "history.sqlite").exists()
    keep = _KeepPopulation()
    config = SearchConfig(
        settings=settings or SearchSettings(),
        max_params=max_params,
        min_precision=min_precision,
        space=space,
        data_dir=data_dir,
        run_dir=str(run_dir),
        resume=resume,
        device=device,
        progress=progress,
    )
    run_search(config, callbacks=[*callbacks, keep])
    return keep.population
