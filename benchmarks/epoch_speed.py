"""Seconds per epoch-fold: evoband's in-memory pipeline against a reference-style DataLoader one.

An *epoch-fold* is one training epoch on the training part of one CV fold (fold 0 of K=3
stratified folds, ~680 images of micro17flower) followed by scoring that fold's validation part
(~340 images). Two pipelines are timed in the same process, interleaved per repeat (their order
alternates between repeats), so that the machine's noise hits both alike:

(a) ours: :class:`evoband.training._target.Task` (images decoded once into a tensor and normalised once;
    the one-off cost is printed but not timed) + :func:`evoband.training._loop.make_state`,
    :func:`evoband.training._loop.train` and :func:`evoband.training._loop.evaluate_model`.
(b) reference-style: a ``torch.utils.data.Dataset`` that opens each JPEG with Pillow in
    ``__getitem__`` (decode, to tensor, normalise with the same mean/std), a shuffling
    ``DataLoader``, the same model (:func:`evoband.nets._cnn.build_model`) and optimizer
    (:func:`evoband.training._loop.make_optimizer`), a plain training loop and a validation DataLoader.
    It pays the decode every epoch, by design.

Each timed measurement builds a fresh model + optimizer (outside the timed region), then times
training for ``--epochs`` epochs plus one validation pass; the reported value is that time divided
by ``--epochs``, the median over ``--repeats``. One untimed warm-up measurement per pipeline and
configuration comes first.

Run from the repository root::

    python benchmarks/epoch_speed.py --repeats 3
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

try:
    import evoband  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from evoband.nets import build_model, count_params  # noqa: E402
from evoband.space import DEFAULT_NETWORK
from evoband.training import (  # noqa: E402
    IMAGE_SUFFIXES,
    Task,
    channel_stats,
    cpu_threads_for,
    derive_seed,
    evaluate_model,
    find_data_dir,
    load_data,
    make_optimizer,
    make_state,
    stratified_folds,
    train,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "epoch_speed.csv"
CV_FOLDS = 3
FOLD = 0
SEED = 0

_COMMON: dict[str, Any] = {
    "learning_rate_init": DEFAULT_NETWORK["learning_rate_init"],
    "use_BN": False,
    "global_avg_pooling": True,
    "dropout_rate": 0.2,
    "optimizer": "adamw",
    "train_criterion": "cross_entropy",
}

CONFIGS: dict[str, dict[str, Any]] = {
    "tiny": {
        **_COMMON,
        "batch_size": 32,
        "kernel_size": 3,
        "n_conv_layers": 1,
        "n_channels_conv_0": 16,
        "n_fc_layers": 1,
        "n_channels_fc_0": 16,
    },
    "small": {
        **_COMMON,
        "batch_size": 64,
        "kernel_size": 3,
        "n_conv_layers": 2,
        "n_channels_conv_0": 32,
        "n_channels_conv_1": 64,
        "n_fc_layers": 1,
        "n_channels_fc_0": 64,
    },
    "default": dict(DEFAULT_NETWORK),
}

COLUMNS = [
    "config",
    "params",
    "ours_s_per_epoch_fold",
    "reference_s_per_epoch_fold",
    "ratio_reference_over_ours",
]


# --------------------------------------------------------------------------------------------
# (b) the reference-style pipeline


class JpegFolderDataset(Dataset):
    """Image-folder dataset that decodes each file with Pillow on every access."""

    def __init__(
        self, files: Sequence[Path], labels: Sequence[int], mean: torch.Tensor, std: torch.Tensor
    ) -> None:
        self.files = list(files)
        self.labels = list(labels)
        self.mean = mean.view(-1, 1, 1)
        self.std = std.view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.files[index]) as img:
            array = np.asarray(img.convert("RGB"), dtype=np.uint8)
        x = torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(255.0)  # like ToTensor()
        return (x - self.mean) / self.std, self.labels[index]  # like Normalize(mean, std)


def list_image_files(split_dir: Path) -> tuple[list[Path], list[int]]:
    """Files and labels of ``split_dir/<class>/`` in evoband's order (sorted class names and files)."""
    classes = sorted(
        p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    files: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        for path in sorted((split_dir / name).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
                files.append(path)
                labels.append(index)
    return files, labels


def reference_epoch_fold(
    config: Mapping[str, Any],
    train_set: Dataset,
    valid_set: Dataset,
    input_shape: tuple[int, int, int],
    n_classes: int,
    epochs: int,
    num_workers: int,
) -> float:
    """Build a fresh model, then time ``epochs`` epochs of training plus one validation pass."""
    torch.manual_seed(derive_seed(SEED, FOLD, 0))
    model = build_model(config, input_shape, n_classes)
    optimizer = make_optimizer(config, model.parameters())
    criterion = nn.CrossEntropyLoss()
    batch_size = int(config["batch_size"])
    generator = torch.Generator().manual_seed(derive_seed(SEED, FOLD, 1))
    train_loader = DataLoader(
        train_set, batch_size=batch_size, shuffle=True, num_workers=num_workers, generator=generator
    )
    valid_loader = DataLoader(
        valid_set, batch_size=batch_size, shuffle=False, num_workers=num_workers
    )

    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for xb, yb in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
    model.eval()
    correct, seen, total_loss = 0, 0, 0.0
    with torch.no_grad():
        for xb, yb in valid_loader:
            logits = model(xb)
            total_loss += float(criterion(logits, yb)) * len(yb)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(yb)
    elapsed = time.perf_counter() - start
    _check(total_loss / max(seen, 1), "reference")
    return elapsed


# --------------------------------------------------------------------------------------------
# (a) ours


def ours_epoch_fold(config: Mapping[str, Any], task: Task, epochs: int) -> float:
    """Build a fresh TrainState, then time ``epochs`` epochs of ``train`` plus ``evaluate_model``."""
    split = task.splits[FOLD]
    state = make_state(
        config,
        task.input_shape,
        task.n_classes,
        max_epochs=epochs,
        seed=derive_seed(SEED, FOLD, 0),
        device=task.device,
    )
    start = time.perf_counter()
    outcome = train(
        state,
        split.x_train,
        split.y_train,
        config=config,
        epochs=epochs,
        seed=derive_seed(SEED, FOLD, 1),
    )
    metrics, _ = evaluate_model(state.model, split.x_valid, split.y_valid, config)
    elapsed = time.perf_counter() - start
    if outcome.status != "ok":
        raise RuntimeError(f"evoband training ended as {outcome.status!r}")
    _check(metrics.loss, "ours")
    return elapsed


def _check(loss: float, pipeline: str) -> None:
    if not math.isfinite(loss):
        raise RuntimeError(f"The {pipeline} pipeline produced a non-finite validation loss.")


# --------------------------------------------------------------------------------------------


@dataclass
class Row:
    """Median timings of one configuration."""

    config: str
    params: int
    ours: float
    reference: float

    @property
    def ratio(self) -> float:
        return self.reference / self.ours if self.ours > 0 else float("nan")

    def values(self) -> list[Any]:
        return [
            self.config,
            self.params,
            f"{self.ours:.4f}",
            f"{self.reference:.4f}",
            f"{self.ratio:.2f}",
        ]


def format_table(rows: Sequence[Row]) -> str:
    """A plain-text table of the results."""
    header = ["config", "params", "ours s/epoch-fold", "reference s/epoch-fold", "ratio ref/ours"]
    cells = [header] + [
        [r.config, f"{r.params:,}", f"{r.ours:.4f}", f"{r.reference:.4f}", f"{r.ratio:.2f}"]
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def load_average() -> str:
    """The 1-minute load average (other processes compete with the timings), or '' if unknown."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (AttributeError, OSError):
        return ""


def machine_info(num_workers: int, repeats: int, epochs: int, load_start: str) -> dict[str, Any]:
    """Columns that say where and how the numbers were taken."""
    return {
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "num_workers": num_workers,
        "repeats": repeats,
        "epochs": epochs,
        "load_avg_start": load_start,
        "load_avg_end": load_average(),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_csv(path: Path, rows: Sequence[Row], info: Mapping[str, Any]) -> None:
    """Write the table's columns plus the machine-info columns (one row per configuration)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS + list(info))
        for row in rows:
            writer.writerow(row.values() + list(info.values()))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed measurements per pipeline and config; the median is reported (default 3)",
    )
    parser.add_argument(
        "--epochs", type=int, default=1, help="training epochs per measurement (default 1)"
    )
    parser.add_argument(
        "--configs",
        default="tiny,small,default",
        help=f"comma-separated subset of {','.join(CONFIGS)}",
    )
    parser.add_argument(
        "--data_dir",
        default=None,
        help="data set folder with train/ (default: evoband's search order)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="CSV file to write (default benchmarks/results/epoch_speed.csv)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default: leave torch's choice)",
    )
    parser.add_argument(
        "--num_workers",
        type=int,
        default=0,
        help="DataLoader workers of the reference pipeline (default 0)",
    )
    args = parser.parse_args(argv)
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown or not names:
        parser.error(f"unknown configs {unknown}; choose from {', '.join(CONFIGS)}")
    if args.repeats < 1 or args.epochs < 1:
        parser.error("--repeats and --epochs must be >= 1")
    args.configs = names
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    load_start = load_average()

    # (a) one-off: decode everything once, normalise once, split into folds (not timed per epoch).
    t0 = time.perf_counter()
    data = load_data(args.data_dir)
    t1 = time.perf_counter()
    task = Task(data, cv_folds=CV_FOLDS, split_seed=SEED, device="cpu")
    t2 = time.perf_counter()
    split = task.splits[FOLD]
    print(
        f"ours one-off (not in the timings): load_data {t1 - t0:.3f} s "
        f"({len(data.train)} train + {len(data.test)} test images decoded), Task {t2 - t1:.3f} s "
        f"(normalise + {CV_FOLDS} folds); total {t2 - t0:.3f} s"
    )

    # (b) file lists, the same folds and the same normalisation statistics.
    root = find_data_dir(args.data_dir)
    files, labels = list_image_files(root / "train")
    if labels != data.train.labels.tolist():
        raise RuntimeError("The reference file list does not match evoband's image order.")
    mean, std = channel_stats(data.train.images)
    fold = stratified_folds(data.train.labels, CV_FOLDS, SEED)[FOLD]
    train_set = JpegFolderDataset(
        [files[i] for i in fold.train_idx], [labels[i] for i in fold.train_idx], mean, std
    )
    valid_set = JpegFolderDataset(
        [files[i] for i in fold.valid_idx], [labels[i] for i in fold.valid_idx], mean, std
    )
    assert len(train_set) == len(split.y_train) and len(valid_set) == len(split.y_valid)
    print(
        f"data {root} | fold {FOLD} of {CV_FOLDS}: {len(train_set)} train / {len(valid_set)} valid | "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs | "
        f"repeats {args.repeats}, epochs {args.epochs}, reference num_workers {args.num_workers} | "
        f"load average {load_start}"
    )

    if load_start and float(load_start) > 0.5:
        print(
            f"note: load average {load_start} on {os.cpu_count()} CPUs: other processes compete, expect noisy timings"
        )

    chosen = ", ".join(
        f"{c} {cpu_threads_for(CONFIGS[c], task.input_shape, task.n_classes)}" for c in args.configs
    )
    print(
        f"ours trains with its own thread choice (evoband.training.cpu_threads_for): {chosen}; "
        f"reference uses {torch.get_num_threads()}"
    )

    pipelines: dict[str, Callable[[Mapping[str, Any]], float]] = {
        "ours": lambda cfg: ours_epoch_fold(cfg, task, args.epochs),
        "reference": lambda cfg: reference_epoch_fold(
            cfg,
            train_set,
            valid_set,
            task.input_shape,
            task.n_classes,
            args.epochs,
            args.num_workers,
        ),
    }
    times: dict[str, dict[str, list[float]]] = {c: {p: [] for p in pipelines} for c in args.configs}
    for name in args.configs:
        for pipeline, run in pipelines.items():
            warm = run(CONFIGS[name])
            print(f"  warm-up {name:8s} {pipeline:9s} {warm:8.3f} s", flush=True)
    for r in range(args.repeats):
        order = list(pipelines) if r % 2 == 0 else list(reversed(pipelines))
        for name in args.configs:
            for pipeline in order:
                seconds = pipelines[pipeline](CONFIGS[name]) / args.epochs
                times[name][pipeline].append(seconds)
                print(
                    f"  repeat {r + 1}/{args.repeats} {name:8s} {pipeline:9s} {seconds:8.3f} s/epoch-fold",
                    flush=True,
                )

    rows = [
        Row(
            name,
            count_params(CONFIGS[name], task.input_shape, task.n_classes),
            statistics.median(times[name]["ours"]),
            statistics.median(times[name]["reference"]),
        )
        for name in args.configs
    ]
    print()
    print(format_table(rows))
    out = args.out if args.out.is_absolute() else Path.cwd() / args.out
    write_csv(out, rows, machine_info(args.num_workers, args.repeats, args.epochs, load_start))
    print(
        f"\nwrote {out} | total wall time {time.perf_counter() - started:.1f} s | load average {load_average()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
