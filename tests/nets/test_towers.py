"""Tests of evoband.nets._towers: several copies of a network in one, trained as an ensemble."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from evoband.core._errors import ConfigError
from evoband.nets._cnn import build_model, count_params, macs_per_sample
from evoband.nets._inherit import inherit, inherit_recombined
from evoband.nets._towers import Towers, join_towers, n_towers, split_towers, tower_mean
from evoband.space._genotype import validate
from evoband.space._recipes import RECIPES
from evoband.space._spaces import extended_space
from evoband.training._data import channel_stats, load_data, normalize
from evoband.training._loop import Distillation, _batch_loss, evaluate_model, make_state, train
from helpers import SMALL_CONFIG

SHAPE = (3, 8, 8)
CLASSES = 3
ONE: dict[str, Any] = dict(SMALL_CONFIG, batch_size=32, use_BN=True, aug_flip=True, aug_shift=1)
TWO: dict[str, Any] = dict(ONE, towers=2)


def test_training_mode_gives_every_towers_logits_and_evaluation_their_mean() -> None:
    torch.manual_seed(0)
    model = build_model(TWO, SHAPE, CLASSES)
    assert isinstance(model, Towers) and len(model.towers) == 2
    x = torch.randn(5, *SHAPE)
    model.eval()
    each = torch.stack([tower(x) for tower in model.towers], dim=1)
    torch.testing.assert_close(model(x), each.mean(dim=1))
    model.train()
    assert model(x).shape == (5, 2, CLASSES)


def test_each_tower_starts_from_its_own_initialisation() -> None:
    torch.manual_seed(0)
    first, second = split_towers(build_model(TWO, SHAPE, CLASSES).state_dict(), 2)
    assert first.keys() == second.keys()
    assert not torch.equal(first["head.weight"], second["head.weight"])


def test_parameters_and_work_are_the_towers_times_one_networks() -> None:
    for towers in (2, 3):
        config = dict(RECIPES["bn-cnn"], towers=towers)
        assert count_params(config, (3, 16, 16), 17) == towers * count_params(
            RECIPES["bn-cnn"], (3, 16, 16), 17
        )
        assert macs_per_sample(config, (3, 16, 16), 17) == towers * macs_per_sample(
            RECIPES["bn-cnn"], (3, 16, 16), 17
        )


def test_the_pair_recipe_is_the_bn_cnn_recipe_twice() -> None:
    validate(extended_space(), RECIPES["bn-cnn-pair"])
    assert RECIPES["bn-cnn-pair"] == dict(RECIPES["bn-cnn"], towers=2)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_a_bad_tower_count_is_a_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError, match="`towers` is .*, but must be an int >= 1"):
        n_towers({"towers": bad})


def test_split_and_join_are_inverse() -> None:
    state = build_model(dict(TWO, towers=3), SHAPE, CLASSES).state_dict()
    parts = split_towers(state, 3)
    assert len(parts) == 3 and all(parts[0].keys() == p.keys() for p in parts)
    assert join_towers(parts).keys() == state.keys()
    one = build_model(ONE, SHAPE, CLASSES).state_dict()
    assert split_towers(one, 1) == [dict(one)]


def test_each_tower_learns_from_its_own_loss() -> None:
    """The loss of a batch is the mean of the towers' own losses, label smoothing and
    distillation included: no tower's gradient depends on another tower's logits."""
    torch.manual_seed(0)
    logits = torch.randn(6, 2, CLASSES, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    idx = torch.arange(6)

    def smoothed(out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(out, labels, label_smoothing=0.1)

    loss = _batch_loss(logits, y, idx, smoothed, None)
    expected = (smoothed(logits[:, 0], y) + smoothed(logits[:, 1], y)) / 2
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert logits.grad is not None
    alone = logits.detach()[:, 0].clone().requires_grad_(True)
    (smoothed(alone, y) / 2).backward()
    torch.testing.assert_close(logits.grad[:, 0], alone.grad)

    teachers = Distillation(torch.softmax(torch.randn(6, CLASSES), dim=1))
    distilled = _batch_loss(logits, y, idx, smoothed, teachers)
    per_tower = [teachers.loss(logits[:, k], smoothed(logits[:, k], y), idx) for k in range(2)]
    torch.testing.assert_close(distilled, sum(per_tower) / 2)


def test_a_two_tower_network_learns_the_tiny_data(tiny_image_root: Path) -> None:
    source = load_data(tiny_image_root)
    mean, std = channel_stats(source.train.images)
    x, y = normalize(source.train.images, mean, std), source.train.labels
    x_test, y_test = normalize(source.test.images, mean, std), source.test.labels
    state = make_state(TWO, source.input_shape, source.n_classes, seed=0, device="cpu")
    before = [p.detach().clone() for p in state.model.parameters()]

    outcome = train(state, x, y, config=TWO, epochs=10, seed=0)
    metrics, logits = evaluate_model(state.model, x_test, y_test, TWO)

    assert outcome.epochs_done == 10
    assert all(not torch.equal(a, b) for a, b in zip(before, state.model.parameters(), strict=True))
    assert logits.shape == (len(y_test), source.n_classes)
    assert metrics.top1 >= 0.9


def test_tower_mean_leaves_evaluation_logits_alone() -> None:
    logits = torch.randn(4, CLASSES)
    assert tower_mean(logits) is logits
    torch.testing.assert_close(tower_mean(torch.stack([logits, 3 * logits], 1)), 2 * logits)


def test_a_child_tower_inherits_from_the_same_tower_of_its_parent() -> None:
    """A tower the parent had continues from it; a tower it lacked keeps its fresh weights."""
    torch.manual_seed(0)
    parent = build_model(ONE, SHAPE, CLASSES).state_dict()
    child = inherit(parent, ONE, TWO, SHAPE, CLASSES, seed=1)
    build_model(TWO, SHAPE, CLASSES).load_state_dict(child, strict=True)
    first, second = split_towers(child, 2)
    assert all(torch.equal(first[k], parent[k]) for k in parent)
    torch.manual_seed(1)
    fresh = split_towers(build_model(TWO, SHAPE, CLASSES).state_dict(), 2)[1]
    assert all(torch.equal(second[k], fresh[k]) for k in fresh)

    pair = build_model(TWO, SHAPE, CLASSES).state_dict()
    single = inherit(pair, TWO, ONE, SHAPE, CLASSES, seed=2)
    assert all(torch.equal(single[k], split_towers(pair, 2)[0][k]) for k in single)

    other = build_model(TWO, SHAPE, CLASSES).state_dict()
    recombined = inherit_recombined([(pair, TWO), (other, TWO)], other, TWO, SHAPE)
    assert recombined.keys() == pair.keys()
