"""Running a whole search from arguments: data, space, run directory, resume checks, report.

The command lines (AutoML.py, AutoML_random_search.py) and :func:`evoband.fit` call
:func:`run_search`; everything a run needs to be rebuilt is in its ``run.json``. The run's
set-up (its arguments, definition and directory) is in :mod:`evoband.search._setup`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..core._errors import StoreWriteError
from ..execution._executors import executor_record, make_executor
from ..nets._family import SHIPPED, NetworkFamily
from ..store._ledger import RunStore
from ..store._lock import RunLock, remove_stale_temporaries
from ..training._constraints import Constraints
from ..training._data import DataSource, load_data
from ..training._loop import resolve_device
from ..training._memory import GIB, default_memory_bound
from ..training._results import Result
from ..training._target import FoldExecutor, Task
from ._final import Delivered
from ._hooks import Callback
from ._member import Member, repeats_of, standing_result
from ._optimizer import EvolutionaryOptimizer
from ._progress import ProgressBar
from ._settings import SearchSettings, check_max_params
from ._setup import (
    SearchConfig,
    SearchDefinition,
    adopt_recorded,
    arguments,
    auto_workers,
    check_resume,
    prepare_run_dir,
    versions,
)
from ._space import SearchSpace, check_operators, resolve_space

logger = logging.getLogger(__name__)


@dataclass
class SearchReport:
    """What a finished (or stopped) search found."""

    run_dir: Path
    best: Member | None
    feasible: bool
    n_evaluations: int
    n_feasible: int
    n_feasible_members: int
    """Members feasible at some budget (the ensemble command is suggested from two on)."""
    elapsed: float
    stopped_by: str
    constraints: Constraints
    ended_in_initial_population: bool
    """The time budget ended before any child was bred (the initial population still training)."""
    peak_checkpoint_bytes: int
    ledger_seconds: float
    family: NetworkFamily = SHIPPED
    """The network family of the searched space (it builds the members' networks)."""
    predictor: Delivered | None = None
    """The final predictor the search delivered (``ensemble.json``), if any."""
    best_result: Result | None = None
    """The optimum's CV: the mean over its seeds when it was re-measured (else its result)."""
    duplicates: int = 0
    """Children drawn again because they equalled a member already made."""

    def format(self) -> str:
        lines = [f"Run directory: {self.run_dir}"]
        if self.best is None or self.best.result is None:
            lines.append("No configuration was evaluated (the budget ended first).")
        else:
            r = self.best_result or self.best.result
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
            seeds = (
                f" (mean of {r.message.split()[2]} seeds)"
                if r.message.startswith("mean of")
                else ""
            )
            lines.append(
                f"  CV top-3 {r.top3:.4f}   CV precision {r.precision:.4f}   params {r.num_params:,}{seeds}"
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
        if self.ended_in_initial_population and self.best is not None and self.best.result:
            lines.append(
                "The time budget ended while the initial population was still training (no "
                f"children were bred; the optimum was scored at {self.best.result.epochs} epochs): "
                "a smaller --pop_size or a longer --max_time leaves time for the search itself."
            )
        if self.predictor is not None:
            lines.append(f"Predictor ({self.predictor.path.name}): {self.predictor.describe()}")
            lines.append(
                "Score it on the test split:\n"
                f"  python src/main.py -c {self.predictor.path} -t True"
            )
        if self.best is not None:
            lines.append(
                f"Retrain the single best configuration on the test split:\n  python src/main.py -c {self.run_dir / 'opt_cfg.json'} -t True"
            )
        return "\n".join(lines)


def run_search(
    config: SearchConfig, callbacks: Sequence[Callback] = (), data: DataSource | None = None
) -> SearchReport:
    """Run (or resume) a constrained search and write every output into its run directory.

    Args:
        config: the arguments of the run.
        callbacks: hooks called as the search goes.
        data: the data set, when the caller has it in memory (e.g. built from arrays by
            :func:`evoband.training._arrays.data_from_arrays`); default: loaded from ``config.data_dir``.
            Its ``location`` is what a resumed run must match.
    """
    settings = config.settings
    constraints = Constraints.of(config.max_params, config.min_precision)
    searched = resolve_space(config.space, seed=settings.seed)
    space, family = searched.space, searched.family
    operators = [(f"mutations[{i}]", op) for i, op in enumerate(config.mutations or ())]
    check_operators([*operators, ("crossover", config.crossover)], space)
    if data is None:
        data = load_data(config.data_dir, config.image_size)
    shape, n_classes = data.input_shape, data.n_classes
    check_max_params(space, constraints, lambda c: family.safe_count(c, shape, n_classes))
    device = resolve_device(config.device)
    workers = config.workers if config.workers is not None else auto_workers(device)
    # an existing cluster is reached here: a bad scheduler address fails before anything is written
    executor = make_executor(
        workers, device, family,
        scheduler_address=config.scheduler_address, scheduler_file=config.scheduler_file,
        tls=config.dask_tls,
    )  # fmt: skip
    try:
        return _search(config, callbacks, data, searched, constraints, device, executor, workers)
    finally:
        if executor is not None:
            executor.close()


def _search(
    config: SearchConfig,
    callbacks: Sequence[Callback],
    data: DataSource,
    searched: SearchSpace,
    constraints: Constraints,
    device: torch.device,
    executor: FoldExecutor | None,
    workers: int,
) -> SearchReport:
    """:func:`run_search` once its executor exists (the caller closes it)."""
    run_dir = prepare_run_dir(config)
    lock = RunLock(run_dir)  # one search per run directory, until this one ends
    try:
        removed = remove_stale_temporaries(run_dir)
        if removed:
            logger.info(
                "Removed %d unfinished file(s) a killed search left in %s.", removed, run_dir
            )
        return _search_locked(
            config, callbacks, data, searched, constraints, device, executor, workers, run_dir
        )
    finally:
        lock.release()


def _search_locked(
    config: SearchConfig,
    callbacks: Sequence[Callback],
    data: DataSource,
    searched: SearchSpace,
    constraints: Constraints,
    device: torch.device,
    executor: FoldExecutor | None,
    workers: int,
    run_dir: Path,
) -> SearchReport:
    """:func:`_search` holding the run directory's lock."""
    settings, space, family = config.settings, searched.space, searched.family
    task = Task(
        data, cv_folds=config.cv_folds, split_seed=settings.seed, device=device, family=family
    )
    store = RunStore(run_dir)
    if config.resume and not store.is_empty():
        config = adopt_recorded(store, config)
        settings = config.settings
    definition = SearchDefinition.of(config, data, searched.fingerprint)
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
                    **({"space": searched.record()} if searched.composed else {}),
                }
            )
        cbs: list[Callback] = list(callbacks)
        if config.progress:
            cbs.insert(0, ProgressBar())
        optimizer = EvolutionaryOptimizer(
            space, task, constraints, settings, store, callbacks=cbs, executor=executor,
            selection=config.selection, mutations=config.mutations, crossover=config.crossover,
            workers=workers, memory_bound=memory_bound(config, workers),
        )  # fmt: skip
        run_json: dict[str, Any] = {
            "algorithm": settings.algorithm,
            "arguments": arguments(config),
            "search": definition.to_dict(),
            **({"space": searched.record()} if searched.composed else {}),
            "versions": versions(),
            "data": data.describe(),
            "device": str(device),
            **executor_record(executor, workers),
            "started": dt.datetime.now().isoformat(timespec="seconds"),
        }
        if optimizer.schedule is not None:
            run_json["hyperband"] = optimizer.schedule.to_dict()
        store.write_run_json(run_json)
        interrupted = True
        failure: BaseException | None = None
        try:
            if executor is not None:
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
                n_feasible_members=sum(
                    any(constraints.feasible(r) for r in m.results.values())
                    for m in optimizer.members
                ),
                elapsed=optimizer.elapsed(),
                stopped_by=optimizer.stopped_by or ("interrupted" if interrupted else ""),
                constraints=constraints,
                ended_in_initial_population=optimizer.generation == 0
                and optimizer.stopped_by.startswith("max_time"),
                peak_checkpoint_bytes=optimizer.peak_checkpoint_bytes,
                ledger_seconds=store.write_seconds,
                family=family,
                predictor=optimizer.predictor,
                best_result=None
                if best is None
                else standing_result(best, repeats_of(optimizer.members)),
                duplicates=optimizer.n_duplicates,
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
                    "children_drawn_again_as_duplicates": optimizer.n_duplicates,
                    "predictor": None
                    if optimizer.predictor is None
                    else {
                        "path": optimizer.predictor.path.name,
                        "members": [
                            [m["member_id"], m["epochs"], m["networks"]]
                            for m in optimizer.predictor.record["members"]
                        ],
                        "num_params": optimizer.predictor.record["num_params"],
                        "out_of_fold": optimizer.predictor.record["out_of_fold"],
                    },
                    **_inheritance_report(settings, store),
                    "best": None
                    if best is None or best.result is None
                    else {
                        "member_id": best.member_id,
                        "config": best.config,
                        **(report.best_result or best.result).to_dict(),
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


def memory_bound(config: SearchConfig, workers: int) -> int:
    """Bytes one evaluation may need: ``config.max_memory`` GiB, else the default share of the
    memory available now over the workers (:func:`evoband.training._memory.default_memory_bound`)."""
    if config.max_memory is not None:
        return int(config.max_memory * GIB)
    return default_memory_bound(workers)
