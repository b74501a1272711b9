"""Constrained evolutionary search (optionally with Hyperband) for the best small CNN.

python src/AutoML.py --pop_size 6 --hyperband True --max_time 120
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from evoband.cli import (
    EXIT_ENVIRONMENT,
    EXIT_OK,
    EXIT_VIOLATED,
    HelpFormatter,
    exit_codes,
    flag,
    model_size,
    require_image_size,
    require_seed,
    run_cli,
    setup_logging,
    use_run_dir,
    workers_arg,
)
from evoband.core import StoreError, StoreWriteError, resolve_default
from evoband.search import (
    BaseCallback,
    HyperbandSchedule,
    SearchConfig,
    SearchSettings,
    SearchView,
    run_search,
)
from evoband.space import SPACES

logger = logging.getLogger("evoband")

OUTPUTS = (
    "Everything goes into a run directory (--run_dir, default runs/<algorithm, constraints, "
    "seed, date>): opt_cfg.json (the best feasible configuration, the input of main.py -c) with "
    "opt_cfg.training.json (the epochs and LR cycles it was selected at), automl_run.json (every "
    "evaluation), progress.csv (one row per generation), run.json (arguments, versions, data, end "
    "report), history.sqlite (the ledger --resume continues from) and checkpoints/."
)
DESCRIPTION = (
    "Search for the most accurate small CNN for an image data set with at most -s trainable "
    "parameters and at least -p CV macro precision, within --max_time seconds: a constrained "
    "(mu + lambda) evolutionary algorithm whose members are scored by K-fold cross-validation "
    "(top-3 accuracy, feasible members first) and, with --hyperband, trained through Hyperband "
    "rungs that continue from checkpoints. " + OUTPUTS
)
RANDOM_SEARCH_DESCRIPTION = (
    "Random-search baseline of AutoML.py: the same flags, target and outputs, but every child is "
    "a fresh sample of the search space (repaired into the limits) instead of a variation of the "
    "population; with --hyperband the samples climb the Hyperband rungs (RS+HB), without it each "
    "trains --epochs epochs (RS). The initial population still starts from the space's recipes "
    "unless --recipes False (textbook random search). " + OUTPUTS
)
EPILOG = exit_codes(
    "a feasible configuration was found",
    "none was (the most precise one is returned)",
    search=True,
)
REPEATED_ERRORS = "the same error in "
"""How the report's ``stopped_by`` begins when the same error in evaluation after evaluation
stopped the search (:class:`evoband.search._faults.ErrorStreak`; a test holds the two together)."""


def build_parser(random_search: bool = False) -> argparse.ArgumentParser:
    """The flags of AutoML.py, or of AutoML_random_search.py with ``random_search``."""
    p = argparse.ArgumentParser(
        description=RANDOM_SEARCH_DESCRIPTION if random_search else DESCRIPTION,
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "-s",
        "--constraint_max_model_size",
        type=model_size,
        default=int(2e7),
        help="at most this many trainable parameters (2e7 or 20000000)",
    )
    p.add_argument(
        "-p",
        "--constraint_min_precision",
        type=float,
        default=0.39,
        help="at least this CV macro precision, in (0, 1]",
    )
    p.add_argument(
        "-t",
        "--max_time",
        type=float,
        default=86400.0,
        help="time budget in seconds, checked before every training job",
    )
    p.add_argument(
        "-e",
        "--epochs",
        type=int,
        default=SearchSettings.max_epochs,
        help="max epochs per member (the last Hyperband rung)",
    )
    p.add_argument(
        "--min_epochs",
        type=int,
        default=SearchSettings.min_epochs,
        help="epochs of the first Hyperband rung",
    )
    p.add_argument("--eta", type=int, default=SearchSettings.eta, help="Hyperband halving rate")
    p.add_argument(
        "--pop_size",
        type=int,
        default=10,
        help="size of the initial population and of the population kept (mu); random search "
        "does not breed from it"
        if random_search
        else "population size (mu)",
    )
    p.add_argument(
        "-c",
        "--num_children",
        type=int,
        default=5,
        help="fresh samples per generation without Hyperband (lambda)"
        if random_search
        else "children per generation without Hyperband (lambda)",
    )
    flag(
        p,
        "--hyperband",
        help=f"train {'samples' if random_search else 'children'} through Hyperband rungs "
        "(accepts --hyperband, --hyperband True/False)",
    )
    flag(
        p,
        "--inherit_weights",
        help="does nothing in random search: its children are fresh samples with no parent "
        "to inherit weights from (it only keeps the population's checkpoints on disk)"
        if random_search
        else "start mutated and recombined children from their parent's trained weights "
        "(accepts --inherit_weights, --inherit_weights True/False)",
    )
    flag(
        p,
        "--recipes",
        default=True,
        help="start the initial population from the space's recipes and default configuration; --recipes False samples every initial member",
    )
    flag(
        p,
        "--async_promotion",
        help="with Hyperband: promote members as soon as they rank in the top 1/eta of their rung so far, no rung barrier (accepts --async_promotion, --async_promotion True/False)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=123,
        help="fixes sampling, splits, initialisation and augmentation",
    )
    p.add_argument(
        "--data_dir",
        default=None,
        help="image folder with train/ and test/, or 'digits' (default: $EVOBAND_DATA, micro17flower/, ../shared/micro17flower)",
    )
    p.add_argument(
        "--image_size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="resize images on load",
    )
    p.add_argument(
        "--space",
        choices=sorted(SPACES),
        default=SearchConfig.space,
        help="search space (course: the reference task's space exactly)",
    )
    p.add_argument(
        "--cv_folds", type=int, default=3, help="K of stratified K-fold cross-validation"
    )
    p.add_argument(
        "--run_dir",
        default=None,
        help="run directory (default: runs/<algorithm, constraints, seed, date>)",
    )
    flag(p, "--resume", help="continue the run in --run_dir where it stopped")
    p.add_argument(
        "--device", default="auto", help="auto (CUDA, MPS, else CPU), cpu, cuda, cuda:1, ..."
    )
    p.add_argument(
        "--workers",
        type=workers_arg,
        default="auto",
        help="worker processes (a Dask LocalCluster) training CV folds in parallel, those of all members of a rung together (one CPU thread each, or one GPU each with --device cuda); auto: one per core on a CPU, one per visible GPU on CUDA; 1: serially in this process",
    )
    cluster = p.add_mutually_exclusive_group()
    cluster.add_argument(
        "--scheduler_address",
        metavar="tcp://HOST:PORT",
        default=None,
        help="train the folds on the workers of this running Dask scheduler (--workers is "
        "ignored); the run directory must be on a filesystem every worker sees at "
        "the same path (see docs/cluster.md)",
    )
    cluster.add_argument(
        "--scheduler_file",
        metavar="PATH",
        default=None,
        help="like --scheduler_address, with the file the scheduler wrote (dask scheduler "
        "--scheduler-file PATH)",
    )
    p.add_argument(
        "--eval_cost_share",
        type=float,
        default=SearchSettings.eval_cost_share,
        help="largest predicted cost of one full evaluation (max epochs, all folds) as a share of --max_time; larger children are shrunk",
    )
    p.add_argument(
        "--max_evaluations",
        type=int,
        default=None,
        help="stop after this many evaluations (member x budget)",
    )
    p.add_argument(
        "--eval_time_limit",
        type=float,
        default=None,
        help="seconds one evaluation may train (default: 4x its predicted cost, at least 10 s)",
    )
    p.add_argument(
        "--max_memory",
        type=float,
        default=None,
        metavar="GIB",
        help="memory one evaluation may need, estimated before it trains; one over it is "
        "recorded failed (default: half the memory available at the start over the workers)",
    )
    p.add_argument("--no_progress", action="store_true", help="log lines only, no progress bar")
    p.add_argument(
        "--dry_run",
        action="store_true",
        help="print the Hyperband schedule and its cost, then exit",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def config_from_args(args: argparse.Namespace, random_search: bool = False) -> SearchConfig:
    """The arguments as a SearchConfig (which validates them: one line per problem, before any work)."""
    # numpy and Pillow fail on these deep inside the search, long after the start
    require_seed(args.seed)
    require_image_size(args.image_size)
    settings = SearchSettings(
        pop_size=args.pop_size,
        num_children=args.num_children,
        hyperband=args.hyperband,
        min_epochs=args.min_epochs,
        max_epochs=args.epochs,
        eta=args.eta,
        max_time=args.max_time,
        max_evaluations=args.max_evaluations,
        eval_time_limit=args.eval_time_limit,
        eval_cost_share=args.eval_cost_share,
        seed=args.seed,
        random_search=random_search,
        inherit_weights=args.inherit_weights,
        async_promotion=args.async_promotion,
        recipe_starts=args.recipes,
    )
    return SearchConfig(
        settings=settings,
        max_params=args.constraint_max_model_size,
        min_precision=args.constraint_min_precision,
        space=args.space,
        data_dir=args.data_dir,
        image_size=tuple(args.image_size) if args.image_size else None,
        cv_folds=args.cv_folds,
        run_dir=args.run_dir,
        resume=args.resume,
        device=args.device,
        progress=not args.no_progress,
        workers=None if args.workers == "auto" else args.workers,
        scheduler_address=args.scheduler_address,
        scheduler_file=args.scheduler_file,
        max_memory=getattr(args, "max_memory", None),
    )


class RunStarted(BaseCallback):
    """Notes the start of the search, when its run directory holds its ledger: a run directory
    that cannot be written before it is bad input (exit 2), after it the environment failing
    (exit 4); from then on an internal error's traceback goes to the run's error.log."""

    def __init__(self) -> None:
        self.started = False

    def on_run_start(self, search: SearchView) -> None:
        self.started = True
        use_run_dir(search.run_dir)


def unwritable_at_start(exc: Exception, root: Path) -> StoreError | None:
    """``exc``, raised before the search started, as the bad input it is when it is a failure to
    write the run directory (under ``root``); None for any other failure."""
    if isinstance(exc, StoreWriteError):
        return StoreError(str(exc))
    filename = getattr(exc, "filename", None)
    if not isinstance(exc, OSError) or filename is None:
        return None
    path = Path(os.path.abspath(os.fsdecode(filename)))
    if path != root and root not in path.parents:
        return None
    return StoreError(
        f"Cannot write the run directory at {path} ({exc.strerror or exc}); choose another "
        "--run_dir, or make it writable."
    )


def main(argv: list[str] | None = None, random_search: bool = False) -> int:
    args = build_parser(random_search).parse_args(argv)
    setup_logging(args.verbose)
    config = config_from_args(args, random_search)
    if args.dry_run:
        if config.settings.async_promotion:
            rungs = HyperbandSchedule(args.min_epochs, args.epochs, args.eta).brackets[0].budgets
            print(
                f"Asynchronous promotion: every member climbs the rungs {', '.join(map(str, rungs))} "
                f"epochs ({args.cv_folds} folds each); one goes up as soon as it ranks in the top "
                f"1/{args.eta} of its rung so far, else a new member starts."
            )
        elif config.settings.hyperband:
            schedule = HyperbandSchedule(args.min_epochs, args.epochs, args.eta)
            print(schedule)
            print(
                f"  x {args.cv_folds} folds = {schedule.epochs_cost() * args.cv_folds} epoch-folds per generation"
            )
            initial = schedule.initial_bracket(args.pop_size)
            print(
                f"Initial population of {args.pop_size} (before any child): {initial.rungs()}   "
                f"({initial.epochs_cost()} epochs per fold, "
                f"{initial.epochs_cost() / schedule.epochs_cost():.2g} generations)"
            )
        else:
            print(
                f"No Hyperband: {args.num_children} children x {args.epochs} epochs x {args.cv_folds} folds per generation"
            )
        return EXIT_OK
    started = RunStarted()
    try:
        report = run_search(config, callbacks=[started])
    except (StoreWriteError, OSError) as exc:
        refusal = unwritable_at_start(exc, resolve_default(args.run_dir or "runs"))
        if started.started or refusal is None:
            raise
        raise refusal from exc
    print(report.format())
    if report.stopped_by.startswith(REPEATED_ERRORS):
        # Not 0 or 1: the search stopped short of its budget, so what it found is not its
        # answer. Not 3: this process did not fail, and the tracebacks are in the ledger's
        # errors table. 4, as for a full disk or a lost cluster: something outside the search's
        # own logic (a driver, a library, memory, the code of a composed space) failed the
        # evaluations, every finished one is in the ledger, and --resume continues once the
        # cause is fixed.
        print(
            f"error: the search stopped early: {' '.join(report.stopped_by.split())}; fix the "
            "cause, then continue with --resume.",
            file=sys.stderr,
        )
        return EXIT_ENVIRONMENT
    return EXIT_OK if report.feasible else EXIT_VIOLATED


if __name__ == "__main__":
    run_cli(main)
