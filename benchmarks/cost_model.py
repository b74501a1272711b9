"""Fits and checks evoband's cost model: predicted against measured seconds per epoch of a fold.

    python benchmarks/cost_model.py [--n 40] [--space extended] [--data_dir DIR]

Trains random configurations of a space (and the recipes) for one epoch on one CV fold, on one
CPU thread as the search does for small networks, and times it. Prints the least-squares fit of
the model's three terms (compute, activation memory, per-step overhead) next to the constants in
evoband.training._cost, the prediction error of those constants, and writes a CSV under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from evoband.nets import activation_elements, macs_per_sample  # noqa: E402
from evoband.space import get_space, recipes, sample  # noqa: E402
from evoband.training import CostModel, Task, load_data, make_state, train  # noqa: E402


def measure(config: dict, task: Task, epochs: int) -> float:
    """Seconds per epoch of training ``config`` on fold 0 (after one warm-up epoch)."""
    split = task.splits[0]
    state = make_state(config, task.input_shape, task.n_classes, seed=0, device=task.device)
    train(state, split.x_train, split.y_train, config=config, epochs=1, seed=0)
    start = time.perf_counter()
    train(state, split.x_train, split.y_train, config=config, epochs=1 + epochs, seed=0)
    return (time.perf_counter() - start) / epochs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=40, help="random configurations")
    p.add_argument("--space", default="extended")
    p.add_argument("--data_dir", default=None)
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per configuration")
    p.add_argument(
        "--max_predicted", type=float, default=3.0, help="skip configs predicted slower (s/epoch)"
    )
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cost_model.csv"))
    args = p.parse_args()
    torch.set_num_threads(1)
    task = Task(load_data(args.data_dir), cv_folds=3, split_seed=0)
    n_train = len(task.splits[0].y_train)
    model = CostModel(task.input_shape, task.n_classes, n_train)
    space, rng = get_space(args.space), np.random.default_rng(0)
    configs = recipes(space)
    while len(configs) < args.n + len(recipes(space)):
        config = sample(space, rng)
        try:
            if model.seconds_per_epoch(config) <= args.max_predicted:
                configs.append(config)
        except Exception:  # too deep for the input
            continue
    rows = []
    for i, config in enumerate(configs):
        seconds = measure(config, task, args.epochs)
        rows.append(
            {
                "macs_term": 3
                * macs_per_sample(config, task.input_shape, task.n_classes)
                * n_train,
                "activation_term": activation_elements(config, task.input_shape) * n_train,
                "steps": math.ceil(n_train / int(config["batch_size"])),
                "measured": seconds,
                "predicted": model.seconds_per_epoch(config),
            }
        )
        print(
            f"{i + 1}/{len(configs)}: measured {seconds:.3f} s, predicted {rows[-1]['predicted']:.3f} s",
            flush=True,
        )
    frame = pd.DataFrame(rows)
    x = frame[["macs_term", "activation_term", "steps"]].to_numpy(float)
    coef, *_ = np.linalg.lstsq(
        x / frame["measured"].to_numpy()[:, None], np.ones(len(frame)), rcond=None
    )
    ratio = frame["measured"] / frame["predicted"]
    print(
        f"\nrelative least-squares fit: MAC rate {1 / coef[0]:.3g} /s, {coef[1]:.3g} s per activation "
        f"element, {coef[2]:.4f} s per step"
    )
    print(
        f"evoband.training._cost constants: measured / predicted median {ratio.median():.2f}, 10%-90% "
        f"{ratio.quantile(0.1):.2f}-{ratio.quantile(0.9):.2f}, max {ratio.max():.2f}"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
