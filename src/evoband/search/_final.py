"""The final predictor of a search: ensemble selection on out-of-fold predictions, then the
networks of the selected members, inside the search's time budget.

What a search delivers is the best predictor that meets the constraints and fits in the budget:
a single network or an ensemble of evaluated members (:mod:`evoband.search._ensemble_selection`),
its members' summed parameters within the parameter limit and its out-of-fold precision at least
the precision limit. A member's networks are either

- its fold models (``form="folds"``): the K networks the search trained and scored, kept on disk
  (:class:`evoband.search._steps.CheckpointRetention` keeps the best members' checkpoints);
  they are free, and count K times the member's parameters; or
- one retrain on all training images (``form="retrain"``) at the epochs and LR cycles it was
  selected at, with its seed and lineage (:func:`evoband.training.retrain`); it costs training
  time, and counts the member's parameters once.

Both forms are selected on the same out-of-fold predictions; the fold models are preferred
unless the retrained members give a better-ranked ensemble (they fit more members under a tight
parameter limit). The predictor's weights go to ``RUN/predictor/`` and its description to
``RUN/ensemble.json``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from ..core._files import write_atomic
from ..store._ledger import RunStore
from ..store._predictor_file import PREDICTOR_DIR, write_predictor_record
from ..training._checkpoints import checkpoint_path, file_sha256
from ..training._constraints import Constraints
from ..training._cost import CostModel
from ..training._data import channel_stats
from ..training._predictor import data_fingerprint
from ..training._retrain import retrain
from ..training._target import Task
from ._ensemble_selection import Candidate, Selection, select_ensemble
from ._member import Member
from ._settings import SearchSettings

logger = logging.getLogger(__name__)

POOL_SIZE = 40
"""Candidates the selection considers: the best single ones by out-of-fold ranking."""
WHOLE_TRAIN_SCALE = 1.5
"""A retrain on all training images costs this much more than one fold's training (3 folds:
1/(2/3) of the images)."""


@dataclass(frozen=True)
class Delivered:
    """The predictor a search delivered (what ``ensemble.json`` describes)."""

    selection: Selection
    form: str
    path: Path
    record: dict[str, Any]

    @property
    def n_members(self) -> int:
        return len(self.selection.weights)

    def describe(self) -> str:
        s = self.selection.scores
        members = ", ".join(f"{m}@{e}x{w:.2f}" for (m, e), w in self.selection.weights.items())
        return (
            f"{self.n_members} member{'s' if self.n_members != 1 else ''} ({self.form}: "
            f"{members}), {self.selection.num_params:,} parameters, out-of-fold top-3 "
            f"{s.top3:.4f}, precision {s.precision:.4f}"
        )


def fold_labels(task: Task) -> list[np.ndarray]:
    """Each fold's validation labels (the rows of its out-of-fold predictions)."""
    return [split.y_valid.cpu().numpy() for split in task.splits]


def candidates(
    store: RunStore,
    members: Sequence[Member],
    task: Task,
    constraints: Constraints,
    *,
    form: str,
    cost_model: CostModel | None = None,
    pool_size: int = POOL_SIZE,
) -> list[Candidate]:
    """The pool of one form: every (member, budget) scored ``ok`` with predictions on every fold
    (for ``folds``: its latest budget, whose fold models are still on disk and intact), the best
    ``pool_size`` by their own out-of-fold ranking."""
    n_folds = len(task.splits)
    labels = fold_labels(task)
    pool: list[tuple[tuple[int, float], Candidate]] = []
    for member in members:
        for epochs, result in member.results.items():
            if not result.ok:
                continue
            standing = member.result.epochs if member.result is not None else None
            if form == "folds" and (epochs != standing or not _fold_models(store, member, epochs)):
                continue
            folds = store.out_of_fold(member.member_id, epochs)
            if len(folds) != n_folds or any(
                len(folds[k]) != len(labels[k]) for k in range(n_folds)
            ):
                continue
            if form == "folds":
                params, seconds = member.num_params * n_folds, 0.0
            else:
                assert cost_model is not None
                params = member.num_params
                seconds = cost_model.seconds(member.config, epochs) * WHOLE_TRAIN_SCALE
            candidate = Candidate(
                (member.member_id, epochs), tuple(folds[k] for k in range(n_folds)), params, seconds
            )
            pool.append((constraints.rank_key(result), candidate))
    pool.sort(key=lambda item: item[0])
    return [c for _, c in pool[:pool_size]]


