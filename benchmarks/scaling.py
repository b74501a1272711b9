"""Scaling: evaluations per minute and search quality with 1 and 2 fold workers.

Side by side in one run, the same search (EA + Hyperband, the same seed and settings) is given
the same wall-clock budget with its CV folds trained

- ``serial``: one after the other in the search's process (``workers=1``);
- ``dask2``: by a Dask LocalCluster of 2 worker processes (``workers=2``);
- ``dask2_async``: the same cluster with asynchronous promotion (``async_promotion=True``: no
  rung barrier, so another search: its own decisions follow the order results come in);
- ``dask2_plain``: ``dask2`` with the LocalCluster in plain TCP (``dask_tls=False``): what its
  default TLS costs.

One run at a time (the timings must not overlap); with several seeds the order of the setups
rotates, so that a drift of the machine's load does not always hit the same one. Each run's
start-up (loading the data, starting the workers) counts against its budget, as in AutoML.py,
and is also reported on its own. Per run it records the evaluations and epoch-folds (one epoch
of one fold) per minute, the best feasible CV top-3 at the end of the budget, and the machine's
load average before and after. Evaluations per minute fall as a search climbs to longer rungs,
so a faster run of the same search also shows a lower rate than its speed; the synchronous
setups therefore also report the speed-up on the serial run's own evaluations (the same search
makes the same ones): the serial run's time to its last evaluation over theirs to all of them. Run from the repository root::

    python benchmarks/scaling.py                      # micro17flower, 300 s per setup
    python benchmarks/scaling.py --budget 600 --seeds 0,1
    python benchmarks/scaling.py --quick              # digits, 20 s per setup (about 2 minutes)

It prints a line per run and a Markdown table (mean ± std over seeds), and writes one CSV row
per run to ``benchmarks/results/scaling_<stamp>.csv`` (after every run). A load average near
the number of cores before a run means other processes shared the CPUs: the numbers then say
little about the executors.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

try:
    import evoband  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (  # noqa: E402
    REPO_ROOT,
    RESULTS_DIR,
    Column,
    apply_defaults,
    mean_std,
    write_csv,
)
from bench_common import markdown_table as shared_table  # noqa: E402
from evoband import SearchConfig, SearchSettings, load_run, run_search  # noqa: E402
from evoband.search import BaseCallback, SearchView  # noqa: E402

SETUPS: dict[str, dict[str, Any]] = {
    "serial": {"workers": 1, "async_promotion": False},
    "dask2": {"workers": 2, "async_promotion": False},
    "dask2_async": {"workers": 2, "async_promotion": True},
    "dask2_plain": {"workers": 2, "async_promotion": False, "dask_tls": False},
}
"""The setups compared: SearchConfig's ``workers`` and ``dask_tls`` (the LocalCluster's TLS, on
by default: ``dask2_plain`` measures what it costs) and SearchSettings' ``async_promotion``."""

FULL_DEFAULTS: dict[str, Any] = {
    "budget": 300.0,
    "seeds": "0",
    "data_dir": None,
    "pop_size": 6,
    "min_epochs": SearchSettings.min_epochs,
    "max_epochs": SearchSettings.max_epochs,
}
QUICK_DEFAULTS: dict[str, Any] = {
    "budget": 20.0,
    "seeds": "0",
    "data_dir": "digits",
    "pop_size": 4,
    "min_epochs": 1,
    "max_epochs": 4,
}


@dataclass(frozen=True)
class Bench:
    """The search every setup runs."""

    budget: float
    data_dir: str | None
    pop_size: int
    min_epochs: int
    max_epochs: int
    eta: int
    max_params: float
    min_precision: float
    cv_folds: int


class _StartClock(BaseCallback):
    """Notes when the search starts evaluating (the workers are up by then)."""

    def __init__(self) -> None:
        self.at: float | None = None

    def on_run_start(self, search: SearchView) -> None:
        self.at = time.monotonic()


def epoch_folds(frame: Any) -> int:
    """Epochs trained over all folds: each evaluation trains from the member's last scored
    budget (its checkpoint) to its own."""
    done: dict[int, int] = {}
    total = 0
    for row in frame.itertuples():
        before = done.get(int(row.member_id), 0)
        total += max(int(row.epochs) - before, 0) * int(row.n_folds)
        if row.status == "ok":
            done[int(row.member_id)] = int(row.epochs)
    return total


