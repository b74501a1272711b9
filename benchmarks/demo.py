"""The README demo as a user runs it: ``bash scripts/demo.sh SEED`` (a 2-minute search with its
final predictor made inside the budget, then that predictor scored on the test split), timed from
start to finish, one row per seed. Run from the repository root::

    python benchmarks/demo.py --seeds 123,1,2,3
    python benchmarks/demo.py --seeds 1 --data_dir digits

Prints a table and writes ``benchmarks/results/demo_<stamp>.csv`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench_common import REPO_ROOT, RESULTS_DIR, markdown_table, mean_std, write_csv


def run_demo(seed: int, data_dir: str | None) -> dict[str, object]:
    """Run the demo script for ``seed`` and return its wall time and the scored predictor."""
    start = time.perf_counter()
    done = subprocess.run(
        ["bash", "scripts/demo.sh", str(seed), *([data_dir] if data_dir else [])],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - start
    runs = sorted((REPO_ROOT / "runs").glob(f"demo_seed{seed}_*"), key=lambda p: p.stat().st_mtime)
    row: dict[str, object] = {"seed": seed, "wall_seconds": round(wall, 1), "exit": done.returncode}
    if not runs:
        sys.stderr.write(done.stdout[-2000:] + done.stderr[-2000:])
        return row
    run = runs[-1]
    row["run_dir"] = str(run.relative_to(REPO_ROOT))
    info = json.loads((run / "run.json").read_text()) if (run / "run.json").exists() else {}
    row["evaluations"] = info.get("n_evaluations")
    for name, kind in (("result_test_ensemble.json", "predictor"), ("result_test.json", "opt_cfg")):
        result_path = run / name
        if result_path.exists():
            result = json.loads(result_path.read_text())
            row.update(
                scored=kind, test_top3=result.get("top3"), test_top1=result.get("top1"),
                test_precision=result.get("precision"), num_params=result.get("num_params"),
                members=len(result.get("members", [])) or 1,
            )  # fmt: skip
            break
    ensemble = run / "ensemble.json"
    if ensemble.exists():
        row["oof_top3"] = json.loads(ensemble.read_text()).get("out_of_fold", {}).get("top3")
    return row


def main(argv: list[str] | None = None) -> None:
    """Run the demo for each seed, print a table and write the CSV."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seeds", default="123,1,2,3", help="comma-separated seeds (default 123,1,2,3)"
    )
    parser.add_argument(
        "--data_dir", default=None, help="data set (default: the demo's own search order)"
    )
    parser.add_argument(
        "--out", default=None, help="CSV path (default benchmarks/results/demo_<stamp>.csv)"
    )
    args = parser.parse_args(argv)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",") if s):
        row = run_demo(seed, args.data_dir)
        print(json.dumps(row), flush=True)
        rows.append(row)
    out = (
        Path(args.out)
        if args.out
        else RESULTS_DIR / f"demo_{time.strftime('%Y-%m-%d_%H-%M-%S')}.csv"
    )
    write_csv(out, rows)
    for row in rows:
        row["all"] = "demo"
    print(
        markdown_table(
            rows,
            "all",
            [
                ("wall_seconds", "wall (s)", lambda v: mean_std(v, "{:.0f}")),
                ("test_top3", "test top-3", lambda v: mean_std(v, "{:.3f}")),
                ("test_precision", "test precision", lambda v: mean_std(v, "{:.3f}")),
                ("oof_top3", "out-of-fold top-3", lambda v: mean_std(v, "{:.3f}")),
            ],
        )  # fmt: skip
    )
    print(f"Wrote {out}")


if __name__ == "__main__":
    main()
