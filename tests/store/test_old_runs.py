"""Run directories written by earlier versions of evoband keep loading, plotting and resuming.

``fixtures/run_before_layout`` was made by the code before the package moved into subpackages
(2026-12-07): ``AutoML.py --pop_size 4 --hyperband True --min_epochs 1 -e 4 --max_evaluations 8
--seed 7 --data_dir digits --workers 1 -s 20000 --space course``, checkpoints left out (a resume
retrains what it cannot continue).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from evoband import load_run
from helpers import run_script

FIXTURE = Path(__file__).parent / "fixtures" / "run_before_layout"
SEARCH = [
    "--pop_size", "4", "--hyperband", "True", "--min_epochs", "1", "-e", "4", "--seed", "7",
    "--data_dir", "digits", "--workers", "1", "-s", "20000", "--space", "course",
    "--max_time", "120", "--no_progress",
]  # fmt: skip


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    """A copy of the fixture run (tests never write into the repository)."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "run_before_layout"))


def test_an_old_run_loads(old_run: Path) -> None:
    frame = load_run(old_run)
    assert len(frame) == 8
    assert set(frame["status"]) <= {"ok", "timed_out", "failed", "diverged", "error"}
    assert json.loads((old_run / "opt_cfg.json").read_text())["n_conv_layers"] >= 1


@pytest.mark.slow
def test_an_old_run_is_plotted(old_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "figures"
    proc = run_script("evaluation.py", str(old_run), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert (out / "best_over_time.png").stat().st_size > 0
    assert (out / "summary.csv").read_text().count("\n") >= 2


@pytest.mark.slow
def test_an_old_run_resumes(old_run: Path) -> None:
    proc = run_script("AutoML.py", *SEARCH, "--max_evaluations", "12", "--run_dir", str(old_run),
                      "--resume", "True")  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    assert len(load_run(old_run)) == 12
