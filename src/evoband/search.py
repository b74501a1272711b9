"""Running a whole search from arguments: data, space, run directory, resume checks, report.

The command lines (AutoML.py, AutoML_random_search.py) and :func:`evoband.fit` call
:func:`run_search`; everything a run needs to be rebuilt is in its ``run.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .callbacks import ProgressBar
from .cnn import count_params
from .constraints import Constraints
from .data import DataSource, load_data
from .ea import EvolutionaryOptimizer
from .errors import ConfigError, StoreError, StoreWriteError
from .executor import ProcessExecutor
from .hooks import Callback
from .member import Member
from .paths import resolve_default
from .settings import SearchSettings, check_max_params
from .space import get_space
from .store import RunStore
from .target import Task
from .train import resolve_device

logger = logging.getLogger(__name__)


@dataclass
class SearchConfig:
    """All arguments of a search run."""

    settings: SearchSettings = field(default_factory=SearchSettings)
    max_params: float = 2e7
    min_precision: float = 0.39
    space: str = "extended"
    data_dir: str | None = None
    image_size: tuple[int, int] | None = None
    cv_folds: int = 3
    run_dir: str | None = None
    resume: bool = False
    device: str = "auto"
    progress: bool = True
    workers: int | None = 1  # fold worker processes; None: auto_workers (what AutoML.py does)

    def __post_init__(self) -> None:
        # the one place these arguments are checked; the command lines only map the errors
        Constraints.of(self.max_params, self.min_precision)
        if self.cv_folds < 2:
            raise ConfigError(
                f"The value of `cv_folds` is {self.cv_folds}, but must be `cv_folds >= 2`."
            )
        if self.workers is not None and self.workers < 1:
            raise ConfigError(
                f"The value of `workers` is {self.workers}, but must be `workers >= 1`."
            )


@dataclass
class SearchReport:
    """What a finished (or stopped) search found."""

    run_dir: Path
    best: Member | None
    feasible: bool
    n_evaluations: int
    n_feasible: int
    elapsed: float
    stopped_by: str
    constraints: Constraints
    peak_checkpoint_bytes: int
    ledger_seconds: float

    def format(self) -> str:
        lines = [f"Run directory: {self.run_dir}"]
        if self.best is None or self.best.result is None:
            lines.append("No configuration was evaluated (the budget ended first).")
        else:
            r = self.best.result
            if self.feasible:
                lines.append(
                    f"Best feasible configuration ({self.best.describe()}, {r.epochs} epochs):"
                )
            else:
                lines.append(
                    "NO FEASIBLE CONFIGURATION FOUND: no evaluated network met "
                    + " and ".join(c.describe() for c in self.constraints.all)
                    + ". Returning the most precise one instead:"
                )
            lines.append(
                f"  CV top-3 {r.top3:.4f}   CV precision {r.precision:.4f}   params {r.num_params:,}"
            )
            lines.append(f"  {json.dumps(self.best.config)}")
        rate = self.n_feasible / self.n_evaluations if self.n_evaluations else 0.0
        lines.append(
            f"Evaluations: {self.n_evaluations} ({rate:.0%} feasible) in {self.elapsed:.0f} s; stopped: {self.stopped_by or 'finished'}"
        )
        lines.append(
            f"Peak checkpoint disk use {self.peak_checkpoint_bytes / 1e6:.1f} MB; ledger writes {self.ledger_seconds:.2f} s "
            f"({self.ledger_seconds / max(self.elapsed, 1e-9):.2%} of the run)"
        )
        if self.best is not None:
            lines.append(
                f"Retrain it on the test split:\n  python src/main.py -c {self.run_dir / 'opt_cfg.json'} -t True"
            )
        return "\n".join(lines)


def default_run_name(config: SearchConfig) -> str:
    """A descriptive folder name: algorithm, population, constraints, seed and date."""
    s = config.settings
    stamp = dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    algo = s.algorithm.lower().replace("+", "_")
    return f"{algo}_pop{s.pop_size}_maxParams{config.max_params:g}_minPrec{config.min_precision:g}_seed{s.seed}_{stamp}"


def versions() -> dict[str, str]:
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
    they can still be resumed.
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

    @classmethod
    def of(cls, config: SearchConfig, data: DataSource) -> SearchDefinition:
        """The definition of the search ``config`` runs on ``data``."""
        s = config.settings
        return cls(
            space=config.space, max_params=int(config.max_params),
            min_precision=float(config.min_precision), cv_folds=config.cv_folds,
            data=data.location, pop_size=s.pop_size, num_children=s.num_children,
            hyperband=s.hyperband, min_epochs=s.min_epochs, max_epochs=s.max_epochs, eta=s.eta,
            seed=s.seed, crossover_prob=s.crossover_prob, tournament_size=s.tournament_size,
            random_search=s.random_search, max_eval_seconds=s.max_eval_seconds,
            inherit_weights=s.inherit_weights,
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


def auto_workers(device: torch.device, n_folds: int) -> int:
    """Fold workers that keep this machine busy: one per available core up to the fold count on
    a CPU (small networks train on one thread each), one on a GPU."""
    if device.type != "cpu":
        return 1
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    return max(1, min(cores, n_folds))


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
    used = run_dir.exists() and any(run_dir.iterdir())
    if config.resume:
        # a run killed before its ledger existed starts afresh; any other folder is not ours
        if (
            used
            and not (run_dir / "history.sqlite").exists()
            and any(p.name != "checkpoints" for p in run_dir.iterdir())
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


def check_resume(store: RunStore, definition: SearchDefinition) -> None:
    """Refuse to continue a run with different search-defining arguments."""
    diffs = definition.differences(store.run_info().get("search", {}))
    if diffs:
        raise StoreError(
            f"Cannot resume {store.run_dir} with different settings ({'; '.join(diffs)})."
        )


def run_search(
    config: SearchConfig, callbacks: Sequence[Callback] = (), data: DataSource | None = None
) -> SearchReport:
    """Run (or resume) a constrained search and write every output into its run directory.

    Args:
        config: the arguments of the run.
        callbacks: hooks called as the search goes.
        data: the data set, when the caller has it in memory (e.g. built from arrays by
            :func:`evoband.arrays.data_from_arrays`); default: loaded from ``config.data_dir``.
            Its ``location`` is what a resumed run must match.
    """
    settings = config.settings
    constraints = Constraints.of(config.max_params, config.min_precision)
    space = get_space(config.space, seed=settings.seed)
    if data is None:
        data = load_data(config.data_dir, config.image_size)
    check_max_params(
        space, constraints, lambda c: count_params(c, data.input_shape, data.n_classes)
    )
    run_dir = prepare_run_dir(config)
    device = resolve_device(config.device)
    task = Task(data, cv_folds=config.cv_folds, split_seed=settings.seed, device=device)
    definition = SearchDefinition.of(config, data)
    store = RunStore(run_dir)
    try:
        if config.resume and not store.is_empty():
            check_resume(store, definition)
            logger.info("Resuming %s from its ledger.", run_dir)
        else:
            store.set_run_info(
                {
                    "search": definition.to_dict(),
                    "versions": versions(),
                    "data": data.describe(),
                    "space_definition": space.to_serialized_dict(),
                }
            )
        cbs: list[Callback] = list(callbacks)
        if config.progress:
            cbs.insert(0, ProgressBar())
        workers = (
            config.workers if config.workers is not None else auto_workers(device, len(task.splits))
        )
        executor = ProcessExecutor(workers) if workers > 1 else None
        optimizer = EvolutionaryOptimizer(
            space, task, constraints, settings, store, callbacks=cbs, executor=executor
        )
        run_json: dict[str, Any] = {
            "algorithm": settings.algorithm,
            "arguments": _arguments(config),
            "search": definition.to_dict(),
            "versions": versions(),
            "data": data.describe(),
            "device": str(device),
            "workers": workers,
            "started": dt.datetime.now().isoformat(timespec="seconds"),
        }
        if optimizer.schedule is not None:
            run_json["hyperband"] = optimizer.schedule.to_dict()
        store.write_run_json(run_json)
        interrupted = True
        failure: BaseException | None = None
        try:
            if executor is not None and task.device.type == "cpu":
                executor.start(task)
            optimizer.run()
            interrupted = False
        except BaseException as exc:
            failure = exc
            raise
        finally:
            if executor is not None:
                executor.close()
            best = optimizer.best_member()
            report = SearchReport(
                run_dir=run_dir,
                best=best,
                feasible=best is not None
                and best.result is not None
                and constraints.feasible(best.result),
                n_evaluations=optimizer.n_evaluations,
                n_feasible=sum(
                    1
                    for m in optimizer.members
                    for r in m.results.values()
                    if constraints.feasible(r)
                ),
                elapsed=optimizer.elapsed(),
                stopped_by=optimizer.stopped_by or ("interrupted" if interrupted else ""),
                constraints=constraints,
                peak_checkpoint_bytes=optimizer.peak_checkpoint_bytes,
                ledger_seconds=store.write_seconds,
            )
            run_json.update(
                {
                    "finished": dt.datetime.now().isoformat(timespec="seconds"),
                    "elapsed_seconds": report.elapsed,
                    "stopped_by": report.stopped_by,
                    "n_evaluations": report.n_evaluations,
                    "n_replayed": optimizer.n_replayed,
                    "n_feasible": report.n_feasible,
                    "feasible": report.feasible,
                    "peak_checkpoint_bytes": report.peak_checkpoint_bytes,
                    "ledger_write_seconds": report.ledger_seconds,
                    "children_discarded_over_max_params": optimizer.param_budget.discarded,
                    **_inheritance_report(settings, store),
                    "best": None
                    if best is None or best.result is None
                    else {
                        "member_id": best.member_id,
                        "config": best.config,
                        **best.result.to_dict(),
                    },
                }
            )
            try:
                store.write_run_json(run_json)
            except StoreWriteError:
                if failure is None:
                    raise
                logger.debug("run.json not updated: the run directory is not writable.")
            if isinstance(failure, KeyboardInterrupt):
                logger.warning(
                    "Interrupted; the ledger and outputs are saved. Resume with:\n"
                    "  python src/AutoML.py --run_dir %s --resume [the same arguments]",
                    run_dir,
                )
        return report
    finally:
        store.close()


def _inheritance_report(settings: SearchSettings, store: RunStore) -> dict[str, Any]:
    """With weight inheritance: the members that inherited, ``{member_id: parent_id}``."""
    if not settings.inherit_weights:
        return {}
    inherited = store.inheritances()
    return {"inherited_weights": {str(m): row["parent"] for m, row in inherited.items()}}


def _arguments(config: SearchConfig) -> dict[str, Any]:
    d = asdict(config)
    d["settings"] = config.settings.to_dict()
    return d
