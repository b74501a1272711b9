"""Which guard keeps ensemble selection from overfitting the out-of-fold predictions?

Reads the out-of-fold predictions of recorded runs (their ledgers) and, many times, splits each
fold's validation images into two random halves: the selection sees one half, and is scored on
the other, which it never saw. Compared: the best single candidate, plain greedy selection with
replacement, and greedy selection bagged over bootstrap resamples (several bag counts). The
held-out top-3 says which selection predicts best; the gap between the seen and the held-out
half is each one's optimism. No test image is read.

    python benchmarks/ensemble_guard.py runs/search_quality_.../ea_hb_seed0 [more runs]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

try:
    import evoband  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from evoband.report import test_data_dir  # noqa: E402
from evoband.search import Candidate, fold_scores, select_ensemble  # noqa: E402
from evoband.store import RunStore, read_run  # noqa: E402
from evoband.training import Task, load_data  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import RESULTS_DIR, write_csv  # noqa: E402


def pool(run_dir: Path, size: int) -> tuple[list[Candidate], list[np.ndarray], float, float]:
    """A run's candidates (every ok member-budget with predictions; the best ``size`` by their
    own out-of-fold top-3), its folds' labels, and its limits."""
    run = read_run(run_dir)
    search = run.search
    data = load_data(test_data_dir(run))
    task = Task(data, cv_folds=int(search["cv_folds"]), split_seed=int(search["seed"]))
    labels = [s.y_valid.numpy() for s in task.splits]
    store = RunStore(run_dir, readonly=True)
    try:
        found = []
        for member_id, epochs, n in store.predicted():
            if n != len(labels):
                continue
            folds = store.out_of_fold(member_id, epochs)
            params = int(run.evaluations.query("member_id == @member_id")["num_params"].iloc[0])
            candidate = Candidate(
                (member_id, epochs),
                tuple(folds[k] for k in range(len(labels))),
                params * len(labels),
            )
            found.append(
                (
                    fold_scores([f.astype(np.float64) for f in candidate.folds], labels).top3,
                    candidate,
                )
            )
    finally:
        store.close()
    found.sort(key=lambda item: -item[0])
    return (
        [c for _, c in found[:size]],
        labels,
        float(search["max_params"]),
        float(search["min_precision"]),
    )


def halves(candidates, labels, rows):  # noqa: ANN001, ANN201
    """The candidates and labels restricted to ``rows`` of each fold."""
    cut = [
        Candidate(
            c.key, tuple(f[r] for f, r in zip(c.folds, rows, strict=True)), c.num_params, c.seconds
        )
        for c in candidates
    ]
    return cut, [y[r] for y, r in zip(labels, rows, strict=True)]


def held_out_scores(selection, candidates, labels) -> float:  # noqa: ANN001
    """Top-3 of a selection's weighted predictions on the given candidates' rows."""
    by_key = {c.key: c for c in candidates}
    folds = [
        sum(by_key[k].folds[i].astype(np.float64) * w for k, w in selection.weights.items())
        for i in range(len(labels))
    ]
    return fold_scores(folds, labels).top3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--pool", type=int, default=40)
    p.add_argument("--bags", default="0,10,20,40", help="bag counts to compare (0: plain greedy)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "ensemble_guard.csv")
    args = p.parse_args(argv)
    bag_counts = [int(b) for b in args.bags.split(",")]
    rows = []
    for run_dir in args.runs:
        candidates, labels, max_params, min_precision = pool(run_dir, args.pool)
        rng = np.random.default_rng(0)
        for repeat in range(args.repeats):
            order = [rng.permutation(len(y)) for y in labels]
            seen_rows = [o[: len(o) // 2] for o in order]
            held_rows = [o[len(o) // 2 :] for o in order]
            seen, seen_labels = halves(candidates, labels, seen_rows)
            held, held_labels = halves(candidates, labels, held_rows)
            for bags in [-1, *bag_counts]:
                chosen = select_ensemble(
                    seen, seen_labels, max_params=max_params, min_precision=min_precision,
                    steps=25 if bags >= 0 else 1, bags=max(bags, 0), seed=repeat,
                )  # fmt: skip
                assert chosen is not None
                rows.append(
                    {
                        "run": run_dir.name,
                        "repeat": repeat,
                        "selection": "single best" if bags < 0 else f"greedy, {bags} bags",
                        "members": len(chosen.weights),
                        "seen_top3": chosen.scores.top3,
                        "held_out_top3": held_out_scores(chosen, held, held_labels),
                    }
                )
    print(f"{len(args.runs)} run(s), {args.repeats} random halvings each, pools of {args.pool}")
    print("| selection | held-out top-3 | seen top-3 | optimism | members |")
    print("|---|---|---|---|---|")
    for name in dict.fromkeys(r["selection"] for r in rows):
        group = [r for r in rows if r["selection"] == name]
        held = statistics.mean(r["held_out_top3"] for r in group)
        seen = statistics.mean(r["seen_top3"] for r in group)
        members = statistics.mean(r["members"] for r in group)
        print(f"| {name} | {held:.4f} | {seen:.4f} | {seen - held:+.4f} | {members:.1f} |")
    write_csv(args.out, rows)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
