"""Search quality: evoband's searches against DEHB and Optuna on evoband's own objective.

Every method searches the same ConfigSpace space on the same data with the same K-fold task
(``evoband.training._target.Task``, 3 folds split by the seed), the same constraints and the same
wall-clock budget, one run at a time:

- ``ea_hb``, ``ea``, ``rs_hb``: :func:`evoband.run_search` (EA with / without Hyperband, random
  search with Hyperband, its initial population started from the recipes as the EA's is);
  ``rs_hb_sampled``: random search with Hyperband whose initial members are sampled too (no
  recipes, like the peers); ``ea_hb_inherit``: EA+HB whose children start from their parents'
  trained weights (``inherit_weights``); ``ea_hb_async``: EA+HB with asynchronous promotion
  (``async_promotion``: no rung barrier).
- ``recipe_once``, ``recipe_ensemble``: the no-search controls of :mod:`controls` (the
  ``--recipe`` trained once; seeds of it trained one after another for the budget, averaged).
- ``dehb``: the ``dehb`` package (ask / tell) with epochs as the fidelity.
- ``optuna``: Optuna's TPE sampler with its HyperbandPruner, training rung by rung.

The peers call :func:`evoband.training._target.evaluate` and continue a configuration from its checkpoint
when it is evaluated again at a higher budget. Their cost follows evoband's feasibility-first
ranking: a feasible result costs ``1 - top3``, an infeasible one ``3 - precision``, a failed or
timed-out one ``5 - precision``, and an oversized configuration (more parameters than
``--max_params``) is not trained and costs 7. Every method checks the budget before each
evaluation.

Per run it records the best feasible CV top-3 over elapsed search time, and reports it at
25/50/100% of the budget, with the number of evaluations, the feasible rate, the epoch-folds
trained and the optimum's test top-3 and precision after retraining it with ``src/main.py -t``;
with ``--ensemble K``, also the test scores of an evoband run's ensemble of its K best feasible
members (``src/evaluation.py RUN --ensemble K``); with ``--distill K``, also the optimum's after
retraining it with K teachers (``src/main.py -t --distill K``). Run from the repository root::

    python benchmarks/search_quality.py --budget 900 --seeds 0,1,2
    python benchmarks/search_quality.py --budget 900 --methods ea_hb --ensemble half
    python benchmarks/search_quality.py --quick          # about 2 minutes, on digits
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

try:
    import evoband  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from ConfigSpace import ConfigurationSpace  # noqa: E402

from evoband import SearchConfig, SearchSettings, load_run, run_search  # noqa: E402
from evoband.cli import word_or_count  # noqa: E402
from evoband.core import ConfigError  # noqa: E402
from evoband.nets import count_params  # noqa: E402
from evoband.space import RECIPES, SPACES, get_space, is_active, plain, validate
from evoband.training import (  # noqa: E402
    Constraints,
    Result,
    Status,
    Task,
    derive_seed,
    evaluate,
    load_data,
    resolve_device,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (  # noqa: E402
    REPO_ROOT,
    RESULTS_DIR,
    Column,
    apply_defaults,
    mean_std,
    write_csv,
)
from bench_common import markdown_table as shared_table  # noqa: E402
from controls import ControlRun, clean_test_mask, run_recipe_control, scores  # noqa: E402

EVOBAND_METHODS: dict[str, dict[str, bool]] = {
    "ea_hb": {"hyperband": True, "random_search": False},
    "ea": {"hyperband": False, "random_search": False},
    "rs_hb": {"hyperband": True, "random_search": True},
    "rs_hb_sampled": {"hyperband": True, "random_search": True, "recipe_starts": False},
    "ea_hb_inherit": {"hyperband": True, "random_search": False, "inherit_weights": True},
    "ea_hb_async": {"hyperband": True, "random_search": False, "async_promotion": True},
}
PEER_PACKAGES: dict[str, str] = {"dehb": "dehb", "optuna": "optuna"}
CONTROL_METHODS = ("recipe_once", "recipe_ensemble")
"""The no-search controls (:mod:`controls`): one recipe trained once, and seeds of it averaged."""
ALL_METHODS = (*EVOBAND_METHODS, *PEER_PACKAGES, *CONTROL_METHODS)
CONTROL_RECIPE = "bn-cnn-pair"
"""The recipe with the best CV among the extended space's recipes: 3-fold CV top-3 0.893 ± 0.007
against bn-cnn's 0.874 ± 0.009 over 3 seeds (``benchmarks/results/recipe_variants_towers.csv``)."""
FRACTIONS = (0.25, 0.5, 1.0)
CV_FOLDS = 3
KEEP_CHECKPOINTS = 32
"""Peers keep the checkpoints of this many most recently trained configurations (disk bound)."""

_EVOBAND = SearchSettings()
FULL_DEFAULTS: dict[str, Any] = {
    "budget": 900.0,
    "seeds": "0,1,2",
    "methods": ",".join(ALL_METHODS),
    "data_dir": None,
    "pop_size": _EVOBAND.pop_size,
    "min_epochs": _EVOBAND.min_epochs,
    "max_epochs": _EVOBAND.max_epochs,
    "eta": _EVOBAND.eta,
    "eval_time_limit": None,
}
"""evoband's own defaults (AutoML.py's), read from :class:`evoband.SearchSettings`."""
QUICK_DEFAULTS: dict[str, Any] = {
    "budget": 20.0,
    "seeds": "0",
    "methods": "ea_hb,dehb,optuna",
    "data_dir": "digits",
    "pop_size": 4,
    "min_epochs": 1,
    "max_epochs": 8,
    "eta": 2,
    "eval_time_limit": 10.0,
}


class MissingPeer(Exception):
    """A peer optimizer's package is not installed."""


# --------------------------------------------------------------------------------------------
# settings and records


