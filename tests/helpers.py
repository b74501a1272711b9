"""Shared helpers of the optimiser, store, search and CLI tests (not fixtures: plain functions)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from evoband.search._hooks import BaseCallback, SearchView
from evoband.search._hyperband import HyperbandSchedule
from evoband.search._member import Member, Origin
from evoband.search._settings import SearchSettings
from evoband.search._setup import SearchConfig
from evoband.store._ledger import RunStore
from evoband.training._results import Result, Status

REPO_ROOT = Path(__file__).resolve().parents[1]

TINY_SHAPE = (3, 8, 8)
TINY_CLASSES = 3

SMALL_CONFIG: dict[str, Any] = {
    "learning_rate_init": 0.01,
    "batch_size": 16,
    "kernel_size": 3,
    "use_BN": False,
    "global_avg_pooling": True,
    "dropout_rate": 0.1,
    "n_conv_layers": 1,
    "n_channels_conv_0": 16,
    "n_fc_layers": 1,
    "n_channels_fc_0": 16,
    "optimizer": "adam",
    "train_criterion": "cross_entropy",
}
"""A valid course-space genotype with about 800 parameters on the tiny images: fast to train."""


RUN_CONFIG: dict[str, Any] = dict(SMALL_CONFIG, batch_size=8, n_channels_fc_0=8)
"""The configuration of the members of synthetic runs (write_run)."""


def analytic_param_count(
    config: Mapping[str, Any], input_shape: Sequence[int], n_classes: int
) -> int:
    """The trainable parameters of the course/extended network family, by the formula.

    Per stage ``convs_per_stage`` (default 1) convs k x k (same padding) + bias, each with an
    optional BatchNorm (2 per channel), then MaxPool(2); global average pooling or flatten;
    Linear + bias per FC layer and for the head; all of it ``towers`` times (default 1).
    """
    c_in, h, w = input_shape
    k = int(config["kernel_size"])
    total = 0
    layers = int(config["n_conv_layers"])
    for i in range(layers):
        c_out = int(config[f"n_channels_conv_{i}"])
        for _ in range(int(config.get("convs_per_stage", 1))):
            total += c_in * c_out * k * k + c_out
            if config["use_BN"]:
                total += 2 * c_out
            c_in = c_out
    n_in = c_in if config["global_avg_pooling"] else c_in * (h >> layers) * (w >> layers)
    for i in range(int(config["n_fc_layers"])):
        n_out = int(config[f"n_channels_fc_{i}"])
        total += n_in * n_out + n_out
        n_in = n_out
    return (total + n_in * n_classes + n_classes) * int(config.get("towers", 1))


def tiny_count(config: Mapping[str, Any]) -> int:
    """Parameters of ``config`` on the tiny 8x8 RGB, 3-class images."""
    return analytic_param_count(config, TINY_SHAPE, TINY_CLASSES)


# One base colour per class, far apart, so that even a tiny net separates them in a few epochs.
_CLASS_COLOURS = np.array([[220, 40, 40], [40, 220, 40], [40, 40, 220]], dtype=np.float64)


def write_image(path: Path, pixels: np.ndarray) -> None:
    """Save an ``H x W x 3`` (RGB) or ``H x W`` (grayscale) uint8 array as an image file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(path)


