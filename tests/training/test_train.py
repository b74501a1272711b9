"""Tests of evoband.training._loop: continuation, divergence, deadlines, learning, devices and seeds."""

from __future__ import annotations

import copy
import io
import math
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from evoband.core._errors import ConfigError
from evoband.training._data import channel_stats, load_data, normalize
from evoband.training._loop import (
    FINAL_LR_FACTOR,
    TrainState,
    derive_seed,
    evaluate_model,
    learning_rate,
    make_optimizer,
    make_state,
    predict,
    resolve_device,
    train,
)
from evoband.training._results import Status
from helpers import SMALL_CONFIG

CPU = torch.device("cpu")

TINY: dict[str, Any] = dict(SMALL_CONFIG, batch_size=32)

# Extended-space keys with everything random switched on: augmentation, dropout, BN, schedule.
CONTINUATION_CONFIGS = {
    "adamw_cosine_aug": dict(
        TINY,
        optimizer="adamw",
        aug_flip=True,
        aug_shift=1,
        dropout_rate=0.3,
        use_BN=True,
        n_conv_layers=2,
        n_channels_conv_1=16,
        lr_schedule="cosine",
        weight_decay=1e-3,
        label_smoothing=0.1,
        activation="gelu",
    ),
    "adamw_onecycle_two_convs": dict(
        TINY,
        optimizer="adamw",
        aug_flip=True,
        aug_shift=2,
        use_BN=True,
        convs_per_stage=2,
        n_fc_layers=0,
        lr_schedule="onecycle",
        weight_decay=0.05,
    ),
    "two_towers_onecycle": dict(
        TINY,
        optimizer="adamw",
        aug_flip=True,
        aug_shift=1,
        use_BN=True,
        lr_schedule="onecycle",
        label_smoothing=0.1,
        towers=2,
    ),
    "sgd_mse_aug": dict(
        TINY,
        optimizer="sgd",
        train_criterion="mse",
        aug_flip=True,
        aug_shift=1,
        dropout_rate=0.3,
        n_fc_layers=2,
        n_channels_fc_1=16,
        lr_schedule="constant",
    ),
    "adadelta_flatten": dict(
        TINY,
        optimizer="adad",
        learning_rate_init=0.5,
        aug_flip=True,
        aug_shift=1,
        dropout_rate=0.3,
        global_avg_pooling=False,
    ),
}


class Tensors:
    """Normalised train and test tensors of the tiny image folder."""

    def __init__(self, root: Path) -> None:
        source = load_data(root)
        mean, std = channel_stats(source.train.images)
        self.input_shape = source.input_shape
        self.n_classes = source.n_classes
        self.x = normalize(source.train.images, mean, std)
        self.y = source.train.labels
        self.x_test = normalize(source.test.images, mean, std)
        self.y_test = source.test.labels


@pytest.fixture
def tiny(tiny_image_root: Path) -> Tensors:
    return Tensors(tiny_image_root)


SEGMENTS = (2, 5)
"""Rung budgets the continuation tests plan the LR schedule over."""


def fresh_state(tiny: Tensors, config: dict[str, Any], seed: int) -> TrainState:
    return make_state(config, tiny.input_shape, tiny.n_classes, seed=seed, device=CPU)


def assert_same_state(a: TrainState, b: TrainState) -> None:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    assert a.epochs_done == b.epochs_done
    assert a.optimizer.param_groups[0]["lr"] == b.optimizer.param_groups[0]["lr"]
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        for key, value in a.optimizer.state[pa].items():
            other = b.optimizer.state[pb][key]
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(other)), key


@pytest.mark.parametrize("name", sorted(CONTINUATION_CONFIGS))
def test_two_then_five_epochs_equals_five_in_one_go(tiny: Tensors, name: str, seed: int) -> None:
    config = CONTINUATION_CONFIGS[name]
    one_go = fresh_state(tiny, config, seed)
    out_one_go = train(
        one_go, tiny.x, tiny.y, config=config, epochs=5, seed=seed, segments=SEGMENTS
    )

    resumed = fresh_state(tiny, config, seed)
    first = train(resumed, tiny.x, tiny.y, config=config, epochs=2, seed=seed, segments=SEGMENTS)
    epochs_seen: list[int] = []
    second = train(
        resumed,
        tiny.x,
        tiny.y,
        config=config,
        epochs=5,
        seed=seed,
        segments=SEGMENTS,
        on_epoch=lambda e, loss, acc: epochs_seen.append(e),
    )

    assert (first.status, first.epochs_done) == (Status.OK, 2)
    assert (second.status, second.epochs_done) == (Status.OK, 5)
    assert out_one_go == second
    assert epochs_seen == [3, 4, 5]
    assert_same_state(resumed, one_go)


