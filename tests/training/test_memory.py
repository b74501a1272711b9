"""The memory estimate of training a configuration."""

from __future__ import annotations

from evoband.nets._family import CnnFamily
from evoband.training._memory import (
    ACTIVATION_COPIES,
    BYTES_PER_VALUE,
    PARAMETER_COPIES,
    default_memory_bound,
    training_bytes,
)
from helpers import SMALL_CONFIG

SHAPE, CLASSES = (3, 16, 16), 17


def test_the_estimate_is_the_parameters_and_a_batch_of_activations() -> None:
    family = CnnFamily()
    params = family.count_params(SMALL_CONFIG, SHAPE, CLASSES)
    elements = family.activation_elements(SMALL_CONFIG, SHAPE, CLASSES)
    small = training_bytes({**SMALL_CONFIG, "batch_size": 8}, SHAPE, CLASSES, family)
    large = training_bytes({**SMALL_CONFIG, "batch_size": 64}, SHAPE, CLASSES, family)
    assert small == BYTES_PER_VALUE * (PARAMETER_COPIES * params + ACTIVATION_COPIES * 8 * elements)
    assert large - small == BYTES_PER_VALUE * ACTIVATION_COPIES * 56 * elements > 0


def test_the_default_bound_splits_the_free_memory_over_the_workers() -> None:
    one, two = default_memory_bound(1), default_memory_bound(2)
    assert one > 0 and abs(two - one / 2) < one * 0.05  # free memory moves a little in between
