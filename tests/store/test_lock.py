"""One search per run directory: the lock file, its takeover after a killed holder, and three
ways of starting a second search on a running one (two resumes, a new run and a resume, fit()
and the CLI)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import evoband
from evoband.core import StoreError
from evoband.store import LOCK_FILE, RunLock, lock_holder, remove_stale_temporaries
from evoband.store._lock import STALE_AFTER_SECONDS, LockHolder
from helpers import REPO_ROOT, default_sigint, error_lines, make_image_folder, script


def test_a_second_lock_is_refused_naming_the_holder(tmp_path: Path) -> None:
    with RunLock(tmp_path / "run") as first:
        holder = lock_holder(tmp_path / "run")
        assert holder is not None and holder.pid == os.getpid()
        with pytest.raises(StoreError, match=rf"Another search is running .*pid {os.getpid()} on"):
            RunLock(tmp_path / "run")
        assert first.held
    assert not (tmp_path / "run" / LOCK_FILE).exists()
    assert lock_holder(tmp_path / "run") is None
    with RunLock(tmp_path / "run") as again:  # free once released
        assert again.taken_over is None


def _lock_and_wait(run_dir: Path) -> subprocess.Popen[str]:
    code = (
        "import sys, time\n"
        "from evoband.store import RunLock\n"
        f"lock = RunLock({str(run_dir)!r})\n"
        "print('locked', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")},
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_a_lock_left_by_a_killed_search_is_taken_over(tmp_path: Path) -> None:
    run = tmp_path / "run"
    holder = _lock_and_wait(run)
    try:
        assert lock_holder(run) is not None and lock_holder(run).pid == holder.pid  # type: ignore[union-attr]
        with pytest.raises(StoreError, match=f"pid {holder.pid}"):
            RunLock(run)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run / LOCK_FILE).exists()  # a SIGKILL leaves the file, not the lock
    assert lock_holder(run) is None
    with RunLock(run) as lock:
        assert lock.taken_over is not None and lock.taken_over.pid == holder.pid
        assert json.loads((run / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_a_lock_file_of_another_host_is_not_taken_over(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    record = {"pid": 4242, "host": "some-other-host", "started": "2026-12-07T10:00:00"}
    (run / LOCK_FILE).write_text(json.dumps(record))
    with pytest.raises(StoreError, match="may be running .*some-other-host.*delete"):
        RunLock(run)
    assert json.loads((run / LOCK_FILE).read_text()) == record  # left as it was
    assert LockHolder.read(run / LOCK_FILE) == LockHolder(
        4242, "some-other-host", record["started"], ""
    )


def test_stale_temporary_files_are_removed_and_others_kept(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    old = time.time() - 2 * STALE_AFTER_SECONDS
    stale = [
        tmp_path / f".opt_cfg.json.{'a' * 32}.tmp",
        tmp_path / "checkpoints" / f".m_00001_e4_f0.pt.{'b' * 32}.tmp",
    ]
    kept = [
        tmp_path / f".summary.csv.{'c' * 32}.tmp",  # young: a report may be writing it
        tmp_path / "notes.tmp",  # not the atomic writer's name
    ]
    for path in stale + kept:
        path.write_text("x")
    for path in [*stale, kept[1]]:
        os.utime(path, (old, old))
    assert remove_stale_temporaries(tmp_path) == 2
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept)


# -- two searches on one run directory, three ways -------------------------------------------------


@pytest.fixture
def running_search(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A real search on tiny images, running in a subprocess with its lock taken."""
    data = make_image_folder(tmp_path / "data", n_train=12, size=8)
    run = tmp_path / "run"
    args = (
        "--data_dir", str(data), "--space", "course", "-s", "20000", "-p", "0.1",
        "--pop_size", "3", "--hyperband", "True", "--min_epochs", "1", "-e", "2",
        "--cv_folds", "2", "--workers", "1", "--max_evaluations", "100000", "--run_dir", str(run),
        "--no_progress",
    )  # fmt: skip
    proc = subprocess.Popen(
        script("AutoML.py", *args), cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=default_sigint,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not ((run / "history.sqlite").exists() and lock_holder(run) is not None):
        assert proc.poll() is None, "the search ended before it took its lock"
        assert time.monotonic() < deadline, "the search took no lock in 120 s"
        time.sleep(0.2)
    try:
        yield proc, run, data, args
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ledger_rows(run: Path) -> int:
    return len(evoband.load_run(run))


@pytest.mark.slow  # a real search in a subprocess
def test_a_second_search_on_a_running_one_is_refused_three_ways(running_search) -> None:  # type: ignore[no-untyped-def]
    proc, run, data, args = running_search
    checkpoints_before = set((run / "checkpoints").rglob("*"))
    for extra in (("--resume",), ()):  # a resume, and a new run, beside the running search
        done = subprocess.run(
            script("AutoML.py", *args, *extra), cwd=REPO_ROOT, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        lines = error_lines(done.stderr)
        assert len(lines) == 1 and f"pid {proc.pid}" in lines[0], done.stderr
        assert "one search per run directory" in lines[0]
    with pytest.raises(StoreError, match=f"Another search is running .*pid {proc.pid}"):
        evoband.fit(str(data), run_dir=run, space="course", max_time=5, progress=False)
    assert proc.poll() is None, "the running search was disturbed"
    assert lock_holder(run) is not None and lock_holder(run).pid == proc.pid  # type: ignore[union-attr]
    rows = _ledger_rows(run)
    time.sleep(1.0)
    assert _ledger_rows(run) >= rows  # it goes on writing
    assert checkpoints_before <= set((run / "checkpoints").rglob("*")) | checkpoints_before
    # once it has stopped, the run resumes and the lock is free again
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert lock_holder(run) is None and not (run / LOCK_FILE).exists()
    done = subprocess.run(
        script("AutoML.py", *args[:-3], "--max_evaluations", str(rows + 2), "--run_dir", str(run),
               "--no_progress", "--resume"),
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    assert not (run / LOCK_FILE).exists()
