"""A fault battery: searches SIGKILLed at random moments and resumed, counted.

Three setups of the same small search (``AutoML.py --hyperband --max_evaluations N`` on
scikit-learn's digits, the course space): ``serial`` (one process), ``dask2`` (a LocalCluster of
2 workers) and ``async`` (2 workers with asynchronous promotion). Each is started, SIGKILLed at
a random moment, resumed, killed again, ... until it has taken its share of ``--kills``, then
resumed to the end. Per setup it reports:

- the kills that landed and the runs that finished (the last resume exits 0 or 1);
- rows lost: evaluations in the ledger before a kill and missing after it (must be 0);
- evaluations duplicated: a (member, budget) recorded twice, a decision recorded twice, or more
  evaluations than ``N`` (must be 0);
- for ``serial`` and ``dask2`` (the synchronous search is the same on any executor): whether the
  ledger and the optimum equal those of the same search run without faults;
- evaluations recorded ``failed`` because the search died in them 3 times in a row.

Run from the repository root; it prints a table and writes
``benchmarks/results/faults.csv`` (or ``--out``)::

    python benchmarks/faults.py                  # 30 kills, 10 per setup
    python benchmarks/faults.py --kills 6 --max_evaluations 40   # a few minutes
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench_common import REPO_ROOT, RESULTS_DIR, write_csv

SETUPS: dict[str, list[str]] = {
    "serial": [],
    "dask2": ["--workers", "2"],
    "async": ["--workers", "2", "--async_promotion"],
}
"""Each setup's flags on top of the common search."""

CRASHED_WORDS = "crashed the search process"


def command(run_dir: Path, setup: str, max_evaluations: int, seed: int, *extra: str) -> list[str]:
    """The search of ``setup`` on digits, into ``run_dir``."""
    return [
        sys.executable, str(REPO_ROOT / "src" / "AutoML.py"), "--data_dir", "digits",
        "--run_dir", str(run_dir), "--hyperband", "--space", "course", "--pop_size", "4",
        "--epochs", "8", "--min_epochs", "1", "-s", "50000", "--max_time", "36000",
        "--max_evaluations", str(max_evaluations), "--eval_time_limit", "600",
        "--seed", str(seed), "--no_progress", *SETUPS[setup], *extra,
    ]  # fmt: skip