@dataclass(frozen=True)
class Bench:
    """What every run of a benchmark shares: data, space, constraints, budget and schedule.

    ``time_limit`` caps the seconds one evaluation may train, for every method; None leaves
    evoband its own rule and gives the peers a tenth of the budget.
    """

    budget: float
    space: str
    max_params: int
    min_precision: float
    data_dir: str | None
    pop_size: int
    min_epochs: int
    max_epochs: int
    eta: int
    time_limit: float | None = None
    cv_folds: int = CV_FOLDS

    @property
    def peer_time_limit(self) -> float:
        """Seconds one evaluation of a peer may train."""
        return self.time_limit if self.time_limit is not None else self.budget / 10

    @property
    def constraints(self) -> Constraints:
        return Constraints.of(self.max_params, self.min_precision)


@dataclass
class Evaluation:
    """One configuration trained (or continued) to one budget and scored.

    ``elapsed`` is the search time when it finished, ``started`` when it began (for evoband runs:
    ``elapsed`` minus the evaluation's own seconds).
    """

    elapsed: float
    epochs: int
    top3: float
    precision: float
    num_params: int
    status: str
    feasible: bool
    epoch_folds: int
    started: float = math.nan


@dataclass
class RunOutcome:
    """What one search run did and found."""

    method: str
    seed: int
    run_dir: Path
    evaluations: list[Evaluation]
    search_seconds: float
    wall_seconds: float = 0.0
    n_oversized: int = 0
    opt_config: dict[str, Any] | None = None
    opt_segments: list[int] = field(default_factory=list)
    opt: Evaluation | None = None
    test: dict[str, Any] = field(default_factory=dict)
    ensemble: dict[str, Any] = field(default_factory=dict)
    distilled: dict[str, Any] = field(default_factory=dict)
    clean_test: dict[str, Any] = field(default_factory=dict)
    members: int | None = None
    optimum_test: dict[str, Any] = field(default_factory=dict)
    protocol: str = ""
    remeasured: dict[str, float] = field(default_factory=dict)
    predictor_oof: dict[str, float] = field(default_factory=dict)


def rank_cost(constraints: Constraints, result: Result | None) -> float:
    """evoband's feasibility-first ranking (:meth:`Constraints.rank_key`) as a cost to minimise.

    Feasible results cost ``1 - top3`` (in [0, 1]), infeasible ones ``3 - precision`` (in
    [2, 3]), failed, diverged or timed-out ones ``5 - precision`` and a configuration never
    trained (over the parameter limit; ``result`` None) costs 7: each group is worse than every
    result of the groups before it.
    """
    group, score = constraints.rank_key(result)
    return 2.0 * group + 1.0 + score


# --------------------------------------------------------------------------------------------
# traces and per-run summaries


def best_so_far(evaluations: Sequence[Evaluation]) -> list[float]:
    """Best feasible CV top-3 after each evaluation (NaN until the first feasible one)."""
    best, out = math.nan, []
    for ev in evaluations:
        if ev.feasible and (math.isnan(best) or ev.top3 > best):
            best = ev.top3
        out.append(best)
    return out


def best_at(evaluations: Sequence[Evaluation], seconds: float) -> float:
    """Best feasible CV top-3 among evaluations finished by ``seconds`` (NaN if none)."""
    scores = [ev.top3 for ev in evaluations if ev.feasible and ev.elapsed <= seconds]
    return max(scores) if scores else math.nan


def trace_rows(outcome: RunOutcome) -> list[dict[str, Any]]:
    """One trace row per evaluation: elapsed seconds and the best feasible CV top-3 so far."""
    best = best_so_far(outcome.evaluations)
    return [
        {
            "method": outcome.method,
            "seed": outcome.seed,
            "evaluation": i,
            "started": round(ev.started, 3),
            "elapsed": round(ev.elapsed, 3),
            "epochs": ev.epochs,
            "top3": ev.top3,
            "precision": ev.precision,
            "status": ev.status,
            "feasible": ev.feasible,
            "best_feasible_top3": best[i],
        }
        for i, ev in enumerate(outcome.evaluations)
    ]


def summary_row(outcome: RunOutcome, bench: Bench) -> dict[str, Any]:
    """The CSV row of one run.

    The best feasible CV top-3 at 25 and 50% counts the evaluations finished by then; at 100% it
    is the run's final value, including the last evaluation (started within the budget).
    """
    evs, opt = outcome.evaluations, outcome.opt
    n_feasible = sum(ev.feasible for ev in evs)
    row: dict[str, Any] = {"method": outcome.method, "seed": outcome.seed, "budget": bench.budget}
    for fraction in FRACTIONS:
        seconds = fraction * bench.budget if fraction < 1 else math.inf
        row[f"best_cv_top3_{int(fraction * 100)}"] = best_at(evs, seconds)
    row.update(
        {
            "n_evaluations": len(evs),
            "n_feasible": n_feasible,
            "feasible_rate": n_feasible / len(evs) if evs else math.nan,
            "n_oversized": outcome.n_oversized,
            "epoch_folds": sum(ev.epoch_folds for ev in evs),
            "search_seconds": round(outcome.search_seconds, 2),
            "wall_seconds": round(outcome.wall_seconds, 2),
            "opt_epochs": opt.epochs if opt else None,
            "opt_cv_top3": opt.top3 if opt else math.nan,
            "opt_cv_precision": opt.precision if opt else math.nan,
            "opt_num_params": opt.num_params if opt else None,
            "opt_feasible": opt.feasible if opt else False,
            "test_top3": outcome.test.get("top3", math.nan),
            "test_precision": outcome.test.get("precision", math.nan),
            "test_epochs": (outcome.optimum_test or outcome.test).get("epochs"),
            "test_status": (outcome.optimum_test or outcome.test).get("status", ""),
            "clean_test_top3": outcome.clean_test.get("top3", math.nan),
            "clean_test_precision": outcome.clean_test.get("precision", math.nan),
            "clean_test_images": outcome.clean_test.get("images"),
            "members": outcome.members,
            "test_protocol": outcome.protocol,
            "optimum_test_top3": outcome.optimum_test.get("top3", math.nan),
            "optimum_test_precision": outcome.optimum_test.get("precision", math.nan),
            "predictor_num_params": outcome.test.get("num_params"),
            "overshoot": round(outcome.search_seconds / bench.budget, 4),
            "opt_cv_top3_first_seed": outcome.remeasured.get("first_seed", math.nan),
            "opt_cv_top3_second_seed": outcome.remeasured.get("second_seed", math.nan),
            "predictor_oof_top3": outcome.predictor_oof.get("top3", math.nan),
            "predictor_oof_precision": outcome.predictor_oof.get("precision", math.nan),
            "ensemble_top3": outcome.ensemble.get("top3", math.nan),
            "ensemble_precision": outcome.ensemble.get("precision", math.nan),
            "ensemble_members": outcome.ensemble.get("members", ""),
            "ensemble_params": outcome.ensemble.get("num_params"),
            "distilled_top3": outcome.distilled.get("top3", math.nan),
            "distilled_precision": outcome.distilled.get("precision", math.nan),
            "distill_teachers": outcome.distilled.get("teachers"),
            "run_dir": repo_relative(outcome.run_dir),
        }
    )
    row.update({k: v for k, v in asdict(bench).items() if k != "budget"})
    return row


