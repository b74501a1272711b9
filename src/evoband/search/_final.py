"""The final predictor of a search: ensemble selection on out-of-fold predictions, then the
selected members retrained on all training images, inside the search's time budget.

What a search delivers is the best predictor that meets the constraints and fits in the budget:
a single network or an ensemble of evaluated members (:mod:`evoband.search._ensemble_selection`),
its networks' summed parameters within the parameter limit and its out-of-fold precision at
least the precision limit.

Each selected member is retrained on all training images (the one retrain function,
:func:`evoband.training.retrain`) at the epochs and LR cycles it was selected at, with its seed
and lineage: on a split of the training images, one such retrain predicted better than the
average of the member's K fold models (``benchmarks/final_members.py``). Time left after one
network per member buys more seeds of the members, in proportion to their weights (a member's
networks are averaged); so does the parameter limit. Retrains run on one process per worker and
stop at the end of ``max_time``; what finished is the predictor. Its weights go to
``RUN/predictor/`` and its description to ``RUN/ensemble.json``.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from ..core._files import write_atomic
from ..store._ledger import RunStore
from ..store._predictor_file import PREDICTOR_DIR, write_predictor_record
from ..training._constraints import Constraints
from ..training._cost import CostModel
from ..training._data import DataSource, channel_stats
from ..training._loop import derive_seed
from ..training._predictor import data_fingerprint
from ..training._retrain import retrain
from ..training._target import Task
from ._ensemble_selection import Candidate, Selection, fold_scores, select_ensemble
from ._member import Member
from ._settings import SearchSettings

logger = logging.getLogger(__name__)

POOL_SIZE = 40
"""Candidates the selection considers at most: the best single ones by their CV ranking."""
POOL_MARGIN = 0.02
"""A candidate's own out-of-fold top-3 must be within this of the best candidate's: a weak
member may raise the out-of-fold score of an ensemble of single fold models (it smooths their
predictions), but the predictor averages seeds of retrained members, where that gain is gone."""
WHOLE_TRAIN_SCALE = 1.5
"""A retrain on all training images costs this much more than one fold's training (3 folds:
1/(2/3) of the images)."""
SEED_STREAM = 104729
"""Network ``j > 0`` of a member at ``epochs`` retrains with seed ``derive_seed(member seed,
SEED_STREAM, epochs, j)``."""

Lineage = Callable[[Member, int], "dict[str, Any] | None"]
"""``(member, epochs) -> its training record`` (lineage and LR cycles) when it inherited weights."""


@dataclass(frozen=True)
class Delivered:
    """The predictor a search delivered (what ``ensemble.json`` describes)."""

    selection: Selection
    path: Path
    record: dict[str, Any]

    @property
    def n_members(self) -> int:
        return len(self.record["members"])

    @property
    def n_networks(self) -> int:
        return sum(m["networks"] for m in self.record["members"])

    def describe(self) -> str:
        oof = self.record["out_of_fold"]
        members = ", ".join(
            f"{m['member_id']}@{m['epochs']} x{m['networks']} w{m['weight']:.2f}"
            for m in self.record["members"]
        )
        return (
            f"{self.n_members} member(s), {self.n_networks} network(s) ({members}), "
            f"{self.record['num_params']:,} parameters, out-of-fold top-3 {oof['top3']:.4f}, "
            f"precision {oof['precision']:.4f}"
        )


def fold_labels(task: Task) -> list[np.ndarray]:
    """Each fold's validation labels (the rows of its out-of-fold predictions)."""
    return [split.y_valid.cpu().numpy() for split in task.splits]


def retrain_seconds(cost_model: CostModel, config: Mapping[str, Any], epochs: int) -> float:
    """Predicted seconds of one retrain of ``config`` on all training images."""
    return cost_model.seconds(config, epochs) * WHOLE_TRAIN_SCALE


