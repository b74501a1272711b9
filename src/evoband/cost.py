"""Predicted training cost of a configuration, before it is trained.

Seconds per epoch and fold are modelled as compute plus per-step overhead:

    seconds = 3 * MACs per sample * training images / MAC rate + batches per epoch * step overhead

(3: forward, backward through activations and through weights). The two constants are measured
defaults for one CPU thread; :meth:`CostModel.observe` refits a correction factor from the run's
own timings, so the prediction follows the machine and the device the search runs on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .cnn import macs_per_sample

DEFAULT_MAC_RATE = 5.8e10
"""Multiply-accumulates per second of one CPU thread on small CNNs (fitted to two networks of the
recipe family on micro17flower on a 2-core machine: 0.62 s and 0.24 s per epoch of 1020 images)."""

DEFAULT_STEP_OVERHEAD = 0.007
"""Seconds per optimizer step beyond the convolutions (batch slicing, augmentation, BN, update)."""


class CostModel:
    """Predicts seconds of training; learns a correction factor from observed timings.

    Args:
        input_shape: C x H x W of the images.
        n_classes: outputs of the network.
        n_train: training images per fold.
    """

    def __init__(self, input_shape: tuple[int, int, int], n_classes: int, n_train: int) -> None:
        self.input_shape, self.n_classes, self.n_train = input_shape, n_classes, n_train
        self._log_ratios: list[float] = []

    def base_seconds_per_epoch(self, config: Mapping[str, Any]) -> float:
        """Seconds per epoch of one fold under the default constants (no correction)."""
        macs = macs_per_sample(config, self.input_shape, self.n_classes)
        steps = math.ceil(self.n_train / int(config["batch_size"]))
        return 3 * macs * self.n_train / DEFAULT_MAC_RATE + steps * DEFAULT_STEP_OVERHEAD

    @property
    def correction(self) -> float:
        """Median ratio of observed to predicted seconds (1 before any observation)."""
        return float(math.exp(np.median(self._log_ratios))) if self._log_ratios else 1.0

    def seconds_per_epoch(self, config: Mapping[str, Any]) -> float:
        """Predicted seconds per epoch of one fold."""
        return self.base_seconds_per_epoch(config) * self.correction

    def seconds(self, config: Mapping[str, Any], epochs: float, folds: int = 1) -> float:
        """Predicted seconds to train ``epochs`` epochs on each of ``folds`` folds."""
        return self.seconds_per_epoch(config) * epochs * folds

    def observe(self, config: Mapping[str, Any], epochs: float, folds: int, seconds: float) -> None:
        """Record a measured training time (ignored when nothing was trained)."""
        if epochs <= 0 or folds <= 0 or seconds <= 0:
            return
        predicted = self.base_seconds_per_epoch(config) * epochs * folds
        self._log_ratios.append(math.log(seconds / predicted))