def _fold_models(store: RunStore, member: Member, epochs: int) -> bool:
    """Whether every fold model of ``member`` at ``epochs`` is on disk, as recorded."""
    if member.checkpoint_dir is None:
        return False
    recorded = store.fold_results(member.member_id, epochs)
    for k, fold in recorded.items():
        path = checkpoint_path(member.checkpoint_dir, k)
        if not fold.checkpoint_sha256 or not path.is_file():
            return False
        if file_sha256(path) != fold.checkpoint_sha256:
            return False
    return bool(recorded)


def select(
    store: RunStore,
    members: Sequence[Member],
    task: Task,
    constraints: Constraints,
    settings: SearchSettings,
    cost_model: CostModel,
    seconds: float,
) -> tuple[Selection, str] | None:
    """The selection of fold models, unless the retrained form ranks strictly higher by
    feasibility and out-of-fold top-3 (retrains cost time and are not the networks that were
    scored); None when no candidate fits."""
    labels = fold_labels(task)
    found: list[tuple[Selection, str]] = []
    for form in ("folds", "retrain"):
        pool = candidates(store, members, task, constraints, form=form, cost_model=cost_model)
        chosen = (
            select_ensemble(
                pool,
                labels,
                max_params=constraints.max_params.limit,
                min_precision=constraints.min_precision.limit,
                seconds=seconds,
                steps=settings.ensemble_steps,
                bags=settings.ensemble_bags,
                seed=settings.seed,
            )  # fmt: skip
            if pool
            else None
        )
        if chosen is not None:
            found.append((chosen, form))
    if not found:
        return None
    best = found[0]
    for entry in found[1:]:
        if (entry[0].feasible, entry[0].scores.top3) > (best[0].feasible, best[0].scores.top3):
            best = entry
    return best


