"""Setting up a search run: its arguments, the definition a resumed run must match, its run
directory, and the resume checks (:func:`evoband.search._run.run_search` runs it; the names are
re-exported by :mod:`evoband.search._run`).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core._errors import ConfigError, StoreError
from ..core._paths import resolve_default
from ..core._validate import require_int, require_number
from ..core._version import __version__
from ..execution._cluster import check_cluster_arguments
from ..operators._base import Selection, Variation
from ..space._shipped import SpaceDefinition
from ..store._ledger import RunStore
from ..store._lock import LOCK_FILE, lock_holder
from ..training._constraints import Constraints
from ..training._data import DataSource
from ._settings import SearchSettings
from ._space import space_name


@dataclass
class SearchConfig:
    """All arguments of a search run.

    ``space`` is the name of a shipped space (``extended``, ``course``) or a space composed with
    the builders (:class:`evoband.space._shipped.SpaceDefinition`). ``mutations``, ``crossover``
    and ``selection`` replace the optimizer's default operators (see
    :class:`evoband.search._optimizer.EvolutionaryOptimizer`); they must be made for the searched space
    (``definition.compile()`` of a composed one, ``evoband.space._spaces.get_space(name)`` of a shipped
    one). ``workers``, ``scheduler_address``, ``scheduler_file`` and ``dask_tls`` choose where
    and how the folds train (:func:`evoband.execution._executors.make_executor`); they are not part of the search's
    definition, so a run may be resumed with other ones.
    """

    settings: SearchSettings = field(default_factory=SearchSettings)
    max_params: float = 2e7
    min_precision: float = 0.39
    space: str | SpaceDefinition = "extended"
    data_dir: str | None = None
    image_size: tuple[int, int] | None = None
    cv_folds: int = 3
    run_dir: str | None = None
    resume: bool = False
    device: str = "auto"
    progress: bool = True
    workers: int | None = 1  # fold worker processes (a Dask LocalCluster); None: auto_workers
    scheduler_address: str | None = None  # an existing Dask cluster's scheduler (tcp://host:port)
    scheduler_file: str | None = None  # or the file that scheduler wrote
    dask_tls: bool = True  # the LocalCluster speaks TLS, credentials made for it
    max_memory: float | None = None  # GiB one evaluation may need; None: half the free / workers
    mutations: Sequence[Variation] | None = None
    crossover: Variation | None = None
    selection: Selection | None = None

    def __post_init__(self) -> None:
        # the one place these arguments are checked; the command lines only map the errors
        Constraints.of(self.max_params, self.min_precision)
        space_name(self.space)
        require_int("cv_folds", self.cv_folds, low=2)
        if self.workers is not None:
            require_int("workers", self.workers, low=1)
        if self.max_memory is not None:
            require_number("max_memory", self.max_memory, low=0, low_open=True, hint="In GiB.")
        check_cluster_arguments(self.scheduler_address, self.scheduler_file)
        if self.mutations is not None:
            if isinstance(self.mutations, Variation) or not isinstance(self.mutations, Sequence):
                raise ConfigError("mutations takes a list of variation operators, e.g. [op].")
            if not self.mutations:
                raise ConfigError("mutations is empty; give at least one operator, or None.")
        for what, op, kind in [
            *((f"mutations[{i}]", op, Variation) for i, op in enumerate(self.mutations or ())),
            ("crossover", self.crossover, Variation),
            ("selection", self.selection, Selection),
        ]:
            if op is not None and not isinstance(op, kind):
                raise ConfigError(
                    f"{what} must be a {kind.__name__} (evoband.operators._base), not {op!r}."
                )


def default_run_name(config: SearchConfig) -> str:
    """A descriptive folder name: algorithm, population, constraints, seed and date."""
    s = config.settings
    stamp = dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    algo = s.algorithm.lower().replace("+", "_")
    return f"{algo}_pop{s.pop_size}_maxParams{config.max_params:g}_minPrec{config.min_precision:g}_seed{s.seed}_{stamp}"


def versions() -> dict[str, str]:
    """The versions of Python and of the packages a run's results depend on."""
    import ConfigSpace

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "ConfigSpace": ConfigSpace.__version__,
        "evoband": __version__,
    }