def run_setup(setup: str, seed: int, bench: Bench, run_dir: Path) -> dict[str, Any]:
    """One search with the executor of ``setup``; its row of the CSV."""
    settings = SearchSettings(
        hyperband=True,
        pop_size=bench.pop_size,
        min_epochs=bench.min_epochs,
        max_epochs=bench.max_epochs,
        eta=bench.eta,
        max_time=bench.budget,
        seed=seed,
        async_promotion=SETUPS[setup]["async_promotion"],
    )
    config = SearchConfig(
        settings=settings,
        max_params=bench.max_params,
        min_precision=bench.min_precision,
        data_dir=bench.data_dir,
        cv_folds=bench.cv_folds,
        run_dir=str(run_dir),
        progress=False,
        workers=SETUPS[setup]["workers"],
        dask_tls=SETUPS[setup].get("dask_tls", True),
    )
    clock = _StartClock()
    load_before = os.getloadavg()[0]
    start = time.monotonic()
    report = run_search(config, callbacks=[clock])
    wall = time.monotonic() - start
    frame = load_run(run_dir)
    minutes = max(report.elapsed, 1e-9) / 60
    best = report.best.result if report.best is not None else None
    trained = epoch_folds(frame)
    return {
        "setup": setup,
        "workers": SETUPS[setup]["workers"],
        "executor": "dask" if SETUPS[setup]["workers"] > 1 else "serial",
        "tls": SETUPS[setup]["workers"] > 1 and SETUPS[setup].get("dask_tls", True),
        "promotion": "async" if SETUPS[setup]["async_promotion"] else "sync",
        "seed": seed,
        "budget_s": bench.budget,
        "search_s": round(report.elapsed, 2),
        "wall_s": round(wall, 2),
        "startup_s": round((clock.at or start) - start, 2),
        "n_evaluations": report.n_evaluations,
        "evals_per_min": round(report.n_evaluations / minutes, 2),
        "epoch_folds": trained,
        "epoch_folds_per_min": round(trained / minutes, 2),
        "n_feasible": report.n_feasible,
        "best_feasible_cv_top3": best.top3 if best is not None and report.feasible else math.nan,
        "best_cv_precision": best.precision if best is not None else math.nan,
        "best_params": best.num_params if best is not None else None,
        "stopped_by": report.stopped_by,
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "data": bench.data_dir or "default",
        "pop_size": bench.pop_size,
        "epochs": f"{bench.min_epochs}..{bench.max_epochs}",
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "run_dir": str(run_dir),
        "timestamp": datetime.now().isoformat(timespec="seconds"),
    }


def same_evaluations_speedup(run: pd.DataFrame, serial: pd.DataFrame) -> float:
    """How much sooner a run had every evaluation the serial run of the same seed made in its
    budget: the serial run's time to its last one over this run's time to all of them (the
    same synchronous search makes the same evaluations; NaN when this run lacks one of them).
    Both frames are :func:`evoband.load_run`'s."""
    if serial.empty:
        return math.nan
    when = {(int(r.member_id), int(r.epochs)): float(r.elapsed) for r in run.itertuples()}
    keys = [(int(r.member_id), int(r.epochs)) for r in serial.itertuples()]
    if any(k not in when for k in keys):
        return math.nan
    return float(serial["elapsed"].max()) / max(max(when[k] for k in keys), 1e-9)


def setup_order(setups: Sequence[str], index: int) -> list[str]:
    """``setups`` rotated by ``index`` (the seed's position), so each leads once in turn."""
    k = index % len(setups)
    return [*setups[k:], *setups[:k]]


