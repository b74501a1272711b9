"""benchmarks/allocator.py --quick runs (so it cannot rot) and times every setting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.benchmark, pytest.mark.slow]  # out of `-m "not slow"` too


REPO_ROOT = Path(__file__).resolve().parents[2]


def test_quick_allocator_benchmark_times_every_setting(tmp_path: Path) -> None:
    out = tmp_path / "allocator.csv"
    argv = [sys.executable, str(REPO_ROOT / "benchmarks" / "allocator.py"), "--quick"]
    argv += ["--recipes", "bn-cnn-small", "--epochs", "1", "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(out)
    assert sorted(frame["setting"]) == ["dask_env", "dask_env_tuned", "default", "tuned"]
    assert (frame["s_per_epoch"] > 0).all()
    assert "| bn-cnn-small | tuned |" in done.stdout
