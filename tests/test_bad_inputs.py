"""Bad input as a new user gives it, through the real command lines (run in this process, as
the scripts run them, and one of them in a fresh process); and the exit codes of every other
failure, through the wrapper every command line runs in (``run_cli``).

Every bad input must end with exit status 2, one ``error:`` line naming the problem and what to
do, and nothing already on disk changed.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

import AutoML
import evaluation
import main as main_script
from evoband.cli import ERROR_LOG, use_run_dir
from evoband.cli._plumbing import Terminated
from evoband.core import (
    ClusterError,
    ConfigError,
    EnvironmentFailure,
    EvobandError,
    StoreError,
    StoreWriteError,
)
from helpers import (
    SMALL_CONFIG,
    call_cli,
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


# -- cases that used to end in a traceback and exit 1; each is one line on stderr and nothing else


def negative_seed(tmp: Path, data: Path) -> tuple[list[str], str]:
    (tmp / "run").mkdir()  # a run to resume: refused before anything in it is touched
    (tmp / "run" / "history.sqlite").write_text("the ledger of a run")
    return script(
        "AutoML.py", "--data_dir", str(data), "--seed", "-1", "--run_dir", str(tmp / "run"),
        "--resume",
    ), "The value of `seed` is -1, but must be an int in [0, 2**32)."  # fmt: skip


def zero_image_size(tmp: Path, data: Path) -> tuple[list[str], str]:
    return script(
        "AutoML.py", "--data_dir", str(data), "--image_size", "0", "0", "--run_dir", str(tmp / "r"),
    ), "The value of `image_size` is 0 0, but must be two sides >= 1."  # fmt: skip


def batch_size_beyond_64_bits(tmp: Path, data: Path) -> tuple[list[str], str]:
    (tmp / "cfg.json").write_text(json.dumps(dict(SMALL_CONFIG, batch_size=10**40)))
    return script(
        "main.py", "-c", str(tmp / "cfg.json"), "--data_dir", str(data)
    ), f"Hyperparameter 'batch_size' in {tmp / 'cfg.json'} has the value {10**40}"


def scoring_without_test_split(tmp: Path, data: Path) -> tuple[list[str], str]:
    shutil.copytree(data / "train", tmp / "no_test" / "train")
    (tmp / "cfg.json").write_text(json.dumps(SMALL_CONFIG))
    return script(
        "main.py", "-c", str(tmp / "cfg.json"), "-t", "--data_dir", str(tmp / "no_test")
    ), "has no test/ split for -t"


def run_dir_below_a_file(tmp: Path, data: Path) -> tuple[list[str], str]:
    (tmp / "afile").write_text("keep me")
    return script(
        "AutoML.py", "--data_dir", str(data), "--run_dir", str(tmp / "afile" / "run")
    ), "run directory"


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
    negative_seed,
    zero_image_size,
    batch_size_beyond_64_bits,
    scoring_without_test_split,
    run_dir_below_a_file,
]
ONE_LINE: set[Case] = {
    negative_seed,
    zero_image_size,
    batch_size_beyond_64_bits,
    scoring_without_test_split,
    run_dir_below_a_file,
}
"""Cases whose whole stderr is the one error line (the others may log a warning first)."""


SCRIPTS: dict[str, Callable[[list[str] | None], int]] = {
    "AutoML.py": AutoML.main,
    "main.py": main_script.main,
    "evaluation.py": evaluation.main,
}


def check_bad_input(case: Case, result: tuple[int, str, str], expected: str) -> None:
    code, _, stderr = result
    lines = error_lines(stderr)
    assert code == 2, f"{case.__name__}: exit {code}\n{stderr}"
    assert len(lines) == 1, f"{case.__name__}: {stderr}"
    assert expected in lines[0], f"{case.__name__}: {lines[0]}"
    assert "Traceback" not in stderr, case.__name__
    if case in ONE_LINE:
        assert stderr.splitlines() == lines, f"{case.__name__}: {stderr}"


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_every_bad_input_is_one_error_line_exit_2_and_nothing_changed(
    case: Case, tmp_path: Path
) -> None:
    data = make_image_folder(tmp_path / "data" / "tiny", classes=("a", "b", "c", "d"))
    case_dir = tmp_path / "case"
    case_dir.mkdir()
    command, expected = case(case_dir, data)
    before = snapshot(case_dir)
    check_bad_input(case, call_cli(SCRIPTS[Path(command[1]).name], command[2:]), expected)
    assert snapshot(case_dir) == before, f"{case.__name__} changed files on disk"
    assert not (case_dir / "nothing").exists()


@pytest.mark.slow
def test_bad_input_in_a_fresh_process(tmp_path: Path) -> None:
    """The scripts themselves (not only their ``main``) end bad input with the one line."""
    data = make_image_folder(tmp_path / "data" / "tiny", classes=("a", "b", "c", "d"))
    cases = [negative_seed, scoring_without_test_split]
    commands = [case(tmp_path, data) for case in cases]
    results = run_scripts_concurrently([command for command, _ in commands], timeout=300)
    for case, result, (_, expected) in zip(cases, results, commands, strict=True):
        check_bad_input(case, result, expected)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_fewer_than_four_classes_warn_about_top3(tmp_path: Path, n_classes: int, caplog) -> None:
    from evoband.training._data import load_data

    root = make_image_folder(tmp_path / "few", classes=tuple("abcd"[:n_classes]))
    with caplog.at_level("WARNING", logger="evoband"):
        data = load_data(root)
    assert data.n_classes == n_classes
    assert "top-3 accuracy is 1.0" in caplog.text


# -- the exit codes of every failure: run_cli, in this process ------------------------------------


def failing(exc: BaseException, run_dir: Path | None = None) -> Callable[[list[str] | None], int]:
    """A CLI ``main`` that names ``run_dir`` (as AutoML.py does once its search started), then
    raises ``exc``."""

    def main(argv: list[str] | None) -> int:
        if run_dir is not None:
            use_run_dir(run_dir)
        raise exc

    return main


def one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.mark.parametrize("code", [0, 1])
def test_main_returns_its_own_status(code: int) -> None:
    assert call_cli(lambda argv: code, [])[0] == code


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (EvobandError("bad input"), 2),
        (ConfigError("The value of `seed` is -1, but must be an int in [0, 2**32)."), 2),
        (StoreError("not a run directory"), 2),
        (StoreWriteError("Cannot write to the run directory"), 4),
        (ClusterError("The Dask cluster lost the job"), 4),
        (EnvironmentFailure("the ledger is damaged"), 4),
    ],
)
def test_errors_of_evoband_are_their_message(exc: EvobandError, code: int) -> None:
    got, stdout, stderr = call_cli(failing(exc), [])
    assert got == code
    assert one_error_line(stderr) == f"error: {exc}" and stdout == ""


def test_an_internal_error_exits_3_naming_the_run_s_error_log(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "history.sqlite").write_text("the ledger")
    before = snapshot(run_dir)
    code, _, stderr = call_cli(failing(RuntimeError("boom\nsecond line"), run_dir), [])
    assert code == 3
    line = one_error_line(stderr)
    log = run_dir / ERROR_LOG
    assert "internal error (RuntimeError: boom second line)" in line and str(log) in line
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "RuntimeError: boom" in text
    assert "in main" in text and "raise exc" in text  # the frames, not only the message
    after = snapshot(run_dir)
    assert {k: v for k, v in after.items() if k != ERROR_LOG} == before
    # a second crash is appended: the first traceback is not lost
    code, _, _ = call_cli(failing(KeyError("other"), run_dir), [])
    assert code == 3
    again = log.read_text()
    assert again.startswith(text) and "KeyError: 'other'" in again


def test_an_internal_error_without_a_run_directory_goes_to_a_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code, _, stderr = call_cli(failing(ValueError("height and width must be > 0")), [])
    assert code == 3
    line = one_error_line(stderr)
    (log,) = tmp_path.glob("evoband-error-*.log")
    assert str(log) in line and "ValueError: height and width must be > 0" in line
    assert "Traceback (most recent call last)" in log.read_text()


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "run/checkpoints/x.pt"), "No space left"),
        (OSError(errno.EIO, os.strerror(errno.EIO)), "Input/output error"),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "run/checkpoints/f0.pt"), "directory"),
        (sqlite3.DatabaseError("database disk image is malformed"), "malformed"),
        (sqlite3.OperationalError("database or disk is full"), "disk is full"),
        (MemoryError(), "MemoryError"),
    ],
    ids=["ENOSPC", "EIO", "EISDIR", "malformed-ledger", "full-ledger", "memory"],
)
def test_the_environment_failing_exits_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: Exception, words: str
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code, _, stderr = call_cli(failing(exc), [])
    assert code == 4
    line = one_error_line(stderr)
    assert line.startswith("error: the environment failed (") and words in line
    assert "--resume" in line


def test_misusing_the_ledger_is_a_bug_not_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    error = sqlite3.ProgrammingError("Incorrect number of bindings supplied.")
    assert call_cli(failing(error), [])[0] == 3


@pytest.mark.parametrize(("exc", "code"), [(KeyboardInterrupt(), 130), (Terminated(), 143)])
def test_signals_exit_130_and_143(exc: BaseException, code: int) -> None:
    assert call_cli(failing(exc), [])[0] == code


def test_a_run_directory_that_cannot_be_written_at_start_is_bad_input(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    inside = PermissionError(errno.EACCES, "Permission denied", str(root / "r" / "history.sqlite"))
    refusal = AutoML.unwritable_at_start(inside, root)
    assert isinstance(refusal, StoreError) and not isinstance(refusal, EnvironmentFailure)
    assert "Permission denied" in str(refusal) and str(root / "r") in str(refusal)
    full = StoreWriteError("Cannot write to the run directory (No space left on device)")
    assert type(AutoML.unwritable_at_start(full, root)) is StoreError
    elsewhere = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "data" / "a.png"))
    assert AutoML.unwritable_at_start(elsewhere, root) is None
    assert AutoML.unwritable_at_start(OSError(errno.EIO, "Input/output error"), root) is None


@pytest.mark.parametrize(
    "parser",
    [
        AutoML.build_parser(),
        AutoML.build_parser(random_search=True),
        main_script.build_parser(),
        evaluation.build_parser(),
    ],
    ids=["AutoML", "AutoML_random_search", "main", "evaluation"],
)
def test_help_lists_the_exit_codes(parser) -> None:
    text = " ".join(parser.format_help().split())
    assert "exit codes: 0 " in text
    for words in ("2 bad input", "3 an internal error", "4 the environment failed", "130 / 143"):
        assert words in text
