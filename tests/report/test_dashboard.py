"""The live dashboard (``evaluation.py RUN --dashboard``): a run mirrored into an Optuna study and
served by optuna-dashboard.

The mapping of members to trials is tested without optuna; the mirror, restarts and resumed runs
with optuna and no browser; bad input in-process; and one real browser test follows a real search
in headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by Selenium; skipped
with a reason where they are missing, which CI never is). The tests that start CLIs in
subprocesses are marked ``slow`` (5 s and more); the default run and CI run them.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

import evaluation
from evoband.core import StoreError
from evoband.report import Dashboard, RunFacts, default_journal_path, member_trials, mirror_run
from evoband.search._run import run_search
from evoband.search._settings import SearchSettings
from evoband.store import RunStore, load_run, read_run_json
from evoband.store._predictor_file import write_predictor_record
from evoband.training._results import Result, Status
from helpers import (
    REPO_ROOT,
    SMALL_CONFIG,
    call_cli,
    default_sigint,
    error_lines,
    make_image_folder,
    script,
    snapshot,
    tiny_search_config,
    write_run,
)

HAS_DASHBOARD = all(importlib.util.find_spec(m) for m in ("optuna", "optuna_dashboard"))
needs_dashboard = pytest.mark.skipif(
    not HAS_DASHBOARD, reason="optuna and optuna-dashboard (evoband[dashboard]) not installed"
)


def members(run: Path) -> int:
    """The members the ledger holds results of, now (a live ledger is read in place)."""
    return int(load_run(run)["member_id"].nunique())


def finished_members(run: Path, scratch: Path) -> int:
    """The members of a finished run's ledger, read from a copy: opening it in place would make
    SQLite add its -wal and -shm files to the run directory."""
    scratch.mkdir(exist_ok=True)
    shutil.copyfile(run / "history.sqlite", scratch / "history.sqlite")
    return members(scratch)


# -- the mapping (no optuna) ------------------------------------------------------------------------

FACTS = RunFacts(max_epochs=4, max_params=10_000, min_precision=0.5, final_rungs={2: 2, 1: 1, 0: 0})
"""Budgets 1, 2, 4 (eta 2): bracket 2 has rungs at 1, 2, 4 epochs, bracket 1 at 2, 4, bracket 0 at 4."""


def frame(*rows: dict[str, Any]) -> pd.DataFrame:
    """A ledger frame in the order the rows are given (their ``finished`` times)."""
    base = {"status": "ok", "top3": 0.8, "precision": 0.6, "num_params": 5_000, "seconds": 1.0}
    base |= {"origin": "sampled", "parents": (), "config": dict(SMALL_CONFIG)}
    return pd.DataFrame([{**base, "finished": 100.0 + i, **row} for i, row in enumerate(rows)])


def ev(member: int, epochs: int, generation: int, bracket: int | None, rung: int | None, **kw: Any):
    return dict(
        member_id=member, epochs=epochs, generation=generation, bracket=bracket, rung=rung, **kw
    )


def states(evaluations: pd.DataFrame, facts: RunFacts = FACTS) -> dict[int, str]:
    return {t.member_id: t.state for t in member_trials(evaluations, facts)}


def test_members_waiting_for_the_next_rung_run_until_the_search_moves_past_it() -> None:
    rung0 = [ev(m, 1, 1, 2, 0) for m in (1, 2, 3, 4)]
    # member 1 promoted: the others may still be (the rung-1 batch is not over)
    assert states(frame(*rung0, ev(1, 2, 1, 2, 1))) == dict.fromkeys((1, 2, 3, 4), "RUNNING")
    # rung 2 started: rung 1 is over, so 3 and 4 were not promoted; 2 waits on rung 2's batch
    later = frame(*rung0, ev(1, 2, 1, 2, 1), ev(2, 2, 1, 2, 1), ev(1, 4, 1, 2, 2))
    assert states(later) == {1: "COMPLETE", 2: "RUNNING", 3: "PRUNED", 4: "PRUNED"}
    # the next bracket started: bracket 2 is over
    done = frame(*later.to_dict("records"), ev(5, 2, 1, 1, 0))
    assert states(done) == {1: "COMPLETE", 2: "PRUNED", 3: "PRUNED", 4: "PRUNED", 5: "RUNNING"}


def test_failed_evaluations_fail_and_an_ended_run_prunes_who_stayed_below_the_top() -> None:
    rows = frame(
        ev(1, 1, 1, 2, 0),
        ev(2, 1, 1, 2, 0, status="diverged", top3=0.0, precision=0.0),
        ev(3, 1, 1, 2, 0),
        ev(3, 2, 1, 2, 1, status="timed_out"),
        ev(4, 4, 1, 0, 0),
    )
    assert states(rows.iloc[:4]) == {1: "RUNNING", 2: "FAIL", 3: "FAIL"}
    assert states(rows) == {1: "PRUNED", 2: "FAIL", 3: "FAIL", 4: "COMPLETE"}  # bracket 0 began
    ended = RunFacts(**{**FACTS.__dict__, "ended": True})
    assert states(rows, ended) == {1: "PRUNED", 2: "FAIL", 3: "FAIL", 4: "COMPLETE"}
    trials = {t.member_id: t for t in member_trials(rows, ended)}
    assert trials[2].value is None and trials[2].constraints is None
    assert trials[3].intermediate == {1: 0.8}  # the failed budget has no intermediate value
    assert trials[1].value == 0.8  # pruned: its last intermediate value, as Optuna records


def test_asynchronous_promotion_keeps_members_running_until_the_run_ends() -> None:
    facts = RunFacts(**{**FACTS.__dict__, "async_promotion": True})
    rows = frame(ev(1, 1, 0, 2, 0), ev(2, 1, 0, 2, 0), ev(3, 1, 0, 2, 0), ev(1, 2, 0, 2, 1))
    assert set(states(rows, facts).values()) == {"RUNNING"}
    assert set(states(rows, RunFacts(**{**facts.__dict__, "ended": True})).values()) == {"PRUNED"}


def test_value_is_the_best_feasible_score_and_constraints_are_optunas() -> None:
    rows = frame(
        ev(1, 1, 1, 2, 0, top3=0.80, precision=0.7),
        ev(1, 2, 1, 2, 1, top3=0.85, precision=0.6),
        ev(1, 4, 1, 2, 2, top3=0.90, precision=0.3),  # best top-3, but infeasible
        ev(2, 4, 1, 0, 0, top3=0.95, precision=0.2, num_params=12_000),
        ev(3, 2, 1, None, None, origin="repeated", parents=(1,)),  # a re-measurement
    )
    trials = {t.member_id: t for t in member_trials(rows, FACTS)}
    one = trials[1]
    assert (one.state, one.value, one.intermediate) == ("COMPLETE", 0.85, {1: 0.8, 2: 0.85, 4: 0.9})
    assert one.constraints == (5_000 - 10_000, 0.5 - 0.6)
    assert one.user_attrs["feasible"] is True and one.user_attrs["precision"] == 0.6
    two = trials[2]  # infeasible: its top-3 at its last budget, constraints say why
    assert two.state == "COMPLETE" and two.value == 0.95 and two.user_attrs["feasible"] is False
    assert two.constraints is not None and all(c > 0 for c in two.constraints)
    assert trials[3].state == "COMPLETE" and trials[3].user_attrs["parents"] == [1]
    assert [t.member_id for t in member_trials(rows, FACTS)] == [1, 2, 3]  # by first result


# -- the mirror (optuna, no browser) ------------------------------------------------------------------


def load_study(journal: Path, name: str) -> Any:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(journal)))
    return optuna.load_study(study_name=name, storage=storage)


def assert_mirrors(run_dir: Path, journal: Path) -> Any:
    """The journal's study is the run: one trial per member, as the mapping says, and returns it."""
    study = load_study(journal, run_dir.name)
    ledger = load_run(run_dir)
    info = read_run_json(run_dir)
    expected = {t.member_id: t for t in member_trials(ledger, RunFacts.of(info, ledger))}
    members = [t.user_attrs["member_id"] for t in study.trials]
    assert sorted(members) == sorted(expected) == sorted(ledger["member_id"].unique())
    for trial in study.trials:
        want = expected[trial.user_attrs["member_id"]]
        assert trial.state.name == want.state
        assert trial.intermediate_values == want.intermediate
        assert trial.value == want.value
        config = want.config
        assert all(config[k] == v for k, v in trial.params.items())
        assert ("n_channels_conv_1" in trial.params) == (config["n_conv_layers"] > 1)
        if want.constraints is not None:
            assert trial.system_attrs["constraints"] == list(want.constraints)
    return study