def candidates(
    store: RunStore,
    members: Sequence[Member],
    task: Task,
    constraints: Constraints,
    cost_model: CostModel,
    pool_size: int = POOL_SIZE,
) -> list[Candidate]:
    """Every member scored ``ok`` with predictions on every fold, at the budget it stands at,
    whose own out-of-fold top-3 is within :data:`POOL_MARGIN` of the best's; the best
    ``pool_size`` by their CV ranking. Each costs one retrain and one network's parameters."""
    n_folds = len(task.splits)
    labels = fold_labels(task)
    pool: list[tuple[tuple[int, float], float, Candidate]] = []
    for member in members:
        result = member.result
        if result is None or not result.ok:
            continue
        folds = store.out_of_fold(member.member_id, result.epochs)
        if len(folds) != n_folds or any(len(folds[k]) != len(labels[k]) for k in folds):
            continue
        candidate = Candidate(
            (member.member_id, result.epochs),
            tuple(folds[k] for k in range(n_folds)),
            member.num_params,
            retrain_seconds(cost_model, member.config, result.epochs),
        )
        own = fold_scores([f.astype(np.float64) for f in candidate.folds], labels).top3
        pool.append((constraints.rank_key(result), own, candidate))
    if not pool:
        return []
    best = max(own for _, own, _ in pool)
    pool = [entry for entry in pool if entry[1] >= best - POOL_MARGIN]
    pool.sort(key=lambda item: item[0])
    return [c for _, _, c in pool[:pool_size]]


@dataclass
class Plan:
    """The networks to retrain: per selected member, how many seeds, in the order to train."""

    counts: dict[tuple[int, int], int] = field(default_factory=dict)
    order: list[tuple[tuple[int, int], int]] = field(default_factory=list)
    """``(member key, network index)`` in training order: one of each member first."""


def plan_networks(
    selection: Selection,
    params: Mapping[tuple[int, int], int],
    seconds: Mapping[tuple[int, int], float],
    *,
    max_params: float,
    time_budget: float,
    max_networks: int,
) -> Plan:
    """One network per selected member, then further seeds while the parameters and the
    (worker-)time allow, each to the member whose weight is least served by its networks so far
    (the highest ``weight / (networks + 1)``)."""
    plan = Plan()
    used_params = used_time = 0.0
    for key in selection.weights:
        plan.counts[key] = 1
        plan.order.append((key, 0))
        used_params += params[key]
        used_time += seconds[key]
    while len(plan.order) < max_networks:
        fits = [
            k
            for k in selection.weights
            if used_params + params[k] <= max_params and used_time + seconds[k] <= time_budget
        ]
        if not fits:
            break
        key = max(fits, key=lambda k: selection.weights[k] / (plan.counts[k] + 1))
        plan.order.append((key, plan.counts[key]))
        plan.counts[key] += 1
        used_params += params[key]
        used_time += seconds[key]
    return plan


def network_seed(member: Member, epochs: int, index: int) -> int:
    """The seed of network ``index`` of a member at ``epochs`` (its own seed for the first)."""
    return member.seed if index == 0 else derive_seed(member.seed, SEED_STREAM, epochs, index)


def deliver(
    store: RunStore,
    members: Sequence[Member],
    task: Task,
    constraints: Constraints,
    settings: SearchSettings,
    cost_model: CostModel,
    *,
    deadline: float,
    workers: int,
    lineage: Lineage | None = None,
) -> Delivered | None:
    """Select the predictor, retrain its networks until ``deadline`` (``time.monotonic()``) and
    write them and ``ensemble.json`` into the run directory.

    Args:
        deadline: no retrain runs beyond it (one that would is stopped and left out).
        workers: retrains run at once (processes, on a CPU; one at a time on another device).
        lineage: the training records of members that inherited weights.
    """
    left = deadline - time.monotonic()
    parallel = max(1, workers if task.device.type == "cpu" else 1)
    pool = candidates(store, members, task, constraints, cost_model)
    selection = select_ensemble(
        pool, fold_labels(task), max_params=constraints.max_params.limit,
        min_precision=constraints.min_precision.limit, seconds=max(left, 0.0) * parallel,
        steps=settings.ensemble_steps, bags=settings.ensemble_bags, seed=settings.seed,
    ) if pool else None  # fmt: skip
    if selection is None:
        logger.warning("No evaluated member fits the limits and the time left: no predictor.")
        return None
    by_id = {m.member_id: m for m in members}
    params = {c.key: c.num_params for c in pool}
    seconds = {c.key: c.seconds for c in pool}
    plan = plan_networks(
        selection, params, seconds, max_params=constraints.max_params.limit,
        time_budget=max(left, 0.0) * parallel, max_networks=settings.ensemble_networks,
    )  # fmt: skip
    jobs = []
    for key, index in plan.order:
        member = by_id[key[0]]
        segments = [b for b in settings.lr_segments(member.bracket) if b <= key[1]]
        record = lineage(member, key[1]) if lineage is not None else None
        jobs.append(
            RetrainJob(
                key,
                index,
                dict(member.config),
                key[1],
                network_seed(member, key[1], index),
                segments,
                record,
                seconds[key],
            )  # fmt: skip
        )
    out_dir = store.run_dir / PREDICTOR_DIR
    out_dir.mkdir(exist_ok=True)
    trained = run_retrains(jobs, task.data, task, deadline, parallel, out_dir)
    if not trained:
        logger.warning("No network of the predictor finished training in time: no predictor.")
        return None
    record = predictor_record(store, by_id, task, constraints, settings, selection, jobs, trained)
    path = write_predictor_record(store.run_dir, record)
    keep = {out_dir / Path(f).name for m in record["members"] for f in m["weights"]}
    for stale in out_dir.glob("*.pt"):  # weights of a predictor delivered before a resume
        if stale not in keep:
            stale.unlink(missing_ok=True)
    return Delivered(selection, path, record)


