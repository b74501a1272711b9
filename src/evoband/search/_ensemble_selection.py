"""Ensemble selection on out-of-fold predictions (Caruana et al., 2004), under the constraints.

Every evaluation records its class probabilities on each fold's validation images, so K-fold CV
gives every training image exactly one prediction per member and budget. An ensemble's
prediction on fold k averages its members' fold-k predictions, weighted by how often each was
picked; its scores keep the one definition of the metrics: top-3 over all training images, and
precision per fold (macro), then the mean over folds.

:func:`select_ensemble` grows an ensemble greedily, with replacement: each step adds the
candidate that most improves the ensemble's out-of-fold top-3 (ties broken by the lower
negative log-likelihood), among those that keep the ensemble within the parameter limit (the
summed parameters of its distinct members, all their copies counted) and within the time left
to produce its members. It returns the best ensemble met along the way, which may be a single
network: when no ensemble beats the best single candidate, that candidate is the selection.

Selection on the same predictions it is scored on overfits them. The guard is bagging: the
greedy selection runs on ``bags`` bootstrap resamples of the training images and the ensemble
keeps each candidate's share of the picks over all bags (so a member picked by one lucky
resample weighs little).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..training._metrics import macro_precision_np

MIN_SHARE = 0.05
"""A bagged selection drops the members with a smaller share of the picks (a member one lucky
resample picked once adds its parameters and cost for almost nothing)."""

Key = tuple[int, int]
"""A candidate: ``(member_id, epochs)``."""


@dataclass(frozen=True)
class Candidate:
    """An evaluated member at one budget, as the selection sees it.

    Attributes:
        key: ``(member_id, epochs)``.
        folds: its class probabilities on each fold's validation images, in fold order.
        num_params: the parameters it adds to the predictor when picked (all of its copies:
            towers, and the fold models when the predictor keeps them).
        seconds: the time it takes to produce it for the predictor (0 when it exists already).
    """

    key: Key
    folds: tuple[np.ndarray, ...]
    num_params: int
    seconds: float = 0.0


@dataclass(frozen=True)
class Scores:
    """An ensemble's out-of-fold scores."""

    top3: float
    precision: float
    """The mean over folds of each fold's macro precision."""
    nll: float
    """The negative log-likelihood of the labels (over all training images)."""

    def feasible(self, min_precision: float) -> bool:
        return self.precision >= min_precision


@dataclass(frozen=True)
class Selection:
    """An ensemble chosen by :func:`select_ensemble`.

    Attributes:
        weights: each chosen candidate's weight (they sum to 1), best represented first.
        scores: its out-of-fold scores on all training images.
        num_params: the summed parameters of its distinct candidates.
        seconds: the summed time to produce them.
        feasible: whether it meets the precision limit (it is within the parameter limit and
            the time by construction).
        single: the best single candidate's key and scores, for comparison.
    """

    weights: dict[Key, float]
    scores: Scores
    num_params: int
    seconds: float
    feasible: bool
    single: tuple[Key, Scores] | None = None
    trace: list[float] = field(default_factory=list)
    """The out-of-fold top-3 after each greedy step of the selection on all images."""

    @property
    def keys(self) -> list[Key]:
        return list(self.weights)


def fold_scores(probabilities: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> Scores:
    """Scores of per-fold probabilities against per-fold labels (the metrics' one definition)."""
    hits, nll, count, precisions = 0.0, 0.0, 0, []
    for p, y in zip(probabilities, labels, strict=True):
        hits += _top3_hits(p, y).sum()
        nll += -np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).sum()
        count += len(y)
        precisions.append(macro_precision_np(p.argmax(axis=1), y, p.shape[1]))
    return Scores(hits / count, float(np.mean(precisions)), nll / count)