def deliver(
    store: RunStore,
    members: Sequence[Member],
    task: Task,
    constraints: Constraints,
    settings: SearchSettings,
    cost_model: CostModel,
    *,
    seconds: float,
    lineage: Any = None,
) -> Delivered | None:
    """Select the predictor and write its networks and ``ensemble.json`` into the run directory.

    Args:
        seconds: the time left to produce it (retrained members must fit in it).
        lineage: ``member -> training record`` for members that inherited weights (their
            retrain follows the lineage); None: no member did.
    """
    found = select(store, members, task, constraints, settings, cost_model, seconds)
    if found is None:
        logger.warning("No evaluated member can make a predictor (none fits the limits).")
        return None
    selection, form = found
    by_id = {m.member_id: m for m in members}
    out_dir = store.run_dir / PREDICTOR_DIR
    out_dir.mkdir(exist_ok=True)
    whole = Task(task.data, whole_train=True, device=task.device, family=task.family)
    entries, written = [], set()
    for (member_id, epochs), weight in selection.weights.items():
        member = by_id[member_id]
        segments = [b for b in settings.lr_segments(member.bracket) if b <= epochs]
        files = (
            _copy_fold_models(store, member, out_dir, len(task.splits))
            if form == "folds"
            else _retrain_member(member, epochs, segments, whole, out_dir, lineage)
        )
        if not files:
            continue
        written.update(files)
        result = member.results[epochs]
        scores = store_oof_scores(store, member_id, epochs, task)
        entries.append(
            {
                "member_id": member_id,
                "config": dict(member.config),
                "epochs": epochs,
                "segments": segments,
                "weight": weight,
                "num_params": member.num_params,
                "networks": len(files),
                "seed": member.seed,
                "form": form,
                "cv": {"top3": result.top3, "precision": result.precision},
                "out_of_fold": scores,
                "weights": [str(Path(PREDICTOR_DIR) / f.name) for f in files],
                **({"lineage": lineage(member, epochs)["lineage"]} if form == "retrain"
                   and lineage is not None and lineage(member, epochs) else {}),
            }
        )  # fmt: skip
    if not entries:
        return None
    mean, std = channel_stats(task.data.train.images)
    record = {
        "num_params": sum(e["num_params"] * e["networks"] for e in entries),
        "feasible": selection.feasible,
        "out_of_fold": {
            "top3": selection.scores.top3,
            "precision": selection.scores.precision,
            "nll": selection.scores.nll,
        },
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
            "method": "greedy forward selection with replacement on out-of-fold predictions",
            "steps": settings.ensemble_steps,
            "bags": settings.ensemble_bags,
            "form": form,
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
    path = write_predictor_record(store.run_dir, record)
    for stale in out_dir.glob("*.pt"):  # weights of a predictor delivered before a resume
        if stale not in written:
            stale.unlink(missing_ok=True)
    return Delivered(selection, form, path, record)


def store_oof_scores(store: RunStore, member_id: int, epochs: int, task: Task) -> dict[str, float]:
    """A member's own out-of-fold scores at ``epochs`` (as the selection saw them)."""
    from ._ensemble_selection import fold_scores

    folds = store.out_of_fold(member_id, epochs)
    scores = fold_scores([folds[k].astype(np.float64) for k in sorted(folds)], fold_labels(task))
    return {"top3": scores.top3, "precision": scores.precision}


def _copy_fold_models(store: RunStore, member: Member, out_dir: Path, n_folds: int) -> list[Path]:
    """The model weights of ``member``'s fold checkpoints, written into ``out_dir``."""
    assert member.checkpoint_dir is not None
    files = []
    for k in range(n_folds):
        saved = torch.load(
            checkpoint_path(member.checkpoint_dir, k), map_location="cpu", weights_only=True
        )
        files.append(
            _save_weights(out_dir / f"member_{member.member_id:05d}_fold{k}.pt", saved["model"])
        )
    return files


def _retrain_member(
    member: Member,
    epochs: int,
    segments: Sequence[int],
    task: Task,
    out_dir: Path,
    lineage: Any,
) -> list[Path]:
    """One retrain of ``member`` on all training images, its weights written into ``out_dir``."""
    record = lineage(member, epochs) if lineage is not None else None
    start = time.monotonic()
    trained = retrain(
        member.config, epochs, task=task, seed=member.seed, segments=segments, record=record
    )
    if trained.model is None:
        logger.warning(
            "Retraining %s for the predictor ended %s; it is left out.",
            member.describe(),
            trained.result.status,
        )
        return []
    logger.info(
        "Retrained %s on all training images for the predictor in %.0f s.",
        member.describe(),
        time.monotonic() - start,
    )
    return [
        _save_weights(out_dir / f"member_{member.member_id:05d}.pt", trained.model.state_dict())
    ]


def _save_weights(path: Path, state: Mapping[str, torch.Tensor]) -> Path:
    """Write a network's weights (a state dict) atomically; return the path."""

    def write(fh: IO[bytes]) -> None:
        torch.save(dict(state), fh)

    write_atomic(path, write)
    return path


def reserve_seconds(
    best: Member | None, n_folds: int, constraints: Constraints, settings: SearchSettings,
    cost_model: CostModel,
) -> float:  # fmt: skip
    """Seconds a search keeps for its predictor: selecting and copying fold models takes a few
    seconds (``predictor_share`` of the budget, plus 2 s or 5% of a shorter one); when the best
    member's fold models do not fit the parameter limit, its retrain on all training images
    too; at most half the budget."""
    budget = settings.max_time
    base = settings.predictor_share * budget + min(2.0, 0.05 * budget)
    if best is None or best.result is None or math.isinf(budget):
        return base
    if not constraints.max_params.allows(best.num_params * n_folds):
        base += cost_model.seconds(best.config, best.result.epochs) * WHOLE_TRAIN_SCALE
    return min(base, 0.5 * budget)