def repo_relative(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (CSVs name no machine's paths)."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def log_line(row: Mapping[str, Any]) -> str:
    """The one progress line printed when a run finishes."""
    at = "/".join(_fmt(row[f"best_cv_top3_{int(f * 100)}"]) for f in FRACTIONS)
    return (
        f"{row['method']:<7} seed {row['seed']}: best feasible CV top-3 {at} at 25/50/100%, "
        f"{row['n_evaluations']} evaluations ({_fmt(row['feasible_rate'], pct=True)} feasible), "
        f"{row['epoch_folds']} epoch-folds, {row['search_seconds']:.0f} s; "
        f"test top-3 {_fmt(row['test_top3'])}, precision {_fmt(row['test_precision'])}"
        + (
            f"; ensemble ({row['ensemble_members']}; {row['ensemble_params']:,} parameters) "
            f"test top-3 {_fmt(row['ensemble_top3'])}, "
            f"precision {_fmt(row['ensemble_precision'])}"
            if row.get("ensemble_members")
            else ""
        )
        + (
            f"; clean test top-3 {_fmt(row['clean_test_top3'])} on {row['clean_test_images']} images"
            if row.get("clean_test_images")
            else ""
        )
        + (f"; {row['members']} members" if row.get("members") else "")
        + (
            f"; distilled from {row['distill_teachers']} teachers: test top-3 "
            f"{_fmt(row['distilled_top3'])}, precision {_fmt(row['distilled_precision'])}"
            if row.get("distill_teachers")
            else ""
        )
    )


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.0%}" if pct else f"{value:.3f}"


# --------------------------------------------------------------------------------------------
# evoband's own searches


def frame_evaluations(frame: Any, constraints: Constraints) -> list[Evaluation]:
    """Evaluations of an evoband run (:func:`evoband.load_run`), in the order they finished.

    Epoch-folds count continuation as evoband does: a member promoted from budget b1 to b2
    trained ``(b2 - b1) x folds``.
    """
    out: list[Evaluation] = []
    trained: dict[int, int] = {}
    for row in frame.sort_values("elapsed", kind="stable").itertuples():
        ok = row.status == Status.OK
        feasible = (
            ok
            and constraints.max_params.allows(int(row.num_params))
            and row.precision >= constraints.min_precision.limit
        )
        previous = trained.get(row.member_id, 0)
        previous = previous if previous <= row.epochs else 0
        out.append(
            Evaluation(
                float(row.elapsed),
                int(row.epochs),
                float(row.top3),
                float(row.precision),
                int(row.num_params),
                str(row.status),
                bool(feasible),
                (int(row.epochs) - previous) * int(row.n_folds),
                float(row.elapsed) - float(row.seconds),
            )
        )
        if ok:
            trained[row.member_id] = int(row.epochs)
    return out


def remeasured(frame: Any, member_id: int, epochs: int) -> dict[str, float]:
    """The optimum's CV top-3 under its first seed and under its re-measurement (a member of
    origin ``repeated``), when the search re-measured it: the optimism of the first."""
    first = frame[(frame["member_id"] == member_id) & (frame["epochs"] == epochs)]
    again = frame[
        (frame["origin"] == "repeated")
        & frame["parents"].map(lambda p: list(p)[:1] == [member_id])
        & (frame["epochs"] == epochs)
        & (frame["status"] == "ok")
    ]
    if first.empty or again.empty:
        return {}
    return {"first_seed": float(first["top3"].iloc[0]), "second_seed": float(again["top3"].iloc[0])}


def run_evoband(method: str, seed: int, bench: Bench, run_dir: Path) -> RunOutcome:
    """One run of one of :data:`EVOBAND_METHODS` through
    :func:`evoband.run_search`."""
    settings = SearchSettings(
        **EVOBAND_METHODS[method],
        max_time=bench.budget,
        seed=seed,
        pop_size=bench.pop_size,
        min_epochs=bench.min_epochs,
        max_epochs=bench.max_epochs,
        eta=bench.eta,
        eval_time_limit=bench.time_limit,
    )
    report = run_search(
        SearchConfig(
            settings=settings,
            space=bench.space,
            max_params=bench.max_params,
            min_precision=bench.min_precision,
            data_dir=bench.data_dir,
            cv_folds=bench.cv_folds,
            run_dir=str(run_dir),
            progress=False,
            workers=None,  # as AutoML.py: one fold worker per core
        )
    )
    frame = load_run(run_dir)
    evaluations = frame_evaluations(frame, bench.constraints)
    outcome = RunOutcome(method, seed, run_dir, evaluations, report.elapsed)
    best = report.best
    if best is not None and best.result is not None:
        outcome.remeasured = remeasured(frame, best.member_id, best.result.epochs)
    if report.predictor is not None:
        outcome.predictor_oof = dict(report.predictor.record["out_of_fold"])
    if best is not None and best.result is not None:
        r = best.result
        outcome.opt_config = dict(best.config)
        outcome.opt = Evaluation(
            report.elapsed, r.epochs, r.top3, r.precision, r.num_params, r.status,
            report.feasible, 0,
        )  # fmt: skip
    return outcome


# --------------------------------------------------------------------------------------------
# the objective the peers optimise


def config_key(config: Mapping[str, Any]) -> str:
    """A stable hash of a configuration (its checkpoint folder name)."""
    return hashlib.sha256(json.dumps(plain(config), sort_keys=True).encode()).hexdigest()[:16]


def rung_budgets(min_epochs: int, max_epochs: int, eta: int) -> list[int]:
    """evoband's rungs: ``min_epochs * eta**i`` while the next is within ``max_epochs``, then
    ``max_epochs`` (as the most aggressive bracket of :class:`evoband.search._hyperband.HyperbandSchedule`).
    """
    budgets, b = [], min_epochs
    while b * eta <= max_epochs:
        budgets.append(b)
        b *= eta
    return [*budgets, max_epochs]


class Objective:
    """evoband's objective for the peer optimizers, with checkpoints, a clock and a record.

    Args:
        bench: the shared settings.
        seed: seeds the configurations' training (with their hash).
        task: the prepared K-fold task.
        run_dir: checkpoints go to ``run_dir/checkpoints/<config hash>``.
    """

    def __init__(self, bench: Bench, seed: int, task: Task, run_dir: Path) -> None:
        self.bench, self.seed, self.task, self.run_dir = bench, seed, task, run_dir
        self.constraints = bench.constraints
        self.evaluations: list[Evaluation] = []
        self.costs: list[float] = []
        self.continuable = False
        self.trained: list[tuple[dict[str, Any], list[int]]] = []
        self.n_oversized = 0
        self._checkpoints: OrderedDict[str, int] = OrderedDict()
        self._start = time.monotonic()

    def elapsed(self) -> float:
        """Seconds since the search started."""
        return time.monotonic() - self._start

    def out_of_time(self) -> bool:
        """Whether the budget is used up (checked before every evaluation)."""
        return self.elapsed() >= self.bench.budget

    def oversized(self, config: Mapping[str, Any]) -> bool:
        """Over the parameter limit (or too deep for the input): never trained."""
        try:
            n = count_params(config, self.task.input_shape, self.task.n_classes)
        except ConfigError:
            return True
        return not self.constraints.max_params.allows(n)

    def __call__(self, config: Mapping[str, Any], epochs: int, planned: Sequence[int]) -> float:
        """Train ``config`` to ``epochs`` (continuing where possible); return its cost.

        ``planned`` are the budgets this configuration may be scored at (its LR schedule's plan).
        :attr:`continuable` then says whether it trained fine (and may go to a higher budget).
        """
        self.continuable = False
        if self.oversized(config):
            self.n_oversized += 1
            return rank_cost(self.constraints, None)
        key = config_key(config)
        checkpoint_dir = self.run_dir / "checkpoints" / key
        done = self._checkpoints.pop(key, 0)
        started = self.elapsed()
        result = evaluate(
            dict(config),
            epochs,
            task=self.task,
            seed=derive_seed(self.seed, int(key, 16) >> 2),
            checkpoint_dir=checkpoint_dir,
            deadline=time.monotonic() + self.bench.peer_time_limit,
            segments=tuple(sorted(set(planned))),
        )
        self._record(config, planned, result, done if done <= epochs else 0, started)
        self.continuable = result.ok and epochs < self.bench.max_epochs
        if self.continuable:
            self._keep(key, epochs)
        else:  # never continued: a failed fold's state is unknown, a finished one needs no more
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
        return self.costs[-1]

    def _record(
        self,
        config: Mapping[str, Any],
        planned: Sequence[int],
        result: Result,
        done: int,
        started: float,
    ) -> None:
        ev = Evaluation(
            self.elapsed(), result.epochs, result.top3, result.precision, result.num_params,
            result.status, self.constraints.feasible(result),
            sum(max(f.epochs - done, 0) for f in result.folds), started,
        )  # fmt: skip
        self.evaluations.append(ev)
        self.costs.append(rank_cost(self.constraints, result))
        self.trained.append((dict(config), sorted(set(planned))))

    def _keep(self, key: str, epochs: int) -> None:
        self._checkpoints[key] = epochs
        while len(self._checkpoints) > KEEP_CHECKPOINTS:
            old, _ = self._checkpoints.popitem(last=False)
            shutil.rmtree(self.run_dir / "checkpoints" / old, ignore_errors=True)

    def outcome(self, method: str, seed: int) -> RunOutcome:
        """The run's record; its optimum is the evaluation of lowest cost (the earliest on ties).

        That is the best feasible one, else the most precise one, as evoband picks its optimum.
        """
        evs = self.evaluations
        out = RunOutcome(method, seed, self.run_dir, list(evs), self.elapsed())
        out.n_oversized = self.n_oversized
        if evs:
            i = min(range(len(evs)), key=lambda j: (self.costs[j], j))
            out.opt, (out.opt_config, out.opt_segments) = evs[i], self.trained[i]
        return out

    def close(self) -> None:
        """Delete the checkpoints (the optimum is retrained from scratch)."""
        shutil.rmtree(self.run_dir / "checkpoints", ignore_errors=True)


def make_task(bench: Bench, seed: int) -> Task:
    """The K-fold task evoband's searches build: the same data, folds split by the seed."""
    data = load_data(bench.data_dir)
    return Task(data, cv_folds=bench.cv_folds, split_seed=seed, device=resolve_device("auto"))


def require(method: str) -> None:
    """Raise :class:`MissingPeer` with a clear message if a peer's package is not installed."""
    package = PEER_PACKAGES[method]
    if importlib.util.find_spec(package) is None:
        raise MissingPeer(
            f"{method}: the package {package!r} is not installed "
            "(pip install -r requirements-dev.txt)"
        )


# --------------------------------------------------------------------------------------------
# DEHB


def fidelity_epochs(fidelity: float, bench: Bench) -> int:
    """DEHB's (fractional) fidelity as whole epochs within ``min_epochs..max_epochs``."""
    return min(bench.max_epochs, max(bench.min_epochs, round(float(fidelity))))


def run_dehb(seed: int, bench: Bench, run_dir: Path) -> RunOutcome:
    """DEHB (ask / tell) over evoband's space; epochs are the fidelity; budget checked per job."""
    require("dehb")
    from dehb import DEHB

    task = make_task(bench, seed)
    with warnings.catch_warnings():  # DEHB calls ConfigSpace's deprecated 0.x method names
        warnings.simplefilter("ignore")
        optimizer = DEHB(
            cs=get_space(bench.space, seed),
            min_fidelity=bench.min_epochs,
            max_fidelity=bench.max_epochs,
            eta=bench.eta,
            n_workers=1,
            seed=seed,
            output_path=str(run_dir / "dehb"),
            log_level="ERROR",
            save_freq="end",
        )
        rungs = sorted({fidelity_epochs(f, bench) for f in optimizer.fidelities})
        objective = Objective(bench, seed, task, run_dir)
        first_budget: dict[str, int] = {}
        try:
            while not objective.out_of_time():
                job = optimizer.ask()
                config = plain(dict(job["config"]))
                epochs = fidelity_epochs(job["fidelity"], bench)
                # the LR plan of a configuration is fixed by the rung it entered at
                start = first_budget.setdefault(config_key(config), epochs)
                t0 = time.monotonic()
                value = objective(config, epochs, [r for r in rungs if r >= start])
                optimizer.tell(job, {"fitness": value, "cost": time.monotonic() - t0})
        finally:
            objective.close()
    return objective.outcome("dehb", seed)


# --------------------------------------------------------------------------------------------
# Optuna


def suggest_config(trial: Any, space: ConfigurationSpace) -> dict[str, Any]:
    """A configuration of ``space`` from ``trial.suggest_*``, suggesting only active ones.

    Hyperparameters are visited in the space's (topological) order, so that a conditional one
    is suggested only when its parents' values make it active.
    """
    config: dict[str, Any] = {}
    for name in space:
        if is_active(space, name, config):
            config[name] = suggest_value(trial, space[name])
    validate(space, config)
    return config


def suggest_value(trial: Any, hp: Any) -> Any:
    """One ``trial.suggest_*`` call for a ConfigSpace hyperparameter."""
    from ConfigSpace import (
        CategoricalHyperparameter,
        Constant,
        OrdinalHyperparameter,
        UniformFloatHyperparameter,
        UniformIntegerHyperparameter,
    )

    if isinstance(hp, UniformFloatHyperparameter):
        return trial.suggest_float(hp.name, float(hp.lower), float(hp.upper), log=bool(hp.log))
    if isinstance(hp, UniformIntegerHyperparameter):
        return trial.suggest_int(hp.name, int(hp.lower), int(hp.upper), log=bool(hp.log))
    if isinstance(hp, CategoricalHyperparameter | OrdinalHyperparameter):
        values = hp.choices if isinstance(hp, CategoricalHyperparameter) else hp.sequence
        return plain({"v": trial.suggest_categorical(hp.name, list(values))})["v"]
    if isinstance(hp, Constant):
        return plain({"v": hp.value})["v"]
    raise ConfigError(f"The hyperparameter {hp.name!r} ({type(hp).__name__}) has no Optuna form.")


def run_optuna(seed: int, bench: Bench, run_dir: Path) -> RunOutcome:
    """Optuna TPE + HyperbandPruner; each trial trains rung by rung from its checkpoint."""
    require("optuna")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    task = make_task(bench, seed)
    space = get_space(bench.space, seed)
    rungs = rung_budgets(bench.min_epochs, bench.max_epochs, bench.eta)
    objective = Objective(bench, seed, task, run_dir)
    pruner = optuna.pruners.HyperbandPruner(
        min_resource=bench.min_epochs, max_resource=bench.max_epochs, reduction_factor=bench.eta
    )
    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)

    def trial_objective(trial: optuna.Trial) -> float:
        config = suggest_config(trial, space)
        value = rank_cost(objective.constraints, None)
        try:
            for epochs in rungs:
                if objective.out_of_time():
                    trial.study.stop()
                    raise optuna.TrialPruned()
                value = objective(config, epochs, rungs)
                if not objective.continuable:
                    return value  # oversized, failed, diverged, timed out, or at max_epochs
                trial.report(value, epochs)
                if trial.should_prune():
                    raise optuna.TrialPruned()
            return value
        finally:
            shutil.rmtree(run_dir / "checkpoints" / config_key(config), ignore_errors=True)

    try:
        study.optimize(trial_objective, timeout=bench.budget)
    finally:
        objective.close()
    return objective.outcome("optuna", seed)


