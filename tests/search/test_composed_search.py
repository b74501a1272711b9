"""Searching a space composed with the builders: the network family seam end to end.

A real search (tiny 8x8 images, 2-fold CV, 1-2 epochs) over a conv space with Residual and Fork
blocks and structural mutations; the generic counts of :mod:`evoband.nets._counts` against the
shipped family's formulas and hand-computed values; the repair, sampling and settings checks.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest
import torch

from evoband import SearchSettings, fit, load_run
from evoband.core._errors import ConfigError, DataError, StoreError
from evoband.execution._cluster import check_sendable
from evoband.nets._cnn import activation_elements, build_model, count_params, macs_per_sample
from evoband.nets._composed import BlockNetwork, count_parameters
from evoband.nets._counts import count_network
from evoband.nets._export import load_exported
from evoband.nets._family import SHIPPED, BlockFamily
from evoband.nets._plan import is_valid
from evoband.operators._base import Variation
from evoband.operators._crossovers import TrainingCrossover
from evoband.operators._mutations import AddLayer, CountMutation, WidthMutation
from evoband.operators._repair import ParamBudget, smallest_config
from evoband.operators._selection import TournamentSelection
from evoband.operators._wrappers import Shield, WithProbability
from evoband.report import _retrain as retrain
from evoband.search._settings import check_max_params
from evoband.search._setup import SearchConfig
from evoband.search._space import check_training_settings, resolve_space
from evoband.space._genotype import sample, validate
from evoband.space._layers import (
    Chain,
    Choice,
    Conv,
    Dense,
    Fork,
    GlobalPool,
    Pool,
    Repeat,
    Residual,
)
from evoband.space._params import Fixed, FloatRange, Indexed, IntRange, OneOf
from evoband.space._shipped import SpaceDefinition
from evoband.space._spaces import get_space
from evoband.store._ledger import RunStore
from evoband.store._runs import read_run
from evoband.training._constraints import Constraints
from helpers import TINY_CLASSES, TINY_SHAPE, make_image_folder

SETTINGS = (
    FloatRange(3e-3, 3e-2, log=True, name="learning_rate_init"),
    OneOf([8, 16], name="batch_size"),
    OneOf(["adam", "adamw"], name="optimizer"),
)


def stage_width(i: int) -> IntRange:
    """The width of stage ``i``'s first conv (a module-level function: the space pickles)."""
    return IntRange(4, 16, log=True, name=f"width_{i}")


def residual_fork_network(activation: str = "relu") -> Chain:
    """A stem, one to three residual stages (each pooled), a fork of one or two paths, global
    pooling and a Dense output layer (``out_units``)."""
    body = Chain(
        Conv(Indexed(stage_width), OneOf([1, 3]), activation, batch_norm=True),
        Conv(IntRange(4, 12), 3, "identity"),
    )
    stage = Chain(Residual(body), Pool())
    return Chain(
        Conv(8, 3, "relu"),
        Repeat(stage, 1, 3, name="stages"),
        Fork(Conv(IntRange(2, 8), 1, "relu"), 1, 2, name="paths"),
        GlobalPool(),
        Dense(IntRange(8, 16, name="out_units"), "relu"),
    )


SPACE = SpaceDefinition("res-fork", residual_fork_network(), SETTINGS)
MAX_PARAMS = 20_000


class Counted(Variation):
    """``op``, counting its calls (to see that the search used it)."""

    def __init__(self, op: Variation) -> None:
        self.op, self.n_parents, self.calls = op, op.n_parents, 0

    def __call__(self, parents: Any, rng: np.random.Generator) -> dict[str, Any]:
        self.calls += 1
        return self.op(parents, rng)


class CountedSelection(TournamentSelection):
    """A tournament that counts its calls."""

    calls = 0

    def select(self, ranked: Any, n: int, rng: np.random.Generator) -> list[Any]:
        self.calls += 1
        return super().select(ranked, n, rng)


def operators(cs: Any) -> dict[str, Any]:
    return {
        "mutations": [
            Counted(WithProbability(AddLayer(cs, "stages", "width_"), 0.8)),
            Counted(CountMutation(cs, "paths")),
            Counted(Shield(WidthMutation(cs, "width_"), ["out_units"])),
        ],
        "crossover": Counted(TrainingCrossover(cs)),
        "selection": CountedSelection(2),
    }


