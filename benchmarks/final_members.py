"""Fold models or a retrain? How a member of the final predictor is best made, on a dev split.

A search trains every member on K folds; the final predictor can keep those K fold models of a
selected member (free: already trained, each on (K-1)/K of the images) or retrain it once on
all training images (costs a training). This measures which predicts better, without the test
split: the training images are split into a part A and a stratified dev part (25%); on A, the
configuration's K fold models are trained as a search trains them and, separately, one network
on all of A; both are scored on the dev images (top-3, precision), seed by seed, paired.

    python benchmarks/final_members.py --seeds 0,1,2,3,4           # bn-cnn-pair, 32 epochs
    python benchmarks/final_members.py --recipe bn-cnn --quick      # a minute, 2 seeds, 8 epochs
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

try:
    import evoband  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from sklearn.model_selection import train_test_split  # noqa: E402

from evoband.space import RECIPES  # noqa: E402
from evoband.training import (  # noqa: E402
    DataSource,
    ImageSet,
    Task,
    compute_metrics,
    derive_seed,
    evaluate,
    load_data,
    predict,
    resolve_device,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import RESULTS_DIR, write_csv  # noqa: E402


def dev_split(data: DataSource, seed: int, dev_share: float = 0.25) -> DataSource:
    """The training images as a data set of part A (its training split) and a stratified dev
    part (its test split); the real test split is not used."""
    labels = data.train.labels.numpy()
    a, dev = train_test_split(
        np.arange(len(labels)), test_size=dev_share, stratify=labels, random_state=seed
    )
    a, dev = torch.as_tensor(np.sort(a)), torch.as_tensor(np.sort(dev))
    part = lambda idx: ImageSet(data.train.images[idx], data.train.labels[idx])  # noqa: E731
    return DataSource(f"{data.name}-dev{seed}", f"{data.location}#dev{seed}", data.classes,
                      part(a), part(dev))  # fmt: skip


def scores(probabilities: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    m = compute_metrics(probabilities, labels)
    return {"top3": m.top3, "precision": m.precision}


def run_seed(config: dict, seed: int, epochs: int, folds: int, device: torch.device) -> dict:
    """One seed: the K fold models of ``config`` and one retrain on A, scored on dev."""
    data = dev_split(load_data(), seed)
    member_seed = derive_seed(seed, 1)
    cv = Task(data, cv_folds=folds, split_seed=seed, device=device)
    final = Task(data, use_test=True, device=device)
    x_dev, y_dev = final.splits[0].x_valid, final.splits[0].y_valid.cpu()
    t0 = time.monotonic()
    result = evaluate(config, epochs, task=cv, seed=member_seed, keep_predictions=True)
    fold_seconds = time.monotonic() - t0
    fold_probs = [predict(f.model, x_dev).softmax(dim=1) for f in result.folds if f.model]
    t0 = time.monotonic()
    retrained = evaluate(config, epochs, task=final, seed=member_seed, keep_predictions=True)
    retrain_seconds = time.monotonic() - t0
    retrain_probs = predict(retrained.folds[0].model, x_dev).softmax(dim=1)
    folds_avg = scores(torch.stack(fold_probs).mean(0), y_dev)
    one_fold = scores(fold_probs[0], y_dev)
    retrain = scores(retrain_probs, y_dev)
    both = scores((torch.stack(fold_probs).mean(0) + retrain_probs) / 2, y_dev)
    return {
        "seed": seed,
        "n_a": len(data.train),
        "n_dev": len(data.test),
        "cv_top3": result.top3,
        "folds_top3": folds_avg["top3"],
        "folds_precision": folds_avg["precision"],
        "one_fold_model_top3": one_fold["top3"],
        "retrain_top3": retrain["top3"],
        "retrain_precision": retrain["precision"],
        "folds_and_retrain_top3": both["top3"],
        "fold_seconds": round(fold_seconds, 1),
        "retrain_seconds": round(retrain_seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--recipe", default="bn-cnn-pair", choices=sorted(RECIPES))
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--epochs", type=int, default=32)
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="2 seeds, 8 epochs")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    seeds = [0, 1] if args.quick else [int(s) for s in args.seeds.split(",")]
    epochs = 8 if args.quick else args.epochs
    config = dict(RECIPES[args.recipe])
    device = resolve_device("auto")
    rows = []
    for seed in seeds:
        row = {
            "recipe": args.recipe,
            "epochs": epochs,
            **run_seed(config, seed, epochs, args.folds, device),
        }
        rows.append(row)
        print(
            f"seed {seed}: dev top-3 fold models averaged {row['folds_top3']:.3f} (one fold model "
            f"{row['one_fold_model_top3']:.3f}), retrain on all of A {row['retrain_top3']:.3f}, "
            f"both {row['folds_and_retrain_top3']:.3f}",
            flush=True,
        )
    diffs = [r["folds_top3"] - r["retrain_top3"] for r in rows]
    se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
    print(
        f"\nfold models - retrain, dev top-3: {statistics.mean(diffs):+.4f} ± {se:.4f} (SE) over "
        f"{len(rows)} seeds; fold models {statistics.mean(r['folds_top3'] for r in rows):.3f}, "
        f"retrain {statistics.mean(r['retrain_top3'] for r in rows):.3f}"
    )
    out = args.out or RESULTS_DIR / f"final_members_{args.recipe}.csv"
    write_csv(out, rows)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