# --------------------------------------------------------------------------------------------
# the no-search controls


_CLEAN: dict[Any, np.ndarray] = {}


def clean_mask(bench: Bench) -> np.ndarray:
    """The clean test images of the bench's data set (computed once)."""
    if bench.data_dir not in _CLEAN:
        data = load_data(bench.data_dir)
        _CLEAN[bench.data_dir] = clean_test_mask(data.train.images, data.test.images)
    return _CLEAN[bench.data_dir]


class Controls:
    """The no-search controls of one seed: seeds of :data:`CONTROL_RECIPE` trained for the
    budget (``recipe_ensemble``), whose first member is ``recipe_once``; trained once per seed
    for both methods, with the clean test mask computed once per data set."""

    def __init__(self, bench: Bench, recipe: str = CONTROL_RECIPE) -> None:
        self.bench, self.recipe = bench, recipe
        self.data = load_data(bench.data_dir)
        self.clean = clean_mask(bench)
        self._runs: dict[int, tuple[ControlRun, float]] = {}
        self.workers = os.cpu_count() or 1
        self.num_params = count_params(RECIPES[recipe], self.data.input_shape, self.data.n_classes)
        """Members trained at once: one per core, as AutoML.py's ``--workers auto``."""

    def run(self, method: str, seed: int, run_dir: Path) -> RunOutcome:
        """The outcome of ``method`` (one of :data:`CONTROL_METHODS`) for ``seed``."""
        if seed not in self._runs:
            config = plain(validate(get_space(self.bench.space), RECIPES[self.recipe]))
            start = time.monotonic()
            control = run_recipe_control(
                config, self.recipe, data_dir=self.bench.data_dir, seed=seed,
                labels=self.data.test.labels.numpy(), budget=self.bench.budget,
                epochs=self.bench.max_epochs, workers=self.workers,
            )  # fmt: skip
            self._runs[seed] = control, time.monotonic() - start
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(
                run_dir.parent / f"recipe_seed{seed}_test_probabilities.npz",
                members=np.stack(control.member_probabilities), labels=control.labels,
                clean=self.clean, finished_at=np.asarray(control.finished_at),
            )  # fmt: skip
        control, seconds = self._runs[seed]
        n = 1 if method == "recipe_once" else len(control.member_probabilities)
        probabilities = control.probabilities(n)
        outcome = RunOutcome(method, seed, run_dir, [], seconds)
        outcome.wall_seconds = control.finished_at[n - 1] if n else seconds
        outcome.members = n
        outcome.opt_config = dict(RECIPES[self.recipe])
        outcome.test = {**scores(probabilities, control.labels), "epochs": self.bench.max_epochs,
                        "status": Status.OK, "num_params": n * self.num_params}  # fmt: skip
        outcome.protocol = f"{self.recipe} trained on all training images, {n} seed(s) averaged"
        outcome.clean_test = {
            **scores(probabilities, control.labels, self.clean),
            "images": int(self.clean.sum()),
        }
        return outcome