@dataclass(frozen=True)
class RetrainJob:
    """One network of the predictor to train."""

    key: tuple[int, int]
    index: int
    config: dict[str, Any]
    epochs: int
    seed: int
    segments: list[int]
    record: dict[str, Any] | None
    seconds: float

    @property
    def filename(self) -> str:
        return f"member_{self.key[0]:05d}_{self.index}.pt"


def run_retrains(
    jobs: Sequence[RetrainJob],
    data: DataSource,
    task: Task,
    deadline: float,
    parallel: int,
    out_dir: Path,
) -> dict[tuple[tuple[int, int], int], Path]:
    """Train ``jobs`` in order, ``parallel`` at a time, each started only when it is predicted to
    end before ``deadline`` and stopped there; the weight files of those that finished. One job
    runs in this process (starting a worker process costs seconds of imports, for nothing)."""
    done: dict[tuple[tuple[int, int], int], Path] = {}
    if parallel <= 1 or len(jobs) == 1:
        whole = Task(data, whole_train=True, device=task.device, family=task.family)
        for job in jobs:
            if time.monotonic() + job.seconds > deadline:
                continue
            state = _retrain_one(whole, job, deadline)
            if state is not None:
                done[(job.key, job.index)] = _save(out_dir / job.filename, state)
        return done
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        parallel, context, _start_worker, (data, task.family, str(task.device))
    ) as workers:
        queue = list(jobs)
        running: dict[Future[Any], RetrainJob] = {}
        while queue or running:
            while queue and len(running) < parallel:
                job = queue.pop(0)
                if time.monotonic() + job.seconds <= deadline:
                    running[workers.submit(_retrain_in_worker, job, deadline)] = job
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                state = future.result()
                if state is not None:
                    done[(job.key, job.index)] = _save(out_dir / job.filename, state)
    return done


_WORKER_TASK: Task | None = None


def _start_worker(data: DataSource, family: Any, device: str) -> None:
    """A retrain worker's whole-training-split task, made once."""
    global _WORKER_TASK
    torch.set_num_threads(1)
    _WORKER_TASK = Task(data, whole_train=True, device=device, family=family)


def _retrain_in_worker(job: RetrainJob, deadline: float) -> dict[str, torch.Tensor] | None:
    assert _WORKER_TASK is not None
    return _retrain_one(_WORKER_TASK, job, deadline)


def _retrain_one(task: Task, job: RetrainJob, deadline: float) -> dict[str, torch.Tensor] | None:
    """The trained weights of one network of the predictor (None when it did not finish)."""
    trained = retrain(
        job.config, job.epochs, task=task, seed=job.seed, segments=job.segments,
        record=job.record, deadline=deadline,
    )  # fmt: skip
    if trained.model is None:
        return None
    return {k: v.detach().cpu() for k, v in trained.model.state_dict().items()}


def _save(path: Path, state: Mapping[str, torch.Tensor]) -> Path:
    """Write a network's weights (a state dict) atomically; return the path."""

    def write(fh: IO[bytes]) -> None:
        torch.save(dict(state), fh)

    write_atomic(path, write)
    return path