@pytest.mark.parametrize("name", sorted(CONTINUATION_CONFIGS))
def test_continuation_through_a_serialised_state(tiny: Tensors, name: str, seed: int) -> None:
    config = CONTINUATION_CONFIGS[name]
    one_go = fresh_state(tiny, config, seed)
    train(one_go, tiny.x, tiny.y, config=config, epochs=5, seed=seed, segments=SEGMENTS)

    before = fresh_state(tiny, config, seed)
    train(before, tiny.x, tiny.y, config=config, epochs=2, seed=seed, segments=SEGMENTS)
    buffer = io.BytesIO()
    torch.save(before.state_dict(), buffer)
    buffer.seek(0)
    # A new process would build a state with another seed's weights, then load the saved one.
    after = fresh_state(tiny, config, seed + 12345)
    after.load_state_dict(torch.load(buffer, weights_only=True))
    assert after.epochs_done == 2
    train(after, tiny.x, tiny.y, config=config, epochs=5, seed=seed, segments=SEGMENTS)

    assert_same_state(after, one_go)


def test_different_seeds_train_differently(tiny: Tensors) -> None:
    config = CONTINUATION_CONFIGS["adamw_cosine_aug"]
    a, b = fresh_state(tiny, config, 0), fresh_state(tiny, config, 0)
    train(a, tiny.x, tiny.y, config=config, epochs=2, seed=0)
    train(b, tiny.x, tiny.y, config=config, epochs=2, seed=1)
    assert not torch.equal(a.model.head.weight, b.model.head.weight)


def test_make_state_weights_are_fixed_by_the_seed(tiny: Tensors, seed: int) -> None:
    rng_before = torch.get_rng_state()
    a, b = fresh_state(tiny, TINY, seed), fresh_state(tiny, TINY, seed)
    c = fresh_state(tiny, TINY, seed + 1)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is left alone
    assert torch.equal(a.model.conv[0].conv.weight, b.model.conv[0].conv.weight)
    assert not torch.equal(a.model.conv[0].conv.weight, c.model.conv[0].conv.weight)
    assert a.epochs_done == 0


@pytest.mark.parametrize("kind", ["cosine", "onecycle"])
def test_schedules_decay_within_each_segment_and_restart(kind: str) -> None:
    config = dict(TINY, lr_schedule=kind, learning_rate_init=0.1)
    segments = (4, 8, 16)
    for start, end in [(0, 4), (4, 8), (8, 16)]:
        rates = [
            learning_rate(config, start + (end - start) * i / 100, segments) for i in range(100)
        ]
        peak = max(rates)
        assert peak == pytest.approx(0.1, rel=0.02)
        # after the peak the rate only falls, to the floor at the segment's end
        top = rates.index(peak)
        assert all(a >= b for a, b in zip(rates[top:], rates[top + 1 :], strict=False))
        assert learning_rate(config, end - 1e-6, segments) == pytest.approx(
            0.1 * FINAL_LR_FACTOR, rel=1e-3
        )
        if kind == "onecycle":
            assert rates[0] == pytest.approx(0.01) and top > 0  # warm-up from a tenth
        else:
            assert top == 0
    assert (
        learning_rate(dict(TINY, lr_schedule="constant"), 3.5, segments)
        == TINY["learning_rate_init"]
    )


def test_the_step_learning_rate_follows_the_schedule(tiny: Tensors) -> None:
    config = dict(TINY, lr_schedule="cosine")
    state = fresh_state(tiny, config, 0)
    train(state, tiny.x, tiny.y, config=config, epochs=3, seed=0)
    steps = math.ceil(len(tiny.y) / config["batch_size"])
    last = learning_rate(config, 2 + (steps - 1) / steps, (3,))
    assert state.optimizer.param_groups[0]["lr"] == pytest.approx(last)
    assert last < 0.2 * config["learning_rate_init"]


def test_training_to_fewer_epochs_than_done_is_a_no_op(tiny: Tensors) -> None:
    state = fresh_state(tiny, TINY, 0)
    train(state, tiny.x, tiny.y, config=TINY, epochs=2, seed=0)
    weights = copy.deepcopy(state.model.state_dict())
    outcome = train(state, tiny.x, tiny.y, config=TINY, epochs=1, seed=0)
    assert outcome.status == Status.OK and outcome.epochs_done == 2
    assert all(torch.equal(v, state.model.state_dict()[k]) for k, v in weights.items())


@pytest.mark.parametrize(
    "config",
    [
        dict(TINY, optimizer="sgd", learning_rate_init=1e6),
        dict(TINY, optimizer="sgd", learning_rate_init=1e3, n_conv_layers=2, n_channels_conv_1=16),
    ],
    ids=["sgd_lr1e6", "sgd_lr1e3_two_layers"],
)
def test_non_finite_loss_is_diverged(tiny: Tensors, config: dict[str, Any], seed: int) -> None:
    epochs_seen: list[int] = []
    state = fresh_state(tiny, config, seed)
    outcome = train(
        state,
        tiny.x,
        tiny.y,
        config=config,
        epochs=20,
        seed=seed,
        on_epoch=lambda e, loss, acc: epochs_seen.append(e),
    )

    assert outcome.status == Status.DIVERGED
    assert not math.isfinite(outcome.loss)
    assert outcome.epochs_done < 20
    assert outcome.epochs_done == state.epochs_done == len(epochs_seen)