PEERS: dict[str, Callable[[int, Bench, Path], RunOutcome]] = {
    "dehb": run_dehb,
    "optuna": run_optuna,
}


# --------------------------------------------------------------------------------------------
# one run, retraining, output


def run_one(method: str, seed: int, bench: Bench, run_dir: Path) -> RunOutcome:
    """One search run; peers write their optimum as ``opt_cfg.json`` in their run directory."""
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    if method in EVOBAND_METHODS:
        outcome = run_evoband(method, seed, bench, run_dir)
    else:
        outcome = PEERS[method](seed, bench, run_dir)
        if outcome.opt_config is not None:
            text = json.dumps(outcome.opt_config, indent=2) + "\n"
            (run_dir / "opt_cfg.json").write_text(text)
    outcome.wall_seconds = time.monotonic() - start
    return outcome


def training_record(config_path: Path) -> Path | None:
    """evoband's record of the epochs and LR segments an ``opt_cfg.json`` was selected at.

    None when this evoband has no such record (then ``main.py`` is given ``-e``).
    """
    try:
        from evoband.store import training_record_path
    except ImportError:
        return None
    return training_record_path(config_path)


def retrain_command(outcome: RunOutcome, bench: Bench, out: Path) -> list[str]:
    """``main.py -t`` for the optimum, at the epochs (and LR segments) it was scored at.

    A training record beside ``opt_cfg.json`` (evoband writes one; one is written here for the
    peers) gives ``main.py`` both; without one, ``-e`` gives it the epochs.
    """
    assert outcome.opt is not None
    cfg = outcome.run_dir / "opt_cfg.json"
    record = training_record(cfg)
    if record is not None and outcome.method in PEERS:
        segments = [b for b in outcome.opt_segments if b <= outcome.opt.epochs]
        record.write_text(json.dumps({"epochs": outcome.opt.epochs, "segments": segments}) + "\n")
    cmd = [
        sys.executable, str(REPO_ROOT / "src" / "main.py"), "-c", str(cfg), "-t", "True",
        "--seed", str(outcome.seed), "-s", str(bench.max_params), "-p", str(bench.min_precision),
        "--space", bench.space, "--no_progress", "--out", str(out),
    ]  # fmt: skip
    if record is None or not record.exists():
        cmd += ["-e", str(outcome.opt.epochs)]
    if bench.data_dir:
        cmd += ["--data_dir", bench.data_dir]
    return cmd