@needs_dashboard
def test_a_run_becomes_one_study_with_optuna_distributions_and_nothing_written_into_it(
    tmp_path: Path,
) -> None:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.study import StudyDirection

    run = write_run(tmp_path / "run")
    before = snapshot(run)
    journal = tmp_path / "cache" / "run.log"
    n = mirror_run(run, journal)
    assert snapshot(run) == before  # not even SQLite's -wal / -shm files
    assert n == load_run(run)["member_id"].nunique()
    study = assert_mirrors(run, journal)
    assert study.direction == StudyDirection.MAXIMIZE
    assert study.user_attrs["evoband_run"] == str(run.resolve())
    assert study.user_attrs["max_params"] == 10_000 and study.user_attrs["run_state"] == "running"
    trial = study.trials[0]
    assert trial.distributions["learning_rate_init"] == FloatDistribution(1e-5, 0.1, log=True)
    assert trial.distributions["n_conv_layers"] == IntDistribution(1, 3)
    assert trial.distributions["kernel_size"] == CategoricalDistribution([3, 5, 7])
    assert trial.distributions["use_BN"] == CategoricalDistribution([True, False])
    assert {"precision", "num_params", "feasible", "status", "origin", "parents"} <= set(
        trial.user_attrs
    )


def test_a_live_ledger_in_a_read_only_folder_is_read_from_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evoband.report import _trials

    run = write_run(tmp_path / "run")
    writer = RunStore(run)  # a live search: its newest result is still in the WAL
    member = SimpleNamespace(
        member_id=1000, config=dict(SMALL_CONFIG), seed=0, num_params=3_000,
        origin="sampled", parents=(), generation=3, bracket=2,
    )  # fmt: skip
    writer.add_member(member)
    result = Result(0.7, 0.5, 0.6, 3_000, 2, 1.0, Status.OK)
    writer.record_evaluation(1000, result, generation=3, bracket=2, rung=0, elapsed=1.0, state={})
    assert (run / "history.sqlite-wal").stat().st_size > 0
    real = _trials.RunStore

    def read_only_folder(path: Path, readonly: bool = False) -> RunStore:
        if Path(path) == run:  # what SQLite says where it may not use the -shm file
            raise StoreError(
                f"{run} is not an evoband ledger (attempt to write a readonly database)."
            )
        return real(path, readonly=readonly)

    monkeypatch.setattr(_trials, "RunStore", read_only_folder)
    monkeypatch.setattr(_trials.os, "access", lambda path, mode: False)
    follower = _trials.RunFollower(run, tmp_path / "scratch")
    try:
        assert 1000 in set(follower.read().evaluations["member_id"])
    finally:
        follower.close()
        writer.close()
    assert not (tmp_path / "scratch").exists()