TABLE_COLUMNS: list[Column] = [
    (key, title, partial(mean_std, fmt=fmt))
    for key, title, fmt in [
        ("evals_per_min", "evaluations / min", "{:.1f}"),
        ("same_evals_speedup", "speed-up on serial's evaluations", "{:.2f}x"),
        ("epoch_folds_per_min", "epoch-folds / min", "{:.0f}"),
        ("best_feasible_cv_top3", "best feasible CV top-3", "{:.3f}"),
        ("n_evaluations", "evaluations", "{:.0f}"),
        ("startup_s", "start-up s", "{:.1f}"),
        ("load_before", "load before", "{:.1f}"),
    ]
]
"""Columns of the table: CSV key, title, cell."""


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Mean ± std over seeds per setup, with the speed-up of evaluations / min over serial."""
    serial = [r["evals_per_min"] for r in rows if r["setup"] == "serial"]

    def speedup(group: list[Mapping[str, Any]]) -> str:
        if not serial or min(serial) <= 0:
            return "-"
        rate = statistics.mean(r["evals_per_min"] for r in group)
        return f"{rate / statistics.mean(serial):.2f}x"

    return shared_table(rows, "setup", TABLE_COLUMNS, ("speed-up", speedup))


def add_speedups(rows: Sequence[dict[str, Any]], serial_dir: Path) -> None:
    """Each synchronous row's :func:`same_evaluations_speedup` (NaN without a serial run; an
    asynchronous search makes other decisions, so it has none)."""
    for row in rows:
        same = row["promotion"] == "sync" and (serial_dir / "history.sqlite").exists()
        row["same_evals_speedup"] = (
            same_evaluations_speedup(load_run(row["run_dir"]), load_run(serial_dir))
            if same
            else math.nan
        )


def log_line(row: Mapping[str, Any]) -> str:
    """One run in a line."""
    best = row["best_feasible_cv_top3"]
    return (
        f"{row['setup']:>8} seed {row['seed']}: {row['n_evaluations']} evaluations in "
        f"{row['search_s']:.0f} s ({row['evals_per_min']:.1f}/min, {row['epoch_folds_per_min']:.0f} "
        f"epoch-folds/min), start-up {row['startup_s']:.1f} s, best feasible CV top-3 "
        f"{'-' if math.isnan(best) else f'{best:.3f}'}, load {row['load_before']:.1f}"
    )


def build_parser() -> argparse.ArgumentParser:
    """The flags; those left at None take their ``--quick`` or full default."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add = p.add_argument
    add("--budget", type=float, help="seconds of search per run (default 300; quick 20)")
    add("--seeds", help="comma-separated seeds, one run of every setup each (default 0)")
    add("--setups", default=",".join(SETUPS), help=f"comma-separated subset of {','.join(SETUPS)}")
    add(
        "--data_dir",
        help="data set (default: evoband's search order, micro17flower; quick: digits)",
    )
    add("--pop_size", type=int, help="population (default 6; quick 4)")
    add("--min_epochs", type=int, help="first Hyperband rung (default: evoband's; quick 1)")
    add("--max_epochs", type=int, help="last Hyperband rung (default: evoband's; quick 4)")
    add("--eta", type=int, default=SearchSettings.eta, help="Hyperband halving rate")
    add("-s", "--max_params", type=float, default=2e7, help="at most this many parameters (2e7)")
    add("-p", "--min_precision", type=float, default=0.39, help="at least this CV precision (0.39)")
    add("--cv_folds", type=int, default=3, help="K of the K-fold CV (3)")
    add("--out", type=Path, help="CSV (default: benchmarks/results/scaling_<stamp>.csv)")
    add("--runs_dir", type=Path, help="run directories (default: runs/scaling_<stamp>)")
    add("--quick", action="store_true", help="digits, 20 s per setup: checks that it works")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check the flags; ``--quick`` changes the defaults of the flags not given."""
    p = build_parser()
    args = apply_defaults(p.parse_args(argv), QUICK_DEFAULTS, FULL_DEFAULTS)
    args.setups = list(dict.fromkeys(s.strip() for s in args.setups.split(",") if s.strip()))
    unknown = [s for s in args.setups if s not in SETUPS]
    if unknown or not args.setups:
        p.error(f"unknown setups {unknown}; choose from {','.join(SETUPS)}")
    if not args.seeds or args.budget <= 0:
        p.error("give at least one seed and --budget > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run every setup x seed one after the other, then print the table."""
    args = parse_args(argv)
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out = (args.out or RESULTS_DIR / f"scaling_{stamp}.csv").resolve()
    runs_dir = (args.runs_dir or REPO_ROOT / "runs" / f"scaling_{stamp}").resolve()
    bench = Bench(
        args.budget, args.data_dir, args.pop_size, args.min_epochs, args.max_epochs, args.eta,
        args.max_params, args.min_precision, args.cv_folds,
    )  # fmt: skip
    print(
        f"scaling: {', '.join(args.setups)} x seeds {args.seeds}, {bench.budget:g} s each; data "
        f"{bench.data_dir or 'default'}, pop {bench.pop_size}, epochs {bench.min_epochs}.."
        f"{bench.max_epochs}, {os.cpu_count()} CPUs; runs in {runs_dir}",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    for index, seed in enumerate(args.seeds):
        seed_rows = []
        for setup in setup_order(args.setups, index):  # one at a time: no overlapping timings
            seed_rows.append(run_setup(setup, seed, bench, runs_dir / f"{setup}_seed{seed}"))
            rows.append(seed_rows[-1])
            print(log_line(rows[-1]), flush=True)
            write_csv(out, rows)  # after every run: a stopped benchmark keeps what it measured
        add_speedups(seed_rows, runs_dir / f"serial_seed{seed}")
        write_csv(out, rows)
    print("\n" + markdown_table(rows) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":  # the guard matters: worker processes are spawned
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
