"""Ensembles of a fitted population: averaged softmax of the k best feasible members."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from evoband import ConfigError, SearchSettings, ensemble, fit
from evoband.training._data import normalize
from evoband.training._loop import predict
from evoband.training._metrics import compute_metrics


def test_ensemble_averages_the_k_best_feasible_members(
    tiny_image_root: Path, tmp_path: Path
) -> None:
    settings = SearchSettings(pop_size=3, min_epochs=1, max_epochs=2, max_evaluations=4, seed=2)
    population = fit(
        tiny_image_root,
        constraints=(50_000, 0.01),
        settings=settings,
        run_dir=tmp_path / "run",
        progress=False,
    )
    feasible = [m for m in population if m.feasible]
    assert len(feasible) >= 2
    result = ensemble(population, k=2)
    assert result.member_ids == tuple(m.member_id for m in feasible[:2])
    data = population[0].data
    assert result.probabilities.shape == (len(data.test), data.n_classes)
    assert torch.allclose(result.probabilities.sum(dim=1), torch.ones(len(data.test)))
    outputs = []
    for member in feasible[:2]:
        mean, std = member.stats()
        outputs.append(predict(member.model(), normalize(data.test.images, mean, std)).softmax(1))
    assert torch.allclose(result.probabilities, (outputs[0] + outputs[1]) / 2, atol=1e-6)
    best = compute_metrics(outputs[0], data.test.labels)
    assert (result.best_single.top3, result.best_single.precision) == (best.top3, best.precision)
    assert 0.0 <= result.metrics.precision <= 1.0 and result.metrics.top3 == 1.0  # 3 classes
    assert result.num_params == sum(m.num_params for m in feasible[:2]) > 0
    assert "Ensemble of 2 members" in result.format()
    assert f"({result.num_params:,} parameters)" in result.format()
    assert ensemble(population).member_ids == tuple(m.member_id for m in feasible[:2])  # half of 3
    with pytest.raises(ConfigError, match="`k` of the ensemble size is"):
        ensemble(population, k=0)