def retrain(outcome: RunOutcome, bench: Bench, distill: int = 0) -> dict[str, Any]:
    """Retrain the optimum on the whole training split and score it on test (``main.py -t``;
    with ``distill``, ``main.py -t --distill K`` into ``result_test_distill.json``).

    An optimum whose own evaluation did not finish (every evaluation of the run timed out or
    failed) is not retrained: the search never scored it, so its test score would say nothing
    about the search (and such networks are the slowest to train)."""
    if outcome.opt is None or not (outcome.run_dir / "opt_cfg.json").exists():
        return {"status": "no optimum"}
    if outcome.opt.status != Status.OK:
        return {"status": f"not retrained: its evaluation {outcome.opt.status}"}
    out = outcome.run_dir / ("result_test_distill.json" if distill else "result_test.json")
    cmd = retrain_command(outcome, bench, out) + (["--distill", str(distill)] if distill else [])
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    if not out.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        print(f"note: retraining {outcome.run_dir.name} failed (exit {proc.returncode}): {tail[0]}")
        return {"status": f"retrain failed (exit {proc.returncode})"}
    record = json.loads(out.read_text())
    keys = ("top3", "precision", "epochs", "status", "num_params")
    teachers = {"teachers": (record.get("distill") or {}).get("teachers")} if distill else {}
    return {**{key: record[key] for key in keys}, **teachers, **_predictions(record)}


def _predictions(record: Mapping[str, Any]) -> dict[str, Any]:
    """The test probabilities and labels of a result file (for the clean test images)."""
    if "probabilities" not in record:
        return {}
    labels = (
        record.get("labels") or record["fold_results"][0]["labels"]
        if "labels" not in record
        else record["labels"]
    )
    return {"probabilities": np.asarray(record["probabilities"]), "labels": np.asarray(labels)}


def score_predictor(outcome: RunOutcome, bench: Bench) -> dict[str, Any]:
    """Score an evoband run's delivered predictor on test (``main.py -c RUN/ensemble.json -t``);
    {} when the run delivered none."""
    path = outcome.run_dir / "ensemble.json"
    if not path.exists():
        return {}
    out = outcome.run_dir / "result_test_ensemble.json"
    cmd = [
        sys.executable, str(REPO_ROOT / "src" / "main.py"), "-c", str(path), "-t", "True",
        "-s", str(bench.max_params), "-p", str(bench.min_precision), "--no_progress",
        "--out", str(out),
    ]  # fmt: skip
    if bench.data_dir:
        cmd += ["--data_dir", bench.data_dir]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    if not out.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        print(f"note: scoring the predictor of {outcome.run_dir.name} failed: {tail[0]}")
        return {}
    record = json.loads(out.read_text())
    return {
        **{k: record[k] for k in ("top3", "precision", "num_params")},
        "status": "ok",
        "members": len(record["members"]),
        **_predictions(record),
    }


