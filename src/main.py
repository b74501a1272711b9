"""Train one configuration and score it: K-fold CV, or train -> test with -t (from scratch, or after its lineage when it inherited weights).

python src/main.py -c runs/<run>/opt_cfg.json -t True
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import torch
from ConfigSpace import ConfigurationSpace
from torchinfo import summary
from tqdm.auto import tqdm

from evoband.cli import (
    EXIT_OK,
    EXIT_VIOLATED,
    TRAINING_SEED_LIMIT,
    HelpFormatter,
    exit_codes,
    flag,
    model_size,
    require_image_size,
    require_seed,
    run_cli,
    setup_logging,
)
from evoband.core import (
    ConfigError,
    DataError,
    EvobandError,
    require_int,
    resolve_user,
    write_json,
)
from evoband.nets import build_model, export_model
from evoband.search import SearchSettings
from evoband.space import SPACES, get_space, load_config
from evoband.store import is_predictor_record, read_predictor_record, read_training_record
from evoband.training import (
    DIGITS,
    Constraints,
    EnsembleNetwork,
    Task,
    channel_stats,
    compute_metrics,
    confusion_matrix,
    data_fingerprint,
    distillation_record,
    find_data_dir,
    load_data,
    load_network,
    predict,
    resolve_device,
    retrain,
)

logger = logging.getLogger("evoband")

DEFAULT_EPOCHS = SearchSettings().max_epochs
LARGEST_VALUE = 2**63
"""Numbers in a configuration stay below this: ConfigSpace's range checks fail on wider ones."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=exit_codes(
            "the trained network (or ensemble) meets every constraint",
            "it misses a constraint, or its training failed",
        ),
        formatter_class=HelpFormatter,
    )
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
    flag(
        p,
        "--retrain",
        help="with an ensemble.json: retrain every member on the whole training split instead "
        "of loading the saved weights (members whose weights are missing are always retrained)",
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
            space = get_space(name)
            check_magnitudes(path, space)
            return load_config(path, space), name
        except ConfigError as exc:
            error = error or exc
            if "Unknown hyperparameter" not in str(exc):
                raise
    assert error is not None
    raise error


def check_magnitudes(path: Path, space: ConfigurationSpace) -> None:
    """Refuse, as load_config refuses an illegal value, a number in the configuration file
    ``path`` too wide for 64 bits (ConfigSpace's range check fails on it with a TypeError)."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return  # load_config says what is wrong with it
    if not isinstance(raw, dict):
        return
    for key, value in raw.items():
        if (
            key in space
            and isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and abs(value) >= LARGEST_VALUE
        ):
            raise ConfigError(
                f"Hyperparameter {key!r} in {path} has the value {value!r}, which is not "
                f"allowed: {space[key]}."
            )


def check_test_split(data_dir: str | None) -> None:
    """With -t: refuse a data folder without a test split before anything is loaded or trained."""
    if data_dir is not None and str(data_dir) == DIGITS:
        return
    root = find_data_dir(data_dir)
    if not (root / "test").is_dir():
        raise DataError(
            f"The data set {root} has no test/ split for -t to score on; add one (test/<class>/"
            "images), or drop -t to score by cross-validation."
        )


def is_predictor_file(path: Path) -> bool:
    """Whether ``path`` holds an ``ensemble.json`` (told apart from a configuration by content)."""
    try:
        return is_predictor_record(json.loads(path.read_text()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False  # read_configuration says what is wrong with it


def score_predictor(args: argparse.Namespace, path: Path, constraints: Constraints) -> int:
    """Score a search's predictor (``ensemble.json``) on the test split, from its saved weights;
    members whose weights are missing (every member, with ``--retrain``) are retrained on the
    whole training split first, by the one retrain function."""
    if not args.use_test_data:
        raise ConfigError(
            f"{path.name} is a trained predictor: score it on the test split with -t True."
        )
    if args.epochs is not None or args.distill:
        raise ConfigError("-e and --distill apply to a configuration, not to an ensemble.json.")
    record = read_predictor_record(path)
    if record.get("network_family", "cnn") != "cnn":
        raise ConfigError(
            f"{path} is a predictor of a composed space, which only its Python code can rebuild; "
            "use the population fit() returned (population.predictor)."
        )
    data = load_data(args.data_dir, args.image_size)
    if data_fingerprint(data) != record["data"].get("fingerprint"):
        raise DataError(
            f"{path} was trained on other data ({record['data'].get('location')}); pass "
            "--data_dir (and --image_size) of the data it was searched on."
        )
    device = resolve_device(args.device)
    task = Task(data, use_test=True, device=device)
    networks: list[list[torch.nn.Module]] = []
    retrained = 0
    for i, member in enumerate(record["members"]):
        files = [path.parent / f for f in member.get("weights", [])]
        seeds = member.get("seeds") or [member["seed"]] * max(len(files), 1)
        nets = []
        for j, seed in enumerate(seeds):
            weights = files[j] if j < len(files) else None
            if not args.retrain and weights is not None and weights.is_file():
                nets.append(
                    load_network(
                        member["config"], weights, data.input_shape, data.n_classes, device=device
                    )
                )
                continue
            logger.info(
                "Retraining member %s (seed %d) on the whole training split.",
                member["member_id"],
                seed,
            )
            trained = retrain(
                member["config"],
                member["epochs"],
                task=task,
                seed=seed,
                segments=member["segments"],
                record={"lineage": member["lineage"], "segments": member["segments"]}
                if member.get("lineage")
                else None,
                on_epoch=progress_bar(member["epochs"], f"member {i + 1}", args.no_progress),
            )
            if trained.model is None:
                raise EvobandError(
                    f"Retraining member {member['member_id']} ended {trained.result.status}."
                )
            nets.append(trained.model)
            retrained += 1
        networks.append(nets)
    ensemble = EnsembleNetwork(networks, [m["weight"] for m in record["members"]]).to(device).eval()
    split = task.splits[0]
    log_probabilities = predict(ensemble, split.x_valid)
    metrics = compute_metrics(log_probabilities, split.y_valid.cpu())
    num_params = sum(
        sum(p.numel() for p in net.parameters() if p.requires_grad)
        for nets in networks for net in nets
    )  # fmt: skip
    violated = [
        c for c, ok in (
            (constraints.max_params, constraints.max_params.allows(num_params)),
            (constraints.min_precision, metrics.precision >= constraints.min_precision.limit),
        ) if not ok
    ]  # fmt: skip
    n_networks = sum(len(nets) for nets in networks)
    rows = [
        ("mode", f"test split: ensemble of {len(networks)} member(s), {n_networks} network(s)"),
        ("top-3 accuracy", f"{metrics.top3:.4f}"),
        ("top-1 accuracy", f"{metrics.top1:.4f}"),
        ("precision (on test)", f"{metrics.precision:.4f}"),
        ("num_params", f"{num_params:,}"),
        ("retrained members", str(retrained)),
        ("out-of-fold top-3 (CV)", f"{record['out_of_fold']['top3']:.4f}"),
    ]
    rows += [(c.describe(), "violated" if c in violated else "met") for c in constraints.all]
    print()
    for name, value in rows:
        print(f"{name:<28}{value}")
    out = Path(args.out) if args.out else path.with_name("result_test_ensemble.json")
    result = {
        "mode": "test",
        "ensemble": path.name,
        "members": [[m["member_id"], m["epochs"], m["weight"]] for m in record["members"]],
        "retrained": retrained,
        "top3": metrics.top3,
        "top1": metrics.top1,
        "precision": metrics.precision,
        "num_params": num_params,
        "data": data.describe(),
        "constraints": {c.name: c.describe() for c in constraints.all},
        "violated": [c.name for c in violated],
        "classes": list(data.classes),
        "labels": split.y_valid.cpu().tolist(),
        "probabilities": log_probabilities.exp().round(decimals=5).tolist(),
    }
    if args.model_path:
        target = resolve_user(args.model_path)
        target.mkdir(parents=True, exist_ok=True)
        for member, nets in zip(record["members"], networks, strict=True):
            for j, net in enumerate(nets):
                torch.save(net.state_dict(), target / f"member_{member['member_id']:05d}_{j}.pt")
        print(f"{'weights saved to':<28}{target}")
    if args.export:
        mean, std = channel_stats(data.train.images)
        exported = export_model(
            ensemble, Path(args.export), classes=data.classes, mean=mean, std=std,
            input_shape=data.input_shape, extra={"ensemble": record["members"]},
        )  # fmt: skip
        result["export"] = exported.to_dict()
        print(f"{'export size (bytes)':<28}{exported.size_bytes:,}")
        print(f"{'CPU latency per image':<28}{exported.latency_ms:.3f} ms")
    write_json(out, result)
    print(f"Wrote {out}")
    if violated:
        print("Constraint violated: " + ", ".join(c.describe() for c in violated))
        return EXIT_VIOLATED
    return EXIT_OK


def progress_bar(epochs: int, label: str, disabled: bool = False):
    """A per-epoch tqdm bar for training one network (None when ``disabled``)."""

    def make(_fold: int):
        progress = tqdm(total=epochs, desc=label, unit="epoch", leave=True)

        def update(done: int, loss: float, acc: float) -> None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}")
            if done >= epochs:
                progress.close()

        return update

    return None if disabled else make


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    require_seed(args.seed, TRAINING_SEED_LIMIT)
    require_image_size(args.image_size)
    if args.epochs is not None:
        require_int("epochs", args.epochs, low=1)
    require_int("distill", args.distill, low=0, hint="0: no teachers.")
    if args.distill and not args.use_test_data:
        raise ConfigError(
            "--distill trains the network on the whole training split; pass -t True with it."
        )
    if args.export and not args.use_test_data:
        raise ConfigError(
            "--export saves the network trained on the whole training split; pass -t True with it."
        )
    constraints = Constraints.of(args.constraint_max_model_size, args.constraint_min_precision)
    if args.use_test_data:
        check_test_split(args.data_dir)
    cfg_path = resolve_user(args.configuration)
    if is_predictor_file(cfg_path):
        return score_predictor(args, cfg_path, constraints)
    if args.retrain:
        raise ConfigError(
            "--retrain applies to an ensemble.json; a configuration is always trained."
        )
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

    trained = retrain(
        config,
        args.epochs,
        task=task,
        seed=args.seed,
        segments=segments,
        record=selected if args.lineage else None,
        distill=args.distill,
        on_epoch=bar,
        on_teacher_epoch=lambda i: bar(0, f"teacher {i + 1}/{args.distill}"),
    )
    result, distillation = trained.result, trained.distillation
    violated = constraints.violated(result)
    rows = [
        ("top-3 accuracy", f"{result.top3:.4f}"),
        ("top-1 accuracy", f"{result.top1:.4f}"),
        ("precision (on test)" if args.use_test_data else "precision", f"{result.precision:.4f}"),
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
        "lineage": trained.lineage,
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
        if trained.model is not None:
            probabilities = predict(trained.model, task.splits[0].x_valid).softmax(dim=1)
            record["probabilities"] = probabilities.round(decimals=5).tolist()
            record["labels"] = task.splits[0].y_valid.cpu().tolist()
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
