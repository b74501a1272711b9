"""Figures and tables of one or more runs, grouped by algorithm or by --group; optionally on test.

    python src/evaluation.py runs/<run> [runs/<run> ...] [--group EA=runs/a,runs/b] [--test]

    python src/evaluation.py runs/<run> --ensemble half

    python src/evaluation.py runs/<run> --dashboard [--port 8080] [--host 127.0.0.1] [--journal PATH]

Writes into --out (default: <run>/figures/ for one run, figures/ for several): the figures
(best_over_time, best_over_evaluations, best_over_epochs, scatter_precision_top3,
scatter_params_top3, pareto_params_top3, feasible_fraction, hyperband_rungs_<run>, and with
--test confusion_matrix_<run>), summary.csv, with --test test_results.json and tests.csv, and
with --ensemble ensembles.csv.
Prints the summary as a Markdown table.

With --dashboard: no figures; follows the one run (live or finished, read-only) in the browser,
mirrored into an Optuna study and served by optuna-dashboard (the extra evoband[dashboard]) until
Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

from evoband.cli import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    TRAINING_SEED_LIMIT,
    exit_codes,
    flag,
    model_size,
    require_seed,
    run_cli,
    setup_logging,
    word_or_count,
)
from evoband.core import (
    ConfigError,
    require_int,
    require_number,
    resolve_default,
    resolve_user,
    write_json,
)
from evoband.report import (
    Dashboard,
    ensemble_table,
    lower_priority,
    markdown_ensembles,
    markdown_summary,
    markdown_tests,
    save_figures,
    significance_tests,
    summary_table,
    test_data_dir,
    test_ensembles,
    test_optima,
)
from evoband.store import load_groups

logger = logging.getLogger("evoband")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=exit_codes("the figures and tables are written (--dashboard: it was stopped)"),
    )
    p.add_argument(
        "runs",
        nargs="*",
        metavar="RUN",
        help="run directories; grouped by their algorithm (EA+HB, EA, RS+HB, RS)",
    )
    p.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="NAME=RUN,RUN",
        help="a named group of runs (e.g. seeds of one setting); repeatable",
    )
    p.add_argument(
        "--out",
        default=None,
        help="output folder (default: <run>/figures for one run, figures/ for several)",
    )
    flag(
        p,
        "--test",
        help="retrain each run's optimum on the whole training split and score it on the test split",
    )
    p.add_argument(
        "--ensemble",
        type=word_or_count("half"),
        default=None,
        metavar="K",
        help="also retrain the K best feasible members of each run's final population (an int, "
        "or 'half' of it) and score their averaged softmax outputs on the test split",
    )
    p.add_argument(
        "-e",
        "--epochs",
        type=int,
        default=None,
        help="epochs to retrain each optimum with --test (default: the epochs and LR cycles each was selected at)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the --test retraining (default: each run's seed)",
    )
    p.add_argument(
        "-s",
        "--constraint_max_model_size",
        type=model_size,
        default=None,
        help="max trainable parameters (default: each run's own, from its run.json)",
    )
    p.add_argument(
        "-p",
        "--constraint_min_precision",
        type=float,
        default=None,
        help="min precision (default: each run's own, from its run.json)",
    )
    p.add_argument(
        "--format", choices=["png", "pdf"], default="png", help="figure file format (default: png)"
    )
    p.add_argument(
        "--data_dir", default=None, help="data set for --test (default: the one each run used)"
    )
    p.add_argument(
        "--device",
        default="auto",
        help="device for --test: auto (default; CUDA, MPS, else CPU), cpu, cuda, ...",
    )
    p.add_argument(
        "--dashboard",
        action="store_true",
        help="watch one run live in the browser instead: mirror it (read-only) into an Optuna "
        "study and serve it with optuna-dashboard until Ctrl-C; needs pip install "
        "'evoband[dashboard]'",
    )
    p.add_argument(
        "--port", type=int, default=None, help="--dashboard's TCP port (default: 8080; 0: any free)"
    )
    p.add_argument(
        "--host", default=None, help="--dashboard's address to serve on (default: 127.0.0.1)"
    )
    p.add_argument(
        "--journal",
        default=None,
        metavar="PATH",
        help="--dashboard's Optuna journal file, outside the run (default: under the user's "
        "cache folder, e.g. ~/.cache/evoband/dashboard/<run>-<hash>.log)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def parse_entries(args: argparse.Namespace) -> list[tuple[str | None, Path]]:
    """(group or None, run directory) for every run named on the command line."""
    entries: list[tuple[str | None, Path]] = []
    for spec in args.group:
        name, sep, runs = spec.partition("=")
        paths = [r.strip() for r in runs.split(",") if r.strip()]
        if not sep or not name.strip() or not paths:
            raise ConfigError(
                f"--group {spec!r} must look like NAME=RUN,RUN (a name, '=', run directories)."
            )
        entries += [(name.strip(), resolve_user(r)) for r in paths]
    entries += [(None, resolve_user(r)) for r in args.runs]
    if not entries:
        raise ConfigError("Name at least one run directory (RUN or --group NAME=RUN,RUN).")
    return entries


def validate(args: argparse.Namespace) -> None:
    require_seed(args.seed, TRAINING_SEED_LIMIT)
    if args.epochs is not None:
        require_int("epochs", args.epochs, low=1)
    if args.constraint_min_precision is not None:
        require_number(
            "constraint_min_precision", args.constraint_min_precision, low=0, high=1, low_open=True
        )


def dashboard(args: argparse.Namespace) -> int:
    """``--dashboard``: serve one run's live mirror until Ctrl-C (which exits 130)."""
    extra = [
        name
        for name, used in (
            ("--group", bool(args.group)),
            ("--test", bool(args.test)),
            ("--ensemble", args.ensemble is not None),
            ("--out", args.out is not None),
        )
        if used
    ]
    if extra:
        raise ConfigError(
            f"--dashboard makes no figures and tests nothing; drop {', '.join(extra)}."
        )
    if len(args.runs) != 1:
        raise ConfigError(f"--dashboard follows exactly one run directory; got {len(args.runs)}.")
    run_dir = resolve_user(args.runs[0])
    journal = resolve_user(args.journal) if args.journal else None
    # optuna's importance estimates warn at every page load of a small study: not news here
    warnings.filterwarnings("ignore", module=r"optuna(\.|$)")
    lower_priority()  # the search it follows keeps the cores
    with Dashboard(
        run_dir,
        host=args.host if args.host is not None else "127.0.0.1",
        port=args.port if args.port is not None else 8080,
        journal=journal,
    ) as board:
        print(f"Dashboard of {run_dir} at {board.url}", flush=True)
        print(f"(mirrored read-only into {board.journal}; Ctrl-C stops it)", flush=True)
        board.follow()
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.dashboard:
        return dashboard(args)
    unused = [f"--{k}" for k in ("port", "host", "journal") if getattr(args, k) is not None]
    if unused:
        verb = "goes" if len(unused) == 1 else "go"
        raise ConfigError(f"{' and '.join(unused)} {verb} with --dashboard only.")
    validate(args)
    entries = parse_entries(args)
    groups, problems = load_groups(
        entries,
        max_params=args.constraint_max_model_size,
        min_precision=args.constraint_min_precision,
    )
    runs = [run for members in groups.values() for run in members]
    if not runs:
        print(
            f"error: none of the {len(entries)} runs is usable: {'; '.join(problems)}",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if (args.test or args.ensemble is not None) and args.data_dir is None:
        for run in runs:
            test_data_dir(run)  # refuses runs whose data cannot be loaded again
    if args.out:
        out = resolve_user(args.out)
    else:
        out = runs[0].path / "figures" if len(runs) == 1 else resolve_default("figures")
    out.mkdir(parents=True, exist_ok=True)

    tests = (
        test_optima(runs, args.epochs, data_dir=args.data_dir, device=args.device, seed=args.seed)
        if args.test
        else {}
    )
    summary = summary_table(groups, tests)
    summary.to_csv(out / "summary.csv", index=False)
    print(markdown_summary(summary))
    if tests:
        write_json(out / "test_results.json", {name: t.to_dict() for name, t in tests.items()})
        if len(groups) >= 2:
            table = significance_tests(groups, tests)
            table.to_csv(out / "tests.csv", index=False)
            print("\nTests between groups on the test split:\n")
            print(markdown_tests(table))
    if args.ensemble is not None:
        ensembles = test_ensembles(
            runs, args.ensemble, data_dir=args.data_dir, device=args.device, seed=args.seed
        )
        table = ensemble_table(ensembles)
        table.to_csv(out / "ensembles.csv", index=False)
        print("\nEnsembles on the test split (the best member alone beside them):\n")
        print(markdown_ensembles(table) if len(table) else "(no run has a feasible member)")
    written = save_figures(groups, out, args.format, tests)
    print(f"\nWrote {len(written)} figures and summary.csv to {out}:")
    for path in written:
        print(f"  {path.name}")
    return EXIT_OK


if __name__ == "__main__":
    run_cli(main)
