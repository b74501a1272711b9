"""Network families: how the genotypes of a search space become networks, and what those cost.

A :class:`NetworkFamily` builds the ``nn.Module`` of a configuration and counts its parameters,
its multiply-accumulates per sample and its conv output elements (what the cost model of
:mod:`evoband.training._cost` needs), without building it for real. The target, the training loop, the
cost model, the parameter repair and the fitted members all ask the family of the searched space.

* :class:`CnnFamily` (:data:`SHIPPED`): :class:`evoband.nets._cnn.ConfigurableCNN`, the family of the
  shipped ``course`` and ``extended`` spaces, by :mod:`evoband.nets._cnn`'s functions.
* :class:`BlockFamily`: the networks of a space composed with the builders of
  :mod:`evoband.space._builders` (:func:`evoband.nets._composed.build_network`); its counts come from a
  meta-device forward pass (:mod:`evoband.nets._counts`), so they hold for any such network.

A configuration the input is too small for (it pools an image below 1x1, ...) is a
:class:`~evoband.core._errors.ConfigError` when built or counted; :meth:`NetworkFamily.safe_count`
counts it as ``sys.maxsize`` parameters, so that a search repairs or refuses it like an
oversized network.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from ConfigSpace import ConfigurationSpace, OrdinalHyperparameter, UniformIntegerHyperparameter
from torch import nn

from ..core._errors import ConfigError
from ..space._genotype import sample
from ..space._keys import size_keys
from ..space._layers import Space
from ..space._spaces import Config, recipes
from . import _cnn as cnn
from ._composed import build_network
from ._counts import NetworkCounts, count_network
from ._inherit import inherit_recombined
from ._inherit_by_name import inherit_by_name
from ._plan import sample_config

Shape = tuple[int, ...]


class NetworkFamily(ABC):
    """Builds and counts the networks of a search space's configurations.

    ``input_shape`` is ``(C, H, W)`` without the batch; ``n_classes`` the outputs.
    """

    name: str = ""

    @abstractmethod
    def build(self, config: Mapping[str, Any], input_shape: Shape, n_classes: int) -> nn.Module:
        """The (freshly initialised) network of ``config``; a ConfigError if it cannot be built."""

    @abstractmethod
    def count_params(self, config: Mapping[str, Any], input_shape: Shape, n_classes: int) -> int:
        """Trainable parameters of :meth:`build`'s network, without allocating it."""

    @abstractmethod
    def macs_per_sample(self, config: Mapping[str, Any], input_shape: Shape, n_classes: int) -> int:
        """Multiply-accumulates of one training forward pass (convolutions and linear layers)."""

    @abstractmethod
    def activation_elements(
        self, config: Mapping[str, Any], input_shape: Shape, n_classes: int
    ) -> int:
        """Conv output elements of one forward pass (the memory-bound work of activations)."""

    def inherit_state(
        self,
        parents: Sequence[tuple[Mapping[str, torch.Tensor], Mapping[str, Any]]],
        child_state: Mapping[str, torch.Tensor],
        child_config: Mapping[str, Any],
        input_shape: Shape,
    ) -> dict[str, torch.Tensor]:
        """A child's state dict from its parents' trained ones (``(state_dict, config)``, the
        first parent first): by tensor name (:mod:`evoband.nets._inherit_by_name`)."""
        return inherit_by_name([state for state, _ in parents], child_state)

    def safe_count(self, config: Mapping[str, Any], input_shape: Shape, n_classes: int) -> int:
        """:meth:`count_params`, but ``sys.maxsize`` for a configuration that cannot be built
        (too small an input), so that a parameter limit refuses it."""
        try:
            return self.count_params(config, input_shape, n_classes)
        except ConfigError:
            return sys.maxsize

    def structure_keys(self, space: ConfigurationSpace) -> tuple[str, ...] | None:
        """The keys a parameter repair may shrink; None: the shipped ones
        (:data:`evoband.operators._base.STRUCTURE_PREFIXES`)."""
        return None

    def recipes(self, space: ConfigurationSpace) -> list[Config]:
        """Known good configurations the initial population starts from."""
        return []

    def sample(
        self, space: ConfigurationSpace, input_shape: Shape, rng: np.random.Generator
    ) -> Config:
        """A fresh configuration of ``space`` for this family's networks: a plain sample."""
        return sample(space, rng)


