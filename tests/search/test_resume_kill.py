"""Kill safety: a run SIGKILLed at random moments and resumed ends as if never interrupted."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def automl_command(
    data_dir: Path, run_dir: Path, *extra: str, max_evaluations: int = 300
) -> list[str]:
    return [
        sys.executable,
        str(REPO / "src" / "AutoML.py"),
        "--data_dir",
        str(data_dir),
        "--run_dir",
        str(run_dir),
        "--hyperband",
        "--space",
        "course",
        "--pop_size",
        "3",
        "--epochs",
        "8",
        "--min_epochs",
        "1",
        "-s",
        "50000",
        "--max_evaluations",
        str(max_evaluations),
        "--max_time",
        "3600",
        # time limits depend on the machine's load; runs compared across processes must not hit one
        "--eval_time_limit",
        "600",
        "--seed",
        "7",
        "--no_progress",
        *extra,
    ]


def ledger_rows(run_dir: Path) -> tuple[list[tuple], list[tuple], list[tuple]]:
    conn = sqlite3.connect(run_dir / "history.sqlite")
    try:
        members = conn.execute(
            "SELECT member_id, config, seed, origin, parents FROM members ORDER BY member_id"
        ).fetchall()
        evals = conn.execute(
            "SELECT member_id, epochs, status, top3, top1, precision, num_params FROM evaluations ORDER BY member_id, epochs"
        ).fetchall()
        folds = conn.execute(
            "SELECT member_id, epochs, fold, status, top3, precision FROM folds ORDER BY member_id, epochs, fold"
        ).fetchall()
    finally:
        conn.close()
    return members, evals, folds


def assert_same_rows(a: list[tuple], b: list[tuple]) -> None:
    assert len(a) == len(b)
    for row_a, row_b in zip(a, b, strict=True):
        for x, y in zip(row_a, row_b, strict=True):
            if isinstance(x, float):
                assert x == pytest.approx(y, abs=1e-6)
            else:
                assert x == y


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_equals_uninterrupted_run(
    tiny_image_root: Path, tmp_path: Path
) -> None:
    # about 12 s of searching on an idle machine: the first three kills below come sooner
    command = partial(automl_command, tiny_image_root, max_evaluations=80)
    straight = tmp_path / "straight"
    subprocess.run(command(straight), check=False, capture_output=True, timeout=600)
    assert (straight / "opt_cfg.json").exists()

    killed = tmp_path / "killed"
    rng = np.random.default_rng(2026)
    kills = 0
    for _ in range(4):
        extra = (
            ("--resume",) if killed.exists() else ()
        )  # a kill may land before the run dir exists
        proc = subprocess.Popen(
            command(killed, *extra),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(float(rng.uniform(2.0, 9.0)))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
    final = subprocess.run(
        command(killed, *(("--resume",) if killed.exists() else ())),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert final.returncode in (0, 1), final.stderr
    assert kills >= 3, "the run finished before it could be killed: make it longer"

    members_a, evals_a, folds_a = ledger_rows(straight)
    members_b, evals_b, folds_b = ledger_rows(killed)
    assert members_a == members_b
    assert_same_rows(evals_a, evals_b)  # nothing lost, nothing duplicated, same metrics
    assert_same_rows(folds_a, folds_b)
    assert json.loads((killed / "opt_cfg.json").read_text()) == json.loads(
        (straight / "opt_cfg.json").read_text()
    )
    records = json.loads((killed / "automl_run.json").read_text())
    assert len(records) == len(evals_a) == 80


@pytest.mark.slow
def test_sigterm_writes_outputs_and_exits_143(tiny_image_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        automl_command(tiny_image_root, run_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (run_dir / "automl_run.json").exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "--resume" in err
    for name in ("automl_run.json", "progress.csv", "run.json", "history.sqlite"):
        assert (run_dir / name).exists(), name
    assert json.loads((run_dir / "run.json").read_text())["stopped_by"] == "interrupted"


@pytest.mark.slow
def test_sigkill_of_an_async_search_on_two_workers_loses_and_duplicates_nothing(
    tiny_image_root: Path, tmp_path: Path
) -> None:
    """Asynchronous promotion on 2 Dask workers: what the results decide depends on their order,
    so the killed run is not compared with another one; instead, every evaluation recorded before
    a kill is still there afterwards, none is recorded twice, and every recorded decision was
    trained exactly once by the end."""
    run_dir = tmp_path / "run"
    command = partial(
        automl_command,
        tiny_image_root,
        run_dir,
        "--async_promotion",
        "--workers",
        "2",
        "--max_evaluations",
        "100",
    )
    rng = np.random.default_rng(2027)
    kills, seen = 0, []
    for _ in range(4):
        proc = subprocess.Popen(
            command(*(("--resume",) if run_dir.exists() else ())),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120  # starting the workers takes a while on a busy box
        while time.monotonic() < deadline and proc.poll() is None and not run_dir.exists():
            time.sleep(0.2)
        time.sleep(float(rng.uniform(2.0, 8.0)))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        if (run_dir / "history.sqlite").exists():
            before = ledger_rows(run_dir)[1]
            assert set(seen) <= set(before), "a kill lost an evaluation recorded before it"
            seen = before
    final = subprocess.run(command("--resume"), capture_output=True, text=True, timeout=900)
    assert final.returncode in (0, 1), final.stderr
    assert kills >= 3, "the run finished before it could be killed: make it longer"

    _, evaluations, _ = ledger_rows(run_dir)
    assert set(seen) <= set(evaluations), "an evaluation recorded before a kill was lost"
    keys = [(m, e) for m, e, *_ in evaluations]
    assert len(keys) == len(set(keys)) == 100, "each (member, epochs) trained once, to the cap"
    conn = sqlite3.connect(run_dir / "history.sqlite")
    decided = conn.execute("SELECT member_id, epochs FROM decisions").fetchall()
    conn.close()
    assert len(decided) == len(set(decided)), "a decision was recorded twice"
    assert set(decided) == set(keys), "every decision trained, nothing trained undecided"
