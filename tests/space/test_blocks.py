"""Tests of composing and compiling search spaces (evoband.space._builders and its parts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from ConfigSpace import (
    CategoricalHyperparameter,
    ConfigurationSpace,
    Constant,
    InCondition,
    OrdinalHyperparameter,
    UniformIntegerHyperparameter,
)

from block_examples import EXAMPLES
from evoband.core._errors import ConfigError
from evoband.nets._plan import ForkStep, LayerStep, SeqStep, ShapeError, Step, plan_network
from evoband.space._builders import Above, Among, common_guard, compile_space
from evoband.space._genotype import sample, validate
from evoband.space._layers import (
    BatchNorm,
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

N_SAMPLES = 200


def conditions(space: ConfigurationSpace) -> dict[str, tuple[str, str, Any]]:
    """Each conditioned key: (parent, condition type, value or values)."""
    found = {}
    for condition in space.conditions:
        value = tuple(condition.values) if isinstance(condition, InCondition) else condition.value
        found[condition.child.name] = (condition.parent.name, type(condition).__name__, value)
    return found


def samples(space: ConfigurationSpace, n: int = N_SAMPLES, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [sample(space, rng) for _ in range(n)]


def layer_steps(step: Step) -> list[LayerStep]:
    """The layers of a plan in forward order."""
    if isinstance(step, LayerStep):
        return [step]
    if isinstance(step, SeqStep):
        parts = step.steps
    elif isinstance(step, ForkStep):
        parts = step.paths
    else:
        parts = (step.body,)
    return [layer for part in parts for layer in layer_steps(part)]


class ReadKeys(dict):
    """A config that records which keys were read."""

    def __init__(self, values: dict) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)


def test_keys_follow_the_positions_and_conditions_the_structure() -> None:
    space = Chain(
        Conv(IntRange(4, 8), OneOf([1, 3]), "relu"),
        Repeat(Dense(IntRange(4, 8), "relu"), 0, 2),
        Choice(Pool(), Residual(Conv(4, 3, OneOf(["relu", "gelu"])))),
        Fork(BatchNorm(), 1, 2),
    )
    compiled = compile_space(space, name="keys", seed=1)
    assert compiled.name == "keys"
    assert set(compiled) == {
        "b0_channels",
        "b0_kernel",
        "b1_count",
        "b1_r0_units",
        "b1_r1_units",
        "b2_choice",
        "b2_c0_pool",
        "b2_c1_res_act",
        "b3_paths",
    }
    assert conditions(compiled) == {
        "b1_r0_units": ("b1_count", "GreaterThanCondition", 0),
        "b1_r1_units": ("b1_count", "GreaterThanCondition", 1),
        "b2_c0_pool": ("b2_choice", "EqualsCondition", 0),
        "b2_c1_res_act": ("b2_choice", "EqualsCondition", 1),
    }
    assert isinstance(compiled["b1_count"], UniformIntegerHyperparameter)
    assert (compiled["b1_count"].lower, compiled["b1_count"].upper) == (0, 2)
    assert list(compiled["b0_kernel"].choices) == [1, 3]
    assert list(compiled["b2_choice"].choices) == [0, 1]


def test_fixed_values_are_no_keys_unless_named() -> None:
    compiled = compile_space(
        Chain(Conv(8, 3, "relu", stride=Fixed(2, name="stride")), Repeat(Pool("max"), 2, 2))
    )
    assert set(compiled) == {"stride"}
    assert compiled["stride"] == Constant("stride", 2)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_sampled_configs_hold_exactly_the_keys_their_network_reads(name: str) -> None:
    space = EXAMPLES[name]
    compiled = compile_space(space, name=name)
    sizes, planned = set(), 0
    for config in samples(compiled):
        validate(compiled, config)  # ConfigSpace's own check: active keys present, no others
        sizes.add(len(config))
        recorder = ReadKeys(config)
        try:
            plan_network(space, recorder, (3, 64, 64))
        except ShapeError:
            continue  # e.g. Fork paths ending at different sizes
        planned += 1
        assert recorder.read == set(config)
    assert planned > N_SAMPLES // 2
    assert len(sizes) > 3 and min(sizes) < len(compiled)  # inactive keys are left out


def test_a_repeat_inside_a_choice_branch() -> None:
    space = Choice(Conv(4, 3, "relu"), Repeat(Conv(IntRange(2, 4), 3, "relu"), 1, 3))
    compiled = compile_space(space)
    assert conditions(compiled) == {
        "c1_count": ("choice", "EqualsCondition", 1),
        "c1_r0_channels": ("choice", "EqualsCondition", 1),
        "c1_r1_channels": ("c1_count", "GreaterThanCondition", 1),
        "c1_r2_channels": ("c1_count", "GreaterThanCondition", 2),
    }
    picked = set()
    for config in samples(compiled):
        picked.add(config["choice"])
        if config["choice"] == 0:
            assert config == {"choice": 0}
        else:
            widths = {key for key in config if key.endswith("_channels")}
            assert widths == {f"c1_r{i}_channels" for i in range(config["c1_count"])}
    assert picked == {0, 1}


def test_a_fork_inside_a_repeat() -> None:
    space = Repeat(Fork(Conv(IntRange(2, 4), 3, "relu"), 1, 3), 1, 2)
    compiled = compile_space(space)
    assert conditions(compiled) == {
        "r0_p1_channels": ("r0_paths", "GreaterThanCondition", 1),
        "r0_p2_channels": ("r0_paths", "GreaterThanCondition", 2),
        "r1_paths": ("count", "GreaterThanCondition", 1),
        "r1_p0_channels": ("count", "GreaterThanCondition", 1),
        "r1_p1_channels": ("r1_paths", "GreaterThanCondition", 1),
        "r1_p2_channels": ("r1_paths", "GreaterThanCondition", 2),
    }
    for config in samples(compiled):
        expected = {"count"}
        for item in range(config["count"]):
            expected.add(f"r{item}_paths")
            expected.update(f"r{item}_p{p}_channels" for p in range(config[f"r{item}_paths"]))
        assert set(config) == expected


def test_a_named_parameter_is_one_shared_hyperparameter() -> None:
    width = IntRange(4, 8, name="width")
    space = Chain(Repeat(Conv(width, 3, "relu"), 1, 3), Dense(width, "relu"))
    compiled = compile_space(space)
    assert set(compiled) == {"width", "b0_count"}
    assert conditions(compiled) == {}
    for config in samples(compiled, 20):
        layers = layer_steps(plan_network(space, config, (1, 8, 8)))
        assert len(layers) == config["b0_count"] + 1
        assert {layer.out_shape[0] for layer in layers} == {config["width"]}


@pytest.mark.parametrize(
    ("space", "condition"),
    [
        (Repeat(Conv(IntRange(4, 8, name="w"), 3, "relu"), 0, 3), ("count", "GreaterThan", 0)),
        (
            Choice(
                Conv(IntRange(4, 8, name="w"), 3, "relu"),
                Dense(IntRange(4, 8, name="w"), "relu"),
                Pool(),
            ),
            ("choice", "In", (0, 1)),
        ),
        (
            Choice(
                Conv(IntRange(4, 8, name="w"), 3, "relu"), Dense(IntRange(4, 8, name="w"), "relu")
            ),
            None,
        ),
        (
            Chain(
                Choice(Pool(), Conv(IntRange(4, 8, name="w"), 3, "relu")),
                Choice(Pool(), Conv(IntRange(4, 8, name="w"), 3, "relu")),
            ),
            None,  # uses under two different parents: active always (no OR condition)
        ),
    ],
    ids=["repeat-from-0", "two-of-three-branches", "every-branch", "two-choices"],
)
def test_a_shared_parameter_is_active_where_any_of_its_uses_is(
    space: Any, condition: tuple | None
) -> None:
    compiled = compile_space(space)
    found = conditions(compiled).get("w")
    if condition is None:
        assert found is None
    else:
        parent, kind, value = condition
        assert found == (parent, f"{kind}Condition", value)
    for config in samples(compiled):
        recorder = ReadKeys(config)
        plan_network(space, recorder, (1, 8, 8))
        assert recorder.read <= set(config)  # every use finds its value
        if condition is not None:
            assert ("w" in recorder.read) == ("w" in config)


def test_repeats_sharing_a_name_share_the_count() -> None:
    space = Chain(
        Repeat(Conv(4, 3, "relu"), 1, 3, name="depth"),
        GlobalPool("avg"),
        Repeat(Dense(4, "relu"), 1, 3, name="depth"),
    )
    compiled = compile_space(space)
    assert set(compiled) == {"depth"}
    plan = plan_network(space, {"depth": 2}, (1, 8, 8))
    assert [layer.kind for layer in layer_steps(plan)] == ["conv"] * 2 + ["global_pool"] + [
        "dense"
    ] * 2


def test_indexed_parameters_are_made_per_item() -> None:
    widths = Indexed(lambda i: IntRange(4, 8 + i, name=f"w{i}", default=4 + i))
    compiled = compile_space(Repeat(Conv(widths, 3, "relu"), 1, 3))
    assert [(compiled[f"w{i}"].upper, compiled[f"w{i}"].default_value) for i in range(3)] == [
        (8, 4),
        (9, 5),
        (10, 6),
    ]
    assert conditions(compiled) == {
        "w1": ("count", "GreaterThanCondition", 1),
        "w2": ("count", "GreaterThanCondition", 2),
    }


def test_indexed_picks_the_named_repeat() -> None:
    widths = Indexed(lambda i: IntRange(4, 8, name=f"w{i}"), index="stage")
    inner = Repeat(Conv(widths, 3, "relu"), 1, 2, name="convs")
    compiled = compile_space(Repeat(inner, 1, 3, index="stage"))
    assert set(compiled) == {"count", "convs", "w0", "w1", "w2"}
    assert conditions(compiled) == {
        "w1": ("count", "GreaterThanCondition", 1),
        "w2": ("count", "GreaterThanCondition", 2),
    }
    plan = plan_network(
        Repeat(inner, 1, 3, index="stage"), {"count": 2, "convs": 2, "w0": 5, "w1": 7}, (1, 8, 8)
    )
    assert [layer.out_shape[0] for layer in layer_steps(plan)] == [5, 5, 7, 7]


def test_extra_settings_are_unconditional_and_searched() -> None:
    extra = [FloatRange(1e-4, 0.1, log=True, name="lr"), OneOf(["adam", "sgd"], name="opt")]
    compiled = compile_space(Conv(4, 3, "relu"), extra=extra)
    assert set(compiled) == {"lr", "opt"}
    assert compiled["lr"].log and conditions(compiled) == {}


def test_ordered_choice_and_weights() -> None:
    compiled = compile_space(
        Conv(
            4,
            OneOf([3, 5, 7], ordered=True, default=5),
            OneOf(["relu", "gelu"], weights=[3, 1]),
        )
    )
    assert compiled["kernel"] == OrdinalHyperparameter("kernel", [3, 5, 7], default_value=5)
    act = compiled["act"]
    assert isinstance(act, CategoricalHyperparameter)
    assert list(act.probabilities) == [0.75, 0.25] and act.default_value == "relu"


def test_the_seed_fixes_configspace_sampling() -> None:
    space = EXAMPLES["conv"]
    first = compile_space(space, seed=7).sample_configuration(5)
    again = compile_space(space, seed=7).sample_configuration(5)
    assert first == again


def test_common_guard() -> None:
    above1, above2 = Above("n", 1), Above("n", 2)
    pick = ("a", "b", "c")
    among_a, among_b = Among("k", ("a",), pick), Among("k", ("b",), pick)
    assert common_guard([()]) is None
    assert common_guard([(above1,), (above1, above2)]) == above1
    assert common_guard([(above2,), (above1,)]) == above1
    assert common_guard([(among_a,), (among_b,)]) == Among("k", ("a", "b"), pick)
    everything = [(above1, Among("k", (x,), pick)) for x in pick]
    assert common_guard(everything) == above1
    assert common_guard([(above1, among_a), (above1, Above("m", 3))]) == above1


def _raises(make: Callable[[], object], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        make()
    assert "\n" not in str(info.value)


CONV = Conv(4, 3, "relu")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Repeat(CONV, 3, 2), r"`max` of Repeat is 2, but must be an int >= 3\. Swap"),
        (lambda: Repeat(CONV, -1, 2), "`min` of Repeat is -1, but must be an int >= 0"),
        (lambda: Repeat(CONV, 0, 0), "`max` of Repeat is 0.*repeats nothing"),
        (
            lambda: Repeat(CONV, 1, 3, default=5),
            r"`default` of Repeat is 5, but must be an int in \[1, 3\]",
        ),
        (lambda: Repeat(CONV, 1.0, 3), "`min` of Repeat is 1.0, but must be an int"),
        (lambda: Fork(CONV, 0, 2), "`min_paths` of Fork is 0, but must be an int >= 1"),
        (lambda: IntRange(5, 5), r"must be > lo \(5\)\. Use Fixed\(5\)"),
        (lambda: IntRange(1.5, 3), "`lo` of IntRange is 1.5, but must be an int"),
        (lambda: FloatRange(0.0, 1.0, log=True), "must be > 0 with log=True"),
        (
            lambda: FloatRange(0, 1, default=2),
            r"`default` of FloatRange is 2, but must be a number in \[0, 1\]",
        ),
        (lambda: OneOf([]), "non-empty list"),
        (lambda: OneOf("abc"), "non-empty list"),
        (lambda: OneOf([1, 1]), "twice"),
        (lambda: OneOf([1, 2], weights=[1]), "one positive weight per value"),
        (lambda: OneOf([1, 2], default=3), "not one of its values"),
        (lambda: OneOf([1, 2], weights=[1, 1], ordered=True), "no weights"),
        (lambda: OneOf([1, [2]]), "must be a bool, int, float or str"),
        (lambda: IntRange(1, 4, name=""), "non-empty str"),
        (lambda: Chain(IntRange(1, 3)), "must be a layer or architecture space"),
        (lambda: Residual(OneOf([1])), "must be a layer or architecture space"),
        (lambda: Conv([8, 16], 3, "relu"), r"use OneOf\(\[...\]\)"),
        (lambda: Choice(CONV), "at least two"),
        (lambda: Choice(CONV, Pool(), labels=[1]), "one label per space"),
        (lambda: Choice(CONV, Pool(), labels=[1, 1]), "twice"),
        (lambda: Indexed(3), "function of the item index"),
        (
            lambda: compile_space(Conv(4, OneOf([2, 3]), "relu")),
            "kernel may be 2, but must be an odd",
        ),
        (lambda: compile_space(Conv(4, IntRange(1, 5), "relu")), "not a range"),
        (lambda: compile_space(Conv(4, 3, "relu6")), "must be one of relu"),
        (lambda: compile_space(Conv(0, 3, "relu")), "positive int"),
        (lambda: compile_space(Conv(4, 3, "relu", batch_norm=1)), "True or False"),
        (lambda: compile_space(Dense(FloatRange(1, 8), "relu")), "use IntRange"),
        (lambda: compile_space(Dense(4, "relu", dropout=1.0)), r"rate in \[0, 1\)"),
        (lambda: compile_space(Pool(kind="median")), "'max' or 'avg'"),
        (
            lambda: compile_space(
                Chain(
                    Conv(IntRange(4, 8, name="w"), 3, "relu"),
                    Conv(IntRange(4, 9, name="w"), 3, "relu"),
                )
            ),
            "'w' is given to two different parameters",
        ),
        (
            lambda: compile_space(
                Chain(
                    Conv(IntRange(4, 8), 3, "relu"),
                    Conv(IntRange(4, 8, name="b0_channels"), 3, "relu"),
                )
            ),
            "also the key of a parameter",
        ),
        (lambda: compile_space(CONV, extra=[FloatRange(0.1, 1.0)]), "named parameter spaces"),
        (lambda: compile_space(Conv(Indexed(lambda i: 4), 3, "relu")), "not inside a Repeat"),
        (
            lambda: compile_space(Repeat(Conv(Indexed(lambda i: 4, index="stage"), 3, "relu"))),
            "index='stage'",
        ),
        (lambda: compile_space(Repeat(Conv(Indexed(lambda i: [4]), 3, "relu"))), "OneOf"),
    ],
)
def test_bad_input_is_a_one_line_config_error(make: Callable[[], object], match: str) -> None:
    _raises(make, match)
