"""Seconds per epoch-fold with glibc's allocator as it comes and as evoband tunes it.

Training allocates and frees the same buffers every step; :mod:`evoband.training._allocator` fixes glibc's
mmap and trim thresholds when training starts. This benchmark trains the same recipes (fold 0 of
3, one CPU thread, micro17flower or ``--data_dir``) in fresh spawned processes, one at a time, in
four allocator settings:

- ``default``: glibc as it comes (evoband's tuning switched off in that process);
- ``tuned``: evoband's setting;
- ``dask_env``: ``MALLOC_TRIM_THRESHOLD_=65536`` in the environment (what a Dask nanny gives its
  workers), untuned;
- ``dask_env_tuned``: the same environment, tuned.

Each process loads the data, trains one untimed warm-up epoch, then times ``--epochs`` epochs;
the settings alternate within every repeat, and the table gives the median over ``--repeats``
with the speed-up over ``default``. Run from the repository root::

    python benchmarks/allocator.py                  # bn-cnn and bn-cnn-small, 3 repeats
    python benchmarks/allocator.py --quick          # digits, 1 repeat

Writes ``benchmarks/results/allocator_<stamp>.csv``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_common import write_csv  # noqa: E402

SETTINGS: dict[str, tuple[dict[str, str], bool]] = {
    "default": ({}, False),
    "tuned": ({}, True),
    "dask_env": ({"MALLOC_TRIM_THRESHOLD_": "65536"}, False),
    "dask_env_tuned": ({"MALLOC_TRIM_THRESHOLD_": "65536"}, True),
}
"""Each setting: the environment the process starts with, and whether evoband tunes it."""


def time_epochs(recipe: str, data_dir: str | None, epochs: int, tuned: bool) -> float:
    """Seconds per epoch of ``recipe`` on fold 0 (in a fresh process)."""
    import torch

    import evoband.training._allocator
    from evoband.space import RECIPES
    from evoband.training import Task, load_data, make_state, train

    if not tuned:
        evoband.training._allocator._tuned = (
            False  # decided already: the allocator stays as it comes
        )
    torch.set_num_threads(1)
    task = Task(load_data(data_dir), cv_folds=3, split_seed=0)
    split, config = task.splits[0], dict(RECIPES[recipe])
    state = make_state(config, task.input_shape, task.n_classes, seed=0, device=task.device)
    train(state, split.x_train, split.y_train, config=config, epochs=1, seed=0)  # warm-up
    start = time.perf_counter()
    train(state, split.x_train, split.y_train, config=config, epochs=1 + epochs, seed=0)
    return (time.perf_counter() - start) / epochs


def run_in_fresh_process(setting: str, recipe: str, args: argparse.Namespace) -> float:
    env, tuned = SETTINGS[setting]
    saved = {k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")}
    os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    os.environ.update({"OMP_NUM_THREADS": "1", **env})
    try:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            return pool.submit(time_epochs, recipe, args.data_dir, args.epochs, tuned).result()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipes", default="bn-cnn,bn-cnn-small")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data_dir", default=None)
    p.add_argument("--quick", action="store_true", help="digits, at most 2 epochs, 1 repeat")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.data_dir, args.repeats = args.data_dir or "digits", 1
        args.epochs = min(args.epochs, 2)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out = args.out or REPO / "benchmarks" / "results" / f"allocator_{stamp}.csv"
    rows: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        for recipe in args.recipes.split(","):
            order = (
                list(SETTINGS)[repeat % len(SETTINGS) :] + list(SETTINGS)[: repeat % len(SETTINGS)]
            )
            for setting in order:
                seconds = run_in_fresh_process(setting, recipe, args)
                rows.append(
                    {"recipe": recipe, "setting": setting, "repeat": repeat, "s_per_epoch": seconds}
                )
                print(
                    f"{recipe:<14} {setting:<15} repeat {repeat}: {seconds:.3f} s/epoch", flush=True
                )
                write_csv(out, rows)
    print("\n| recipe | setting | s / epoch-fold (median) | speed-up over default |")
    print("|---|---|---|---|")
    for recipe in args.recipes.split(","):
        medians = {
            s: statistics.median(
                r["s_per_epoch"] for r in rows if r["recipe"] == recipe and r["setting"] == s
            )
            for s in SETTINGS
        }
        for setting, median in medians.items():
            print(f"| {recipe} | {setting} | {median:.3f} | {medians['default'] / median:.2f}x |")
    print(f"wrote {out}")


if __name__ == "__main__":  # the guard matters: the timed processes are spawned
    main()
