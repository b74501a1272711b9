"""Knowledge distillation in the final training: the loss, its teachers, and ``main.py --distill``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from test_train import CONTINUATION_CONFIGS, SEGMENTS, TINY, Tensors, assert_same_state, fresh_state

import main as main_script
from evoband.core._errors import ConfigError
from evoband.training._data import load_data
from evoband.training._distill import distillation_record, teacher_targets
from evoband.training._loop import Distillation, derive_seed, predict, train
from evoband.training._target import Task
from helpers import call_cli, error_lines

CONFIG = CONTINUATION_CONFIGS["adamw_onecycle_two_convs"]


@pytest.fixture
def tiny(tiny_image_root: Path) -> Tensors:
    return Tensors(tiny_image_root)


def _targets(tiny: Tensors, labels: torch.Tensor, sharpness: float = 5.0) -> torch.Tensor:
    return (sharpness * torch.nn.functional.one_hot(labels, tiny.n_classes).float()).softmax(1)


def test_distillation_of_weight_zero_trains_exactly_as_without(tiny: Tensors, seed: int) -> None:
    plain, distilled = fresh_state(tiny, CONFIG, seed), fresh_state(tiny, CONFIG, seed)
    train(plain, tiny.x, tiny.y, config=CONFIG, epochs=3, seed=seed, segments=SEGMENTS)
    zero = Distillation(_targets(tiny, (tiny.y + 1) % tiny.n_classes), weight=0.0)
    train(
        distilled,
        tiny.x,
        tiny.y,
        config=CONFIG,
        epochs=3,
        seed=seed,
        segments=SEGMENTS,
        distill=zero,
    )
    assert_same_state(distilled, plain)


def test_distilled_training_continues_exactly(tiny: Tensors, seed: int) -> None:
    distill = Distillation(_targets(tiny, tiny.y, 2.0))
    one_go, resumed = fresh_state(tiny, CONFIG, seed), fresh_state(tiny, CONFIG, seed)
    kwargs: dict[str, Any] = dict(config=CONFIG, seed=seed, segments=SEGMENTS, distill=distill)
    train(one_go, tiny.x, tiny.y, epochs=5, **kwargs)
    train(resumed, tiny.x, tiny.y, epochs=2, **kwargs)
    train(resumed, tiny.x, tiny.y, epochs=5, **kwargs)
    assert_same_state(resumed, one_go)


def test_the_student_follows_its_teachers_where_they_disagree_with_the_labels(
    tiny: Tensors,
) -> None:
    """Teachers that call every image the next class: a student trained on their targets alone
    (weight 1) learns their answer, not the labels."""
    shifted = (tiny.y + 1) % tiny.n_classes
    config = dict(TINY, learning_rate_init=3e-3, lr_schedule="constant")
    state = fresh_state(tiny, config, 0)
    train(
        state,
        tiny.x,
        tiny.y,
        config=config,
        epochs=40,
        seed=0,
        distill=Distillation(_targets(tiny, shifted), weight=1.0),
    )
    predicted = predict(state.model, tiny.x).argmax(1)
    assert (predicted == shifted).float().mean() > 0.9
    assert (predicted == tiny.y).float().mean() < 0.1


def test_teachers_are_seeded_copies_averaged_at_the_temperature(tiny_image_root: Path) -> None:
    task = Task(load_data(tiny_image_root), use_test=True)
    one = teacher_targets(TINY, 2, task=task, seed=5, teachers=1, temperature=2.0)
    two = teacher_targets(TINY, 2, task=task, seed=5, teachers=2, temperature=2.0)
    again = teacher_targets(TINY, 2, task=task, seed=5, teachers=2, temperature=2.0)
    assert one is not None and two is not None and again is not None
    n_train = len(task.splits[0].y_train)
    assert two.targets.shape == (n_train, task.n_classes)
    assert torch.allclose(two.targets.sum(1), torch.ones(n_train))
    assert torch.equal(two.targets, again.targets)  # the seed fixes the teachers
    assert not torch.allclose(one.targets, two.targets)  # the second teacher has its own seed
    assert (two.temperature, two.weight) == (2.0, 0.9)
    assert distillation_record(2, two) == {"teachers": 2, "weight": 0.9, "temperature": 2.0}
    assert distillation_record(2, None) is None
    assert derive_seed(5, 7919, 0) != derive_seed(5, 7919, 1)


def test_teachers_need_a_count_and_a_train_test_task(tiny_image_root: Path) -> None:
    data = load_data(tiny_image_root)
    with pytest.raises(ConfigError, match="at least 1 teacher"):
        teacher_targets(TINY, 1, task=Task(data, use_test=True), seed=0, teachers=0)
    with pytest.raises(ConfigError, match="train -> test"):
        teacher_targets(TINY, 1, task=Task(data, cv_folds=2), seed=0, teachers=1)


def test_main_distills_and_records_it(tiny_image_root: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "opt_cfg.json"
    cfg.write_text(json.dumps(dict(TINY)))
    out = tmp_path / "result.json"
    common = ["-c", str(cfg), "-t", "True", "-e", "2", "--data_dir", str(tiny_image_root)]
    code, _, err = call_cli(
        main_script.main, [*common, "--distill", "2", "--out", str(out), "--no_progress"]
    )
    assert code == 0, err
    record = json.loads(out.read_text())
    assert record["distill"] == {"teachers": 2, "weight": 0.9, "temperature": 4.0}
    assert "Teacher 2 of 2" in err

    plain = tmp_path / "plain.json"
    code, _, err = call_cli(main_script.main, [*common, "--out", str(plain), "--no_progress"])
    assert code == 0, err
    assert json.loads(plain.read_text())["distill"] is None


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["-t", "True", "--distill", "-1"], "`distill` is -1, but must be an int >= 0"),
        (["--distill", "2"], "pass -t True"),
    ],
)
def test_main_refuses_bad_distill_flags(
    tiny_image_root: Path, tmp_path: Path, flags: list[str], message: str
) -> None:
    cfg = tmp_path / "opt_cfg.json"
    cfg.write_text(json.dumps(dict(TINY)))
    code, _, err = call_cli(
        main_script.main, ["-c", str(cfg), "--data_dir", str(tiny_image_root), *flags]
    )
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and message in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["opt_cfg.json", "tiny"]
