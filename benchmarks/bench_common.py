"""What the benchmark scripts share: where results go, the CSV writer, mean ± std cells and
Markdown tables, and the ``--quick`` / full defaults of their flags."""

from __future__ import annotations

import argparse
import csv
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write rows (the union of their keys, in first-seen order) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def mean_std(values: Iterable[Any], fmt: str = "{:.1f}", scale: float = 1.0, unit: str = "") -> str:
    """``mean ± std`` over the finite values (``mean`` for one, ``-`` for none), each times
    ``scale`` in ``fmt``, then ``unit``."""
    xs = [float(v) * scale for v in values if v is not None and not math.isnan(float(v))]
    if not xs:
        return "-"
    text = fmt.format(statistics.mean(xs))
    if len(xs) > 1:
        text += " ± " + fmt.format(statistics.stdev(xs))
    return text + unit


Column = tuple[str, str, Callable[[Iterable[Any]], str]]
"""A table column: CSV key, title, and the cell of a group's values."""


def markdown_table(
    rows: Sequence[Mapping[str, Any]],
    group_by: str,
    columns: Sequence[Column],
    extra: tuple[str, Callable[[list[Mapping[str, Any]]], str]] | None = None,
) -> str:
    """One line per value of ``group_by`` (in first-seen order) with its run count, a cell per
    column and, with ``extra`` (title, cell of the group's rows), one more."""
    titles = [title for _, title, _ in columns] + ([extra[0]] if extra else [])
    lines = [
        f"| {group_by} | runs | " + " | ".join(titles) + " |",
        "|---" * (len(titles) + 2) + "|",
    ]
    for name in dict.fromkeys(row[group_by] for row in rows):
        group = [row for row in rows if row[group_by] == name]
        cells = [cell(row[key] for row in group) for key, _, cell in columns]
        cells += [extra[1](group)] if extra else []
        lines.append(f"| {name} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def apply_defaults(
    args: argparse.Namespace, quick: Mapping[str, Any], full: Mapping[str, Any]
) -> argparse.Namespace:
    """Give the flags left at None their ``--quick`` or full default; ``seeds`` becomes a list."""
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    return args