def test_deadline_in_the_past_is_timed_out(tiny: Tensors) -> None:
    state = fresh_state(tiny, TINY, 0)
    outcome = train(
        state, tiny.x, tiny.y, config=TINY, epochs=3, seed=0, deadline=time.monotonic() - 1.0
    )

    assert outcome.status == Status.TIMED_OUT
    assert outcome.epochs_done == 0 == state.epochs_done
    assert math.isfinite(outcome.loss)


def test_far_deadline_does_not_stop_training(tiny: Tensors) -> None:
    state = fresh_state(tiny, TINY, 0)
    outcome = train(
        state, tiny.x, tiny.y, config=TINY, epochs=2, seed=0, deadline=time.monotonic() + 3600
    )
    assert outcome.status == Status.OK and outcome.epochs_done == 2


def test_training_learns_the_tiny_data(tiny: Tensors, seed: int) -> None:
    state = fresh_state(tiny, TINY, seed)
    before, _ = evaluate_model(state.model, tiny.x_test, tiny.y_test, TINY)
    history: list[tuple[int, float, float]] = []

    outcome = train(
        state,
        tiny.x,
        tiny.y,
        config=TINY,
        epochs=10,
        seed=seed,
        on_epoch=lambda e, loss, acc: history.append((e, loss, acc)),
    )
    after, logits = evaluate_model(state.model, tiny.x_test, tiny.y_test, TINY)

    assert outcome.status == Status.OK and outcome.epochs_done == 10
    assert [e for e, _, _ in history] == list(range(1, 11))
    assert outcome.loss == pytest.approx(history[-1][1])
    assert history[-1][1] < history[0][1] / 2
    assert after.top1 >= 0.9
    assert after.top1 > before.top1
    assert after.loss < before.loss
    assert logits.shape == (12, 3)
    assert not state.model.training  # evaluation switches to eval mode


def test_predict_in_batches_equals_one_batch(tiny: Tensors) -> None:
    state = fresh_state(tiny, dict(TINY, use_BN=True), 0)
    train(state, tiny.x, tiny.y, config=TINY, epochs=1, seed=0)
    whole = predict(state.model, tiny.x)
    pieces = predict(state.model, tiny.x, batch_size=5)
    assert whole.shape == (36, 3)
    torch.testing.assert_close(pieces, whole)
    assert whole.device.type == "cpu"


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("adam", torch.optim.Adam),
        ("adamw", torch.optim.AdamW),
        ("sgd", torch.optim.SGD),
        ("adad", torch.optim.Adadelta),
    ],
)
def test_make_optimizer(name: str, cls: type) -> None:
    params = [torch.nn.Parameter(torch.zeros(2))]
    opt = make_optimizer(dict(TINY, optimizer=name, learning_rate_init=0.02), params)
    assert type(opt) is cls
    assert opt.param_groups[0]["lr"] == 0.02
    decayed = make_optimizer(
        dict(TINY, optimizer=name, use_weight_decay=True, weight_decay=0.003), params
    )
    assert decayed.param_groups[0]["weight_decay"] == 0.003


def test_make_optimizer_unknown_name() -> None:
    with pytest.raises(ConfigError, match="rmsprop"):
        make_optimizer(dict(TINY, optimizer="rmsprop"), [torch.nn.Parameter(torch.zeros(1))])


def test_resolve_device_auto_is_cpu_here() -> None:
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if torch.cuda.is_available() or has_mps:
        pytest.skip("an accelerator is present")
    assert resolve_device("auto") == CPU
    assert resolve_device() == CPU


def test_resolve_device_auto_without_accelerators(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if getattr(torch.backends, "mps", None) is not None:
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == CPU
    assert resolve_device("cpu") == CPU
    assert resolve_device("meta") == torch.device("meta")


def test_derive_seed_is_deterministic_and_distinct() -> None:
    tuples = [(s, f, e) for s in range(4) for f in range(4) for e in range(8)]
    seeds = [derive_seed(*t) for t in tuples]
    assert seeds == [derive_seed(*t) for t in tuples]
    assert len(set(seeds)) == len(seeds)
    assert all(isinstance(s, int) and 0 <= s < 2**63 for s in seeds)
    assert derive_seed(1, 2, 0) != derive_seed(2, 1, 0)
    assert derive_seed(0, 0, 1) != derive_seed(0, 1, 0)
    torch.Generator().manual_seed(max(seeds))  # usable as a torch seed


def test_training_keeps_freed_buffers_for_reuse_on_glibc(tiny: Tensors) -> None:
    import platform

    from evoband.training import _allocator as allocator

    state = make_state(SMALL_CONFIG, tiny.input_shape, tiny.n_classes, seed=0, device=CPU)
    train(state, tiny.x, tiny.y, config=SMALL_CONFIG, epochs=1, seed=0)
    assert allocator._tuned == (platform.libc_ver()[0] == "glibc")
    assert allocator.tune_allocator() == allocator._tuned  # again: nothing changes
