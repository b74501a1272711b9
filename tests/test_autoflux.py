"""The one-call API: fit() searches, returns the population, and resumes its run directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from evoband import (
    ConfigError,
    MultiPlot,
    PlotFitness,
    ScatterOpt,
    ScatterPop,
    SearchSettings,
    StopAtTarget,
    StoreError,
    fit,
    load_run,
    persist,
)
from evoband.core._paths import repo_root
from evoband.store._exports import read_population
from evoband.training._data import load_data, normalize
from helpers import InterruptAfter, read_json


def test_fit_returns_the_ranked_population_and_resumes(
    tiny_image_root: Path, tmp_path: Path
) -> None:
    settings = SearchSettings(
        pop_size=3, hyperband=True, min_epochs=1, max_epochs=2, max_evaluations=5, seed=3
    )
    run_dir = tmp_path / "fit"
    population = fit(
        tiny_image_root,
        constraints=(50_000, 0.3),
        settings=settings,
        run_dir=run_dir,
        progress=False,
    )
    assert 1 <= len(population) <= 3
    assert all(m.result is not None and m.num_params <= 50_000 for m in population)
    assert (run_dir / "opt_cfg.json").exists()
    first = load_run(run_dir)
    assert len(first) == 5

    more = SearchSettings(
        pop_size=3, hyperband=True, min_epochs=1, max_epochs=2, max_evaluations=7, seed=3
    )
    fit(tiny_image_root, constraints=(50_000, 0.3), settings=more, run_dir=run_dir, progress=False)
    second = load_run(run_dir)
    assert len(second) == 7
    assert second.head(5)[["member_id", "epochs"]].equals(first[["member_id", "epochs"]])


# -- the Python user's side (issue 11) -----------------------------------------------------------

LOAD_WITH_PLAIN_TORCH = """
import importlib.util, json, sys
from pathlib import Path
sys.path[:] = [p for p in sys.path if not (Path(p or ".") / "evoband").exists()]
assert importlib.util.find_spec("evoband") is None, "evoband is importable"
import torch
program_path, images_path, out_path = sys.argv[1:4]
extra = {"evoband.json": ""}
program = torch.export.load(program_path, extra_files=extra)
meta = json.loads(extra["evoband.json"])
mean = torch.tensor(meta["mean"])[None, :, None, None]
std = torch.tensor(meta["std"])[None, :, None, None]
images = torch.load(images_path)
with torch.no_grad():
    logits = program.module()((images.float() / 255.0 - mean) / std)
