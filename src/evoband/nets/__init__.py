"""Networks: building and counting the network of a configuration (the shipped CNN family and the
networks of composed spaces), towers, weight inheritance from parents, and exporting a trained
network as a ``torch.export`` program."""

from __future__ import annotations

from ._cnn import ConfigurableCNN, activation_elements, build_model, count_params, macs_per_sample
from ._composed import BlockNetwork, build_network, count_parameters
from ._counts import NetworkCounts, count_network
from ._export import ExportReport, export_model, load_exported
from ._family import SHIPPED, BlockFamily, CnnFamily, NetworkFamily
from ._inherit import inherit, inherit_recombined, inherit_state
from ._inherit_by_name import inherit_by_name
from ._plan import ShapeError, is_valid, output_shape, plan_network, sample_config
from ._towers import Towers, n_towers, tower_mean

__all__ = [
    "BlockFamily",
    "BlockNetwork",
    "CnnFamily",
    "ConfigurableCNN",
    "ExportReport",
    "NetworkCounts",
    "NetworkFamily",
    "SHIPPED",
    "ShapeError",
    "Towers",
    "activation_elements",
    "build_model",
    "build_network",
    "count_network",
    "count_parameters",
    "count_params",
    "export_model",
    "inherit",
    "inherit_by_name",
    "inherit_recombined",
    "inherit_state",
    "is_valid",
    "load_exported",
    "macs_per_sample",
    "n_towers",
    "output_shape",
    "plan_network",
    "sample_config",
    "tower_mean",
]
