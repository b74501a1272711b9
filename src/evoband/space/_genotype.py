"""Genotypes: flat JSON-able config dicts valid in a ``ConfigurationSpace``.

Only active hyperparameters are present. Sampling, completing, defaults and validation all go
through :func:`fill`, the one loop that makes a genotype.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from ConfigSpace import Configuration, ConfigurationSpace

from ..core._errors import ConfigError
from ..core._files import builtin

Config = dict[str, Any]


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


def default_config(space: ConfigurationSpace) -> Config:
    """The space's default configuration as a genotype."""
    return fill(space, {}, lambda name: space_default(space, name))
