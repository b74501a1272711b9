"""How well does each Hyperband rung rank members, compared with the top rung?

    python benchmarks/rung_correlation.py [--n 16] [--folds 1] [--min_epochs 4 --epochs 32 --eta 2]

Samples ``--n`` configurations the way a search's initial population is made (the recipes, then
random samples repaired under the search's parameter limit and cost cap for ``--max_time``),
trains each through every rung (continuing, with the LR schedule planned over the rungs as in a
search) and records CV top-3 at each rung. Prints Spearman's rho between every rung and the top
rung, and writes the per-configuration scores to a CSV under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from evoband.nets import count_params  # noqa: E402
from evoband.operators import ParamBudget, RandomSampling  # noqa: E402
from evoband.search import HyperbandSchedule  # noqa: E402
from evoband.space import get_space, recipes  # noqa: E402
from evoband.training import CostModel, Task, evaluate, load_data  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=16, help="configurations")
    p.add_argument("--space", default="extended")
    p.add_argument("--data_dir", default=None)
    p.add_argument("--folds", type=int, default=1, help="CV folds trained (of 3)")
    p.add_argument("--min_epochs", type=int, default=4)
    p.add_argument("--epochs", type=int, default=32)
    p.add_argument("--eta", type=int, default=2)
    p.add_argument("--max_params", type=float, default=2e7)
    p.add_argument("--max_time", type=float, default=900, help="sets the cost cap (a third of it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "rung_correlation.csv"))
    args = p.parse_args()
    data = load_data(args.data_dir)
    task = Task(data, cv_folds=3, split_seed=args.seed)
    task.splits = task.splits[: args.folds]
    budgets = HyperbandSchedule(args.min_epochs, args.epochs, args.eta).brackets[0].budgets
    model = CostModel(task.input_shape, task.n_classes, len(task.splits[0].y_train))
    space, rng = get_space(args.space, args.seed), np.random.default_rng(args.seed)
    budget = ParamBudget(
        space,
        lambda c: count_params(c, task.input_shape, task.n_classes),
        int(args.max_params),
        cost=lambda c: model.seconds(c, args.epochs, 3),
        cost_limit=args.max_time / 3,
    )
    configs = [c for c in recipes(space) if budget.fits(c)]
    sampler = RandomSampling(space)
    while len(configs) < args.n:
        repaired = budget.repair(sampler([], rng), rng)
        if repaired is not None:
            configs.append(repaired)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, config in enumerate(configs[: args.n]):
            row: dict[str, float] = {"config": i}
            for b in budgets:
                result = evaluate(
                    config,
                    b,
                    task=task,
                    seed=args.seed + i,
                    segments=budgets,
                    checkpoint_dir=Path(tmp) / str(i),
                )
                row[f"top3@{b}"] = result.top3 if result.ok else np.nan
            rows.append(row)
            print(" ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "config"), flush=True)
    frame = pd.DataFrame(rows)
    top = f"top3@{budgets[-1]}"
    print(
        f"\nSpearman rho with the top rung ({budgets[-1]} epochs), {len(frame)} configurations, {args.folds} fold(s):"
    )
    for b in budgets[:-1]:
        pair = frame[[f"top3@{b}", top]].dropna()
        rho = stats.spearmanr(pair.iloc[:, 0], pair.iloc[:, 1]).statistic
        print(f"  rung {b:>3} epochs: rho {rho:.2f} (n {len(pair)})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
