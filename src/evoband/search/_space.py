"""The space a search runs on: a shipped space by name, or one composed with the builders.

:func:`resolve_space` turns what :func:`evoband.fit` and :class:`evoband.search._run.SearchConfig`
take as ``space`` into a :class:`SearchSpace`: the compiled ConfigSpace space, the network family
that builds its configurations (:mod:`evoband.nets._family`) and, for a composed space, the
fingerprint a run records so that only the same space resumes it.

A composed space's ``settings`` (:class:`evoband.space._shipped.SpaceDefinition`) are the
configuration keys the training loop (:mod:`evoband.training._loop`) reads; :data:`TRAINING_SETTINGS`
lists them with what happens without them. ``learning_rate_init`` and ``batch_size`` have no
default: a composed space must have them (a range, a choice or a named ``Fixed``), unconditional.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ConfigSpace import ConfigurationSpace

from ..core._errors import ConfigError
from ..nets._family import SHIPPED, BlockFamily, NetworkFamily
from ..space._keys import describe
from ..space._shipped import SpaceDefinition
from ..space._spaces import get_space

_POSITIVE: Callable[[Any], bool] = lambda v: v > 0  # noqa: E731
TRAINING_SETTINGS: dict[str, tuple[str, Callable[[Any], bool] | None, str]] = {
    "learning_rate_init": ("required", _POSITIVE, "a positive float"),
    "batch_size": ("required", lambda v: isinstance(v, int) and v >= 1, "a positive int"),
    "optimizer": ("adamw", lambda v: v in ("adam", "adamw", "sgd", "adad"), "adam, adamw, sgd or adad"),
    "weight_decay": ("none (AdamW: 0.01)", lambda v: v >= 0, "a float >= 0"),
    "lr_schedule": ("constant", lambda v: v in ("constant", "cosine", "onecycle"), "constant, cosine or onecycle"),
    "label_smoothing": ("0.0", lambda v: 0 <= v < 1, "a float in [0, 1)"),
    "train_criterion": ("cross_entropy", lambda v: v in ("cross_entropy", "mse"), "cross_entropy or mse"),
    "aug_flip": ("False", lambda v: isinstance(v, bool), "True or False"),
    "aug_shift": ("0", lambda v: isinstance(v, int) and v >= 0, "an int >= 0 (pixels)"),
}  # fmt: skip
"""The keys :mod:`evoband.training._loop` reads from a configuration: key -> (what it is without the key,
the check of its values, what those must be)."""

_EXAMPLES = {
    "learning_rate_init": "FloatRange(1e-4, 0.1, log=True, name='learning_rate_init')",
    "batch_size": "IntRange(16, 128, log=True, name='batch_size') or Fixed(64, name='batch_size')",
}


@dataclass(frozen=True)
class SearchSpace:
    """A search space ready to search.

    Attributes:
        name: the shipped space's or the definition's name (what a run records as ``space``).
        space: the compiled ConfigSpace space.
        family: builds and counts its networks.
        fingerprint: for a composed space, :func:`fingerprint` of it ("" for a shipped one).
        definition: the composed space's definition (None for a shipped one).
    """

    name: str
    space: ConfigurationSpace
    family: NetworkFamily
    fingerprint: str = ""
    definition: SpaceDefinition | None = None

    @property
    def composed(self) -> bool:
        """Whether the space was composed with the builders (not a shipped one)."""
        return self.definition is not None

    def record(self) -> dict[str, Any]:
        """What ``run.json`` holds of it: name, family, fingerprint and serialized ConfigSpace."""
        return {
            "name": self.name,
            "family": self.family.name,
            "fingerprint": self.fingerprint,
            "configspace": self.space.to_serialized_dict(),
        }


def _values(hp: Any) -> list[Any]:
    """The values to check of a hyperparameter: its choices, constant value or bounds."""
    for attribute in ("choices", "sequence"):
        if hasattr(hp, attribute):
            return list(getattr(hp, attribute))
    if hasattr(hp, "value"):
        return [hp.value]
    return [hp.lower, hp.upper]


def check_training_settings(space: ConfigurationSpace) -> None:
    """A ConfigError naming the key if ``space`` lacks a required training setting, holds one
    under a condition, or allows a value the training loop cannot use."""
    for key, (default, accepts, what) in TRAINING_SETTINGS.items():
        if key not in space:
            if default == "required":
                raise ConfigError(
                    f"The space {space.name!r} has no {key!r} setting, which training needs; add "
                    f"one to its settings, e.g. {_EXAMPLES[key]}."
                )
            continue
        if space.parents_of[key]:
            raise ConfigError(
                f"The setting {key!r} of the space {space.name!r} is conditional; give it in "
                "the settings of the SpaceDefinition, not inside the network."
            )
        for value in _values(space[key]):
            if accepts is not None and not _accepts(accepts, value):
                raise ConfigError(
                    f"The setting {key!r} of the space {space.name!r} may be {value!r}, but "
                    f"must be {what}."
                )


def _accepts(accepts: Callable[[Any], bool], value: Any) -> bool:
    try:
        return bool(accepts(value.item() if hasattr(value, "item") else value))
    except TypeError:
        return False


def fingerprint(definition: SpaceDefinition, space: ConfigurationSpace) -> str:
    """A hash of the network tree (:func:`evoband.space._keys.describe`) and of the compiled
    hyperparameters and conditions: equal for spaces that search and build alike."""
    serialized = space.to_serialized_dict()
    content = {
        "network": describe(definition.network),
        "space": {k: serialized[k] for k in ("hyperparameters", "conditions", "forbiddens")},
    }
    text = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def space_name(space: object) -> str:
    """The name a run records for ``space`` (a shipped space's name or a definition)."""
    if isinstance(space, SpaceDefinition):
        return space.name
    if isinstance(space, str):
        return space
    raise ConfigError(
        f"The space must be the name of a shipped space or a SpaceDefinition, not {space!r}."
    )


def resolve_space(space: str | SpaceDefinition, seed: int | None = None) -> SearchSpace:
    """The :class:`SearchSpace` of a shipped space's name or of a composed definition.

    A composed space is compiled with ``seed`` and checked: it must have the required training
    settings (:func:`check_training_settings`).
    """
    name = space_name(space)
    if not isinstance(space, SpaceDefinition):
        return SearchSpace(name, get_space(name, seed=seed), SHIPPED)
    compiled = space.compile(seed)
    check_training_settings(compiled)
    family = BlockFamily(space.network)
    return SearchSpace(name, compiled, family, fingerprint(space, compiled), space)


def _spaces_of(op: object) -> Iterator[object]:
    """The ``space`` of an operator and of the operators it wraps."""
    if hasattr(op, "space"):
        yield op.space
    for attribute in ("op", "ops"):
        inner = getattr(op, attribute, None)
        for part in inner if isinstance(inner, (list, tuple)) else [inner]:
            if part is not None:
                yield from _spaces_of(part)


def check_operators(operators: Sequence[tuple[str, object]], space: ConfigurationSpace) -> None:
    """A ConfigError if an operator (``(what, operator)`` pairs) was made for another space."""
    for what, op in operators:
        for found in _spaces_of(op):
            if isinstance(found, ConfigurationSpace) and found != space:
                raise ConfigError(
                    f"{what} ({type(op).__name__}) was made for the space {found.name!r}, not the "
                    f"searched {space.name!r} space; make it from that space's compile()."
                )
