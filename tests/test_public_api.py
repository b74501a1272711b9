"""The top-level API: every concept is found on ``evoband``, and the public builders take what the
shipped spaces give (ConfigSpace configurations with numpy scalars)."""

from __future__ import annotations

import pytest
import torch

import evoband as e

SHAPE, CLASSES = (3, 16, 16), 17


def test_the_concepts_are_found_at_the_top_level() -> None:
    for name in (
        "fit", "Chain", "Repeat", "Fork", "Residual", "Conv", "Dense", "get_space",
        "build_model", "count_params", "load_data", "load_run", "HyperbandSchedule", "Callback",
        "Constraints", "ensemble", "export_model", "load_exported", "EvobandError",
        "TournamentSelection", "UniformMutation", "TopK", "PlusStrategy", "persist",
    ):  # fmt: skip
        assert hasattr(e, name), name
    assert set(e.__all__) <= set(dir(e))


@pytest.mark.parametrize("space", ["course", "extended"])
def test_the_builders_take_every_sampled_configuration(space: str) -> None:
    cs = e.get_space(space, seed=0)
    for config in cs.sample_configuration(100):
        n = e.count_params(config, SHAPE, CLASSES)
        assert n == e.count_params(dict(config), SHAPE, CLASSES)
        with torch.device("meta"):
            model = e.build_model(config, SHAPE, CLASSES)
        assert n == sum(p.numel() for p in model.parameters() if p.requires_grad)