@dataclass(frozen=True)
class SearchDefinition:
    """The arguments that define a search: written once into the ledger, compared on resume.

    A field added after runs were recorded gets a default: the value those runs used, so that
    they can still be resumed. ``space_fingerprint`` identifies a composed space
    (:func:`evoband.search._space.fingerprint`; "" for a shipped one).
    """

    space: str
    max_params: int
    min_precision: float
    cv_folds: int
    data: str
    pop_size: int
    num_children: int
    hyperband: bool
    min_epochs: int
    max_epochs: int
    eta: int
    seed: int
    crossover_prob: float
    tournament_size: int
    random_search: bool
    max_eval_seconds: float
    inherit_weights: bool = False
    space_fingerprint: str = ""
    async_promotion: bool = False
    recipe_starts: bool = True
    distinct_children: bool = False
    remeasure: bool = False

    @classmethod
    def of(cls, config: SearchConfig, data: DataSource, fingerprint: str = "") -> SearchDefinition:
        """The definition of the search ``config`` runs on ``data`` (``fingerprint``: of the
        composed space it searches)."""
        s = config.settings
        return cls(
            space=space_name(config.space), max_params=int(config.max_params),
            min_precision=float(config.min_precision), cv_folds=config.cv_folds,
            data=data.location, pop_size=s.pop_size, num_children=s.num_children,
            hyperband=s.hyperband, min_epochs=s.min_epochs, max_epochs=s.max_epochs, eta=s.eta,
            seed=s.seed, crossover_prob=s.crossover_prob, tournament_size=s.tournament_size,
            random_search=s.random_search, max_eval_seconds=s.max_eval_seconds,
            inherit_weights=s.inherit_weights, space_fingerprint=fingerprint,
            async_promotion=s.async_promotion, recipe_starts=s.recipe_starts,
            distinct_children=s.distinct_children, remeasure=s.remeasure,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def differences(self, recorded: Mapping[str, Any]) -> list[str]:
        """``key: run has X, now Y`` for every field that differs from a recorded definition."""
        out = []
        for f in fields(self):
            before = recorded.get(f.name, f.default if f.default is not MISSING else None)
            if before != getattr(self, f.name):
                out.append(f"{f.name}: run has {before!r}, now {getattr(self, f.name)!r}")
        return out


def auto_workers(device: torch.device) -> int:
    """Fold workers that keep this machine busy: one per available core on a CPU (small networks
    train on one thread each; the folds of a rung's members run together), one per visible GPU
    on CUDA, one on another accelerator."""
    if device.type == "cuda":
        return max(1, torch.cuda.device_count())
    if device.type != "cpu":
        return 1
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    return max(1, cores)


def prepare_run_dir(config: SearchConfig) -> Path:
    """The run directory; refuses to overwrite a used one unless resuming."""
    run_dir = resolve_default(config.run_dir or Path("runs") / default_run_name(config))
    if run_dir.exists() and not run_dir.is_dir():
        raise StoreError(
            f"The run directory {run_dir} is a file, not a directory; choose another --run_dir."
        )
    if config.resume and not run_dir.exists():
        raise StoreError(
            f"Nothing to resume in {run_dir}: it does not exist; check --run_dir, or drop --resume to start a new run."
        )
    holder = lock_holder(run_dir) if run_dir.exists() else None
    if holder is not None:
        raise StoreError(
            f"Another search is running in {run_dir} ({holder.describe()}): one search per run "
            "directory; wait for it to finish or stop it, or choose another --run_dir."
        )
    # a lock file left by a killed search does not make the folder used
    contents = [p for p in run_dir.iterdir() if p.name != LOCK_FILE] if run_dir.exists() else []
    used = bool(contents)
    if config.resume:
        # a run killed before its ledger existed starts afresh; any other folder is not ours
        if (
            used
            and not (run_dir / "history.sqlite").exists()
            and any(p.name != "checkpoints" for p in contents)
        ):
            raise StoreError(
                f"Cannot resume: {run_dir} holds no history.sqlite; choose the run directory of an evoband run."
            )
    elif used:
        raise StoreError(
            f"The run directory {run_dir} exists and is not empty; pass --resume to continue it "
            "or choose another --run_dir."
        )
    return run_dir


def _space_words(name: object, fingerprint: object) -> str:
    if fingerprint:
        return f"the composed space {name!r} (fingerprint {fingerprint})"
    return f"the shipped space {name!r}"


ADOPTED_ON_RESUME = ("distinct_children", "remeasure")
"""Behaviours added after runs were recorded: a run recorded without one resumes with the
behaviour it was made with (the field's default), whatever the settings now say."""


def adopt_recorded(store: RunStore, config: SearchConfig) -> SearchConfig:
    """``config`` with the behaviours of :data:`ADOPTED_ON_RESUME` that the run's ledger does not
    record set as the run was made (an older run resumes as it ran)."""
    recorded = store.run_info().get("search", {})
    defaults: dict[str, Any] = {f.name: f.default for f in fields(SearchDefinition)}
    changes: dict[str, Any] = {k: defaults[k] for k in ADOPTED_ON_RESUME if k not in recorded}
    if not changes:
        return config
    return replace(config, settings=replace(config.settings, **changes))


def check_resume(store: RunStore, definition: SearchDefinition) -> None:
    """Refuse to continue a run with different search-defining arguments (a different space is
    named as such)."""
    recorded = store.run_info().get("search", {})
    diffs = definition.differences(recorded)
    if any(d.startswith(("space:", "space_fingerprint:")) for d in diffs):
        before = _space_words(recorded.get("space"), recorded.get("space_fingerprint", ""))
        now = _space_words(definition.space, definition.space_fingerprint)
        raise StoreError(
            f"Cannot resume {store.run_dir}: it searched {before}, not {now}; search the space "
            "it was run with, or choose another run directory."
        )
    if diffs:
        raise StoreError(
            f"Cannot resume {store.run_dir} with different settings ({'; '.join(diffs)})."
        )


def arguments(config: SearchConfig) -> dict[str, Any]:
    """The arguments of ``config`` as JSON-able data (``run.json``'s ``arguments``): the space
    by name, operators by class name."""
    d = {f.name: getattr(config, f.name) for f in fields(config)}
    d["settings"] = config.settings.to_dict()
    d["space"] = space_name(config.space)
    d["mutations"] = None if config.mutations is None else [_name(op) for op in config.mutations]
    d["crossover"] = _name(config.crossover)
    d["selection"] = _name(config.selection)
    return d


def _name(op: object) -> str | None:
    return None if op is None else type(op).__name__
