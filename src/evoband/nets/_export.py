"""Exporting a trained network as a ``torch.export`` program that loads with plain torch.

The file (``.pt2``, written by :func:`torch.export.save`) holds the program and its weights; its
extra file ``evoband.json`` holds what a user needs around it: the class names (output ``i`` is
``classes[i]``), the input shape and the normalisation the network expects. Load it anywhere
without evoband::

    extra = {"evoband.json": ""}
    program = torch.export.load("model.pt2", extra_files=extra)
    meta = json.loads(extra["evoband.json"])
    mean = torch.tensor(meta["mean"])[None, :, None, None]
    std = torch.tensor(meta["std"])[None, :, None, None]
    logits = program.module()((uint8_images / 255.0 - mean) / std)
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core._version import __version__

METADATA = "evoband.json"
"""The name of the metadata file inside an exported program."""


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote and how the program performs on this machine's CPU.

    Attributes:
        path: the ``.pt2`` file.
        size_bytes: its size.
        latency_ms: median CPU time of the loaded program on one image (batch of 1), in ms.
        classes: the class names, in output order.
    """

    path: Path
    size_bytes: int
    latency_ms: float
    classes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path), "classes": list(self.classes)}

    def format(self) -> str:
        return (
            f"Exported {self.path} ({self.size_bytes / 1e3:.1f} kB, "
            f"{self.latency_ms:.3f} ms per image on the CPU)"
        )


def export_model(
    model: nn.Module,
    path: str | Path,
    *,
    classes: Sequence[str],
    mean: torch.Tensor,
    std: torch.Tensor,
    input_shape: tuple[int, int, int],
    extra: Mapping[str, Any] | None = None,
) -> ExportReport:
    """Export ``model`` (in evaluation mode, on the CPU) with a dynamic batch dimension.

    Args:
        model: the trained network; it is copied, not changed.
        path: where to write the program (conventionally ``*.pt2``).
        classes: the class names, in output order.
        mean, std: the per-channel normalisation of the inputs, in [0, 1] pixel units (see
            :func:`evoband.training._data.channel_stats`): the network takes ``(pixels / 255 - mean) / std``.
        input_shape: ``C x H x W`` of one image.
        extra: more JSON-able facts for the metadata (configuration, epochs, ...).

    Returns:
        The file's size and the loaded program's CPU latency per image.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    network = copy.deepcopy(model).cpu().eval()
    example = torch.zeros(2, *input_shape)
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        program = torch.export.export(network, (example,), dynamic_shapes=({0: batch},))
    meta = {
        "classes": list(classes),
        "input_shape": list(input_shape),
        "input": "float32 N x C x H x W: (uint8 pixels / 255 - mean) / std per channel",
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "evoband_version": __version__,
        **dict(extra or {}),
    }
    torch.export.save(program, path, extra_files={METADATA: json.dumps(meta)})
    loaded, _ = load_exported(path)
    return ExportReport(
        path, path.stat().st_size, cpu_latency_ms(loaded, input_shape), tuple(classes)
    )


def load_exported(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The callable module of an exported program and its metadata (what plain torch does)."""
    extra = {METADATA: ""}
    program = torch.export.load(Path(path), extra_files=extra)
    return program.module(), json.loads(extra[METADATA] or "{}")


def cpu_latency_ms(
    module: nn.Module, input_shape: tuple[int, int, int], repeats: int = 25
) -> float:
    """Median milliseconds of ``module`` on one image on the CPU, after a warm-up."""
    x = torch.rand(1, *input_shape)
    times: list[float] = []
    with torch.no_grad():
        for i in range(repeats + 3):
            start = time.perf_counter()
            module(x)
            if i >= 3:
                times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)
