"""Shared fixtures: a tiny generated image folder and a seed that an env variable can widen."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

TINY_CLASSES = ("a", "b", "c")
TINY_SIZE = 8
TINY_TRAIN_PER_CLASS = 12
TINY_TEST_PER_CLASS = 4

# One base colour per class, far apart, so that even a tiny net separates them in a few epochs.
_CLASS_COLOURS = np.array([[220, 40, 40], [40, 220, 40], [40, 40, 220]], dtype=np.float64)


def _seeds() -> list[int]:
    """Seeds to run seeded tests with: ``EVOBAND_TEST_SEEDS="0,1,2"`` widens the default [0]."""
    raw = os.environ.get("EVOBAND_TEST_SEEDS", "0")
    return [int(part) for part in raw.split(",") if part.strip()]


@pytest.fixture(params=_seeds(), ids=lambda s: f"seed{s}")
def seed(request: pytest.FixtureRequest) -> int:
    """A seed for tests whose outcome must hold for any seed."""
    return int(request.param)


# The test networks are tiny: one intra-op thread is fastest, and on a busy 2-core machine extra
# OpenMP threads spin against each other (tens of times slower). Results do not depend on it.
torch.set_num_threads(1)


def write_image(path: Path, pixels: np.ndarray) -> None:
    """Save an ``H x W x 3`` (RGB) or ``H x W`` (grayscale) uint8 array as an image file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(path)


def make_image_folder(
    root: Path,
    classes: tuple[str, ...] = TINY_CLASSES,
    n_train: int = TINY_TRAIN_PER_CLASS,
    n_test: int = TINY_TEST_PER_CLASS,
    size: int = TINY_SIZE,
    grayscale: bool = False,
    seed: int = 0,
) -> Path:
    """Write ``root/{train,test}/<class>/<i>.png`` with class-dependent colours plus noise."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", n_train), ("test", n_test)):
        for index, name in enumerate(classes):
            colour = _CLASS_COLOURS[index % len(_CLASS_COLOURS)] * (1.0 - 0.25 * (index // 3))
            for i in range(count):
                noise = rng.normal(0.0, 25.0, size=(size, size, 3))
                pixels = np.clip(colour[None, None, :] + noise, 0, 255).astype(np.uint8)
                if grayscale:
                    pixels = pixels.mean(axis=2).astype(np.uint8)
                write_image(root / split / name / f"{i:03d}.png", pixels)
    return root


@pytest.fixture
def tiny_image_root(tmp_path: Path) -> Path:
    """3 classes x (12 train + 4 test) RGB 8x8 PNGs, class-coloured, under ``tmp_path/tiny``."""
    return make_image_folder(tmp_path / "tiny")


@pytest.fixture
def image_folder_factory(tmp_path: Path):
    """``make(name, **options)`` writes a generated image folder under ``tmp_path/name``."""

    def make(name: str, **options) -> Path:
        return make_image_folder(tmp_path / name, **options)

    return make
