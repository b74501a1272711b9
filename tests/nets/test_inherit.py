"""Weight inheritance parent -> child: function preservation where the module docstring of
evoband.nets._inherit promises it, shapes for children made by the mutation operators, continuation
from inherited weights, and a real search with inheritance on."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from evoband.core._errors import ConfigError, StoreError
from evoband.nets._cnn import build_model
from evoband.nets._inherit import inherit
from evoband.operators._mutations import LocalMutation, UniformMutation
from evoband.search._member import Origin
from evoband.search._run import run_search
from evoband.search._settings import SearchSettings
from evoband.search._setup import SearchConfig, SearchDefinition, check_resume
from evoband.space._genotype import complete, sample
from evoband.space._spaces import get_space
from evoband.store._exports import load_run
from evoband.store._ledger import RunStore
from evoband.training._checkpoints import save_checkpoint
from evoband.training._data import load_data
from evoband.training._loop import make_state
from evoband.training._parent_weights import ParentWeights
from evoband.training._target import FoldJob, Task, run_fold, take_checkpoint
from helpers import make_image_folder, read_json, tiny_search_config

DEFINITION = SearchDefinition(
    space="course",
    max_params=50_000,
    min_precision=0.1,
    cv_folds=2,
    data="tiny",
    pop_size=3,
    num_children=2,
    hyperband=True,
    min_epochs=1,
    max_epochs=2,
    eta=2,
    seed=1,
    crossover_prob=0.5,
    tournament_size=3,
    random_search=False,
    max_eval_seconds=100.0,
)

SHAPE = (3, 16, 16)
CLASSES = 5

BASE: dict[str, Any] = {
    "learning_rate_init": 0.01,
    "batch_size": 16,
    "kernel_size": 3,
    "use_BN": True,
    "global_avg_pooling": False,
    "dropout_rate": 0.2,
    "n_conv_layers": 2,
    "n_channels_conv_0": 8,
    "n_channels_conv_1": 12,
    "n_fc_layers": 1,
    "n_channels_fc_0": 10,
    "optimizer": "adam",
    "train_criterion": "cross_entropy",
    "activation": "relu",
    "convs_per_stage": 1,
}
"""Two conv stages with BN, flatten into one hidden FC layer: every consumer kind."""

GAP = dict(BASE, global_avg_pooling=True, n_fc_layers=0, n_channels_fc_0=None)
GAP = {k: v for k, v in GAP.items() if v is not None}
"""Global pooling straight into the head (the extended space's recipes)."""


def trained_like(config: dict[str, Any], seed: int = 0) -> torch.nn.Module:
    """A parent whose weights and BN statistics are random, not an initialisation: BN gains of
    both signs, non-trivial running means and variances."""
    torch.manual_seed(seed)
    model = build_model(config, SHAPE, CLASSES)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.3, 3.0)
            elif name.endswith("running_mean"):
                tensor.normal_(0.0, 1.0)
            elif tensor.is_floating_point():
                tensor.normal_(0.0, 0.5)
    return model.eval()


def child_of(parent: torch.nn.Module, parent_cfg: dict, child_cfg: dict) -> torch.nn.Module:
    state = inherit(parent.state_dict(), parent_cfg, child_cfg, SHAPE, CLASSES, seed=1)
    child = build_model(child_cfg, SHAPE, CLASSES)
    child.load_state_dict(state, strict=True)
    return child.eval()


