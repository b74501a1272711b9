"""Train one configuration and score it: K-fold CV, or train -> test with -t (from scratch, or after its lineage when it inherited weights).

python src/main.py -c runs/<run>/opt_cfg.json -t True
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import torch
from torchinfo import summary
from tqdm.auto import tqdm

from evoband.cli import (
    EXIT_OK,
    EXIT_VIOLATED,
    HelpFormatter,
    flag,
    model_size,
    run_cli,
    setup_logging,
)
from evoband.core import ConfigError, resolve_user, write_json
from evoband.nets import build_model, export_model
from evoband.search import SearchSettings
from evoband.space import SPACES, get_space, load_config
from evoband.store import read_training_record
from evoband.training import (
    Constraints,
    Task,
    channel_stats,
    confusion_matrix,
    distillation_record,
    evaluate,
    lineage_source,
    load_data,
    resolve_device,
    teacher_targets,
)

logger = logging.getLogger("evoband")

DEFAULT_EPOCHS = SearchSettings().max_epochs


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    p.add_argument(
        "-c",
        "--configuration",
        required=True,
        help="JSON file with the configuration (e.g. opt_cfg.json)",
    )
    flag(
        p,
        "-t",
        "--use_test_data",
        help="train on the whole training split and evaluate on the test split",
    )
    p.add_argument(
        "-e",
        "--epochs",
        type=int,
        default=None,
        help=f"epochs to train (default: the epochs the configuration was selected at, from <configuration>.training.json beside it, else {DEFAULT_EPOCHS})",
    )
    p.add_argument(
        "--seed", type=int, default=123, help="fixes splits, initialisation and training randomness"
    )
    p.add_argument(
        "-m",
        "--model_path",
        default=None,
        help="save the trained model's state_dict here (test mode)",
    )
    p.add_argument(
        "--export",
        default=None,
        metavar="PATH",
        help="save the trained model as a torch.export program (e.g. model.pt2) with its class "
        "names and input normalisation (test mode)",
    )
    p.add_argument(
        "-s",
        "--constraint_max_model_size",
        type=model_size,
        default=int(2e7),
        help="max trainable parameters",
    )
    p.add_argument(
        "-p", "--constraint_min_precision", type=float, default=0.39, help="min precision"
    )
    p.add_argument(
        "--space",
        choices=["auto", *sorted(SPACES)],
        default="auto",
        help="space to validate the configuration in",
    )
    p.add_argument(
        "--cv_folds", type=int, default=3, help="K of stratified K-fold cross-validation"
    )
    p.add_argument(
        "--data_dir", default=None, help="image folder with train/ and test/, or 'digits'"
    )
    p.add_argument(
        "--image_size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="resize images on load",
    )
    flag(
        p,
        "--lineage",
        default=True,
        help="for a configuration that inherited weights in the search (its training record has "
        "a lineage), retrain its ancestors first and start from their weights, as it was scored",
    )
    p.add_argument(
        "--distill",
        type=int,
        default=0,
        metavar="K",
        help="test mode: train K copies of the network first (other seeds, same budget), then "
        "the network towards their averaged soft predictions as well as the labels (knowledge "
        "distillation; K + 1 trainings, still one network of the same size)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    p.add_argument(
        "--out",
        default=None,
        help="result JSON path (default: result_cv.json / result_test.json next to the configuration)",
    )
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def read_configuration(path: Path, space_name: str) -> tuple[dict, str]:
    """The validated configuration and the space it belongs to (the first that holds all keys)."""
    names = list(SPACES) if space_name == "auto" else [space_name]
    error: ConfigError | None = None
    for name in names:
        try:
            return load_config(path, get_space(name)), name
        except ConfigError as exc:
            error = error or exc
            if "Unknown hyperparameter" not in str(exc):
                raise
    assert error is not None
    raise error


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.epochs is not None and args.epochs < 1:
        raise ConfigError(f"--epochs is {args.epochs}, but must be >= 1.")
    if args.distill < 0:
        raise ConfigError(f"--distill is {args.distill}, but must be >= 0 (0: no teachers).")
    if args.distill and not args.use_test_data:
        raise ConfigError(
            "--distill trains the network on the whole training split; pass -t True with it."
        )
    if args.export and not args.use_test_data:
        raise ConfigError(
            "--export saves the network trained on the whole training split; pass -t True with it."
        )
    constraints = Constraints.of(args.constraint_max_model_size, args.constraint_min_precision)
    cfg_path = resolve_user(args.configuration)
    config, space_name = read_configuration(cfg_path, args.space)
    selected = read_training_record(cfg_path)
    segments: list[int] = []
    if args.epochs is None and selected is not None:
        args.epochs, segments = selected["epochs"], selected["segments"]
        logger.info(
            "Training %d epochs with LR cycles ending at %s, as the configuration was selected "
            "(%s); pass -e to override.",
            args.epochs,
            segments,
            cfg_path.stem + ".training.json",
        )
    elif args.epochs is None:
        args.epochs = DEFAULT_EPOCHS
    segments = [b for b in segments if b <= args.epochs]
    data = load_data(args.data_dir, args.image_size)
    device = resolve_device(args.device)
    model = build_model(
        config, data.input_shape, data.n_classes
    )  # raises ConfigError before training
    print(
        summary(
            model,
            input_size=(1, *data.input_shape),
            verbose=0,
            depth=3,
            col_names=("output_size", "num_params"),
        )
    )
    task = Task(
        data,
        cv_folds=args.cv_folds,
        split_seed=args.seed,
        device=device,
        use_test=args.use_test_data,
    )
    mode = "test" if args.use_test_data else "cv"

    def bar(fold: int, label: str | None = None):
        if args.no_progress:
            return None
        if label is None:
            label = "train->test" if args.use_test_data else f"fold {fold + 1}/{len(task.splits)}"
        progress = tqdm(total=args.epochs, desc=label, unit="epoch", leave=True)

        def update(done: int, loss: float, acc: float) -> None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}")
            if done >= args.epochs:
                progress.close()

        return update

    with tempfile.TemporaryDirectory(prefix="evoband-lineage-") as workdir:
        source = lineage_source(
            selected if args.lineage else None,
            config,
            task,
            seed=args.seed,
            workdir=Path(workdir),
        )
        distillation = None
        if args.distill:
            distillation = teacher_targets(
                config,
                args.epochs,
                task=task,
                seed=args.seed,
                teachers=args.distill,
                segments=segments,
                inherit=source,
                on_epoch=lambda i: bar(0, f"teacher {i + 1}/{args.distill}"),
            )
        result = evaluate(
            config,
            args.epochs,
            task=task,
            seed=args.seed,
            segments=segments,
            on_epoch=bar,
            keep_predictions=True,
            inherit=source,
            distill=distillation,
        )
    violated = constraints.violated(result)
    rows = [
        ("top-3 accuracy", f"{result.top3:.4f}"),
        ("top-1 accuracy", f"{result.top1:.4f}"),
        ("precision", f"{result.precision:.4f}"),
        ("num_params", f"{result.num_params:,}"),
        ("status", result.status),
    ]
    rows += [(c.describe(), "violated" if c in violated else "met") for c in constraints.all]
    print(f"\n{'mode':<28}{'test split' if args.use_test_data else f'{len(task.splits)}-fold CV'}")
    for name, value in rows:
        print(f"{name:<28}{value}")
    out = Path(args.out) if args.out else cfg_path.with_name(f"result_{mode}.json")
    record = {
        "mode": mode,
        "configuration": config,
        "space": space_name,
        "epochs": args.epochs,
        "segments": segments,
        "seed": args.seed,
        "lineage": len(selected["lineage"]) - 1 if source is not None and selected else 0,
        "distill": distillation_record(args.distill, distillation),
        "data": data.describe(),
        "constraints": {c.name: c.describe() for c in constraints.all},
        "violated": [c.name for c in violated],
        **result.to_dict(),
    }
    if args.use_test_data:
        fold = result.folds[0]
        cm = confusion_matrix(
            torch.tensor(fold.predicted), torch.tensor(fold.labels), data.n_classes
        )
        record["classes"] = list(data.classes)
        record["confusion_matrix"] = cm.tolist()
        if args.model_path and fold.model is not None:
            torch.save(fold.model.state_dict(), resolve_user(args.model_path))
        if args.export and fold.model is not None:
            mean, std = channel_stats(data.train.images)
            exported = export_model(
                fold.model,
                Path(args.export),
                classes=data.classes,
                mean=mean,
                std=std,
                input_shape=data.input_shape,
                extra={"config": config, "epochs": args.epochs, "segments": segments},
            )
            record["export"] = exported.to_dict()
            print(f"{'export size (bytes)':<28}{exported.size_bytes:,}")
            print(f"{'CPU latency per image':<28}{exported.latency_ms:.3f} ms")
            print(exported.format())
    write_json(out, record)
    print(f"Wrote {out}")
    if violated or not result.ok:
        print(
            "Constraint violated: " + ", ".join(c.describe() for c in violated)
            if violated
            else f"Training {result.status}."
        )
        return EXIT_VIOLATED
    return EXIT_OK


if __name__ == "__main__":
    run_cli(main)