def score_ensemble(outcome: RunOutcome, k: int | str) -> dict[str, Any]:
    """Retrain an evoband run's ``k`` best feasible members and score their averaged outputs on
    test (``src/evaluation.py RUN --ensemble K``, with the run's seed); {} for a peer's run or
    one without a feasible member."""
    if outcome.method not in EVOBAND_METHODS or outcome.opt is None or not outcome.opt.feasible:
        return {}
    out_dir = outcome.run_dir / "ensemble"
    cmd = [
        sys.executable, str(REPO_ROOT / "src" / "evaluation.py"), str(outcome.run_dir),
        "--ensemble", str(k), "--seed", str(outcome.seed), "--out", str(out_dir),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    table = out_dir / "ensembles.csv"
    rows = list(csv.DictReader(table.open(newline=""))) if table.exists() else []
    if proc.returncode != 0 or not rows:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no ensemble"]
        print(
            f"note: the ensemble of {outcome.run_dir.name} failed (exit {proc.returncode}): {tail[0]}"
        )
        return {}
    row = rows[0]
    return {
        "top3": float(row["ensemble_top3"]),
        "precision": float(row["ensemble_precision"]),
        "members": row["members"],
        "num_params": int(row["num_params"]),
    }


_CELLS: dict[str, Callable[[Iterable[Any]], str]] = {
    "score": partial(mean_std, fmt="{:.3f}"),
    "count": partial(mean_std, fmt="{:.0f}"),
    "percent": partial(mean_std, fmt="{:.0f}", scale=100.0, unit="%"),
}

TABLE_COLUMNS: list[Column] = [
    (key, title, _CELLS[kind])
    for key, title, kind in [
        ("best_cv_top3_25", "CV top-3 @25%", "score"),
        ("best_cv_top3_50", "@50%", "score"),
        ("best_cv_top3_100", "@100%", "score"),
        ("n_evaluations", "evaluations", "count"),
        ("feasible_rate", "feasible", "percent"),
        ("epoch_folds", "epoch-folds", "count"),
        ("test_top3", "test top-3", "score"),
        ("test_precision", "test precision", "score"),
    ]
]
"""Columns of the Markdown table: CSV key, title and cell (scores with 3 decimals, counts
whole, rates in percent)."""
CLEAN_COLUMNS: list[Column] = [("clean_test_top3", "clean test top-3", _CELLS["score"])]
"""The table's column of the clean test images (when a run was scored on them)."""
ENSEMBLE_COLUMNS: list[Column] = [
    ("ensemble_top3", "ensemble test top-3", _CELLS["score"]),
    ("ensemble_precision", "ensemble precision", _CELLS["score"]),
]
"""The table's columns of the ensembles (``--ensemble``)."""
DISTILLED_COLUMNS: list[Column] = [
    ("distilled_top3", "distilled test top-3", _CELLS["score"]),
    ("distilled_precision", "distilled precision", _CELLS["score"]),
]
"""The table's columns of the optima retrained with distillation (``--distill``)."""


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Mean ± std over seeds per method, as a Markdown table (with the ensembles' columns when
    a run has an ensemble)."""
    ensembles = any(row.get("ensemble_members") for row in rows)
    distilled = any(row.get("distill_teachers") for row in rows)
    clean = any(row.get("clean_test_images") for row in rows)
    columns = (
        TABLE_COLUMNS + (CLEAN_COLUMNS if clean else []) + (ENSEMBLE_COLUMNS if ensembles else [])
    )
    return shared_table(rows, "method", columns + (DISTILLED_COLUMNS if distilled else []))


def evaluation_figures(outcomes: Sequence[RunOutcome], out_dir: Path) -> None:
    """``src/evaluation.py``'s figures and summary of the evoband runs (it reads their ledgers)."""
    runs = [str(o.run_dir) for o in outcomes if o.method in EVOBAND_METHODS]
    if not runs:
        return
    cmd = [sys.executable, str(REPO_ROOT / "src" / "evaluation.py"), *runs, "--out", str(out_dir)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        print(f"note: evaluation.py failed (exit {proc.returncode}): {tail[0]}")
    else:
        print(f"wrote evaluation.py's figures of the evoband runs to {out_dir}")


def plot_traces(trace: Sequence[Mapping[str, Any]], budget: float, path: Path) -> None:
    """Best feasible CV top-3 over search time: one step line per run, a colour per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    runs = dict.fromkeys((row["method"], row["seed"]) for row in trace)
    colours = {m: f"C{i}" for i, m in enumerate(dict.fromkeys(m for m, _ in runs))}
    for method, seed in runs:
        points = [
            (row["elapsed"], row["best_feasible_top3"])
            for row in trace
            if (row["method"], row["seed"]) == (method, seed)
            and not math.isnan(row["best_feasible_top3"])
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.step([*xs, max(budget, xs[-1])], [*ys, ys[-1]], where="post",
                    color=colours[method], label=method, alpha=0.8)  # fmt: skip
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    if unique:
        ax.legend(unique.values(), unique.keys())
    ax.axvline(budget, color="grey", lw=0.8, ls=":")
    ax.set_xlim(left=0)
    ax.set_xlabel("search time (s)")
    ax.set_ylabel("best feasible CV top-3")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    """The flags; those left at None take their ``--quick`` or full default."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add = p.add_argument
    add("--budget", type=float, help="seconds of search per run (default 900; quick 20)")
    add("--seeds", help="comma-separated seeds (default 0,1,2; quick 0)")
    add("--methods", help=f"comma-separated subset of {','.join(ALL_METHODS)} "
        "(default: all available; quick: ea_hb,dehb,optuna)")  # fmt: skip
    add("--space", default=SearchConfig.space, choices=sorted(SPACES),
        help=f"search space (default: AutoML.py's, {SearchConfig.space})")  # fmt: skip
    add("-s", "--max_params", type=float, default=2e7, help="at most this many parameters (2e7)")
    add("-p", "--min_precision", type=float, default=0.39, help="at least this CV precision (0.39)")
    add("--data_dir", help="data set (default: evoband's search order; quick: digits)")
    add("--pop_size", type=int, help="evoband's population (default: evoband's; quick 4)")
    add("--min_epochs", type=int, help="lowest budget of every method (evoband's; quick 1)")
    add("--max_epochs", type=int, help="highest budget of every method (evoband's; quick 8)")
    add("--eta", type=int, help="halving rate of every method (default: evoband's)")
    add("--eval_time_limit", type=float, help="seconds one evaluation may train, every method "
        "(default: evoband's own rule, budget / 10 for the peers; quick 4)")  # fmt: skip
    add("--out", type=Path, help="CSV of the runs (default: benchmarks/results/"
        "search_quality_<stamp>.csv); traces and figures go beside it")  # fmt: skip
    add("--runs_dir", type=Path, help="run directories (default: runs/search_quality_<stamp>)")
    add("--quick", action="store_true", help="about 2 minutes: 20 s per method, 1 seed, digits")
    add("--no_retrain", action="store_true", help="skip retraining the optima on the test split")
    add("--ensemble", metavar="K", type=word_or_count("half"), help="also score each evoband run's ensemble of its K best "
        "feasible members on test (an int or 'half'; src/evaluation.py --ensemble)")  # fmt: skip
    add("--distill", metavar="K", type=int, default=0, help="also retrain each optimum with K "
        "teachers (main.py -t --distill K) and score it on test")  # fmt: skip
    add("--recipe", default=CONTROL_RECIPE, choices=sorted(RECIPES), help="the no-search "
        f"controls' recipe (default {CONTROL_RECIPE}: the best CV among the recipes)")  # fmt: skip
    add("--no_figures", action="store_true", help="skip the figures")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and validate the flags; ``--quick`` changes the defaults of the flags not given."""
    p = build_parser()
    args = apply_defaults(p.parse_args(argv), QUICK_DEFAULTS, FULL_DEFAULTS)
    args.methods = list(dict.fromkeys(m.strip() for m in str(args.methods).split(",") if m.strip()))
    unknown = [m for m in args.methods if m not in ALL_METHODS]
    if unknown or not args.methods:
        p.error(f"unknown methods {unknown}; choose from {','.join(ALL_METHODS)}")
    if not args.seeds or args.budget <= 0 or args.eta < 2:
        p.error("give at least one seed, --budget > 0 and --eta >= 2")
    if args.ensemble is not None and args.no_retrain:
        p.error("--ensemble retrains on the test split: drop --no_retrain")
    if args.distill < 0 or (args.distill and args.no_retrain):
        p.error("--distill K needs K >= 0 and retraining (no --no_retrain)")
    if not 1 <= args.min_epochs < args.max_epochs:
        p.error("need 1 <= --min_epochs < --max_epochs (DEHB needs two fidelities)")
    return args


def available_methods(methods: Sequence[str]) -> list[str]:
    """The methods that can run; a clear line for each peer whose package is missing."""
    out = []
    for method in methods:
        try:
            if method in PEER_PACKAGES:
                require(method)
            out.append(method)
        except MissingPeer as exc:
            print(f"skipping {exc}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run every method x seed one after the other, then write the CSVs, table and figures."""
    args = parse_args(argv)
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out = (args.out or RESULTS_DIR / f"search_quality_{stamp}.csv").resolve()
    runs_dir = (args.runs_dir or REPO_ROOT / "runs" / f"search_quality_{stamp}").resolve()
    bench = Bench(
        args.budget, args.space, int(args.max_params), args.min_precision, args.data_dir,
        args.pop_size, args.min_epochs, args.max_epochs, args.eta, args.eval_time_limit,
    )  # fmt: skip
    methods = available_methods(args.methods)
    print(
        f"search quality: {', '.join(methods) or 'no method'} x seeds {args.seeds}, "
        f"{bench.budget:g} s each; space {bench.space}, data {bench.data_dir or 'default'}, "
        f"epochs {bench.min_epochs}..{bench.max_epochs}; runs in {runs_dir}",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    trace: list[dict[str, Any]] = []
    outcomes: list[RunOutcome] = []
    controls = Controls(bench, args.recipe) if set(methods) & set(CONTROL_METHODS) else None
    traces_path = out.with_name(out.stem + "_traces.csv")
    for seed in args.seeds:
        for method in methods:  # one at a time: the timings must not overlap
            run_dir = runs_dir / f"{method}_seed{seed}"
            if method in CONTROL_METHODS:
                assert controls is not None
                outcome = controls.run(method, seed, run_dir)
            else:
                outcome = run_one(method, seed, bench, run_dir)
            if not args.no_retrain and method not in CONTROL_METHODS:
                outcome.optimum_test = retrain(outcome, bench)
                predictor = score_predictor(outcome, bench) if method in EVOBAND_METHODS else {}
                outcome.test = predictor or outcome.optimum_test
                outcome.protocol = (
                    "delivered predictor (main.py -c ensemble.json -t)"
                    if predictor
                    else "optimum retrained on all training images (main.py -c opt_cfg.json -t)"
                )
                outcome.members = predictor.get("members") if predictor else 1
                if "probabilities" in outcome.test:
                    clean = clean_mask(bench)
                    outcome.clean_test = {
                        **scores(outcome.test["probabilities"], outcome.test["labels"], clean),
                        "images": int(clean.sum()),
                    }
            if args.ensemble is not None:
                outcome.ensemble = score_ensemble(outcome, args.ensemble)
            if args.distill:
                outcome.distilled = retrain(outcome, bench, args.distill)
            outcomes.append(outcome)
            rows.append(summary_row(outcome, bench))
            trace += trace_rows(outcome)
            print(log_line(rows[-1]), flush=True)
            write_csv(out, rows)  # after every run: a stopped benchmark keeps what it measured
            write_csv(traces_path, trace)
    if not rows:
        return 1
    print("\n" + markdown_table(rows) + "\n")
    print(f"wrote {out} and {traces_path}")
    if not args.no_figures:
        figure = out.with_name(out.stem + "_best_over_time.png")
        plot_traces(trace, bench.budget, figure)
        print(f"wrote {figure}")
        evaluation_figures(outcomes, out.with_name(out.stem + "_figures"))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
