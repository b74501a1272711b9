"""Shared fixtures: a tiny generated image folder and a seed that an env variable can widen."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from helpers import make_image_folder


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