def predictor_record(
    store: RunStore,
    by_id: Mapping[int, Member],
    task: Task,
    constraints: Constraints,
    settings: SearchSettings,
    selection: Selection,
    jobs: Sequence[RetrainJob],
    trained: Mapping[tuple[tuple[int, int], int], Path],
) -> dict[str, Any]:
    """The content of ``ensemble.json`` for the networks that finished (members none of whose
    networks finished are left out, the others' weights renormalised)."""
    labels = fold_labels(task)
    entries = []
    for key, weight in selection.weights.items():
        mine = [j for j in jobs if j.key == key and (key, j.index) in trained]
        if not mine:
            continue
        member, result = by_id[key[0]], by_id[key[0]].results[key[1]]
        recorded = store.out_of_fold(*key)
        own = fold_scores([recorded[k].astype(np.float64) for k in sorted(recorded)], labels)
        entries.append(
            {
                "member_id": key[0],
                "config": dict(member.config),
                "epochs": key[1],
                "segments": mine[0].segments,
                "weight": weight,
                "num_params": member.num_params,
                "networks": len(mine),
                "seed": member.seed,
                "seeds": [j.seed for j in mine],
                "form": "retrain",
                "cv": {"top3": result.top3, "precision": result.precision},
                "out_of_fold": {"top3": own.top3, "precision": own.precision},
                "weights": [str(Path(PREDICTOR_DIR) / trained[(key, j.index)].name) for j in mine],
                **({"lineage": mine[0].record["lineage"]} if mine[0].record else {}),
            }
        )
    total = sum(e["weight"] for e in entries)
    for e in entries:
        e["weight"] = e["weight"] / total
    averaged = [
        np.sum(
            [
                e["weight"] * store.out_of_fold(e["member_id"], e["epochs"])[k].astype(np.float64)
                for e in entries
            ],
            axis=0,
        )  # fmt: skip
        for k in range(len(labels))
    ]
    scores = fold_scores(averaged, labels)
    mean, std = channel_stats(task.data.train.images)
    return {
        "num_params": sum(e["num_params"] * e["networks"] for e in entries),
        "feasible": scores.precision >= constraints.min_precision.limit,
        "out_of_fold": {"top3": scores.top3, "precision": scores.precision, "nll": scores.nll},
        "single_best": None
        if selection.single is None
        else {
            "member_id": selection.single[0][0],
            "epochs": selection.single[0][1],
            "top3": selection.single[1].top3,
            "precision": selection.single[1].precision,
        },
        "constraints": {
            "max_params": constraints.max_params.limit,
            "min_precision": constraints.min_precision.limit,
        },
        "selection": {
            "method": "greedy forward selection with replacement on out-of-fold predictions, "
            "bagged over bootstrap resamples of the training images",
            "steps": settings.ensemble_steps,
            "bags": settings.ensemble_bags,
        },
        "data": {
            "name": task.data.name,
            "location": task.data.location,
            "fingerprint": data_fingerprint(task.data),
            "classes": list(task.data.classes),
            "input_shape": list(task.input_shape),
            "n_train": len(task.data.train),
            "mean": [float(v) for v in mean.flatten()],
            "std": [float(v) for v in std.flatten()],
        },
        "network_family": task.family.name,
        "seed": settings.seed,
        "members": entries,
    }


def reserve_seconds(
    settings: SearchSettings,
    best: Member | None,
    cost_model: CostModel,
    workers: int,
    max_params: int | None = None,
) -> float:
    """Seconds of ``max_time`` a search keeps for its predictor: the retrains of its best member
    so far that the predictor can hold (``ensemble_networks``, fewer when ``max_params`` allows
    fewer copies of it), on ``workers`` processes, at most ``predictor_share`` of ``max_time``."""
    if not settings.predictor or math.isinf(settings.max_time):
        return 0.0
    most = settings.predictor_share * settings.max_time
    if best is None or best.result is None or not best.result.ok:
        return most
    one = retrain_seconds(cost_model, best.config, best.result.epochs)
    networks = settings.ensemble_networks
    if max_params is not None and best.num_params > 0:
        networks = max(1, min(networks, max_params // best.num_params))
    rounds = math.ceil(networks / max(1, min(workers, networks)))
    return min(most, one * rounds)
