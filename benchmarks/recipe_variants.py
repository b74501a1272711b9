"""Variants of a recipe, side by side: CV top-3 (what a search selects by) and test top-3.

    python benchmarks/recipe_variants.py [--recipe bn-cnn] [--set dropout_rate=0.1 --set dropout_rate=0.3]
        [--cv_seeds 0,1,2] [--test_seeds 0,1,2,3,4] [--epochs 32]

Trains the recipe (from ``evoband.space._spaces.RECIPES``) with each ``--set KEY=VALUE[,KEY=VALUE]``
change: 3-fold CV on the training split for every CV seed (the seed fixes the folds,
initialisation and training) and train -> test for every test seed, at ``--epochs`` epochs with
the LR cycle planned over them. Three keys change the training instead of the configuration:
``epochs=N``, ``segments=[4,8,16,32]`` (LR cycles ending at those epochs, as a Hyperband
search trains a member it scores at the last of them; default one cycle) and ``distill=K``
(train -> test only: K teachers first, as ``main.py -t --distill K`` does). Prints mean and std
per variant and writes every run to a CSV under benchmarks/results/. Training is
single-threaded and seeded: the scores do not depend on what else runs on the machine (small
networks train on one thread).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from evoband.space import RECIPES  # noqa: E402
from evoband.training import Task, evaluate, load_data, teacher_targets  # noqa: E402


def parse_change(text: str) -> dict[str, Any]:
    """``dropout_rate=0.3,segments=[4,8]`` -> ``{"dropout_rate": 0.3, "segments": [4, 8]}``."""
    change: dict[str, Any] = {}
    for item in filter(None, re.split(r",(?![^\[]*\])", text)):  # not the commas in [...]
        key, _, value = item.partition("=")
        try:
            change[key] = json.loads(value)
        except ValueError:
            change[key] = value
    return change


def seeds(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="bn-cnn", choices=sorted(RECIPES))
    p.add_argument("--set", action="append", default=None, help="a variant: KEY=VALUE[,...]")
    p.add_argument("--cv_seeds", type=seeds, default=[0, 1, 2])
    p.add_argument("--test_seeds", type=seeds, default=[0, 1, 2, 3, 4])
    p.add_argument("--epochs", type=int, default=32)
    p.add_argument("--data_dir", default=None)
    p.add_argument("--out", default=str(REPO / "benchmarks/results/recipe_variants.csv"))
    args = p.parse_args()
    variants = args.set or ["dropout_rate=0.1", "dropout_rate=0.3"]
    data = load_data(args.data_dir)
    test_task = Task(data, use_test=True)
    rows = []
    for text in variants:
        change = parse_change(text)
        epochs = int(change.pop("epochs", args.epochs))
        segments = [int(b) for b in change.pop("segments", [])]
        teachers = int(change.pop("distill", 0))
        if teachers and args.cv_seeds:
            p.error("distill=K trains the final network only: pass --cv_seeds ''")
        config = {**RECIPES[args.recipe], **change}
        runs = [("cv", s) for s in args.cv_seeds] + [("test", s) for s in args.test_seeds]
        for mode, seed in runs:
            task = test_task if mode == "test" else Task(data, cv_folds=3, split_seed=seed)
            start = time.perf_counter()
            distill = None
            if teachers:
                distill = teacher_targets(
                    config, epochs, task=task, seed=seed, teachers=teachers, segments=segments
                )
            result = evaluate(
                config, epochs, task=task, seed=seed, segments=segments, distill=distill
            )
            rows.append(
                {
                    "variant": text,
                    "mode": mode,
                    "seed": seed,
                    "top3": result.top3,
                    "precision": result.precision,
                    "status": str(result.status),
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )
            print(f"{text:<30} {mode:<4} seed {seed}: top-3 {result.top3:.3f}", flush=True)
    frame = pd.DataFrame(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    table = frame.groupby(["variant", "mode"])[["top3", "precision"]].agg(["mean", "std", "count"])
    print(
        f"\n{args.recipe}, {args.epochs} epochs unless set, {data.name}\n{table.round(3).to_string()}"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