def max_output_difference(parent_cfg: dict, child_cfg: dict) -> float:
    parent = trained_like(parent_cfg)
    child = child_of(parent, parent_cfg, child_cfg)
    x = torch.randn(16, *SHAPE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return float((parent(x) - child(x)).abs().max())


PRESERVING = {
    "unchanged": (BASE, BASE),
    "training hyperparameters": (
        BASE,
        dict(BASE, learning_rate_init=0.1, optimizer="sgd", batch_size=64, dropout_rate=0.4),
    ),
    "wider first conv": (BASE, dict(BASE, n_channels_conv_0=16)),
    "wider last conv (flatten)": (BASE, dict(BASE, n_channels_conv_1=20)),
    "wider last conv (global pooling)": (GAP, dict(GAP, n_channels_conv_1=20)),
    "wider fc": (BASE, dict(BASE, n_channels_fc_0=30)),
    "wider conv without BN": (
        dict(BASE, use_BN=False),
        dict(BASE, use_BN=False, n_channels_conv_0=11),
    ),
    "larger kernel": (BASE, dict(BASE, kernel_size=5)),
    "added conv per stage (BN, ReLU)": (BASE, dict(BASE, convs_per_stage=2)),
    "added conv per stage (no BN, ReLU)": (
        dict(BASE, use_BN=False),
        dict(BASE, use_BN=False, convs_per_stage=2),
    ),
    "added fc of the same width": (BASE, dict(BASE, n_fc_layers=2, n_channels_fc_1=10)),
    "added wider fc": (BASE, dict(BASE, n_fc_layers=2, n_channels_fc_1=16)),
    "fc added on BN features": (GAP, dict(GAP, n_fc_layers=1, n_channels_fc_0=12)),
    "two fc added on BN features": (
        GAP,
        dict(GAP, n_fc_layers=2, n_channels_fc_0=12, n_channels_fc_1=12),
    ),
    "wider conv and added conv": (
        BASE,
        dict(BASE, n_channels_conv_0=10, convs_per_stage=2, n_channels_fc_0=14),
    ),
}


@pytest.mark.parametrize("case", list(PRESERVING))
def test_child_computes_the_parents_function(case: str) -> None:
    parent_cfg, child_cfg = PRESERVING[case]
    assert max_output_difference(parent_cfg, child_cfg) < 1e-5


def test_training_hyperparameters_only_give_the_full_parent_state() -> None:
    parent = trained_like(BASE)
    state = inherit(parent.state_dict(), BASE, dict(BASE, weight_decay=0.1), SHAPE, CLASSES)
    for name, tensor in parent.state_dict().items():
        assert torch.equal(state[name], tensor), name


@pytest.mark.parametrize(
    "case, parent_cfg, child_cfg",
    [
        ("gelu: an added conv is no identity", dict(BASE, activation="gelu"), "convs"),
        ("narrower conv", BASE, {"n_channels_conv_0": 4}),
    ],
)
def test_changes_that_do_not_preserve_the_function_are_not_claimed_to(
    case: str, parent_cfg: dict, child_cfg: Any
) -> None:
    # documents the limits stated in evoband.nets._inherit: these children compute something else
    child = (
        dict(parent_cfg, convs_per_stage=2) if child_cfg == "convs" else {**parent_cfg, **child_cfg}
    )
    assert max_output_difference(parent_cfg, child) > 1e-3, case


def test_narrowing_keeps_the_channels_with_the_largest_filters() -> None:
    parent = trained_like(BASE)
    child_cfg = dict(BASE, n_channels_conv_1=5)
    state = inherit(parent.state_dict(), BASE, child_cfg, SHAPE, CLASSES)
    p = parent.state_dict()
    norms = p["conv.1.conv.weight"].abs().sum(dim=(1, 2, 3))
    kept = sorted(torch.argsort(norms, descending=True)[:5].tolist())
    assert torch.equal(state["conv.1.conv.weight"], p["conv.1.conv.weight"][kept])
    assert torch.equal(state["conv.1.conv.bias"], p["conv.1.conv.bias"][kept])
    for key in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(state[f"conv.1.bn.{key}"], p[f"conv.1.bn.{key}"][kept])
    # flatten: channel c feeds inputs c*h*w .. (c+1)*h*w - 1 of the first FC layer (4x4 here)
    columns = [c * 16 + q for c in kept for q in range(16)]
    assert torch.equal(state["fc.0.linear.weight"], p["fc.0.linear.weight"][:, columns])


def test_narrowing_a_conv_selects_the_next_convs_input_channels() -> None:
    parent = trained_like(BASE)
    state = inherit(parent.state_dict(), BASE, dict(BASE, n_channels_conv_0=3), SHAPE, CLASSES)
    p = parent.state_dict()
    kept = sorted(
        torch.argsort(p["conv.0.conv.weight"].abs().sum(dim=(1, 2, 3)), descending=True)[
            :3
        ].tolist()
    )
    assert torch.equal(state["conv.0.conv.weight"], p["conv.0.conv.weight"][kept])
    assert torch.equal(state["conv.1.conv.weight"], p["conv.1.conv.weight"][:, kept])


def test_a_removed_layer_joins_its_neighbours_by_position() -> None:
    parent_cfg = dict(BASE, n_fc_layers=2, n_channels_fc_1=6)
    parent = trained_like(parent_cfg)
    state = inherit(parent.state_dict(), parent_cfg, BASE, SHAPE, CLASSES)
    p = parent.state_dict()
    # the head read fc.1's 6 units and now reads fc.0's 10: the first 6 columns are copied
    assert torch.equal(state["head.weight"][:, :6], p["head.weight"])
    assert torch.equal(state["fc.0.linear.weight"], p["fc.0.linear.weight"])


# -- shapes over the shipped spaces ------------------------------------------------------------

WIDTH_CAP = 24
"""Widths are capped so that 200 pairs build in seconds; the caps stay within both spaces."""


def capped(space: Any, config: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    out = {k: min(v, WIDTH_CAP) if k.startswith("n_channels_") else v for k, v in config.items()}
    return complete(space, out, rng)


def mutated_pairs(n: int) -> list[tuple[str, dict, dict, tuple[int, int, int]]]:
    rng = np.random.default_rng(0)
    pairs = []
    spaces = {name: get_space(name, seed=0) for name in ("course", "extended")}
    shapes = [(3, 16, 16), (1, 8, 8)]
    while len(pairs) < n:
        name = ("course", "extended")[len(pairs) % 2]
        space = spaces[name]
        operators = [UniformMutation(space), LocalMutation(space)]
        parent = capped(space, sample(space, rng), rng)
        child = parent
        for _ in range(int(rng.integers(1, 4))):  # one to three mutations
            child = operators[int(rng.integers(2))]([child], rng)
        pairs.append((name, parent, capped(space, child, rng), shapes[len(pairs) // 2 % 2]))
    return pairs


def test_inherited_state_loads_strictly_for_mutated_children() -> None:
    checked = 0
    for name, parent_cfg, child_cfg, shape in mutated_pairs(200):
        try:
            parent = build_model(parent_cfg, shape, CLASSES)
            child = build_model(child_cfg, shape, CLASSES)
        except ConfigError:  # more poolings than an 8x8 input allows: not a valid pair there
            continue
        state = inherit(parent.state_dict(), parent_cfg, child_cfg, shape, CLASSES)
        child.load_state_dict(state, strict=True)
        with torch.no_grad():
            out = child.eval()(torch.randn(2, *shape))
        assert out.shape == (2, CLASSES) and torch.isfinite(out).all(), (name, child_cfg)
        checked += 1
    assert checked >= 150


# -- continuation from inherited weights ------------------------------------------------------


def test_two_plus_three_epochs_from_inherited_weights_equal_five(tmp_path: Path) -> None:
    task = Task(load_data(make_image_folder(tmp_path / "data", size=16)), cv_folds=2)
    parent_cfg = dict(BASE, use_BN=False)
    child_cfg = dict(parent_cfg, n_channels_conv_1=16, learning_rate_init=0.005)
    parent_dir = tmp_path / "parent"
    state = make_state(parent_cfg, task.input_shape, task.n_classes, seed=1, device=task.device)
    sha = save_checkpoint(parent_dir / "fold0.pt", state)
    source = ParentWeights(0, parent_cfg, parent_dir, {0: sha})

    def job(epochs: int, checkpoints: Path | None, inherit_from: ParentWeights | None) -> FoldJob:
        return FoldJob(child_cfg, epochs, 0, 7, (5,), checkpoints, None, None, True, inherit_from)

    at_once = run_fold(job(5, None, source), task)
    take_checkpoint(run_fold(job(2, tmp_path / "child", source), task), tmp_path / "child")
    continued = run_fold(job(5, tmp_path / "child", source), task)
    fresh = run_fold(job(5, None, None), task)
    assert at_once.inherited and not continued.inherited and not fresh.inherited
    continued_state = continued.model.state_dict()
    for name, tensor in at_once.model.state_dict().items():
        assert torch.equal(tensor, continued_state[name]), name
    assert at_once.loss == continued.loss
    assert at_once.loss != fresh.loss  # the inherited start made a difference


def test_a_mismatching_parent_checkpoint_is_not_inherited(tmp_path: Path) -> None:
    task = Task(load_data(make_image_folder(tmp_path / "data")), cv_folds=2)
    cfg = dict(BASE, n_conv_layers=1, use_BN=False)
    state = make_state(cfg, task.input_shape, task.n_classes, seed=1, device=task.device)
    save_checkpoint(tmp_path / "parent" / "fold0.pt", state)
    source = ParentWeights(0, cfg, tmp_path / "parent", {0: "0" * 64})
    result = run_fold(FoldJob(cfg, 1, 0, 7, (), None, None, None, False, source), task)
    assert result.status == "ok" and not result.inherited


# -- a real search ------------------------------------------------------------------------------


FOUR = ("a", "b", "c", "d")
"""Four classes, so that top-1 and precision can tell the searches apart."""


def search(data_dir: Path, run_dir: Path, inherit_weights: bool) -> SearchConfig:
    settings = SearchSettings(
        pop_size=3,
        hyperband=True,
        min_epochs=1,
        max_epochs=2,
        max_evaluations=9,
        seed=2,
        inherit_weights=inherit_weights,
        remeasure=False,
        predictor=False,  # the checkpoints inheritance keeps, alone
    )
    return tiny_search_config(settings, data_dir, run_dir)


def test_search_with_inheritance_records_who_inherited(tmp_path: Path) -> None:
    data_dir = make_image_folder(tmp_path / "data", classes=FOUR)
    report = run_search(search(data_dir, tmp_path / "run", inherit_weights=True))
    assert report.n_evaluations == 9
    frame = load_run(tmp_path / "run")
    children = frame[frame["origin"].isin([Origin.MUTATED, Origin.RECOMBINED])]
    assert len(children) > 0
    store = RunStore(tmp_path / "run", readonly=True)
    try:
        inherited = store.inheritances()
        population = store.generations_frame()["population"].iloc[-1]
    finally:
        store.close()
    assert inherited, "no child inherited weights"
    parents = {int(r.member_id): r.parents for r in children.itertuples()}
    for member_id, row in inherited.items():
        assert row["parent"] == parents[member_id][0]
        assert row["folds"] == [0, 1]
    run_json = read_json(tmp_path / "run" / "run.json")
    assert run_json["search"]["inherit_weights"] is True
    assert {int(k): v for k, v in run_json["inherited_weights"].items()} == {
        m: row["parent"] for m, row in inherited.items()
    }
    # the population keeps its checkpoints (its children inherit them); others are deleted
    # unless their bracket is still in flight
    kept = {int(p.name.split("_")[1]) for p in (tmp_path / "run" / "checkpoints").iterdir()}
    last = set(frame["member_id"][frame["generation"] == frame["generation"].max()])
    assert set(population) <= kept <= set(population) | last


@pytest.mark.slow
def test_search_with_inheritance_is_reproducible_and_differs_from_without(tmp_path: Path) -> None:
    data_dir = make_image_folder(tmp_path / "data", classes=FOUR)
    runs = {
        name: run_search(search(data_dir, tmp_path / name, inherit_weights=flag))
        for name, flag in (("a", True), ("b", True), ("off", False))
    }
    assert all(r.n_evaluations == 9 for r in runs.values())
    a, b, off = (read_json(tmp_path / n / "automl_run.json") for n in ("a", "b", "off"))
    assert [(r["member_id"], r["configuration"], r["top3"], r["precision"]) for r in a] == [
        (r["member_id"], r["configuration"], r["top3"], r["precision"]) for r in b
    ]
    # the searches agree until the first child that inherited, whose training then differs
    stores = {n: RunStore(tmp_path / n, readonly=True) for n in ("a", "off")}
    try:
        first = min(stores["a"].inheritances())
        assert stores["a"].member_config(first) == stores["off"].member_config(first)
        budget = min(r["epochs"] for r in a if r["member_id"] == first)
        losses = {
            n: [f.loss for f in store.fold_results(first, budget).values()]
            for n, store in stores.items()
        }
    finally:
        for store in stores.values():
            store.close()
    assert losses["a"] != losses["off"]


def test_command_line_flag_defaults_to_off() -> None:
    import AutoML

    parser = AutoML.build_parser()
    assert parser.parse_args([]).inherit_weights is False
    args = parser.parse_args(["--inherit_weights", "--hyperband"])
    assert AutoML.config_from_args(args).settings.inherit_weights is True
    args = parser.parse_args(["--inherit_weights", "False"])
    assert AutoML.config_from_args(args).settings.inherit_weights is False


def test_a_run_recorded_before_the_flag_existed_resumes_with_it_off(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    recorded = {"space": "course", "seed": 1}
    store.set_run_info({"search": recorded})
    store.set_run_info(
        {"search": {k: v for k, v in DEFINITION.to_dict().items() if k != "inherit_weights"}}
    )
    check_resume(store, DEFINITION)
    with pytest.raises(StoreError, match="inherit_weights"):
        check_resume(store, dataclasses.replace(DEFINITION, inherit_weights=True))
    store.close()