def make_image_folder(
    root: Path,
    classes: tuple[str, ...] = ("a", "b", "c"),
    n_train: int = 12,
    n_test: int = 4,
    size: int = 8,
    grayscale: bool = False,
    seed: int = 0,
    informative: bool = True,
) -> Path:
    """Write ``root/{train,test}/<class>/<i>.png``: the tiny generated image set of the tests.

    Informative: one colour per class plus noise, learnt in an epoch or two. Not informative:
    every class is the same uniform noise, so no network reaches a high precision.
    """
    rng = np.random.default_rng(seed)
    for split, count in (("train", n_train), ("test", n_test)):
        for index, name in enumerate(classes):
            colour = _CLASS_COLOURS[index % len(_CLASS_COLOURS)] * (1.0 - 0.25 * (index // 3))
            for i in range(count):
                if informative:
                    noise = rng.normal(0.0, 25.0, size=(size, size, 3))
                    pixels = np.clip(colour[None, None, :] + noise, 0, 255).astype(np.uint8)
                else:
                    pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
                if grayscale:
                    pixels = pixels.mean(axis=2).astype(np.uint8)
                write_image(root / split / name / f"{i:03d}.png", pixels)
    return root


def call_cli(main: Callable[[list[str] | None], int], argv: list[str]) -> tuple[int, str, str]:
    """Run a CLI ``main`` in this process as ``run_cli`` does; return (exit code, stdout, stderr).

    The CLI plumbing installs a SIGTERM handler and replaces the root logger's handlers; both are
    restored so that tests stay independent.
    """
    from evoband.cli._plumbing import run_cli

    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    evoband_level = logging.getLogger("evoband").level
    saved_sigterm = signal.getsignal(signal.SIGTERM)
    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                run_cli(main, argv)
            except SystemExit as exc:
                code = exc.code
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        logging.getLogger("evoband").setLevel(evoband_level)
        signal.signal(signal.SIGTERM, saved_sigterm)
    return (0 if code is None else int(code)), out.getvalue(), err.getvalue()


def error_lines(stderr: str) -> list[str]:
    """The lines of ``stderr`` that report an error (``error:`` anywhere in the line)."""
    return [line for line in stderr.splitlines() if "error:" in line]


def default_sigint() -> None:
    """``preexec_fn`` of a child that a test stops with SIGINT: a shell that starts jobs without
    job control (a CI runner's, ``cmd &``) ignores SIGINT in them, and a Python started with
    SIGINT ignored never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def script(name: str, *args: str) -> list[str]:
    """The command line of ``src/<name>`` with ``args``."""
    return [sys.executable, str(REPO_ROOT / "src" / name), *args]


def run_script(name: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``src/<name>`` in a fresh Python process from the repository root."""
    return subprocess.run(
        script(name, *args),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_scripts_concurrently(
    commands: Sequence[list[str]], timeout: float = 300
) -> list[tuple[int, str, str]]:
    """Start every command at once (start-up time dominates) and wait for all of them."""
    procs = [
        subprocess.Popen(
            cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for cmd in commands
    ]
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        results.append((proc.returncode, out, err))
    return results


def snapshot(directory: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``directory``: relative path -> (mtime in ns, SHA-256 of the bytes)."""
    return {
        str(p.relative_to(directory)): (
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def write_run(
    run_dir: Path,
    *,
    seed: int = 0,
    random_search: bool = False,
    generations: int = 2,
    max_params: int = 10_000,
    min_precision: float = 0.5,
    data: str | None = None,
) -> Path:
    """A real run directory with a synthetic EA+HB (or RS+HB) history on a 2..8 epoch schedule."""
    rng = np.random.default_rng(seed)
    schedule = HyperbandSchedule(2, 8, 2)
    store = RunStore(run_dir)
    search = {
        "space": "course",
        "max_params": max_params,
        "min_precision": min_precision,
        "cv_folds": 3,
        "data": data or "nowhere",
        "pop_size": 4,
        "hyperband": True,
        "min_epochs": 2,
        "max_epochs": 8,
        "eta": 2,
        "seed": seed,
        "random_search": random_search,
    }
    store.set_run_info({"search": search})
    members: list[Member] = []
    clock = [0.0]
    quality: dict[int, float] = {}

    def new(generation: int, bracket: int | None) -> Member:
        member_id = len(members)
        config = dict(RUN_CONFIG, n_channels_conv_0=16 + member_id)
        member = Member(
            member_id,
            config,
            seed=member_id,
            num_params=int(rng.choice([3_000, 8_000, 30_000])),
            origin=Origin.SAMPLED if generation == 0 or random_search else Origin.MUTATED,
            parents=() if generation == 0 else (0,),
            generation=generation,
            bracket=bracket,
        )
        store.add_member(member)
        members.append(member)
        quality[member_id] = float(rng.uniform(0.2, 0.7))
        return member

    def run_eval(
        member: Member, epochs: int, generation: int, bracket: int | None, rung: int | None
    ) -> float:
        clock[0] += float(rng.uniform(5, 15))
        top3 = min(
            1.0, quality[member.member_id] + 0.04 * math.log2(epochs) + float(rng.normal(0, 0.02))
        )
        precision = min(1.0, top3 * float(rng.uniform(0.6, 1.0)))
        status = Status.DIVERGED if rng.random() < 0.05 else Status.OK
        if status != Status.OK:
            top3 = precision = 0.0
        result = Result(top3, top3 * 0.6, precision, member.num_params, epochs, 1.0, status)
        member.results[epochs] = result
        store.record_evaluation(
            member.member_id,
            result,
            generation=generation,
            bracket=bracket,
            rung=rung,
            elapsed=clock[0],
            state={},
        )
        return top3

    def end_generation(generation: int, population: list[Member]) -> None:
        accs = [m.result.top3 for m in population if m.result]
        precs = [m.result.precision for m in population if m.result]
        store.record_generation(
            generation,
            {
                "elapsed": clock[0],
                "population": [m.member_id for m in population],
                "avg_acc": float(np.mean(accs)),
                "best_acc": max(accs),
                "avg_prec": float(np.mean(precs)),
                "best_prec": max(precs),
                "best_feasible_acc": None,
                "n_evaluated": 0,
                "n_feasible": 0,
                "epochs_spent": 0,
            },
        )

    population = [new(0, None) for _ in range(4)]
    for m in population:
        run_eval(m, 2, 0, None, None)
    end_generation(0, population)
    for generation in range(1, generations + 1):
        for bracket in schedule.brackets:
            alive = [new(generation, bracket.s) for _ in range(bracket.n_members[0])]
            for rung, (n, budget) in enumerate(
                zip(bracket.n_members, bracket.budgets, strict=True)
            ):
                alive = alive[:n]
                for m in alive:
                    run_eval(m, budget, generation, bracket.s, rung)
                alive.sort(key=lambda m: -(m.result.top3 if m.result else 0.0))
            population = sorted(
                population + alive, key=lambda m: -(m.result.top3 if m.result else 0.0)
            )[:4]
        end_generation(generation, population)
    store.write_run_json(
        {
            "algorithm": "RS+HB" if random_search else "EA+HB",
            "search": search,
            "hyperband": schedule.to_dict(),
            "elapsed_seconds": clock[0] + 1.0,
            "data": {"name": "tiny", "location": data or "nowhere"},
            "arguments": {"image_size": None},
        }
    )
    store.close()
    return run_dir


def frame_of(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A ledger-like frame; unspecified columns take harmless defaults."""
    base = {
        "status": Status.OK,
        "top1": 0.0,
        "seconds": 1.0,
        "elapsed": 0.0,
        "finished": 0.0,
        "generation": 0,
        "bracket": None,
        "rung": None,
        "epochs": 2,
        "origin": Origin.SAMPLED,
        "parents": (),
    }
    out = [{**base, "finished": float(i), "elapsed": float(i), **row} for i, row in enumerate(rows)]
    return pd.DataFrame(out)


def tiny_search_config(
    settings: SearchSettings, data_dir: Path, run_dir: Path, **options: Any
) -> SearchConfig:
    """A search of the course space on a generated image folder: 2-fold CV, at most 20,000
    parameters, precision >= 0.1, no progress bar; ``options`` override or add SearchConfig's."""
    fields: dict[str, Any] = {
        "max_params": 20_000,
        "min_precision": 0.1,
        "space": "course",
        "data_dir": str(data_dir),
        "cv_folds": 2,
        "run_dir": str(run_dir),
        "progress": False,
    }
    return SearchConfig(settings=settings, **{**fields, **options})


class InterruptAfter(BaseCallback):
    """Raises KeyboardInterrupt (as Ctrl-C would) once ``after`` evaluations are recorded."""

    def __init__(self, after: int) -> None:
        self.after = after

    def on_evaluation(self, search: SearchView, member: Member, result: Result) -> None:
        if search.n_evaluations >= self.after:
            raise KeyboardInterrupt
