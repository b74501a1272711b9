"""Weight inheritance of recombined children: each layer from the parent that gave it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from evoband.execution._batches import Evaluation
from evoband.nets._cnn import build_model
from evoband.nets._inherit import inherit_recombined, inherit_state
from evoband.search._member import Member, Origin
from evoband.search._state import SearchState
from evoband.search._steps import parent_weights
from evoband.store._ledger import RunStore
from evoband.training._checkpoints import save_checkpoint
from evoband.training._loop import make_state
from evoband.training._parent_weights import ParentWeights, load_inherited
from evoband.training._results import FoldResult
from helpers import SMALL_CONFIG

SHAPE = (3, 16, 16)
CLASSES = 5

A: dict[str, Any] = dict(
    SMALL_CONFIG,
    use_BN=True,
    n_conv_layers=2,
    n_channels_conv_0=8,
    n_channels_conv_1=12,
    n_channels_fc_0=10,
    activation="relu",
    convs_per_stage=1,
)
B = dict(A, n_channels_conv_0=6, n_channels_conv_1=16, n_channels_fc_0=14)
CHILD = dict(A, n_channels_conv_1=16, n_channels_fc_0=14)
"""Stage 0 from A, stage 1 and the FC layer from B (as a uniform crossover makes it)."""


def random_state(config: dict[str, Any], seed: int) -> dict[str, torch.Tensor]:
    """A model state unlike any initialisation (every tensor random, positive variances)."""
    torch.manual_seed(seed)
    state = build_model(config, SHAPE, CLASSES).state_dict()
    with torch.no_grad():
        for name, tensor in state.items():
            if name.endswith("running_var"):
                tensor.uniform_(0.3, 3.0)
            elif tensor.is_floating_point():
                tensor.normal_(0.0, 1.0)
    return state


def fresh(config: dict[str, Any]) -> dict[str, torch.Tensor]:
    torch.manual_seed(99)
    return build_model(config, SHAPE, CLASSES).state_dict()


def layer_keys(state: dict[str, torch.Tensor], *modules: str) -> list[str]:
    return [k for k in state if any(k.startswith(f"{m}.") for m in modules)]


def test_each_layer_comes_from_the_parent_that_gave_it() -> None:
    a, b, child = random_state(A, 1), random_state(B, 2), fresh(CHILD)
    from_a = inherit_state(a, A, child, CHILD, SHAPE)
    from_b = inherit_state(b, B, child, CHILD, SHAPE)
    out = inherit_recombined([(a, A), (b, B)], child, CHILD, SHAPE)
    build_model(CHILD, SHAPE, CLASSES).load_state_dict(out, strict=True)
    for key in layer_keys(out, "conv.0.conv", "conv.0.bn", "head"):
        assert torch.equal(out[key], from_a[key]), key
    b_keys = layer_keys(out, "conv.1.conv", "conv.1.bn", "fc.0.linear")
    assert len(b_keys) == 2 + 5 + 2  # conv weight and bias, BN (4 tensors + counter), linear
    for key in b_keys:
        assert torch.equal(out[key], from_b[key]), key
    # B's stage-1 filters are all there (its inputs follow the child's stage 0, A's channels)
    assert torch.equal(out["conv.1.bn.running_mean"], b["conv.1.bn.running_mean"])
    assert not torch.equal(out["conv.1.bn.running_mean"], from_a["conv.1.bn.running_mean"])


def test_a_child_shaped_like_its_first_parent_takes_everything_from_it() -> None:
    a, b = random_state(A, 1), random_state(B, 2)
    child_cfg = dict(A, learning_rate_init=0.002)
    child = fresh(child_cfg)
    out = inherit_recombined([(a, A), (b, B)], child, child_cfg, SHAPE)
    expected = inherit_state(a, A, child, child_cfg, SHAPE)
    assert out.keys() == expected.keys()
    assert all(torch.equal(out[k], expected[k]) for k in out)


def save_parent(directory: Path, config: dict[str, Any], seed: int) -> str:
    state = make_state(config, SHAPE, CLASSES, seed=seed, device=torch.device("cpu"))
    state.model.load_state_dict(random_state(config, seed))
    return save_checkpoint(directory / "fold0.pt", state)


def test_load_inherited_reads_both_parents_and_skips_an_unusable_donor(tmp_path: Path) -> None:
    sha_a = save_parent(tmp_path / "a", A, 1)
    sha_b = save_parent(tmp_path / "b", B, 2)
    first = ParentWeights(0, A, tmp_path / "a", {0: sha_a})
    donor = ParentWeights(1, B, tmp_path / "b", {0: sha_b})

    def child_from(source: ParentWeights, parents: tuple[int, ...]) -> dict[str, torch.Tensor]:
        state = make_state(CHILD, SHAPE, CLASSES, seed=5, device=torch.device("cpu"))
        assert load_inherited(state, source, 0, CHILD, SHAPE) == parents
        return state.model.state_dict()

    both = child_from(ParentWeights(0, A, tmp_path / "a", {0: sha_a}, donors=(donor,)), (0, 1))
    only_a = child_from(first, (0,))
    b = random_state(B, 2)
    assert torch.equal(both["conv.1.bn.running_mean"], b["conv.1.bn.running_mean"])
    assert not torch.equal(only_a["conv.1.bn.running_mean"], b["conv.1.bn.running_mean"])
    assert torch.equal(both["conv.0.conv.weight"], only_a["conv.0.conv.weight"])
    stale = ParentWeights(1, B, tmp_path / "b", {0: "0" * 64})  # checkpoint changed since recorded
    source = ParentWeights(0, A, tmp_path / "a", {0: sha_a}, donors=(stale,))
    with_stale = child_from(source, (0,))  # the donor it could not read is not among its parents
    assert all(torch.equal(with_stale[k], only_a[k]) for k in only_a)
    gone = ParentWeights(0, A, tmp_path / "none", {0: sha_a}, donors=(donor,))
    state = make_state(CHILD, SHAPE, CLASSES, seed=5, device=torch.device("cpu"))
    assert load_inherited(state, gone, 0, CHILD, SHAPE) == ()  # no first parent: nothing


def test_the_lineage_records_only_the_parents_a_fold_started_from(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    donor = ParentWeights(1, B, tmp_path / "b", {}, epochs=8)
    source = ParentWeights(0, A, tmp_path / "a", {}, epochs=4, donors=(donor,))
    child = Member(2, CHILD, seed=3, num_params=1, origin=Origin.RECOMBINED, parents=(0, 1))
    evaluation = Evaluation(child, 1, CHILD, 4, 3, inherit=source)
    without_donor = FoldResult(0, 0.5, 0.3, 0.2, 1.0, 4, 1.0, inherited_from=(0,))
    SearchState.record_fold(SimpleNamespace(store=store), evaluation, 4, without_donor)  # type: ignore[arg-type]
    assert store.inheritances()[2]["sources"] == [(0, 4)]
    other = Member(3, CHILD, seed=4, num_params=1, origin=Origin.RECOMBINED, parents=(0, 1))
    with_donor = FoldResult(0, 0.5, 0.3, 0.2, 1.0, 4, 1.0, inherited_from=(0, 1))
    evaluation = Evaluation(other, 1, CHILD, 4, 4, inherit=source)
    SearchState.record_fold(SimpleNamespace(store=store), evaluation, 4, with_donor)  # type: ignore[arg-type]
    assert store.inheritances()[3]["sources"] == [(0, 4), (1, 8)]


def test_a_recombined_child_names_its_second_parent_as_donor(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    a = Member(0, A, seed=1, num_params=1, checkpoint_dir=tmp_path / "a")
    b = Member(1, B, seed=2, num_params=1, checkpoint_dir=tmp_path / "b")
    child = Member(2, CHILD, seed=3, num_params=1, origin=Origin.RECOMBINED, parents=(0, 1))
    mutant = Member(3, CHILD, seed=4, num_params=1, origin=Origin.MUTATED, parents=(1,))
    members = [a, b, child, mutant]
    source = parent_weights(child, members, store, inherit_weights=True)
    assert source is not None and source.member_id == 0
    assert [d.member_id for d in source.donors] == [1]
    single = parent_weights(mutant, members, store, inherit_weights=True)
    assert single is not None and single.member_id == 1 and single.donors == ()
    assert parent_weights(child, members, store, inherit_weights=False) is None
    a.checkpoint_dir = None  # the first parent's weights are gone: nothing is inherited
    assert parent_weights(child, members, store, inherit_weights=True) is None
