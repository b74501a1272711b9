"""Tests of the plot callbacks of evoband.callbacks._callbacks: figures of a real search, failures logged."""

from __future__ import annotations

import logging
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from evoband.callbacks._figures import MultiPlot, PlotCallback, PlotFitness, ScatterOpt, ScatterPop
from evoband.core._errors import ConfigError
from evoband.search._hooks import CbAll
from evoband.search._run import run_search
from evoband.search._settings import SearchSettings
from evoband.search._setup import SearchConfig
from evoband.store._ledger import RunStore

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = ("fitness.png", "optimisation.png", "overview.png", "population.png")


class Broken(PlotCallback):
    """A panel whose drawing always fails."""

    filename = "broken.png"

    def draw(self, ax: Axes, search: Any) -> None:
        raise RuntimeError("drawing failed on purpose")


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels, from the PNG header."""
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), path
    return struct.unpack(">II", data[16:24])


def fake_search(run_dir: Path, *, replaying: bool = False) -> SimpleNamespace:
    """What PlotFitness reads of a search: its run directory (with a ledger of three generations)
    and whether it replays."""
    store = RunStore(run_dir)
    rows = [(0, 0.4, 0.6, None), (1, 0.5, 0.7, 0.65), (2, 0.55, 0.7, 0.7)]
    for generation, avg_acc, best_acc, best_feasible_acc in rows:
        store.record_generation(
            generation,
            {
                "elapsed": float(generation),
                "population": [],
                "avg_acc": avg_acc,
                "best_acc": best_acc,
                "avg_prec": None,
                "best_prec": None,
                "best_feasible_acc": best_feasible_acc,
                "n_evaluated": 0,
                "n_feasible": 0,
                "epochs_spent": 0,
            },
        )
    store.close()
    return SimpleNamespace(run_dir=run_dir, replaying=replaying)


def test_plot_callbacks_draw_their_figures_during_a_search(
    tmp_path: Path, tiny_image_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plots = [PlotFitness(), ScatterPop(), ScatterOpt()]
    settings = SearchSettings(
        pop_size=3, hyperband=True, min_epochs=1, max_epochs=2, max_evaluations=6, max_time=600
    )
    config = SearchConfig(
        settings=settings,
        max_params=50_000,
        data_dir=str(tiny_image_root),
        run_dir=str(tmp_path / "run"),
        progress=False,
    )
    with caplog.at_level(logging.WARNING, logger="evoband.callbacks._figures"):
        report = run_search(config, callbacks=[*plots, MultiPlot(*plots), Broken()])

    assert report.n_evaluations == 6  # the broken figure did not stop the search
    figures = tmp_path / "run" / "figures"
    assert sorted(p.name for p in figures.iterdir()) == list(FIGURES)  # no temporary files
    for name in FIGURES:
        assert (figures / name).stat().st_size > 1000, name
    single, overview = png_size(figures / "fitness.png"), png_size(figures / "overview.png")
    assert overview == (3 * single[0], single[1])  # three panels side by side
    failures = [r for r in caplog.records if r.name == "evoband.callbacks._figures"]
    assert failures and all(r.levelno == logging.WARNING for r in failures)
    assert all("broken.png" in r.getMessage() for r in failures)
    assert "drawing failed on purpose" in caplog.text  # the traceback is logged too


def test_a_failed_write_keeps_the_previous_figure_and_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    search = fake_search(tmp_path)
    plot = PlotFitness()
    path = plot.redraw(search)
    assert path == tmp_path / "figures" / "fitness.png"
    before = path.read_bytes()

    def half_written(self: Figure, fh: Any, **kwargs: Any) -> None:
        fh.write(before[:100])
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", half_written)
    with caplog.at_level(logging.WARNING, logger="evoband.callbacks._figures"):
        plot.on_generation_end(search, 3, [])

    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["fitness.png"]
    assert "fitness.png" in caplog.text and "disk full" in caplog.text


def test_nothing_is_drawn_while_a_resumed_run_replays_until_the_run_ends(tmp_path: Path) -> None:
    plot = PlotFitness()
    replaying = fake_search(tmp_path, replaying=True)
    plot.on_generation_end(replaying, 2, [])
    assert not (tmp_path / "figures").exists()
    plot.on_run_end(replaying, None)
    assert (tmp_path / "figures" / "fitness.png").stat().st_size > 1000


@pytest.mark.parametrize("panels", [(), (PlotFitness(), CbAll())])
def test_multiplot_takes_one_or_more_plot_callbacks(panels: tuple[Any, ...]) -> None:
    with pytest.raises(ConfigError, match="MultiPlot"):
        MultiPlot(*panels)
