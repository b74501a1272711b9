"""Weight inheritance for composed spaces: tensors by name, overlaps of differing shapes, and a
real search of a composed space with inheritance on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from evoband import SearchSettings, fit
from evoband.nets._family import BlockFamily
from evoband.nets._inherit_by_name import inherit_by_name
from evoband.space._layers import Chain, Conv, Dense, GlobalPool
from evoband.space._params import Fixed, FloatRange, IntRange, OneOf
from evoband.space._shipped import SpaceDefinition
from evoband.store._ledger import RunStore
from helpers import make_image_folder

NETWORK = Chain(
    Conv(
        IntRange(4, 16, name="w0"),
        OneOf([1, 3, 5], ordered=True, name="k"),
        "relu",
        batch_norm=True,
    ),
    Conv(IntRange(4, 16, name="w1"), 3, "relu", batch_norm=True),
    GlobalPool(Fixed("avg")),
    Dense(IntRange(8, 16, name="u"), "relu"),
)
FAMILY = BlockFamily(NETWORK)
SHAPE = (3, 8, 8)
PARENT = {"w0": 6, "k": 3, "w1": 8, "u": 10, "batch_size": 8}


def trained_like(config: dict[str, Any], seed: int = 0) -> torch.nn.Module:
    """A network whose every tensor is random (BN statistics too), as after training."""
    torch.manual_seed(seed)
    model = FAMILY.build(config, SHAPE, 3)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.3, 3.0)
            elif tensor.is_floating_point():
                tensor.normal_(0.0, 0.5)
    return model.eval()


def child_of(parents: list[torch.nn.Module], config: dict[str, Any]) -> torch.nn.Module:
    torch.manual_seed(7)
    child = FAMILY.build(config, SHAPE, 3)
    state = inherit_by_name([p.state_dict() for p in parents], child.state_dict())
    child.load_state_dict(state, strict=True)
    return child.eval()


@pytest.mark.parametrize(
    "change", [{}, {"w0": 9}, {"w1": 12}, {"u": 16}, {"k": 5}, {"batch_size": 16}]
)
def test_wider_layers_larger_kernels_and_copies_keep_the_parents_function(change: dict) -> None:
    parent = trained_like(PARENT)
    child = child_of([parent], {**PARENT, **change})
    x = torch.randn(5, *SHAPE)
    with torch.no_grad():
        assert torch.allclose(child(x), parent(x), atol=1e-5)


def test_a_fresh_network_does_not_compute_the_parents_function() -> None:
    # the check above can fail: a child that inherited nothing differs
    parent, fresh = trained_like(PARENT), trained_like(PARENT, seed=1)
    x = torch.randn(5, *SHAPE)
    with torch.no_grad():
        assert not torch.allclose(fresh(x), parent(x), atol=1e-3)


def test_a_narrower_layer_keeps_its_leading_channels_and_a_smaller_kernel_its_centre() -> None:
    parent = trained_like({**PARENT, "w0": 9, "k": 5})
    child = child_of([parent], {**PARENT, "w0": 6, "k": 3})
    got, had = child.state_dict(), parent.state_dict()
    assert torch.equal(got["layers.b0.conv.weight"], had["layers.b0.conv.weight"][:6, :, 1:4, 1:4])
    assert torch.equal(got["layers.b0.bn.running_mean"], had["layers.b0.bn.running_mean"][:6])
    assert torch.equal(got["layers.b1.conv.weight"], had["layers.b1.conv.weight"][:, :6])


def test_each_tensor_comes_from_the_first_parent_of_its_shape() -> None:
    a, b = trained_like(PARENT, seed=1), trained_like({**PARENT, "w1": 12, "u": 12}, seed=2)
    child = child_of([a, b], {**PARENT, "u": 12})
    got = child.state_dict()
    assert torch.equal(got["layers.b0.conv.weight"], a.state_dict()["layers.b0.conv.weight"])
    assert torch.equal(got["layers.b3.linear.bias"], b.state_dict()["layers.b3.linear.bias"])
    assert torch.equal(got["head.weight"], b.state_dict()["head.weight"])  # 3 x 12: B's shape


def test_a_composed_search_inherits_weights(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "tiny")
    settings_space = (
        FloatRange(3e-3, 3e-2, log=True, name="learning_rate_init"),
        OneOf([8, 16], name="batch_size"),
        OneOf(["adam", "adamw"], name="optimizer"),
    )
    space = SpaceDefinition("chain", NETWORK, settings_space)
    settings = SearchSettings(
        pop_size=3, min_epochs=1, max_epochs=2, max_evaluations=9, seed=2, inherit_weights=True
    )
    fit(data, space=space, settings=settings, run_dir=tmp_path / "run", progress=False)
    store = RunStore(tmp_path / "run", readonly=True)
    try:
        inherited = store.inheritances()
    finally:
        store.close()
    assert inherited, "no child inherited weights"
    for row in inherited.values():
        assert row["folds"] == [0, 1, 2]  # fit's default 3-fold CV: every fold inherited
        assert row["sources"][0][0] == row["parent"]
