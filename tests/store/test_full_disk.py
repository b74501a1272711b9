"""A search whose disk fills up: one line, exit 4, and nothing already written is lost.

The run directory lies on a small tmpfs mounted inside a private mount namespace (``unshare
-m``), so the test needs no root outside it and leaves nothing mounted.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO_ROOT, error_lines, make_image_folder

SIZE = "2m"
"""The tmpfs: room for the ledger and the checkpoints of a few evaluations, not of 30."""


def _can_mount_tmpfs(folder: Path) -> str:
    """Why a tmpfs cannot be mounted in a private mount namespace here ("" when it can)."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    folder.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {folder}"],
        capture_output=True,
        text=True,
    )
    return "" if probe.returncode == 0 else f"cannot mount a tmpfs: {probe.stderr.strip()}"


def _search(data: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable, str(REPO_ROOT / "src" / "AutoML.py"), "--data_dir", str(data),
        "--run_dir", str(run_dir), "--hyperband", "--space", "course", "--pop_size", "3",
        "--epochs", "4", "--min_epochs", "1", "-s", "50000", "-p", "0.1", "--workers", "1",
        "--max_evaluations", "30", "--eval_time_limit", "600", "--seed", "5", "--no_progress",
        *extra,
    ]  # fmt: skip


def _evaluations(run_dir: Path) -> list[tuple]:
    conn = sqlite3.connect(f"file:{run_dir / 'history.sqlite'}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
        return conn.execute(
            "SELECT member_id, epochs, status, top3, precision FROM evaluations ORDER BY 1, 2"
        ).fetchall()
    finally:
        conn.close()


@pytest.mark.slow  # real searches in subprocesses
def test_a_full_disk_is_one_line_exit_4_and_the_run_resumes_elsewhere(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    reason = _can_mount_tmpfs(mount)
    if reason:
        print(f"skipped: {reason}")
        pytest.skip(reason)
    data = make_image_folder(tmp_path / "data", classes=("a", "b", "c", "d"))
    out = tmp_path / "out"
    out.mkdir()
    inside = mount / "run"
    script = (
        f"mount -t tmpfs -o size={SIZE} tmpfs {mount} && "
        f"{subprocess.list2cmdline(_search(data, inside))} 2> {out / 'stderr'}; "
        f"echo $? > {out / 'code'}; cp -a {inside} {out / 'run'}"
    )
    subprocess.run(["unshare", "-m", "sh", "-c", script], check=True, timeout=600)
    stderr = (out / "stderr").read_text()
    assert (out / "code").read_text().strip() == "4", stderr
    assert "Traceback" not in stderr and "ERROR" not in stderr, stderr  # progress lines only
    assert len(error_lines(stderr)) == 1 and "No space left on device" in stderr, stderr
    assert "--resume" in stderr

    before = _evaluations(out / "run")  # the ledger is whole, with what finished
    assert before, "the disk filled before the first evaluation: make SIZE larger"
    moved = tmp_path / "roomy" / "run"
    shutil.copytree(out / "run", moved)
    resumed = subprocess.run(
        _search(data, moved, "--resume"), capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode in (0, 1), resumed.stderr
    after = _evaluations(moved)
    assert len(after) == 30
    assert set(before) <= set(after), "an evaluation recorded before the disk filled was lost"