@needs_dashboard
def test_a_restart_continues_the_journal_without_writing_a_trial_twice(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    journal = tmp_path / "run.log"
    first = mirror_run(run, journal)
    written = journal.read_bytes()
    assert mirror_run(run, journal) == first
    assert journal.read_bytes() == written  # nothing changed: nothing written
    with journal.open("ab") as fh:  # a mirror killed in the middle of a line
        fh.write(b'{"op_code": 5, "trial_')
    assert mirror_run(run, journal) == first
    assert_mirrors(run, journal)


def _resume(run: Path, member: int, epochs: int) -> None:
    """What a resumed run does to a member judged pruned when the run ended: train it further."""
    info = read_run_json(run)
    info.pop("finished", None)
    (run / "run.json").write_text(json.dumps(info))
    store = RunStore(run)
    rung = int(load_run(run).query("member_id == @member")["rung"].max()) + 1
    result = Result(0.9, 0.6, 0.9, 3_000, epochs, 1.0, Status.OK)
    store.record_evaluation(
        member, result, generation=2, bracket=2, rung=rung, elapsed=1e3, state={}
    )
    store.close()


@needs_dashboard
def test_a_resumed_run_rewrites_trials_it_had_finished_without_doubling(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    info = read_run_json(run)
    (run / "run.json").write_text(json.dumps({**info, "finished": "2026-01-01T00:00:00"}))
    journal = tmp_path / "run.log"
    n = mirror_run(run, journal)
    study = assert_mirrors(run, journal)
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    member = int(pruned[-1].user_attrs["member_id"])
    epochs = int(pruned[-1].user_attrs["epochs"]) * 2
    _resume(run, member, epochs)
    assert mirror_run(run, journal) == n
    study = assert_mirrors(run, journal)
    trial = next(t for t in study.trials if t.user_attrs["member_id"] == member)
    assert trial.state.name in ("RUNNING", "COMPLETE") and epochs in trial.intermediate_values


@needs_dashboard
def test_a_real_search_resumed_mirrors_every_member_once_with_its_predictor(
    tmp_path: Path,
) -> None:
    data = make_image_folder(tmp_path / "tiny")
    run = tmp_path / "run"
    journal = tmp_path / "run.log"

    def search(cap: int, resume: bool) -> None:
        settings = SearchSettings(
            pop_size=3, hyperband=True, min_epochs=1, max_epochs=2, eta=2, max_evaluations=cap,
            seed=3, eval_time_limit=600, remeasure=False, ensemble_bags=2, ensemble_steps=3,
        )  # fmt: skip
        run_search(tiny_search_config(settings, data, run, resume=resume, workers=1))

    search(4, resume=False)
    mirror_run(run, journal)
    assert_mirrors(run, journal)
    search(9, resume=True)
    mirror_run(run, journal)
    study = assert_mirrors(run, journal)
    from optuna_dashboard import get_note

    note = get_note(study)  # the search delivered a predictor: ensemble.json
    assert note.startswith("## Delivered predictor (ensemble.json)")
    members = study.user_attrs["ensemble"]["members"]
    assert members and all(f"| {m} |" in note for m, _, _ in members)


@needs_dashboard
def test_the_note_shows_a_delivered_ensemble(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    config = load_run(run)["config"].iloc[0]
    member = {"member_id": 0, "config": config, "epochs": 2, "segments": [2], "weight": 1.0}
    member |= {"num_params": 3_000, "seed": 0, "form": "folds", "networks": 2}
    record = {"members": [member], "num_params": 3_000, "feasible": True, "data": {}}
    record |= {
        "out_of_fold": {"top3": 0.9, "precision": 0.7},
        "constraints": {"max_params": 10_000},
    }
    write_predictor_record(run, record)
    journal = tmp_path / "run.log"
    mirror_run(run, journal)
    from optuna_dashboard import get_note

    study = load_study(journal, "run")
    note = get_note(study)
    assert "1 member(s), 2 network(s), 3,000 parameters (at most 10,000)" in note
    assert "| 0 | 0 | 2 | 1.00 | 3,000 | 2 | folds |" in note
    assert study.user_attrs["ensemble"]["members"] == [[0, 2, 1.0]]


def test_the_default_journal_lies_in_the_users_cache_named_after_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = default_journal_path(tmp_path / "runs" / "my-run")
    assert path.parent == tmp_path / "cache" / "evoband" / "dashboard"
    assert re.fullmatch(r"my-run-[0-9a-f]{8}\.log", path.name)
    assert default_journal_path(tmp_path / "other" / "my-run") != path


@pytest.mark.slow  # a fresh Python process
def test_evoband_itself_never_imports_optuna() -> None:
    code = (
        "import sys, evoband, evoband.report, evoband.search, evoband.callbacks, evaluation; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('optuna', 'optuna_dashboard')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'src'}"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"


# -- bad input: one line, exit 2, nothing written ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def finished_run(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run")


def _refuse_optuna(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] in ("optuna", "optuna_dashboard"):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)


BAD: dict[str, tuple[Callable[[Path, str], list[str]], str]] = {
    "missing run": (lambda run, j: [str(run.parent / "nothing"), "--dashboard", "--journal", j], "does not exist"),
    "two runs": (lambda run, j: [str(run), str(run), "--dashboard", "--journal", j], "exactly one run"),
    "journal in the run": (lambda run, j: [str(run), "--dashboard", "--journal", str(run / "j.log")], "inside the run directory"),
    "with --test": (lambda run, j: [str(run), "--dashboard", "--test", "--journal", j], "drop --test"),
    "port without it": (lambda run, j: [str(run), "--port", "9", "--journal", j], "with --dashboard"),
    "bad port": (lambda run, j: [str(run), "--dashboard", "--port", "70000", "--journal", j], "`port` is 70000, but must be an int in [0, 65535]"),
}  # fmt: skip
"""Case -> (argv of a run directory and a journal path, what the error line says)."""


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_one_line_exit_2_nothing_written(
    case: str, finished_run: Path, tmp_path: Path
) -> None:
    argv, message = BAD[case]
    journal = tmp_path / "j.log"
    before = snapshot(finished_run)
    code, _, err = call_cli(evaluation.main, argv(finished_run, str(journal)))
    assert code == 2, err
    assert len(error_lines(err)) == 1 and message in err, err
    assert snapshot(finished_run) == before and not journal.exists()


@needs_dashboard
def test_a_port_in_use_is_one_line_and_exit_2(finished_run: Path, tmp_path: Path) -> None:
    journal = tmp_path / "j.log"
    before = snapshot(finished_run)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = [str(finished_run), "--dashboard", "--port", str(port), "--journal", str(journal)]
        code, _, err = call_cli(evaluation.main, argv)
    assert code == 2 and error_lines(err) == [
        f"error: Port {port} on 127.0.0.1 is in use; choose another with --port."
    ]
    assert snapshot(finished_run) == before and not journal.exists()


def test_without_the_extra_dashboard_names_it(
    finished_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = tmp_path / "j.log"
    before = snapshot(finished_run)
    _refuse_optuna(monkeypatch)
    argv = [str(finished_run), "--dashboard", "--port", str(free_port()), "--journal", str(journal)]
    code, _, err = call_cli(evaluation.main, argv)
    assert code == 2 and len(error_lines(err)) == 1, err
    assert "pip install 'evoband[dashboard]'" in err and "optuna-dashboard" in err
    assert snapshot(finished_run) == before and not journal.exists()


# -- the served page ---------------------------------------------------------------------------------


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    """``check()``'s first truthy value, polled until ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if value := check():
                return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@contextlib.contextmanager
def dashboard_process(run: Path, journal: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``evaluation.py RUN --dashboard`` in a subprocess; yields it and the page's base URL once
    its API answers; stops it with Ctrl-C (SIGINT) and checks the exit code 130."""
    port = free_port()
    cmd = script(
        "evaluation.py", str(run), "--dashboard", "--port", str(port), "--journal", str(journal)
    )
    proc = subprocess.Popen(
        ["nice", "-n", "19", *cmd], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=default_sigint,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while not _quietly(lambda: get_json(f"{base}/api/studies")):
            if proc.poll() is not None:
                raise AssertionError(
                    f"the dashboard exited {proc.returncode}: {proc.communicate()[1]}"
                )
            assert time.monotonic() < deadline, "the dashboard did not start in 90 s"
            time.sleep(0.5)
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    assert proc.returncode == 130, err
    assert out.startswith(f"Dashboard of {run} at {base}/dashboard/"), out


def _quietly(check: Callable[[], Any]) -> Any:
    try:
        return check()
    except (OSError, ValueError, urllib.error.URLError):
        return None


@pytest.mark.slow  # a subprocess CLI
@needs_dashboard
def test_the_served_mirror_of_a_read_only_run_is_read_only_and_ctrl_c_exits_130(
    finished_run: Path, tmp_path: Path
) -> None:
    before = snapshot(finished_run)
    journal = tmp_path / "j.log"
    modes = {p: p.stat().st_mode for p in [finished_run, *finished_run.rglob("*")]}
    for path in modes:
        path.chmod(modes[path] & ~0o222)
    try:
        with dashboard_process(finished_run, journal) as (_, base):
            studies = get_json(f"{base}/api/studies")["study_summaries"]
            assert [s["study_name"] for s in studies] == ["run"]
            detail = get_json(f"{base}/api/studies/{studies[0]['study_id']}")
            assert len(detail["trials"]) == finished_members(finished_run, tmp_path / "copy")
            request = urllib.request.Request(f"{base}/api/studies", data=b"{}", method="POST")
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == 405
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
    assert snapshot(finished_run) == before


@needs_dashboard
def test_new_results_are_served_within_5_seconds(finished_run: Path, tmp_path: Path) -> None:
    import threading

    stop = threading.Event()
    with Dashboard(finished_run, port=0, journal=tmp_path / "j.log") as board:
        follower = threading.Thread(target=board.follow, args=(stop,), daemon=True)
        follower.start()
        api = board.url.replace("/dashboard/", "/api/studies/0")
        n = len(get_json(api)["trials"])
        store = RunStore(finished_run)  # the search records a new member's first result
        member = SimpleNamespace(
            member_id=1000, config=dict(SMALL_CONFIG), seed=0, num_params=3_000,
            origin="sampled", parents=(), generation=3, bracket=2,
        )  # fmt: skip
        store.add_member(member)
        result = Result(0.7, 0.5, 0.6, 3_000, 2, 1.0, Status.OK)
        store.record_evaluation(
            1000, result, generation=3, bracket=2, rung=0, elapsed=1.0, state={}
        )
        recorded = time.monotonic()
        store.close()
        wait_for("the new trial", lambda: len(get_json(api)["trials"]) == n + 1, 5, every=0.2)
        print(f"served {time.monotonic() - recorded:.1f} s after it was recorded")
        stop.set()
        follower.join(timeout=10)


# -- the real browser test ---------------------------------------------------------------------------


def _browser() -> Any:
    """Headless Chromium through Selenium and the system chromedriver, or a skip with the reason."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -r requirements-dev.txt)")
    chromium = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None,
    )
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        reason = "Chromium or chromedriver not found (apt-get install chromium chromium-driver)"
        print(f"SKIPPED: {reason}")
        pytest.skip(reason)
    return webdriver, Service, chromium, driver


@contextlib.contextmanager
def evidence(browser: Any, shots: Path, process: subprocess.Popen[str]) -> Iterator[None]:
    """On a failure: a screenshot, the page's text and the dashboard's state in the report."""
    try:
        yield
    except BaseException as exc:
        with contextlib.suppress(Exception):
            browser.save_screenshot(str(shots / "failure.png"))
        text = ""
        with contextlib.suppress(Exception):
            text = page_text(browser)[:2000]
        exc.add_note(
            f"page {browser.current_url}:\n{text}\n(dashboard running: {process.poll() is None})"
        )
        raise


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    webdriver, Service, binary, driver = _browser()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={profile}", "--window-size=1400,1000",
    ):  # fmt: skip
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    browser.set_page_load_timeout(60)
    try:
        yield browser
    finally:
        browser.quit()


def page_text(browser: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.TAG_NAME, "body").text)


def shown_trials(browser: Any, url: str) -> int:
    """The trial count the study's trial list shows ("N Trials"), after loading ``url`` again.
    The page says "0 Trials" until its data arrives; every study here has trials."""

    def count() -> int:
        found = re.search(r"(\d+) Trials", page_text(browser))
        return int(found.group(1)) if found else 0

    browser.get(url)
    return int(wait_for("the trial list", count, 30))


def trial_page(browser: Any) -> str:
    """The text of a trial's page once its details are shown, else ""."""
    text = page_text(browser)
    return text if "Intermediate Values" in text and "Started At" in text else ""


@pytest.mark.slow  # a subprocess CLI
def test_the_browser_follows_a_live_search(tmp_path: Path) -> None:
    _browser()  # skips early, before the search, where the browser is missing
    if not HAS_DASHBOARD:
        pytest.skip("optuna and optuna-dashboard (evoband[dashboard]) not installed")
    data = make_image_folder(tmp_path / "tiny", n_train=16)
    run, journal, shots = tmp_path / "flowers-live", tmp_path / "journal.log", tmp_path / "shots"
    shots.mkdir()
    log = (tmp_path / "search.log").open("w")  # not a pipe: nobody reads it while it runs
    search = subprocess.Popen(
        ["nice", "-n", "19", *script(
            "AutoML.py", "--data_dir", str(data), "--space", "course", "-s", "20000", "-p", "0.1",
            "--pop_size", "3", "--hyperband", "True", "--min_epochs", "1", "-e", "2",
            "--cv_folds", "2", "--workers", "1", "--max_evaluations", "5000", "--run_dir", str(run),
            "--no_progress",
        )],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=log, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    try:
        wait_for("3 evaluations in the ledger", lambda: len(load_run(run)) >= 3, 180)
        with (
            dashboard_process(run, journal) as (dashboard, base),
            chromium(tmp_path / "profile") as browser,
            evidence(browser, shots, dashboard),
        ):
            browser.get(f"{base}/dashboard")
            wait_for("the study listed", lambda: "flowers-live" in page_text(browser), 90)
            browser.save_screenshot(str(shots / "studies.png"))
            study_id = get_json(f"{base}/api/studies")["study_summaries"][0]["study_id"]
            trials_url = f"{base}/dashboard/studies/{study_id}/trials"

            # the search held still: the page shows exactly the ledger's members
            search.send_signal(signal.SIGSTOP)
            try:
                held, stopped = members(run), time.monotonic()
                wait_for(
                    "the mirror to catch up", lambda: len(
                        get_json(f"{base}/api/studies/{study_id}")["trials"]) == held, 60,
                )  # fmt: skip
                print(f"mirrored {held} members {time.monotonic() - stopped:.1f} s after the stop")
                wait_for("the page's count", lambda: shown_trials(browser, trials_url) == held, 90)
                browser.save_screenshot(str(shots / "trials.png"))

                # one trial's parameters and intermediate values
                frame = load_run(run).sort_values(["finished", "member_id"], kind="stable")
                first = frame.drop_duplicates("member_id")["member_id"].tolist()
                number, member = next(
                    (i, m) for i, m in enumerate(first)
                    if (frame.query("member_id == @m")["status"] == "ok").any()
                )  # fmt: skip
                ok = frame.query("member_id == @member and status == 'ok'")
                config = ok["config"].iloc[0]
                browser.get(f"{trials_url}?numbers={number}")
                text = wait_for("the trial's page", lambda: trial_page(browser), 60)
                browser.save_screenshot(str(shots / "trial.png"))
                assert f"Trial {number} " in text
                values = re.search(
                    r"Intermediate Values\n(.*?)\nParameter\n(.*?)\nStarted At", text, re.S
                )
                assert values, text
                shown = dict(line.split(" ") for line in values.group(1).splitlines())
                assert {int(k): float(v) for k, v in shown.items()} == pytest.approx(
                    dict(zip(ok["epochs"].astype(int), ok["top3"].astype(float), strict=True))
                )
                params = values.group(2).splitlines()
                for key in ("batch_size", "n_conv_layers", "n_fc_layers", "optimizer"):
                    assert f"{key} {config[key]}" in params, params
                assert f"member_id {member}" in text
            finally:
                search.send_signal(signal.SIGCONT)

            # the search goes on: a reload shows more trials
            wait_for("new members in the ledger", lambda: members(run) > held, 120)
            wait_for("the count to grow", lambda: shown_trials(browser, trials_url) > held, 90)
            browser.save_screenshot(str(shots / "grown.png"))
    finally:
        if search.poll() is None:
            search.terminate()
        try:
            search.wait(timeout=60)
        except subprocess.TimeoutExpired:
            search.kill()
            search.wait()
        log.close()
