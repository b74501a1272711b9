"""Paired comparison of search_quality.py runs against a control, seed by seed.

Reads the CSVs that ``search_quality.py`` wrote (each run a row: method, seed, test scores on
all and on the clean test images) and prints, per method, the mean test top-3 and its paired
difference to the control method on the seeds both ran: mean ± standard error, how many seeds
it was ahead, level or behind, and the Wilcoxon signed-rank p-value (evoband's significance
module). Writes the table as CSV too.

    python benchmarks/compare.py benchmarks/results/search_quality_900s_predictor_seed*.csv \\
        benchmarks/results/controls_900s_seed*.csv --control recipe_ensemble
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

try:
    import evoband  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from evoband.report import wilcoxon_paired  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import write_csv  # noqa: E402

METRICS = ("test_top3", "clean_test_top3", "test_precision")


def read_rows(paths: list[Path]) -> list[dict[str, str]]:
    rows = []
    for path in paths:
        with open(path, newline="") as fh:
            rows += list(csv.DictReader(fh))
    return rows


def number(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "") else math.nan
    except ValueError:
        return math.nan


def compare(rows: list[dict[str, str]], control: str, metric: str) -> list[dict[str, object]]:
    """One row per method: its mean ``metric`` and the paired difference to ``control``."""
    by_method: dict[str, dict[int, float]] = defaultdict(dict)
    for row in rows:
        value = number(row.get(metric))
        if not math.isnan(value):
            by_method[row["method"]][int(row["seed"])] = value
    base = by_method.get(control, {})
    out = []
    for method, values in by_method.items():
        seeds = sorted(set(values) & set(base))
        diffs = [values[s] - base[s] for s in seeds]
        row: dict[str, object] = {
            "method": method,
            "metric": metric,
            "seeds": len(values),
            "mean": statistics.mean(values.values()),
            "min": min(values.values()),
            "paired_seeds": len(seeds),
        }
        if method != control and len(diffs) >= 1:
            se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else math.nan
            _, _, p = wilcoxon_paired({s: values[s] for s in seeds}, {s: base[s] for s in seeds})
            row.update(
                diff_mean=statistics.mean(diffs), diff_se=se,
                ahead=sum(d > 0 for d in diffs), level=sum(d == 0 for d in diffs),
                behind=sum(d < 0 for d in diffs), wilcoxon_p=p,
            )  # fmt: skip
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("csvs", nargs="+", type=Path)
    p.add_argument("--control", default="recipe_ensemble")
    p.add_argument("--out", type=Path, default=None, help="CSV of the table (default: none)")
    args = p.parse_args(argv)
    rows = read_rows(args.csvs)
    table = [r for metric in METRICS for r in compare(rows, args.control, metric)]
    print(
        f"| metric | method | seeds | mean | min | paired - {args.control} (± SE) | ahead/level/behind | Wilcoxon p |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in table:
        diff = f"{r['diff_mean']:+.4f} ± {r['diff_se']:.4f}" if "diff_mean" in r else "-"
        record = f"{r['ahead']}/{r['level']}/{r['behind']}" if "ahead" in r else "-"
        pval = (
            f"{r['wilcoxon_p']:.3f}"
            if "wilcoxon_p" in r and not math.isnan(float(str(r["wilcoxon_p"])))
            else "-"
        )
        print(
            f"| {r['metric']} | {r['method']} | {r['seeds']} | {r['mean']:.4f} | {r['min']:.4f} | {diff} | {record} | {pval} |"
        )
    if args.out:
        write_csv(args.out, table)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