torch.save({"logits": logits, "classes": meta["classes"]}, out_path)
assert "evoband" not in sys.modules
"""


@pytest.mark.slow
def test_the_readme_example_on_digits_exports_a_program_plain_torch_loads(
    tmp_path: Path,
) -> None:
    settings = SearchSettings(pop_size=2, min_epochs=1, max_epochs=2, max_evaluations=4)
    run_dir = tmp_path / "digits"
    population = fit(
        "digits",
        constraints=(2e7, 0.39),
        max_time=900,
        run_dir=run_dir,
        callbacks=[persist, MultiPlot(PlotFitness(), ScatterPop(), ScatterOpt())],
        seed=0,
        settings=settings,
        progress=False,
    )
    assert population.report.n_evaluations == 4
    assert population.report.stopped_by.startswith("max_evaluations")
    best = population[0]
    assert best.member_id == population.report.best.member_id  # type: ignore[union-attr]
    assert set(best.metrics) >= {"top3", "precision", "num_params", "epochs"}
    assert best.lineage["member_id"] == best.member_id and "origin" in best.lineage
    saved = read_population(run_dir)
    assert [m["member_id"] for m in saved["population"]] == [m.member_id for m in population]
    assert saved["population"][0]["config"] == best.config
    assert (run_dir / "figures" / "overview.png").stat().st_size > 0

    net = best.model()
    assert best.model() is net  # cached
    assert best.test_result is not None and best.test_result.epochs == best.epochs
    report = best.export(tmp_path / "flowers.pt2")
    assert report.size_bytes == (tmp_path / "flowers.pt2").stat().st_size > 0
    assert report.latency_ms > 0

    data = load_data("digits")
    images = data.test.images[:50]
    torch.save(images, tmp_path / "images.pt")
    subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            LOAD_WITH_PLAIN_TORCH,
            str(tmp_path / "flowers.pt2"),
            str(tmp_path / "images.pt"),
            str(tmp_path / "out.pt"),
        ],
        cwd=tmp_path,
        check=True,
        timeout=300,
    )
    out = torch.load(tmp_path / "out.pt")
    mean, std = best.stats()
    with torch.no_grad():
        expected = net(normalize(images, mean, std))
    assert out["classes"] == list(data.classes)
    assert torch.allclose(out["logits"], expected, atol=1e-5, rtol=0)


def coloured_arrays(n_per_class: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    """Float images in [0, 1] (N x 3 x 8 x 8) of three colour classes, with string labels."""
    rng = np.random.default_rng(seed)
    colours = {"red": (0.85, 0.15, 0.15), "green": (0.15, 0.85, 0.15), "blue": (0.15, 0.15, 0.85)}
    images, labels = [], []
    for name, colour in colours.items():
        for _ in range(n_per_class):
            noise = rng.normal(0.0, 0.1, size=(3, 8, 8))
            images.append(np.clip(np.asarray(colour)[:, None, None] + noise, 0.0, 1.0))
            labels.append(name)
    return torch.tensor(np.stack(images), dtype=torch.float32), labels


def test_fit_from_tensors_resumes_an_interrupted_run_from_another_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = coloured_arrays(16, seed=1)
    # relative, as a user types it; it resolves against the repository root from any cwd
    run_dir = os.path.relpath(tmp_path / "tensors", repo_root())
    first_cwd, second_cwd = tmp_path / "here", tmp_path / "elsewhere"
    first_cwd.mkdir()
    second_cwd.mkdir()

    def settings(n: int) -> SearchSettings:
        return SearchSettings(pop_size=3, min_epochs=1, max_epochs=2, max_evaluations=n, seed=5)

    monkeypatch.chdir(first_cwd)
    with pytest.raises(KeyboardInterrupt):
        fit(
            (x, y),
            constraints=(50_000, 0.01),
            settings=settings(8),
            callbacks=[InterruptAfter(after=3)],
            run_dir=run_dir,
            progress=False,
        )
    absolute = tmp_path / "tensors"
    assert not (first_cwd / run_dir).exists()
    interrupted = load_run(absolute)
    assert len(interrupted) == 3
    assert read_json(absolute / "run.json")["data"]["location"].startswith("arrays:sha256:")

    monkeypatch.chdir(second_cwd)
    population = fit(
        (x, y), constraints=(50_000, 0.01), settings=settings(6), run_dir=run_dir, progress=False
    )
    resumed = load_run(absolute)
    assert len(resumed) == 6
    assert resumed.head(3)[["member_id", "epochs"]].equals(interrupted[["member_id", "epochs"]])
    assert population and population[0].data.classes == ("blue", "green", "red")
    assert all(m.feasible for m in population)

    other_x, _ = coloured_arrays(16, seed=2)
    with pytest.raises(StoreError, match="data: run has 'arrays:sha256:"):
        fit(
            (other_x, y),
            constraints=(50_000, 0.01),
            settings=settings(7),
            run_dir=run_dir,
            progress=False,
        )


def test_a_callback_that_reaches_its_target_stops_the_search(
    tiny_image_root: Path, tmp_path: Path
) -> None:
    settings = SearchSettings(pop_size=3, min_epochs=1, max_epochs=2, max_evaluations=20, seed=3)
    population = fit(
        tiny_image_root,
        constraints=(50_000, 0.01),
        settings=settings,
        callbacks=[StopAtTarget(precision=0.01)],
        run_dir=tmp_path / "stop",
        progress=False,
    )
    assert population.report.n_evaluations == 1
    assert population.report.stopped_by.startswith("stop requested by StopAtTarget: member 0")
    assert read_json(tmp_path / "stop" / "run.json")["stopped_by"] == population.report.stopped_by
    assert len(load_run(tmp_path / "stop")) == 1
    assert [m.member_id for m in population] == [0]  # stopped within the initial population


def test_fit_refuses_a_seed_beyond_32_bits_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="seed"):
        fit(tmp_path / "nothing-here", seed=-1, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
