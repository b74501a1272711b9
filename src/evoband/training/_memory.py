"""How much memory training a configuration needs, estimated before it trains, and the bound an
evaluation must stay under (a kernel out-of-memory kill takes the whole search process down;
refusing the evaluation costs one ``failed`` record).

The estimate counts, in float32: the parameters four times (weights, gradients and the two
moments of Adam; SGD keeps fewer) and, per sample of a batch, every convolution's output
:data:`ACTIVATION_COPIES` times (the output, its normalised and activated versions kept for the
backward pass, and a gradient of that size during it). It leaves out what does not grow with the
configuration (the data set, the interpreter), which the bound's share of memory leaves room for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psutil

from ..nets._family import NetworkFamily

BYTES_PER_VALUE = 4
PARAMETER_COPIES = 4
ACTIVATION_COPIES = 4
MEMORY_SHARE = 0.5
"""The default bound: this share of the memory available when the search starts, split over
its workers."""
GIB = 2**30


def training_bytes(
    config: Mapping[str, Any], input_shape: tuple[int, ...], n_classes: int, family: NetworkFamily
) -> int:
    """The estimated peak memory of training ``config`` (see the module's docstring)."""
    params = family.count_params(config, input_shape, n_classes)
    elements = family.activation_elements(config, input_shape, n_classes)
    batch = int(config.get("batch_size", 32))
    return BYTES_PER_VALUE * (PARAMETER_COPIES * params + ACTIVATION_COPIES * batch * elements)


def default_memory_bound(workers: int) -> int:
    """:data:`MEMORY_SHARE` of the memory available now, over ``workers`` (bytes)."""
    return int(MEMORY_SHARE * psutil.virtual_memory().available / max(1, workers))