def search_settings(cap: int) -> SearchSettings:
    return SearchSettings(
        pop_size=3, min_epochs=1, max_epochs=2, max_evaluations=cap, seed=2, remeasure=False
    )


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real search of ``SPACE`` (12 evaluations), kept for the tests below."""
    root = tmp_path_factory.mktemp("composed")
    data = make_image_folder(root / "tiny")
    cs = SPACE.compile()
    ops = operators(cs)
    population = fit(
        data,
        space=SPACE,
        constraints=(MAX_PARAMS, 0.1),
        settings=search_settings(12),
        run_dir=root / "run",
        progress=False,
        **ops,
    )
    return {"data": data, "run_dir": root / "run", "population": population, "cs": cs, **ops}


def test_the_search_uses_the_given_operators_and_records_every_evaluation(searched) -> None:
    population = searched["population"]
    assert population.report.n_evaluations == 12
    assert len(load_run(searched["run_dir"])) == 12
    assert all(m.calls > 0 for m in searched["mutations"][:2])
    assert searched["crossover"].calls > 0 and searched["selection"].calls > 0
    records = json.loads((searched["run_dir"] / "automl_run.json").read_text())
    assert {r["origin"] for r in records} >= {"mutated", "recombined"}


def test_every_member_is_valid_in_the_space_and_counted_by_its_network(searched) -> None:
    cs = searched["cs"]
    records = json.loads((searched["run_dir"] / "automl_run.json").read_text())
    assert len(records) == 12
    for record in records:
        config = record["configuration"]
        validate(cs, config)
        assert is_valid(SPACE.network, config, TINY_SHAPE)
        assert record["num_params"] == count_parameters(
            SPACE.network, config, TINY_SHAPE, TINY_CLASSES
        )
        assert record["num_params"] <= MAX_PARAMS


def test_the_run_records_the_composed_space(searched) -> None:
    run_json = json.loads((searched["run_dir"] / "run.json").read_text())
    recorded = run_json["space"]
    assert recorded["name"] == "res-fork" and recorded["family"] == "blocks"
    assert recorded["configspace"] == searched["cs"].to_serialized_dict()
    assert run_json["search"]["space"] == "res-fork"
    assert run_json["search"]["space_fingerprint"] == recorded["fingerprint"] != ""
    assert run_json["arguments"]["space"] == "res-fork"
    assert run_json["arguments"]["crossover"] == "Counted"
    store = RunStore(searched["run_dir"], readonly=True)
    try:
        assert store.run_info()["space"]["fingerprint"] == recorded["fingerprint"]
    finally:
        store.close()


def test_the_best_member_gives_a_network_of_the_family_and_exports_it(
    searched, tmp_path: Path
) -> None:
    best = searched["population"][0]
    assert isinstance(best.family, BlockFamily)
    net = best.model()
    assert isinstance(net, BlockNetwork)
    assert sum(p.numel() for p in net.parameters()) == best.num_params
    assert best.num_params == count_parameters(SPACE.network, best.config, TINY_SHAPE, 3)
    assert best.test_result is not None and best.test_result.num_params == best.num_params
    best.export(tmp_path / "net.pt2")
    program, meta = load_exported(tmp_path / "net.pt2")
    x = torch.randn(5, *TINY_SHAPE)
    with torch.no_grad():
        assert torch.allclose(program(x), net(x), atol=1e-5)
    assert meta["network_family"] == "blocks" and meta["config"] == best.config


def test_the_command_lines_refuse_to_retrain_a_composed_run(searched) -> None:
    with pytest.raises(DataError, match="composed space 'res-fork'") as info:
        retrain.test_data_dir(read_run(searched["run_dir"]))
    assert "\n" not in str(info.value)


def test_the_same_run_dir_resumes_and_another_space_is_refused(searched) -> None:
    run_dir, before = searched["run_dir"], load_run(searched["run_dir"])
    common = {"constraints": (MAX_PARAMS, 0.1), "run_dir": run_dir, "progress": False}
    ops = operators(searched["cs"])
    fit(searched["data"], space=SPACE, settings=search_settings(14), **common, **ops)
    after = load_run(run_dir)
    assert len(after) == 14
    assert after.head(12)[["member_id", "epochs"]].equals(before[["member_id", "epochs"]])
    other = SpaceDefinition("res-fork", residual_fork_network("gelu"), SETTINGS)
    for space in (other, "course"):
        with pytest.raises(StoreError, match="Cannot resume") as info:
            fit(searched["data"], space=space, settings=search_settings(16), **common)
        assert "\n" not in str(info.value) and "composed space 'res-fork'" in str(info.value)
    assert len(load_run(run_dir)) == 14


# -- generic counting ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["course", "extended"])
def test_meta_counts_equal_the_shipped_formulas(name: str) -> None:
    space, rng = get_space(name, 0), np.random.default_rng(1)
    checked = 0
    for _ in range(25):
        config = sample(space, rng)
        for shape in [(3, 16, 16), (1, 8, 8), (3, 13, 11)]:
            try:
                expected = (
                    count_params(config, shape, 5),
                    macs_per_sample(config, shape, 5),
                    activation_elements(config, shape),
                )
            except ConfigError:
                continue  # too many pools for the shape
            got = count_network(lambda c=config, s=shape: build_model(c, s, 5), shape)
            assert (got.params, got.macs, got.activation_elements) == expected, (config, shape)
            assert SHIPPED.macs_per_sample(config, shape, 5) == expected[1]
            checked += 1
    assert checked >= 40


def test_meta_counts_of_a_tiny_residual_network_by_hand() -> None:
    # (2, 4, 4) -> conv 2->3 k3 -> max pool -> residual(conv 3->3 k1) -> global pool -> dense 5
    network = Chain(
        Conv(3, 3, "relu"), Pool("max"), Residual(Conv(3, 1, "identity")), GlobalPool("avg"),
        Dense(5, "relu"),
    )  # fmt: skip
    counts = BlockFamily(network).counts({}, (2, 4, 4), 2)
    macs = 16 * 3 * 2 * 9 + 4 * 3 * 3 + 3 * 5 + 5 * 2  # conv, residual conv, dense, head
    params = (2 * 9 * 3 + 3) + (3 * 3 + 3) + (3 * 5 + 5) + (5 * 2 + 2)
    assert (counts.macs, counts.activation_elements, counts.params) == (macs, 48 + 12, params)
    assert (macs, params) == (925, 101)


def test_meta_counts_of_a_fork_and_a_projected_residual_by_hand() -> None:
    # (1, 4, 4) -> fork of two convs 1->2 k3 (4 channels) -> residual(conv 4->3 k1 stride 2)
    # whose input a bias-free strided 1x1 conv 4->3 projects -> flatten 12 -> head 2
    network = Chain(Fork(Conv(2, 3, "relu"), 2, 2), Residual(Conv(3, 1, "relu", stride=2)))
    family = BlockFamily(network)
    counts = family.counts({}, (1, 4, 4), 2)
    assert counts.macs == 2 * (16 * 2 * 9) + 12 * 4 + 12 * 4 + 12 * 2 == 696
    assert counts.activation_elements == 2 * 32 + 12 + 12
    assert counts.params == 2 * (2 * 9 + 2) + (4 * 3 + 3) + 4 * 3 + (12 * 2 + 2) == 93
    assert family.macs_per_sample({}, (1, 4, 4), 2) == 696


# -- repair, sampling and settings ----------------------------------------------------------------

DEEP = SpaceDefinition(
    "deep",
    Chain(
        Repeat(
            Chain(Conv(IntRange(4, 64), OneOf([1, 3, 5], ordered=True), "relu"), Pool()),
            1,
            5,
            name="stages",
        ),
        Choice(GlobalPool(), Chain()),
        Repeat(Dense(IntRange(4, 64), "relu"), 0, 2),
    ),
    (FloatRange(1e-3, 1e-2, name="learning_rate_init"), Fixed(8, name="batch_size")),
)
"""Up to five pools: on 8x8 images, four or five stages do not fit."""


def test_structure_keys_are_the_widths_counts_and_ordered_kernels() -> None:
    searched = resolve_space(DEEP)
    keys = searched.family.structure_keys(searched.space)
    assert keys[0] == "stages" and "b0_r0_b0_channels" in keys and "b0_r0_b0_kernel" in keys
    assert "b2_count" in keys and "b2_r1_units" in keys
    assert "learning_rate_init" not in keys and "b1_choice" not in keys
    # an unordered choice of kernels cannot be shrunk, so it is no structure key
    assert "b1_r0_b0_res_b0_kernel" not in resolve_space(SPACE).family.structure_keys(
        resolve_space(SPACE).space
    )


def test_samples_and_repaired_children_always_fit_the_input() -> None:
    searched = resolve_space(DEEP, seed=0)
    cs, family, rng = searched.space, searched.family, np.random.default_rng(0)

    def count(config: dict[str, Any]) -> int:
        return family.safe_count(config, TINY_SHAPE, TINY_CLASSES)

    budget = ParamBudget(cs, count, 5_000, keys=family.structure_keys(cs))
    repaired = 0
    for _ in range(40):
        config = family.sample(cs, TINY_SHAPE, rng)
        assert is_valid(DEEP.network, config, TINY_SHAPE)
        raw = sample(cs, rng)  # may pool below 1x1: counted as oversized and repaired
        assert (count(raw) == sys.maxsize) == (not is_valid(DEEP.network, raw, TINY_SHAPE))
        fixed = budget.repair(raw, rng)
        if fixed is not None:
            repaired += count(raw) > 5_000
            assert is_valid(DEEP.network, fixed, TINY_SHAPE) and count(fixed) <= 5_000
    assert repaired >= 5
    smallest = smallest_config(cs, count)
    assert is_valid(DEEP.network, smallest, TINY_SHAPE) and smallest["stages"] == 1
    check_max_params(cs, Constraints.of(count(smallest), 0.1), count)
    with pytest.raises(ConfigError, match="smaller than the smallest network"):
        check_max_params(cs, Constraints.of(count(smallest) - 1, 0.1), count)


def test_a_space_whose_smallest_network_does_not_fit_is_refused(tmp_path: Path) -> None:
    stages = Repeat(Chain(Conv(4, 3, "relu"), Pool()), 4, 5)  # 8x8 images pool to 1x1 thrice
    space = SpaceDefinition("too-deep", Chain(stages, GlobalPool()), SETTINGS)
    data = make_image_folder(tmp_path / "tiny")
    with pytest.raises(ConfigError, match="does not fit the input images"):
        fit(data, space=space, settings=search_settings(2), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "settings, words",
    [
        ((FloatRange(1e-3, 1e-2, name="learning_rate_init"),), "no 'batch_size' setting"),
        ((Fixed(16, name="batch_size"),), "no 'learning_rate_init' setting"),
        ((*SETTINGS, OneOf(["adam", "rmsprop"], name="optimizer")), "'rmsprop'"),
        ((*SETTINGS[:1], Fixed(16.0, name="batch_size")), "positive int"),
        ((*SETTINGS, OneOf(["constant", "step"], name="lr_schedule")), "'step'"),
        ((*SETTINGS, FloatRange(0.0, 1.0, name="label_smoothing")), "label_smoothing"),
    ],
)
def test_training_settings_are_checked(settings: tuple, words: str) -> None:
    space = SpaceDefinition("s", residual_fork_network(), settings)
    with pytest.raises(ConfigError, match=words):
        resolve_space(space)


def test_a_training_setting_inside_the_network_is_refused() -> None:
    network = Chain(Repeat(Dense(IntRange(4, 8, name="batch_size"), "relu"), 0, 1))
    space = SpaceDefinition("s", network, SETTINGS[:1])
    with pytest.raises(ConfigError, match="'batch_size' of the space 's' is conditional"):
        check_training_settings(space.compile())


def test_search_arguments_are_checked_before_anything_is_written(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "tiny")
    run_dir = tmp_path / "run"
    course_ops = [AddLayer(get_space("course"))]
    with pytest.raises(ConfigError, match=r"mutations\[0\] \(AddLayer\) was made for the space"):
        fit(data, space=SPACE, mutations=course_ops, run_dir=run_dir)
    with pytest.raises(ConfigError, match="list of variation operators"):
        SearchConfig(space=SPACE, mutations=course_ops[0])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="selection must be a Selection"):
        SearchConfig(space=SPACE, selection="tournament")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="name of a shipped space or a SpaceDefinition"):
        SearchConfig(space=3)  # type: ignore[arg-type]
    lambdas = SpaceDefinition(
        "l", Repeat(Dense(Indexed(lambda i: IntRange(4, 8, name=f"u{i}")), "relu"), 1, 2), SETTINGS
    )
    check_sendable(BlockFamily(lambdas.network), 2, cloudpickle.dumps)  # Dask sends lambdas too
    with pytest.raises(ConfigError, match="cannot be sent to 2 worker processes"):
        check_sendable(threading.Lock(), 2, cloudpickle.dumps)  # type: ignore[arg-type]
    assert not run_dir.exists()
