"""Exports: a torch.export program with class names and normalisation, from main.py and the API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import main as main_script
from evoband import export_model, load_exported
from evoband.nets._cnn import build_model
from evoband.training._data import channel_stats, load_data, normalize
from helpers import SMALL_CONFIG, TINY_SHAPE, call_cli, error_lines, read_json


@pytest.mark.parametrize("tta_flip", [False, True])
def test_an_exported_program_gives_the_models_logits_for_any_batch(
    tmp_path: Path, tta_flip: bool
) -> None:
    torch.manual_seed(0)
    config = dict(SMALL_CONFIG, use_BN=True, tta_flip=tta_flip)
    model = build_model(config, TINY_SHAPE, 3).eval()
    mean, std = torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.2, 0.25, 0.3])
    report = export_model(
        model,
        tmp_path / "m.pt2",
        classes=("a", "b", "c"),
        mean=mean,
        std=std,
        input_shape=TINY_SHAPE,
        extra={"epochs": 3},
    )
    assert report.size_bytes == (tmp_path / "m.pt2").stat().st_size
    assert report.latency_ms > 0
    program, meta = load_exported(tmp_path / "m.pt2")
    assert meta["classes"] == ["a", "b", "c"] and meta["epochs"] == 3
    assert meta["mean"] == [float(v) for v in mean] and meta["input_shape"] == list(TINY_SHAPE)
    for n in (1, 5):
        x = torch.randn(n, *TINY_SHAPE)
        with torch.no_grad():
            assert torch.allclose(program(x), model(x), atol=1e-6)


def test_main_exports_the_network_it_trained_on_the_test_split(
    tiny_image_root: Path, tmp_path: Path
) -> None:
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(SMALL_CONFIG))
    out = tmp_path / "model.pt2"
    argv = ["-c", str(cfg), "--data_dir", str(tiny_image_root), "-e", "2", "--no_progress"]
    code, stdout, _ = call_cli(main_script.main, [*argv, "-t", "True", "--export", str(out)])
    assert code in (0, 1)
    assert "CPU latency per image" in stdout and "export size (bytes)" in stdout
    record = read_json(tmp_path / "result_test.json")
    assert record["export"]["size_bytes"] == out.stat().st_size
    program, meta = load_exported(out)
    data = load_data(tiny_image_root)
    assert meta["classes"] == list(data.classes) and meta["config"] == SMALL_CONFIG
    mean, std = channel_stats(data.train.images)
    assert torch.allclose(torch.tensor(meta["mean"]), mean) and meta["epochs"] == 2
    with torch.no_grad():
        predicted = program(normalize(data.test.images, mean, std)).argmax(1)
    assert predicted.tolist() == record["folds"][0]["predicted"]
    code, _, stderr = call_cli(main_script.main, [*argv, "--export", str(out)])
    assert code == 2 and "pass -t True" in error_lines(stderr)[0]
