"""The shipped search spaces by name, the recipes valid in a space, and reading user configs.

The spaces are written with the builders of :mod:`evoband.space._builders` (see
:mod:`evoband.space._shipped`); the genotype helpers (:mod:`evoband.space._genotype`) are re-exported here.
Every shipped space contains the reference default network.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from ConfigSpace import ConfigurationSpace

from ..core._errors import ConfigError
from ._genotype import (
    Config,
    fill,
    space_default,
    validate,
)
from ._recipes import RECIPES
from ._shipped import course_blocks, extended_blocks

logger = logging.getLogger(__name__)


def course_space(seed: int | None = None) -> ConfigurationSpace:
    """The reference task's space exactly, with its conditions; its default is the default network.

    Every value stays legal; the sampling weights favour what trains (Adadelta at these learning
    rates and MSE on softmax outputs rarely learn within a search's budgets).
    """
    return course_blocks().compile(seed)


def extended_space(seed: int | None = None) -> ConfigurationSpace:
    """The recommended space: what makes small CNNs good on tiny images.

    Over the course space's network family it adds two convolutions per stage, no hidden FC layer
    (global pooling straight into the classifier), augmentation (flip, shift), flip test-time
    averaging (``tta_flip``), weight decay, label
    smoothing, LR schedules planned per Hyperband rung (cosine, one-cycle) and the activation.
    It drops what does not train (Adadelta, MSE on softmax) and sizes widths for small inputs
    (8-512 channels). Its default is :data:`RECIPES` ``["bn-cnn"]``; the reference default
    network is a valid configuration of it too.
    """
    return extended_blocks().compile(seed)


def recipes(space: ConfigurationSpace) -> list[Config]:
    """The :data:`RECIPES` that are valid configurations of ``space``, in their listed order."""
    found = []
    for config in RECIPES.values():
        try:
            validate(space, config)
        except ConfigError:
            continue
        found.append(dict(config))
    return found


SPACES: dict[str, Callable[[int | None], ConfigurationSpace]] = {
    "course": course_space,
    "extended": extended_space,
}


def get_space(name: str, seed: int | None = None) -> ConfigurationSpace:
    """A shipped space by name."""
    if name not in SPACES:
        raise ConfigError(f"Unknown search space {name!r}; choose one of: {', '.join(SPACES)}.")
    return SPACES[name](seed)


def load_config(source: str | Path | Mapping[str, Any], space: ConfigurationSpace) -> Config:
    """Read and validate a user configuration (a JSON file such as ``opt_cfg.json`` or a dict).

    Unknown keys and illegal values are errors naming the key; keys of inactive layers are dropped
    with one warning; missing active keys are filled from the space's defaults, listed in one line.
    """
    if isinstance(source, Mapping):
        raw: Any = dict(source)
        origin = "the configuration"
    else:
        path = Path(source)
        origin = str(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"Cannot read configuration file {path}: {exc.strerror}.") from exc
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}."
            ) from exc
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{origin} must hold a JSON object of hyperparameters, not {type(raw).__name__}."
        )
    for key, value in raw.items():
        if key not in space:
            raise ConfigError(
                f"Unknown hyperparameter {key!r} in {origin} (not in the {space.name} space)."
            )
        if not isinstance(value, (bool, int, float, str)):
            raise ConfigError(
                f"Hyperparameter {key!r} in {origin} must be a single value, not {type(value).__name__} {value!r}."
            )
        hp = space[key]
        if (
            isinstance(value, float)
            and value.is_integer()
            and isinstance(hp.default_value, (int, np.integer))
            and not isinstance(hp.default_value, bool)
        ):
            raw[key] = int(value)
        if not hp.legal_value(raw[key]):
            raise ConfigError(
                f"Hyperparameter {key!r} in {origin} has the value {value!r}, which is not allowed: {hp}."
            )
    filled: list[str] = []

    def from_default(name: str) -> Any:
        filled.append(name)
        return space_default(space, name)

    values = fill(space, raw, from_default)
    ignored = sorted(set(raw) - set(values))
    if ignored:
        logger.warning(
            "Ignoring keys of inactive hyperparameters in %s: %s", origin, ", ".join(ignored)
        )
    if filled:
        logger.info("Filled missing keys from the defaults: %s", ", ".join(filled))
    validate(space, values)
    return values
