"""The command lines: argument checking, exit codes, dry runs, and main.py's outputs.

Most cases call a CLI's ``main`` in this process through ``run_cli`` (what ``__main__`` does), as
Python start-up with torch costs seconds; the subprocess tests check the real entry points.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import AutoML
import AutoML_random_search
import main as main_script
from evoband.search._hyperband import HyperbandSchedule
from evoband.space._recipes import RECIPES
from evoband.training._data import load_data
from evoband.training._target import Task, evaluate
from helpers import (
    SMALL_CONFIG,
    call_cli,
    error_lines,
    make_image_folder,
    read_json,
    run_scripts_concurrently,
    script,
    tiny_count,
)

# -- AutoML.py argument checking ------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--hyperband", "--eta", "1"], "eta"),
        (["--hyperband", "True", "--min_epochs", "5", "--epochs", "2"], "min_epochs"),
        (["--pop_size", "1"], "pop_size"),
        (["-p", "0"], "min_precision"),
        (["-p", "1.5"], "min_precision"),
        (["-t", "-5"], "max_time"),
        (["--hyperband", "maybe"], "--hyperband"),
        (["-s", "abc"], "constraint_max_model_size"),
        (["-s", "2.5"], "constraint_max_model_size"),
        (["-s", "0"], "constraint_max_model_size"),
        (["--cv_folds", "1"], "cv_folds"),
        (["--max_evaluations", "0"], "max_evaluations"),
        (["--space", "huge"], "--space"),
        (["--async_promotion"], "--hyperband True"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bad_flags_refused_with_one_error_line(argv: list[str], words: str) -> None:
    # --dry_run: a bad flag that slipped through would print a schedule, never start a search
    code, stdout, stderr = call_cli(AutoML.main, [*argv, "--dry_run"])
    assert code == 2, stdout + stderr
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr
    assert words in lines[0]
    assert "Traceback" not in stderr
    assert "Hyperband schedule" not in stdout


@pytest.mark.parametrize("argv", [["--eta", "1"], ["--min_epochs", "0"]])
def test_bad_hyperband_flags_refused_without_hyperband(argv: list[str]) -> None:
    code, _, _ = call_cli(AutoML.main, [*argv, "--dry_run"])
    assert code == 2


def test_min_epochs_above_epochs_is_fine_without_hyperband() -> None:
    # min_epochs only sets the first Hyperband rung; a plain EA with --epochs 1 must run
    code, stdout, _ = call_cli(AutoML.main, ["--epochs", "1", "--dry_run"])
    assert code == 0 and "No Hyperband" in stdout


def test_max_model_size_below_smallest_network_refused(
    tiny_image_root: Path, tmp_path: Path
) -> None:
    code, _, stderr = call_cli(
        AutoML.main,
        [
            "--data_dir",
            str(tiny_image_root),
            "--space",
            "course",
            "-s",
            "100",
            "--run_dir",
            str(tmp_path / "run"),
            "--pop_size",
            "3",
            "--epochs",
            "2",
            "--no_progress",
        ],
    )
    assert code == 2
    lines = error_lines(stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "smallest network" in lines[0] and "531" in lines[0]


def test_refused_max_model_size_leaves_no_run_dir(tiny_image_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    call_cli(
        AutoML.main,
        [
            "--data_dir",
            str(tiny_image_root),
            "--space",
            "course",
            "-s",
            "100",
            "--run_dir",
            str(run_dir),
            "--pop_size",
            "3",
            "--epochs",
            "2",
            "--no_progress",
        ],
    )
    assert not run_dir.exists() or not any(run_dir.iterdir())


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], False),
        (["--hyperband"], True),
        (["--hyperband", "True"], True),
        (["--hyperband", "true"], True),
        (["--hyperband", "1"], True),
        (["--hyperband", "yes"], True),
        (["--hyperband", "no"], False),
        (["--hyperband", "False"], False),
        (["--hyperband", "0"], False),
    ],
)
def test_boolean_flags_accepted(argv: list[str], expected: bool) -> None:
    assert AutoML.build_parser().parse_args(argv).hyperband is expected
    code, stdout, _ = call_cli(AutoML.main, [*argv, "--dry_run"])
    assert code == 0
    assert ("Hyperband schedule" in stdout) is expected
    assert ("No Hyperband" in stdout) is not expected


@pytest.mark.parametrize("text", ["2e7", "20000000", "2E7", "2.0e7"])
def test_model_size_parses_numbers_and_exponents(text: str) -> None:
    assert AutoML.build_parser().parse_args(["-s", text]).constraint_max_model_size == 20_000_000
    parsed = main_script.build_parser().parse_args(["-c", "x.json", "-s", text])
    assert parsed.constraint_max_model_size == 20_000_000


def test_dry_run_prints_the_schedule() -> None:
    code, stdout, _ = call_cli(AutoML.main, ["--hyperband", "--dry_run"])
    assert code == 0
    assert str(HyperbandSchedule(4, 32, 2)) in stdout
    assert "bracket s=3: 8x4  4x8  2x16  1x32" in stdout
    assert "x 3 folds = 1176 epoch-folds per generation" in stdout
    assert "Initial population of 10 (before any child): 10x4  5x8  2x16  1x32" in stdout
    assert "(92 epochs per fold, 0.23 generations)" in stdout  # 40 + 20 + 16 + 16 epochs
    code, stdout, _ = call_cli(AutoML.main, ["--hyperband", "--pop_size", "50", "--dry_run"])
    # the course command's population: 200 + 100 + 96 + 96 epochs, more than a generation
    assert "50x4  25x8  12x16  6x32   (492 epochs per fold, 1.3 generations)" in stdout
    code, stdout, _ = call_cli(
        AutoML.main,
        [
            "--hyperband",
            "-e",
            "27",
            "--min_epochs",
            "1",
            "--eta",
            "3",
            "--cv_folds",
            "2",
            "--dry_run",
        ],
    )
    assert code == 0
    assert "bracket s=3: 27x1  9x3  3x9  1x27" in stdout


def test_dry_run_of_asynchronous_promotion_prints_its_rungs() -> None:
    code, stdout, _ = call_cli(AutoML.main, ["--hyperband", "--async_promotion", "--dry_run"])
    assert code == 0
    assert "Asynchronous promotion" in stdout and "rungs 4, 8, 16, 32 epochs" in stdout
    assert "bracket" not in stdout


def test_random_search_cli_shares_the_flags() -> None:
    code, stdout, _ = call_cli(AutoML_random_search.main, ["-c", "4", "-e", "3", "--dry_run"])
    assert code == 0
    assert "No Hyperband: 4 children x 3 epochs x 3 folds per generation" in stdout
    code, _, stderr = call_cli(AutoML_random_search.main, ["--pop_size", "1", "--dry_run"])
    assert code == 2 and len(error_lines(stderr)) == 1


# -- --help, and the real entry points started as fresh processes -------------------------------
# (all at once in one fixture: Python start-up with torch dominates; slow on a loaded machine)

# AutoML.py itself starts as a real process in bad_eta and in test_ea's reproducibility test
SUBPROCESS_CASES = {
    "help_random": ("AutoML_random_search.py", "--help"),
    "help_main": ("main.py", "--help"),
    "bad_eta": ("AutoML.py", "--hyperband", "--eta", "1", "--dry_run"),
}


@pytest.fixture(scope="module")
def subprocess_results() -> dict[str, tuple[int, str, str]]:
    names = list(SUBPROCESS_CASES)
    results = run_scripts_concurrently([script(*SUBPROCESS_CASES[n]) for n in names])
    return dict(zip(names, results, strict=True))


HELP_FLAGS = [
    ("help_automl", ["--constraint_max_model_size", "--hyperband", "--resume", "--dry_run"]),
    ("help_random", ["--constraint_max_model_size", "--max_time", "--pop_size"]),
    ("help_main", ["--configuration", "--use_test_data", "--constraint_min_precision"]),
]
MAINS = {
    "help_automl": AutoML.main,
    "help_random": AutoML_random_search.main,
    "help_main": main_script.main,
}


@pytest.mark.parametrize("case, flags", HELP_FLAGS)
def test_help_works_in_process(case: str, flags: list[str]) -> None:
    code, stdout, stderr = call_cli(MAINS[case], ["--help"])
    assert code == 0, stderr
    assert stdout.startswith("usage:")
    for flag in flags:
        assert flag in stdout


@pytest.mark.slow
@pytest.mark.parametrize("case, flags", HELP_FLAGS[1:])
def test_help_works_in_a_fresh_process(subprocess_results, case: str, flags: list[str]) -> None:
    code, stdout, stderr = subprocess_results[case]
    assert code == 0, stderr
    assert stdout.startswith("usage:")
    for flag in flags:
        assert flag in stdout


@pytest.mark.slow
def test_bad_flag_exit_code_of_the_real_process(subprocess_results) -> None:
    code, stdout, stderr = subprocess_results["bad_eta"]
    assert code == 2
    assert error_lines(stderr) == [
        "error: The value of `eta` of Hyperband is 1, but must be an int >= 2."
    ]
    assert stdout == ""


# -- main.py ---------------------------------------------------------------------------------------


def write_config(path: Path, config: dict) -> Path:
    path.write_text(json.dumps(config, indent=2))
    return path


def test_main_bad_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "cfg.json"
    path.write_text('{\n  "kernel_size": 3,\n  "use_BN": Flase\n}\n')
    code, _, stderr = call_cli(main_script.main, ["-c", str(path), "--data_dir", "digits"])
    assert code == 2
    lines = error_lines(stderr)
    assert len(lines) == 1
    assert str(path) in lines[0] and "line 3" in lines[0]


@pytest.mark.parametrize(
    "config, words",
    [
        ({**SMALL_CONFIG, "kernel_size": 4}, "kernel_size"),
        ({**SMALL_CONFIG, "depth": 3}, "depth"),
        ([1, 2], "JSON object"),
    ],
)
def test_main_bad_configuration_refused(tmp_path: Path, config, words: str) -> None:
    path = write_config(tmp_path / "cfg.json", config)
    code, _, stderr = call_cli(main_script.main, ["-c", str(path), "--data_dir", "digits"])
    assert code == 2
    lines = error_lines(stderr)
    assert len(lines) == 1 and words in lines[0]


def test_main_missing_configuration_file(tmp_path: Path) -> None:
    code, _, stderr = call_cli(main_script.main, ["-c", str(tmp_path / "nope.json")])
    assert code == 2 and "nope.json" in error_lines(stderr)[0]


def test_main_test_split_writes_result_with_confusion_matrix(
    tiny_image_root: Path, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path / "opt_cfg.json", SMALL_CONFIG)
    code, stdout, stderr = call_cli(
        main_script.main,
        [
            "-c",
            str(cfg),
            "-t",
            "True",
            "-e",
            "3",
            "--data_dir",
            str(tiny_image_root),
            "-p",
            "0.01",
            "--no_progress",
            "-m",
            str(tmp_path / "model.pt"),
        ],
    )
    assert code == 0, stdout + stderr
    out = tmp_path / "result_test.json"
    assert out.is_file() and f"Wrote {out}" in stdout
    result = read_json(out)
    assert result["mode"] == "test"
    assert result["configuration"] == SMALL_CONFIG
    assert result["num_params"] == tiny_count(SMALL_CONFIG)
    assert result["classes"] == ["a", "b", "c"]
    matrix = result["confusion_matrix"]
    assert len(matrix) == 3 and all(len(row) == 3 for row in matrix)
    # rows are true classes: 4 test images each
    assert [sum(row) for row in matrix] == [4, 4, 4]
    accuracy = sum(matrix[i][i] for i in range(3)) / 12
    assert result["top1"] == pytest.approx(accuracy, abs=1e-6)
    assert result["violated"] == []
    assert (tmp_path / "model.pt").is_file()
    assert not (tmp_path / "result_cv.json").exists()


def test_main_exit_1_when_precision_constraint_violated(tmp_path: Path) -> None:
    noise = make_image_folder(tmp_path / "noise", informative=False)
    cfg = write_config(tmp_path / "opt_cfg.json", SMALL_CONFIG)
    code, stdout, stderr = call_cli(
        main_script.main,
        [
            "-c",
            str(cfg),
            "-e",
            "1",
            "--cv_folds",
            "2",
            "--data_dir",
            str(noise),
            "-p",
            "0.99",
            "--no_progress",
        ],
    )
    assert code == 1, stdout + stderr
    assert "Constraint violated: precision >= 0.99" in stdout
    result = read_json(tmp_path / "result_cv.json")
    assert result["mode"] == "cv" and result["violated"] == ["min_precision"]
    assert result["precision"] < 0.99 and len(result["folds"]) == 2
    assert "confusion_matrix" not in result


def test_main_exit_1_when_model_too_big(tiny_image_root: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "opt_cfg.json", SMALL_CONFIG)
    code, stdout, _ = call_cli(
        main_script.main,
        [
            "-c",
            str(cfg),
            "-e",
            "1",
            "--cv_folds",
            "2",
            "--data_dir",
            str(tiny_image_root),
            "-s",
            "100",
            "-p",
            "0.01",
            "--no_progress",
            "--out",
            str(tmp_path / "r.json"),
        ],
    )
    assert code == 1
    assert "num_params <= 100" in stdout
    assert read_json(tmp_path / "r.json")["violated"] == ["max_params"]


@pytest.mark.parametrize(
    "argv, words",
    [
        (["-e", "0"], "`epochs` is 0, but must be an int >= 1"),
        (["-p", "0"], "min_precision"),
        (["-t", "perhaps"], "--use_test_data"),
    ],
)
def test_main_bad_flags(tmp_path: Path, argv: list[str], words: str) -> None:
    cfg = write_config(tmp_path / "opt_cfg.json", SMALL_CONFIG)
    code, _, stderr = call_cli(main_script.main, ["-c", str(cfg), "--data_dir", "digits", *argv])
    assert code == 2
    lines = error_lines(stderr)
    assert len(lines) == 1 and words in lines[0]


def test_main_retrains_at_the_recorded_epochs_and_segments(
    tiny_image_root: Path, tmp_path: Path
) -> None:
    config = dict(RECIPES["bn-cnn-small"], n_conv_layers=2, batch_size=16)
    cfg = write_config(tmp_path / "opt_cfg.json", config)
    (tmp_path / "opt_cfg.training.json").write_text(
        json.dumps({"epochs": 3, "segments": [1, 3, 6]})
    )
    argv = [
        "-c",
        str(cfg),
        "-t",
        "True",
        "--data_dir",
        str(tiny_image_root),
        "-p",
        "0.01",
        "--no_progress",
    ]
    code, stdout, stderr = call_cli(main_script.main, argv)
    assert code in (0, 1), stdout + stderr
    result = read_json(tmp_path / "result_test.json")
    assert (result["epochs"], result["segments"]) == (3, [1, 3])
    assert result["folds"][0]["epochs"] == 3
    # the same network as training to 3 epochs with LR cycles ending at 1 and 3
    task = Task(load_data(tiny_image_root), use_test=True)
    again = evaluate(config, 3, task=task, seed=123, segments=(1, 3))
    assert result["top3"] == pytest.approx(again.top3) and result["precision"] == pytest.approx(
        again.precision
    )
    # -e overrides the record
    code, _, _ = call_cli(main_script.main, [*argv, "-e", "2"])
    assert read_json(tmp_path / "result_test.json")["epochs"] == 2


def test_main_broken_training_record_refused(tiny_image_root: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "opt_cfg.json", SMALL_CONFIG)
    (tmp_path / "opt_cfg.training.json").write_text('{"segments": [1]}')
    code, _, stderr = call_cli(
        main_script.main, ["-c", str(cfg), "--data_dir", str(tiny_image_root)]
    )
    assert code == 2
    lines = error_lines(stderr)
    assert len(lines) == 1 and "opt_cfg.training.json" in lines[0]