class CnnFamily(NetworkFamily):
    """:class:`evoband.nets._cnn.ConfigurableCNN`, the network family of the shipped spaces."""

    name = "cnn"

    def build(self, config: Mapping[str, Any], input_shape: Shape, n_classes: int) -> nn.Module:
        return cnn.build_model(config, _image(input_shape), n_classes)

    def count_params(self, config: Mapping[str, Any], input_shape: Shape, n_classes: int) -> int:
        return cnn.count_params(config, _image(input_shape), n_classes)

    def macs_per_sample(self, config: Mapping[str, Any], input_shape: Shape, n_classes: int) -> int:
        return cnn.macs_per_sample(config, _image(input_shape), n_classes)

    def activation_elements(
        self, config: Mapping[str, Any], input_shape: Shape, n_classes: int
    ) -> int:
        return cnn.activation_elements(config, _image(input_shape))

    def recipes(self, space: ConfigurationSpace) -> list[Config]:
        return recipes(space)

    def inherit_state(
        self,
        parents: Sequence[tuple[Mapping[str, torch.Tensor], Mapping[str, Any]]],
        child_state: Mapping[str, torch.Tensor],
        child_config: Mapping[str, Any],
        input_shape: Shape,
    ) -> dict[str, torch.Tensor]:
        """Layer by layer, channels matched (:func:`evoband.nets._inherit.inherit_recombined`)."""
        return inherit_recombined(parents, child_state, child_config, _image(input_shape))

    def __repr__(self) -> str:
        return "CnnFamily()"


SHIPPED = CnnFamily()
"""The family of the shipped spaces, and of every search that names none."""


def _image(shape: Shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ConfigError(f"The shipped network family takes images (C, H, W), not {shape}.")
    return int(shape[0]), int(shape[1]), int(shape[2])


SAMPLE_TRIES = 100
"""Samples a :class:`BlockFamily` draws for one that fits the input."""

CACHE_SIZE = 4096
"""Counted configurations a :class:`BlockFamily` remembers (a repair counts each many times)."""


class BlockFamily(NetworkFamily):
    """The networks of a space composed with the builders (:func:`evoband.nets._composed.build_network`).

    Args:
        network: the network's space (``SpaceDefinition.network``).
    """

    name = "blocks"

    def __init__(self, network: Space) -> None:
        self.network = network
        self._counts: dict[tuple[Any, ...], NetworkCounts] = {}

    def build(self, config: Mapping[str, Any], input_shape: Shape, n_classes: int) -> nn.Module:
        return build_network(self.network, config, input_shape, n_classes)

    def counts(
        self, config: Mapping[str, Any], input_shape: Shape, n_classes: int
    ) -> NetworkCounts:
        """Parameters, MACs and conv output elements, measured on the meta device (cached)."""
        key = (tuple(sorted(config.items())), tuple(input_shape), n_classes)
        found = self._counts.get(key)
        if found is None:
            found = count_network(lambda: self.build(config, input_shape, n_classes), input_shape)
            if len(self._counts) >= CACHE_SIZE:
                self._counts.clear()
            self._counts[key] = found
        return found

    def count_params(self, config: Mapping[str, Any], input_shape: Shape, n_classes: int) -> int:
        return self.counts(config, input_shape, n_classes).params

    def macs_per_sample(self, config: Mapping[str, Any], input_shape: Shape, n_classes: int) -> int:
        return self.counts(config, input_shape, n_classes).macs

    def activation_elements(
        self, config: Mapping[str, Any], input_shape: Shape, n_classes: int
    ) -> int:
        return self.counts(config, input_shape, n_classes).activation_elements

    def structure_keys(self, space: ConfigurationSpace) -> tuple[str, ...]:
        """The searched widths, counts and kernel sizes (:func:`evoband.space._keys.size_keys`)
        that are integer ranges or ordered choices: those a repair can shrink."""
        shrinkable = (UniformIntegerHyperparameter, OrdinalHyperparameter)
        return tuple(
            key
            for key in size_keys(self.network)
            if key in space and isinstance(space[key], shrinkable)
        )

    def sample(
        self, space: ConfigurationSpace, input_shape: Shape, rng: np.random.Generator
    ) -> Config:
        """A fresh configuration that fits the input (:func:`evoband.nets._plan.sample_config`):
        drawn again while the input is too small for it; a ShapeError after
        :data:`SAMPLE_TRIES`."""
        return sample_config(self.network, space, tuple(input_shape), rng, SAMPLE_TRIES)

    def __getstate__(self) -> dict[str, Any]:
        return {"network": self.network, "_counts": {}}  # worker processes count afresh

    def __repr__(self) -> str:
        return f"BlockFamily({self.network!r})"
