"""Bad input as a new user gives it, through the real command lines in fresh processes.

Every case must end with exit status 2, one ``error:`` line naming the problem and what to do, and
nothing already on disk changed. The processes start at once (start-up time dominates).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import (
    SMALL_CONFIG,
    error_lines,
    make_image_folder,
    run_scripts_concurrently,
    script,
    snapshot,
)

Case = Callable[[Path, Path], tuple[list[str], str]]
"""(tmp dir, tiny image folder) -> (command line, words the error line must contain)."""


def resume_missing_run_dir(tmp: Path, data: Path) -> tuple[list[str], str]:
    return script(
        "AutoML.py", "--data_dir", str(data), "--resume", "--run_dir", str(tmp / "nothing")
    ), "Nothing to resume"


def run_dir_is_a_file(tmp: Path, data: Path) -> tuple[list[str], str]:
    (tmp / "afile").write_text("keep me")
    return script(
        "AutoML.py", "--data_dir", str(data), "--run_dir", str(tmp / "afile")
    ), "is a file"


def used_run_dir_without_resume(tmp: Path, data: Path) -> tuple[list[str], str]:
    (tmp / "used").mkdir()
    (tmp / "used" / "notes.txt").write_text("mine")
    return script("AutoML.py", "--data_dir", str(data), "--run_dir", str(tmp / "used")), "--resume"


def one_class(tmp: Path, data: Path) -> tuple[list[str], str]:
    single = make_image_folder(tmp / "single", classes=("only",))
    return script(
        "AutoML.py", "--data_dir", str(single), "--run_dir", str(tmp / "r1")
    ), "at least 2"


def no_train_split(tmp: Path, data: Path) -> tuple[list[str], str]:
    (tmp / "empty_data").mkdir()
    return script(
        "AutoML.py", "--data_dir", str(tmp / "empty_data"), "--run_dir", str(tmp / "r2")
    ), "No image data found"


def precision_out_of_range(tmp: Path, data: Path) -> tuple[list[str], str]:
    return script(
        "AutoML.py", "--data_dir", str(data), "-p", "1.5", "--run_dir", str(tmp / "r3")
    ), "min_precision"


def zero_workers(tmp: Path, data: Path) -> tuple[list[str], str]:
    return script("AutoML.py", "--data_dir", str(data), "--workers", "0"), "--workers"


def unreachable_scheduler(tmp: Path, data: Path) -> tuple[list[str], str]:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return script(
        "AutoML.py", "--data_dir", str(data), "--run_dir", str(tmp / "r4"),
        "--scheduler_address", f"tcp://127.0.0.1:{port}",
    ), "Cannot reach the Dask scheduler"  # fmt: skip


def both_scheduler_flags(tmp: Path, data: Path) -> tuple[list[str], str]:
    return script(
        "AutoML.py", "--data_dir", str(data), "--run_dir", str(tmp / "r5"),
        "--scheduler_address", "tcp://127.0.0.1:8786", "--scheduler_file", str(tmp / "s.json"),
    ), "not allowed with"  # fmt: skip


def missing_configuration(tmp: Path, data: Path) -> tuple[list[str], str]:
    return script("main.py", "-c", str(tmp / "none.json"), "--data_dir", str(data)), "none.json"


def unknown_hyperparameter(tmp: Path, data: Path) -> tuple[list[str], str]:
    (tmp / "cfg.json").write_text(json.dumps(dict(SMALL_CONFIG, n_layers=3)))
    return script("main.py", "-c", str(tmp / "cfg.json"), "--data_dir", str(data)), "n_layers"


def broken_training_record(tmp: Path, data: Path) -> tuple[list[str], str]:
    (tmp / "opt_cfg.json").write_text(json.dumps(SMALL_CONFIG))
    (tmp / "opt_cfg.training.json").write_text("[1, 2]")
    return script(
        "main.py", "-c", str(tmp / "opt_cfg.json"), "--data_dir", str(data)
    ), "opt_cfg.training.json"


def evaluation_of_no_run(tmp: Path, data: Path) -> tuple[list[str], str]:
    return script("evaluation.py", str(tmp / "not_a_run")), "not_a_run"


CASES: list[Case] = [
    resume_missing_run_dir,
    run_dir_is_a_file,
    used_run_dir_without_resume,
    one_class,
    no_train_split,
    precision_out_of_range,
    zero_workers,
    unreachable_scheduler,
    both_scheduler_flags,
    missing_configuration,
    unknown_hyperparameter,
    broken_training_record,
    evaluation_of_no_run,
]


@pytest.mark.slow
def test_every_bad_input_is_one_error_line_exit_2_and_nothing_changed(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "data" / "tiny")
    commands, words, dirs = [], [], []
    for case in CASES:
        case_dir = tmp_path / case.__name__
        case_dir.mkdir()
        command, expected = case(case_dir, data)
        commands.append(command)
        words.append(expected)
        dirs.append(case_dir)
    before = [snapshot(d) for d in dirs]
    results = run_scripts_concurrently(commands, timeout=300)
    for case, (code, _, stderr), expected, case_dir, files in zip(
        CASES, results, words, dirs, before, strict=True
    ):
        lines = error_lines(stderr)
        assert code == 2, f"{case.__name__}: exit {code}\n{stderr}"
        assert len(lines) == 1, f"{case.__name__}: {stderr}"
        assert expected in lines[0], f"{case.__name__}: {lines[0]}"
        assert "Traceback" not in stderr, case.__name__
        assert snapshot(case_dir) == files, f"{case.__name__} changed files on disk"
    assert not (dirs[0] / "nothing").exists()


@pytest.mark.parametrize("n_classes", [2, 3])
def test_fewer_than_four_classes_warn_about_top3(tmp_path: Path, n_classes: int, caplog) -> None:
    from evoband.training._data import load_data

    root = make_image_folder(tmp_path / "few", classes=tuple("abcd"[:n_classes]))
    with caplog.at_level("WARNING", logger="evoband"):
        data = load_data(root)
    assert data.n_classes == n_classes
    assert "top-3 accuracy is 1.0" in caplog.text
