"""Steps of the evolutionary loop (:mod:`evoband.search._optimizer`) that need no optimizer state of their own:
successive halving over rungs, the logging and the exports of an evaluation, and where a child's
inherited weights come from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from ..store._ledger import RunStore
from ..training._constraints import Constraints
from ..training._parent_weights import ParentWeights
from ..training._results import Result, Status
from ._hyperband import promote
from ._member import Member, Origin

Sources = Sequence[tuple[int, int]]
"""A member's recorded inheritances: ``(parent_id, parent_epochs)``, the first parent first."""

logger = logging.getLogger("evoband.search._optimizer")  # the loop's log, wherever its steps live


def finished_ok(member: Member, budget: int) -> bool:
    """Whether ``member``'s training to ``budget`` epochs finished ``ok``."""
    return budget in member.results and member.results[budget].ok


def successive_halving(
    members: list[Member],
    sizes: Sequence[int],
    budgets: Sequence[int],
    s: int | None,
    evaluate_all: Callable[[list[Member], int, int | None, int | None], None],
    rank: Callable[[Sequence[Member], int | None], list[Member]],
    release: Callable[[Sequence[Member]], None],
) -> list[Member]:
    """Train ``members`` rung by rung, keeping the best ``sizes[i]`` for rung ``i``; the members
    of the last rung (``release`` gets those that are not promoted)."""
    alive = members
    for rung, (n, budget) in enumerate(zip(sizes, budgets, strict=True)):
        alive = alive[:n]
        evaluate_all(alive, budget, s, rung)
        ranked = rank(alive, budget)
        next_n = sizes[rung + 1] if rung + 1 < len(sizes) else 0
        promoted, released = promote(ranked, partial(finished_ok, budget=budget), next_n)
        release(released)
        alive = promoted if next_n else ranked
    return alive


def log_evaluation(member: Member, result: Result, constraints: Constraints) -> None:
    """One line per evaluation; a second with the message of one that is not ok (errors are
    logged by :class:`evoband.training._faults.ErrorStreak`, with their traceback)."""
    logger.info(
        "%s, %d epochs: top3 %.3f, precision %.3f, %s params, %.1f s [%s]",
        member.describe(),
        result.epochs,
        result.top3,
        result.precision,
        f"{result.num_params:,}",
        result.seconds,
        constraints.verdict(result),
    )
    if not result.ok and result.status != Status.ERROR:
        logger.warning("%s, %d epochs: %s", member.describe(), result.epochs, result.message)


def export_best(
    store: RunStore,
    best: Member | None,
    segments: Sequence[int],
    seed: int,
    members: Sequence[Member] = (),
) -> None:
    """Rewrite the run's exports with ``best`` as the optimum (with its training record; for an
    optimum that inherited weights, with its lineage from ``members``, see :mod:`evoband.training._lineage`)."""
    if best is None or best.result is None:
        store.export(None)
        return
    training: dict[str, Any] = {
        "epochs": best.result.epochs,
        "segments": list(segments),
        "seed": seed,
        "member_id": best.member_id,
    }
    inherited = store.inheritances()
    if best.member_id in inherited:
        sources = {m: entry["sources"] for m, entry in inherited.items()}
        training["lineage"] = lineage_record(best, best.result.epochs, members, sources)
    store.export(best.config, training)


def parent_weights(
    member: Member, members: Sequence[Member], store: RunStore, inherit_weights: bool
) -> ParentWeights | None:
    """Where ``member``'s folds inherit their initial weights from: its first parent's
    checkpoints (and, for a recombined child, the other parent's for the layers it gave), with
    inheritance on and for mutated or recombined children only."""
    if not inherit_weights or member.origin not in (Origin.MUTATED, Origin.RECOMBINED):
        return None
    sources = [
        ParentWeights(
            parent.member_id,
            dict(parent.config),
            parent.checkpoint_dir,
            store.latest_checkpoint_hashes(parent.member_id),
            parent.epochs,
        )
        for parent in (members[i] for i in member.parents)
        if parent.checkpoint_dir is not None
    ]
    if not sources or sources[0].member_id != member.parents[0]:
        return None
    return replace(sources[0], donors=tuple(sources[1:]))


class CheckpointRetention:
    """Deletes the checkpoints of members that will not be trained further.

    With weight inheritance (``keep_for_children``) a released member keeps them while it is in
    the population (its children inherit from them); :meth:`prune` deletes them once it is not.
    """

    def __init__(self, store: RunStore, *, keep_for_children: bool) -> None:
        self.store = store
        self.keep_for_children = keep_for_children
        self.retired: set[int] = set()  # released members whose checkpoints wait for pruning

    def release(self, members: Sequence[Member], *, keep: bool = True) -> None:
        """``members`` will not be trained further (``keep=False``: delete their checkpoints
        now, even when children might inherit from them)."""
        for member in members:
            if keep and self.keep_for_children:
                self.retired.add(member.member_id)
            else:
                self.store.delete_checkpoints(member.member_id)

    def prune(self, population: Sequence[Member]) -> None:
        """Delete the kept checkpoints of released members that left ``population``."""
        alive = {m.member_id for m in population}
        for member_id in sorted(self.retired - alive):
            self.store.delete_checkpoints(member_id)
            self.retired.discard(member_id)


def lineage_record(
    member: Member, epochs: int, members: Sequence[Member], sources: Mapping[int, Sources]
) -> list[dict[str, Any]]:
    """The lineage of ``member`` scored at ``epochs``: ancestors first, then the member; just the
    member when it inherited nothing.

    Args:
        member: the member.
        epochs: the budget it was selected at.
        members: every member of the run, indexed by id.
        sources: the recorded inheritances, ``{member_id: [(parent_id, parent_epochs), ...]}``.
    """
    nodes: dict[tuple[int, int], dict[str, Any]] = {}

    def visit(member_id: int, at: int) -> None:
        if (member_id, at) in nodes:
            return
        own = [(int(p), int(e)) for p, e in sources.get(member_id, ())]
        for parent_id, parent_epochs in own:
            visit(parent_id, parent_epochs)
        nodes[(member_id, at)] = {
            "member_id": member_id,
            "config": dict(members[member_id].config),
            "epochs": at,
            "sources": [list(s) for s in own],
        }

    visit(member.member_id, epochs)
    return list(nodes.values())