def ledger(run_dir: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The rows the battery compares: members, evaluations, folds and decisions."""
    conn = sqlite3.connect(f"file:{run_dir / 'history.sqlite'}?mode=ro", uri=True)
    try:
        queries = {
            "members": "SELECT member_id, config, seed, origin, parents FROM members ORDER BY 1",
            "evaluations": "SELECT member_id, epochs, status, top3, precision, message "
            "FROM evaluations ORDER BY 1, 2",
            "folds": "SELECT member_id, epochs, fold, status, top3 FROM folds ORDER BY 1, 2, 3",
            "decisions": "SELECT member_id, epochs FROM decisions",
        }
        rows = {}
        for name, sql in queries.items():
            try:
                rows[name] = conn.execute(sql).fetchall()
            except sqlite3.OperationalError:  # a table made on first use
                rows[name] = []
        return rows
    finally:
        conn.close()


def same_rows(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> bool:
    """Equal rows, floats within 1e-6."""
    if len(a) != len(b):
        return False
    for row_a, row_b in zip(a, b, strict=True):
        for x, y in zip(row_a, row_b, strict=True):
            if isinstance(x, float) and isinstance(y, float):
                if abs(x - y) > 1e-6:
                    return False
            elif x != y:
                return False
    return True


def faulted_run(
    run_dir: Path, setup: str, kills: int, max_evaluations: int, seed: int, rng: np.random.Generator
) -> dict[str, Any]:
    """Kill the search ``kills`` times at random moments, resuming each time, then resume it
    to the end; what was lost or duplicated."""
    landed = resumes = lost = 0
    seen: set[tuple[Any, ...]] = set()
    start = time.monotonic()
    attempts = 0
    while landed < kills and attempts < 4 * kills:
        attempts += 1
        extra = ("--resume",) if run_dir.exists() else ()
        resumes += bool(extra)
        proc = subprocess.Popen(
            command(run_dir, setup, max_evaluations, seed, *extra),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120  # starting the workers takes a while on a busy box
        while time.monotonic() < deadline and proc.poll() is None and not run_dir.exists():
            time.sleep(0.2)
        time.sleep(float(rng.uniform(2.0, 10.0)))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            landed += 1
        proc.wait(timeout=120)
        if proc.returncode in (0, 1):  # it finished before the kill: nothing left to kill
            break
        if (run_dir / "history.sqlite").exists():
            now = {row[:2] for row in ledger(run_dir)["evaluations"]}
            lost += len(seen - now)
            seen |= now
    final = subprocess.run(
        command(run_dir, setup, max_evaluations, seed, "--resume"),
        capture_output=True,
        text=True,
        timeout=3600,
    )
    rows = ledger(run_dir)
    keys = [row[:2] for row in rows["evaluations"]]
    lost += len(seen - set(keys))
    duplicated = (len(keys) - len(set(keys))) + (
        len(rows["decisions"]) - len(set(rows["decisions"]))
    )
    duplicated += max(0, len(keys) - max_evaluations)
    return {
        "kills": landed,
        "resumes": resumes + 1,
        "finished": final.returncode in (0, 1),
        "exit": final.returncode,
        "evaluations": len(keys),
        "rows_lost": lost,
        "evaluations_duplicated": duplicated,
        "failed_by_crash_count": sum(
            CRASHED_WORDS in (row[5] or "") for row in rows["evaluations"]
        ),
        "seconds": round(time.monotonic() - start, 1),
    }


def main(argv: list[str] | None = None) -> None:
    """Run the battery, print a table and write the CSV."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=30, help="kills in all, split over setups")
    parser.add_argument("--max_evaluations", type=int, default=120, help="evaluations per run")
    parser.add_argument("--seed", type=int, default=0, help="the searches' and the kills' seed")
    parser.add_argument("--setups", default=",".join(SETUPS), help="comma-separated subset")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "faults.csv", help="the CSV")
    args = parser.parse_args(argv)
    setups = [s for s in args.setups.split(",") if s]
    unknown = sorted(set(setups) - set(SETUPS))
    if unknown:
        parser.error(f"unknown setups {unknown}; choose from {','.join(SETUPS)}")
    rng = np.random.default_rng(args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="evoband-faults-") as scratch:
        straight = Path(scratch) / "straight"
        if {"serial", "dask2"} & set(setups):
            subprocess.run(
                command(straight, "serial", args.max_evaluations, args.seed),
                capture_output=True,
                check=False,
                timeout=3600,
            )
        for i, setup in enumerate(setups):
            share = args.kills // len(setups) + (i < args.kills % len(setups))
            run_dir = Path(scratch) / setup
            row: dict[str, Any] = {"setup": setup, "max_evaluations": args.max_evaluations}
            row |= faulted_run(run_dir, setup, share, args.max_evaluations, args.seed, rng)
            if setup in ("serial", "dask2"):
                a, b = ledger(straight), ledger(run_dir)
                row["same_ledger_as_without_faults"] = all(
                    same_rows(a[k], b[k]) for k in ("members", "evaluations", "folds")
                )
                opt_a = json.loads((straight / "opt_cfg.json").read_text())
                opt_b = json.loads((run_dir / "opt_cfg.json").read_text())
                row["same_optimum_as_without_faults"] = opt_a == opt_b
            print(row, flush=True)
            rows.append(row)
    write_csv(args.out, rows)
    print(
        "\n| setup | kills | finished | evaluations | rows lost | duplicated | "
        "same optimum | failed by crash count |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        same = r.get("same_optimum_as_without_faults", "-")
        print(
            f"| {r['setup']} | {r['kills']} | {r['finished']} | {r['evaluations']} | "
            f"{r['rows_lost']} | {r['evaluations_duplicated']} | {same} | "
            f"{r['failed_by_crash_count']} |"
        )
    print(f"\nWrote {args.out}")


if __name__ == "__main__":
    main()
