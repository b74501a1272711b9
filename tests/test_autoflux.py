"""The one-call API: fit() searches, returns the population, and resumes its run directory."""

from __future__ import annotations

from pathlib import Path

from evoband import SearchSettings, fit, load_run


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
