"""Predicted training cost of a configuration, before it is trained.

Seconds per epoch and fold are modelled as compute, memory-bound work on activations and per-step
overhead:

    seconds = images * (3 * MACs per sample / MAC rate + conv output elements * element cost)
              + batches per epoch * step overhead

(3: forward, backward through activations and through weights). The constants are measured
defaults for one CPU thread (``benchmarks/cost_model.py`` fits them); :meth:`CostModel.observe` refits a correction factor from the run's
own timings, so the prediction follows the machine and the device the search runs on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..core._errors import ConfigError
from ..nets._family import SHIPPED, NetworkFamily

DEFAULT_MAC_RATE = 9.0e10
"""Multiply-accumulates per second of one CPU thread on small CNNs. This and the two constants
below are the relative least-squares fit of ``benchmarks/cost_model.py`` (43 configurations of the
extended space on micro17flower, one thread of a 2-core machine: measured / predicted 0.75-1.77,
median 1.05)."""

DEFAULT_ELEMENT_SECONDS = 1.2e-8
"""Seconds per conv output element and image (activation, BatchNorm, pooling; forward and back)."""

DEFAULT_STEP_OVERHEAD = 0.0013
"""Seconds per optimizer step beyond the convolutions (batch slicing, augmentation, BN, update)."""


class CostModel:
    """Predicts seconds of training; learns a correction factor from observed timings.

    Args:
        input_shape: C x H x W of the images.
        n_classes: outputs of the network.
        n_train: training images per fold.
        family: counts the MACs and conv output elements of a configuration's network
            (default: the shipped :class:`evoband.nets._cnn.ConfigurableCNN`).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        n_classes: int,
        n_train: int,
        family: NetworkFamily = SHIPPED,
    ) -> None:
        self.input_shape, self.n_classes, self.n_train = input_shape, n_classes, n_train
        self.family = family
        self._log_ratios: list[float] = []

    def base_seconds_per_epoch(self, config: Mapping[str, Any]) -> float:
        """Seconds per epoch of one fold under the default constants (no correction)."""
        macs = self.family.macs_per_sample(config, self.input_shape, self.n_classes)
        elements = self.family.activation_elements(config, self.input_shape, self.n_classes)
        steps = math.ceil(self.n_train / int(config["batch_size"]))
        per_image = 3 * macs / DEFAULT_MAC_RATE + elements * DEFAULT_ELEMENT_SECONDS
        return self.n_train * per_image + steps * DEFAULT_STEP_OVERHEAD

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

    def full_evaluation_seconds(self, config: Mapping[str, Any], epochs: int, folds: int) -> float:
        """Predicted seconds to train ``epochs`` epochs on each of ``folds`` folds from scratch.

        Under the default constants, not the refit, so that what is decided on it (which
        children are repaired) depends on the seed only: the same seed gives the same search
        anywhere. A network the input is too small for costs infinitely much.
        """
        try:
            per_epoch = self.base_seconds_per_epoch(config)
        except ConfigError:
            return float("inf")
        return per_epoch * epochs * folds

    def time_limit(self, config: Mapping[str, Any], epochs: float, folds: int) -> float:
        """Seconds a step of ``epochs`` epochs on ``folds`` folds may train: four times its
        predicted cost (refitted to this machine's timings so far), and at least 10 s."""
        return max(10.0, 4.0 * self.seconds(config, epochs, folds))

    def observe(self, config: Mapping[str, Any], epochs: float, folds: int, seconds: float) -> None:
        """Record a measured training time (ignored when nothing was trained)."""
        if epochs <= 0 or folds <= 0 or seconds <= 0:
            return
        predicted = self.base_seconds_per_epoch(config) * epochs * folds
        self._log_ratios.append(math.log(seconds / predicted))
