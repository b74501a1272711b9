"""ConfigSpace search spaces and the genotype helpers that work on plain config dicts.

A genotype is a flat JSON-able ``dict`` valid in a ``ConfigurationSpace``; only active
hyperparameters are present. Every space here contains the reference default network.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from ConfigSpace import (
    Categorical,
    Configuration,
    ConfigurationSpace,
    Constant,
    Float,
    GreaterThanCondition,
    Integer,
    OrdinalHyperparameter,
)

from .errors import ConfigError
from .files import builtin
from .recipes import RECIPES

__all__ = [
    "DEFAULT_NETWORK",
    "MAX_LAYERS",
    "RECIPES",
    "SPACES",
    "Config",
    "complete",
    "course_space",
    "default_config",
    "extended_space",
    "get_space",
    "is_active",
    "load_config",
    "plain",
    "recipes",
    "sample",
    "sample_value",
    "validate",
]

logger = logging.getLogger(__name__)

Config = dict[str, Any]

MAX_LAYERS = 3

DEFAULT_NETWORK: Config = {
    "learning_rate_init": 0.0016651181400389517,
    "batch_size": 290,
    "kernel_size": 5,
    "use_BN": False,
    "global_avg_pooling": True,
    "dropout_rate": 0.2,
    "n_conv_layers": 3,
    "n_channels_conv_0": 457,
    "n_channels_conv_1": 511,
    "n_channels_conv_2": 38,
    "n_fc_layers": 2,
    "n_channels_fc_0": 27,
    "n_channels_fc_1": 17,
    "optimizer": "adamw",
    "train_criterion": "cross_entropy",
}
"""The reference default network (the course space's defaults), as the ``opt_cfg.json`` dict."""


def _add_layer_widths(
    cs: ConfigurationSpace,
    prefix: str,
    count: str,
    bounds: tuple[int, int],
    defaults: list[int],
    min_count: int = 1,
) -> None:
    widths = [
        Integer(f"{prefix}_{i}", bounds, log=True, default=defaults[i]) for i in range(MAX_LAYERS)
    ]
    cs.add(widths)
    for i in range(MAX_LAYERS):
        if i >= min_count:  # layer i exists when the count exceeds i
            cs.add(GreaterThanCondition(widths[i], cs[count], i))


def course_space(seed: int | None = None) -> ConfigurationSpace:
    """The reference task's space exactly, with its conditions; its default is the default network.

    Every value stays legal; the sampling weights favour what trains (Adadelta at these learning
    rates and MSE on softmax outputs rarely learn within a search's budgets).
    """
    cs = ConfigurationSpace(name="course", seed=seed)
    cs.add(
        [
            Float(
                "learning_rate_init",
                (1e-5, 0.1),
                log=True,
                default=DEFAULT_NETWORK["learning_rate_init"],
            ),
            Integer("batch_size", (4, 300), log=True, default=290),
            OrdinalHyperparameter("kernel_size", [3, 5, 7], default_value=5),
            Categorical("use_BN", [True, False], default=False),
            Categorical("global_avg_pooling", [True, False], default=True),
            Float("dropout_rate", (0.01, 0.5), log=True, default=0.2),
            Integer("n_conv_layers", (1, MAX_LAYERS), default=3),
            Integer("n_fc_layers", (1, MAX_LAYERS), default=2),
            Categorical(
                "optimizer", ["adam", "adamw", "sgd", "adad"], default="adamw", weights=[3, 3, 2, 1]
            ),
            Categorical(
                "train_criterion", ["cross_entropy", "mse"], default="cross_entropy", weights=[4, 1]
            ),
        ]
    )
    _add_layer_widths(cs, "n_channels_conv", "n_conv_layers", (16, 1024), [457, 511, 38])
    _add_layer_widths(cs, "n_channels_fc", "n_fc_layers", (4, 512), [27, 17, 273])
    return cs


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
    cs = ConfigurationSpace(name="extended", seed=seed)
    cs.add(
        [
            Float("learning_rate_init", (1e-4, 0.1), log=True, default=3e-3),
            Integer("batch_size", (16, 300), log=True, default=64),
            OrdinalHyperparameter("kernel_size", [3, 5, 7], default_value=3),
            Categorical("use_BN", [True, False], default=True, weights=[3, 1]),
            Categorical("global_avg_pooling", [True, False], default=True),
            Float("dropout_rate", (0.01, 0.5), log=True, default=0.1),
            Integer("n_conv_layers", (1, MAX_LAYERS), default=3),
            Integer("convs_per_stage", (1, 2), default=2),
            Integer("n_fc_layers", (0, MAX_LAYERS - 1), default=0),
            Categorical("optimizer", ["adam", "adamw", "sgd"], default="adamw", weights=[1, 2, 1]),
            Constant("train_criterion", "cross_entropy"),
            Float("weight_decay", (1e-6, 0.1), log=True, default=0.05),
            Float("label_smoothing", (0.0, 0.3), default=0.1),
            Categorical(
                "lr_schedule",
                ["constant", "cosine", "onecycle"],
                default="onecycle",
                weights=[1, 2, 3],
            ),
            Categorical("activation", ["relu", "leaky_relu", "gelu", "silu"], default="relu"),
            Categorical("aug_flip", [True, False], default=True),
            Integer("aug_shift", (0, 3), default=2),
            Categorical("tta_flip", [True, False], default=True),
        ]
    )
    _add_layer_widths(cs, "n_channels_conv", "n_conv_layers", (8, 512), [32, 64, 128])
    _add_layer_widths(cs, "n_channels_fc", "n_fc_layers", (16, 512), [128, 64, 64], min_count=0)
    return cs


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


def plain(values: Mapping[str, Any]) -> Config:
    """A config with numpy scalars turned into Python ones (JSON-able, comparable)."""
    return {key: builtin(value) for key, value in values.items()}


def is_active(space: ConfigurationSpace, name: str, values: Mapping[str, Any]) -> bool:
    """Whether ``name`` is active given the (parent) values in ``values``."""
    for condition in space.parent_conditions_of[name]:
        parents = [p.name for p in space.parents_of[name]]
        if any(p not in values or not is_active(space, p, values) for p in parents):
            return False
        if not condition.satisfied_by_value(dict(values)):
            return False
    return True


def sample_value(space: ConfigurationSpace, name: str, rng: np.random.Generator) -> Any:
    """One value of hyperparameter ``name`` drawn from its prior, fixed by ``rng``."""
    state = np.random.RandomState(int(rng.integers(2**31 - 1)))
    return plain({name: space[name].sample_value(seed=state)})[name]


def sample(space: ConfigurationSpace, rng: np.random.Generator) -> Config:
    """One configuration drawn from the space's priors, fixed by ``rng``."""
    return complete(space, {}, rng)


def complete(
    space: ConfigurationSpace, values: Mapping[str, Any], rng: np.random.Generator
) -> Config:
    """Make ``values`` a valid genotype: drop inactive keys, draw missing active ones.

    Hyperparameters are visited in the space's (topological) order, so that a child keeps its
    parents' values where they apply and draws only what its new structure needs.
    """
    return fill(space, values, lambda name: sample_value(space, name, rng))


def fill(
    space: ConfigurationSpace, values: Mapping[str, Any], missing: Callable[[str], Any]
) -> Config:
    """The active keys of ``space`` in its (topological) order: from ``values`` where given, else
    ``missing(name)``; keys of ``values`` that are inactive are dropped. The one loop that makes a
    genotype (sampling, defaults, loading and repairs all go through it)."""
    out: Config = {}
    for name in space:
        if is_active(space, name, out):
            out[name] = values[name] if name in values else missing(name)
    return out


def space_default(space: ConfigurationSpace, name: str) -> Any:
    """The default value of hyperparameter ``name`` as a plain Python value."""
    return builtin(space[name].default_value)


def validate(space: ConfigurationSpace, values: Mapping[str, Any]) -> Configuration:
    """The ``Configuration`` for ``values``; a ConfigError naming the key if it is invalid."""
    for key, value in values.items():
        if key not in space:
            raise ConfigError(f"Unknown hyperparameter {key!r} (not in the {space.name} space).")
        if not isinstance(value, (bool, int, float, str, np.generic)):
            raise ConfigError(
                f"Hyperparameter {key!r} must be a single value, not {type(value).__name__} {value!r}."
            )
        if not space[key].legal_value(value):
            raise ConfigError(
                f"Hyperparameter {key!r} has the value {value!r}, but must be in {space[key]}."
            )
    try:
        return Configuration(space, values=dict(values))
    except Exception as exc:  # ConfigSpace raises several types with terse texts
        raise ConfigError(f"Invalid configuration: {exc}") from exc


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


def default_config(space: ConfigurationSpace) -> Config:
    """The space's default configuration as a genotype."""
    return fill(space, {}, lambda name: space_default(space, name))