def _top3_hits(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    k = min(3, p.shape[1])
    top = np.argpartition(-p, k - 1, axis=1)[:, :k]
    return (top == y[:, None]).any(axis=1)


def _better(a: Scores, b: Scores | None, min_precision: float) -> bool:
    """Whether ``a`` ranks above ``b``: feasible first; among feasible ones the higher top-3,
    then the lower NLL; among infeasible ones the higher precision."""
    if b is None:
        return True
    fa, fb = a.feasible(min_precision), b.feasible(min_precision)
    if fa != fb:
        return fa
    if not fa:
        return a.precision > b.precision
    if a.top3 != b.top3:
        return a.top3 > b.top3
    return a.nll < b.nll


def _greedy(
    candidates: Sequence[Candidate],
    labels: Sequence[np.ndarray],
    rows: Sequence[np.ndarray],
    *,
    max_params: float,
    min_precision: float,
    seconds: float,
    steps: int,
) -> tuple[list[int], list[Scores]]:
    """Greedy forward selection with replacement on the images ``rows`` (per fold) selects;
    the picks (candidate indices, in order) of the best prefix, and the scores after each
    step."""
    folds = [[c.folds[k][r].astype(np.float64) for k, r in enumerate(rows)] for c in candidates]
    ys = [y[r] for y, r in zip(labels, rows, strict=True)]
    total = [np.zeros_like(f) for f in folds[0]]
    picks: list[int] = []
    chosen: set[int] = set()
    trace: list[Scores] = []
    best_prefix, best_scores = 0, None
    for _ in range(steps):
        step_best, step_scores = -1, None
        used_params = sum(candidates[i].num_params for i in chosen)
        used_seconds = sum(candidates[i].seconds for i in chosen)
        n = len(picks) + 1
        for i, c in enumerate(candidates):
            if i not in chosen and (
                used_params + c.num_params > max_params or used_seconds + c.seconds > seconds
            ):
                continue
            scores = fold_scores([(t + f) / n for t, f in zip(total, folds[i], strict=True)], ys)
            if _better(scores, step_scores, min_precision):
                step_best, step_scores = i, scores
        if step_best < 0 or step_scores is None:
            break
        picks.append(step_best)
        chosen.add(step_best)
        total = [t + f for t, f in zip(total, folds[step_best], strict=True)]
        trace.append(step_scores)
        if _better(step_scores, best_scores, min_precision):
            best_prefix, best_scores = len(picks), step_scores
    return picks[:best_prefix], trace


def select_ensemble(
    candidates: Sequence[Candidate],
    labels: Sequence[np.ndarray],
    *,
    max_params: float,
    min_precision: float,
    seconds: float = math.inf,
    steps: int = 25,
    bags: int = 0,
    seed: int = 0,
) -> Selection | None:
    """The ensemble of ``candidates`` with the best out-of-fold ranking under the constraints.

    Args:
        candidates: the pool (each with predictions on every fold).
        labels: each fold's validation labels, in the order of the candidates' predictions.
        max_params: the summed parameters of the distinct members may not exceed this.
        min_precision: the fold-mean precision an ensemble must reach to be feasible.
        seconds: the summed time to produce the distinct members may not exceed this.
        steps: greedy steps (picks, with replacement) at most.
        bags: 0: one greedy selection on all images; else the picks of this many selections on
            bootstrap resamples of the images (per fold), pooled.
        seed: fixes the resamples.

    Returns:
        The selection, or None when no candidate fits the parameter limit and the time.
    """
    labels = [np.asarray(y, dtype=np.int64) for y in labels]
    pool = [c for c in candidates if c.num_params <= max_params and c.seconds <= seconds]
    if not pool:
        return None
    everything = [np.arange(len(y)) for y in labels]
    singles = [(c, fold_scores([f.astype(np.float64) for f in c.folds], labels)) for c in pool]
    best_single = singles[0]
    for entry in singles[1:]:
        if _better(entry[1], best_single[1], min_precision):
            best_single = entry
    limits = {"max_params": max_params, "min_precision": min_precision, "seconds": seconds}
    picks, trace = _greedy(pool, labels, everything, steps=steps, **limits)
    counts: dict[int, float] = {}
    if bags:
        rng = np.random.default_rng(seed)
        for _ in range(bags):
            rows = [rng.integers(len(y), size=len(y)) for y in labels]
            bag, _ = _greedy(pool, labels, rows, steps=steps, **limits)
            for i in bag:
                counts[i] = counts.get(i, 0.0) + 1.0 / len(bag)
        total = sum(counts.values())
        counts = {i: c for i, c in counts.items() if c >= MIN_SHARE * total}
        counts = _within_limits(counts, pool, max_params, seconds)
    else:
        for i in picks:
            counts[i] = counts.get(i, 0.0) + 1.0
    if not counts:
        return None
    selection = _selection(pool, labels, counts, min_precision, best_single, trace)
    single = _selection(
        pool, labels, {pool.index(best_single[0]): 1.0}, min_precision, best_single, trace
    )
    return selection if _better(selection.scores, single.scores, min_precision) else single


def _within_limits(
    counts: Mapping[int, float], pool: Sequence[Candidate], max_params: float, seconds: float
) -> dict[int, float]:
    """The pooled picks of the bags, most picked first, keeping candidates while their summed
    parameters and time stay within the limits (bags pick different members)."""
    kept: dict[int, float] = {}
    params, time_used = 0, 0.0
    for i, share in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        c = pool[i]
        if params + c.num_params <= max_params and time_used + c.seconds <= seconds:
            kept[i] = share
            params, time_used = params + c.num_params, time_used + c.seconds
    return kept


def _selection(
    pool: Sequence[Candidate],
    labels: Sequence[np.ndarray],
    counts: Mapping[int, float],
    min_precision: float,
    best_single: tuple[Candidate, Scores],
    trace: Sequence[Scores],
) -> Selection:
    total = sum(counts.values())
    order = sorted(counts, key=lambda i: (-counts[i], i))
    weights = {pool[i].key: counts[i] / total for i in order}
    probabilities = [
        np.sum([pool[i].folds[k].astype(np.float64) * (counts[i] / total) for i in order], axis=0)
        for k in range(len(labels))
    ]
    scores = fold_scores(probabilities, labels)
    return Selection(
        weights=weights,
        scores=scores,
        num_params=sum(pool[i].num_params for i in order),
        seconds=sum(pool[i].seconds for i in order),
        feasible=scores.feasible(min_precision),
        single=(best_single[0].key, best_single[1]),
        trace=[s.top3 for s in trace],
    )
