"""One call to search: ``population = fit(data, constraints=..., run_dir=...)`` (AutoFlux style)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._fitted import FittedMember, FittedPredictor, Population, RetrainTask, selected_segments
from .core._errors import ConfigError
from .core._paths import resolve_default, resolve_user
from .operators._base import Selection, Variation
from .search._hooks import BaseCallback, Callback, SearchView
from .search._member import Member, rank_members
from .search._run import run_search
from .search._settings import SearchSettings
from .search._setup import SearchConfig
from .search._steps import lineage_record
from .space._shipped import SpaceDefinition
from .store._ledger import RunStore
from .store._schema import LEDGER
from .training._arrays import ARRAYS, data_from_arrays
from .training._constraints import Constraints
from .training._data import DIGITS, DataSource, load_data
from .training._loop import resolve_device


class _KeepPopulation(BaseCallback):
    def __init__(self) -> None:
        self.population: list[Member] = []
        self.members: tuple[Member, ...] = ()

    def on_run_end(self, search: SearchView, best: Member | None) -> None:
        self.members = search.members
        population = list(search.population)
        if not population:  # stopped within the initial population: its evaluated members
            evaluated = [m for m in search.members if m.results]
            population = rank_members(evaluated, search.constraints)[: search.settings.pop_size]
        self.population = population


def as_data_source(data: Any) -> DataSource:
    """The data set ``fit`` searches on, from any of the forms it takes.

    Args:
        data: None or ``"micro17flower"`` (the default data), ``"digits"``, an image folder
            (relative to the working directory, else to the repository root), ``(x, y)``
            image arrays and labels (a quarter split off as the test split), or
            ``((x_train, y_train), (x_test, y_test))``; see :func:`evoband.training._arrays.data_from_arrays`.
    """
    if isinstance(data, DataSource):
        return data
    if isinstance(data, tuple | list):
        if len(data) != 2:
            raise ConfigError(
                f"Array data is (x, y) or ((x, y), (x_test, y_test)); got {len(data)} items."
            )
        first, second = data
        if isinstance(first, tuple | list):
            return data_from_arrays(*first, test=tuple(second))
        return data_from_arrays(first, second)
    if data is None or str(data) == "micro17flower":
        return load_data(None)
    if str(data) == DIGITS:
        return load_data(DIGITS)
    # an absolute folder, so that the run records one location wherever it is resumed from
    return load_data(resolve_user(data).resolve())


def _data_dir(source: DataSource) -> str | None:
    """The ``--data_dir`` that loads ``source`` again (None for in-memory arrays)."""
    if source.name == ARRAYS:
        return None
    return DIGITS if source.name == DIGITS else source.location


def fit(
    data: Any = None,
    *,
    constraints: Constraints | tuple[float, float] = (2e7, 0.39),
    max_time: float | None = None,
    seed: int | None = None,
    settings: SearchSettings | None = None,
    callbacks: Sequence[Callback] = (),
    run_dir: str | Path = "runs/fit",
    space: str | SpaceDefinition = "extended",
    device: str = "auto",
    progress: bool = True,
    mutations: Sequence[Variation] | None = None,
    crossover: Variation | None = None,
    selection: Selection | None = None,
) -> Population:
    """Search (or resume the search in ``run_dir``) and return the final population, best first.

    Each member of the result exposes its ``config``, ``metrics`` (CV scores), ``lineage`` and
    ``model()``: the trained network, retrained on the whole training split at the epochs and LR
    cycles it was selected at (see :class:`evoband._fitted.FittedMember`); ``export(path)``
    writes it as a ``torch.export`` program. ``population.report`` says how the search ended.

    Args:
        data: see :func:`as_data_source`: the default data, ``"digits"``, an image folder, or
            in-memory arrays ``(x, y)`` / ``((x_train, y_train), (x_test, y_test))``.
        constraints: a :class:`Constraints` or ``(max_params, min_precision)``.
        max_time: seconds of search (over all sessions of the run); overrides ``settings``.
        seed: fixes every random decision; overrides ``settings``.
        settings: budgets and schedule (defaults: population 10, Hyperband, 24 h).
        callbacks: hooks called as the search goes (see :mod:`evoband.callbacks._callbacks`); one may end
            the search with ``search.request_stop(reason)``.
        run_dir: where everything is written; an existing run there is resumed (with the same
            search-defining arguments and data, as ``--resume`` requires). A relative path
            resolves against the repository root (the working directory for an installed
            package), as the command lines resolve it, whatever the working directory.
        space: ``extended`` (the recommended space, as on the command line), ``course``, or a
            space composed with the builders (:class:`evoband.space._shipped.SpaceDefinition`,
            see :mod:`evoband.space._builders`): its networks are built by
            :func:`evoband.nets._composed.build_network`, and a run directory resumes only with the
            same space.
        device: ``auto``, ``cpu``, ``cuda``, ...
        progress: show a progress bar.
        mutations: variation operators of one parent (default: uniform and local mutation),
            made for the searched space (``space.compile()``), e.g. those of
            :mod:`evoband.operators._mutations` wrapped by :mod:`evoband.operators._wrappers`.
        crossover: recombination of two parents (default: uniform crossover), e.g. of
            :mod:`evoband.operators._crossovers`.
        selection: parent selection (default: tournament), e.g. of :mod:`evoband.operators._strategies`.
    """
    if isinstance(constraints, Constraints):
        max_params, min_precision = (
            float(constraints.max_params.limit),
            constraints.min_precision.limit,
        )
    else:
        max_params, min_precision = float(constraints[0]), float(constraints[1])
    settings = settings or SearchSettings()
    if max_time is not None:
        settings = dataclasses.replace(settings, max_time=max_time)
    if seed is not None:
        settings = dataclasses.replace(settings, seed=seed)
    source = as_data_source(data)
    # one resolution for the resume check and every write (run_search takes it as is)
    path = resolve_default(run_dir)
    keep = _KeepPopulation()
    config = SearchConfig(
        settings=settings,
        max_params=max_params,
        min_precision=min_precision,
        space=space,
        data_dir=_data_dir(source),
        run_dir=str(path),
        resume=(path / LEDGER).exists(),
        device=device,
        progress=progress,
        mutations=mutations,
        crossover=crossover,
        selection=selection,
    )
    report = run_search(config, callbacks=[*callbacks, keep], data=source)
    tasks = RetrainTask(source, resolve_device(device), report.family)
    records = training_records(path, keep.population, keep.members, settings)
    return Population(
        (
            FittedMember(m, source, settings, report.constraints, tasks, records.get(m.member_id))
            for m in keep.population
        ),
        report,
        None if report.predictor is None else FittedPredictor(report.predictor, source, tasks),
    )


def training_records(
    run_dir: Path, population: list[Member], members: tuple[Member, ...], settings: SearchSettings
) -> dict[int, dict[str, Any]]:
    """The training records (lineage and LR cycles) of the members of ``population`` that
    inherited weights, so that their retrain follows their lineage."""
    store = RunStore(run_dir, readonly=True)
    try:
        inherited = store.inheritances()
    finally:
        store.close()
    sources = {m: entry["sources"] for m, entry in inherited.items()}
    records = {}
    for member in population:
        if member.member_id in inherited and member.result is not None:
            records[member.member_id] = {
                "lineage": lineage_record(member, member.result.epochs, members, sources),
                "segments": selected_segments(member, settings),
            }
    return records
