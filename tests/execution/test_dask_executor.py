"""The folds of an evaluation on a Dask cluster: serial results, dead workers, existing clusters.

Three clusters serve the file: LocalClusters that :class:`DaskExecutor` starts itself, and a
scheduler with two workers started as separate processes (``python -m distributed.cli...``),
reached by address or scheduler file like a cluster of other machines. Every search is tiny
(8x8 images, 2 folds, 1-2 epochs, a few evaluations).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dask
import psutil
import pytest

import AutoML
from evoband.core._errors import ConfigError
from evoband.execution._dask import DaskExecutor
from evoband.execution._signals import next_finished
from evoband.search._hooks import BaseCallback, SearchView
from evoband.search._member import Member
from evoband.search._run import run_search
from evoband.search._settings import SearchSettings
from evoband.search._setup import SearchConfig
from evoband.training._data import load_data
from evoband.training._results import Result, Status
from evoband.training._target import Task, evaluate
from helpers import (
    REPO_ROOT,
    SMALL_CONFIG,
    call_cli,
    error_lines,
    make_image_folder,
    read_json,
    tiny_search_config,
)

SEED = 3
CAP = 5


def search_config(data_dir: Path, run_dir: Path, **options) -> SearchConfig:
    settings = SearchSettings(
        pop_size=3,
        hyperband=True,
        min_epochs=1,
        max_epochs=2,
        eta=2,
        max_evaluations=CAP,
        seed=SEED,
        eval_time_limit=600,  # time limits depend on the machine's load: keep them out
    )
    return tiny_search_config(settings, data_dir, run_dir, **options)


def ledger(run_dir: Path) -> tuple[list[tuple], list[tuple]]:
    """The evaluations and the folds of a run's ledger, with their member and budget."""
    conn = sqlite3.connect(run_dir / "history.sqlite")
    try:
        evals = conn.execute(
            "SELECT e.member_id, m.config, e.epochs, e.status, e.top3, e.precision, e.num_params "
            "FROM evaluations e JOIN members m USING (member_id) ORDER BY e.member_id, e.epochs"
        ).fetchall()
        folds = conn.execute(
            "SELECT member_id, epochs, fold, status, top3, precision, loss "
            "FROM folds ORDER BY member_id, epochs, fold"
        ).fetchall()
    finally:
        conn.close()
    return evals, folds


def assert_same_ledger(a: Path, b: Path) -> None:
    for rows_a, rows_b in zip(ledger(a), ledger(b), strict=True):
        assert len(rows_a) == len(rows_b)
        for row_a, row_b in zip(rows_a, rows_b, strict=True):
            assert row_a == pytest.approx(row_b, abs=1e-6)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("data") / "tiny")


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """The reference: the search of :func:`search_config` in this process."""
    run_dir = tmp_path_factory.mktemp("serial") / "run"
    report = run_search(search_config(data_dir, run_dir, workers=1))
    assert report.n_evaluations == CAP
    return run_dir


# -- a cluster of separate processes -------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(path: Path, procs: list[subprocess.Popen], timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        dead = [p.args for p in procs if p.poll() is not None]
        assert not dead and time.monotonic() < end, f"cluster did not start: {dead}"
        time.sleep(0.2)


@contextlib.contextmanager
def cluster_processes(
    folder: Path, workers: int = 2, tls: list[str] | None = None
) -> Iterator[Path]:
    """A scheduler and ``workers`` single-thread workers, each started as a process (with the
    ``--tls-*`` flags ``tls`` and the tls protocol, when given); their scheduler file. All of
    them (and the workers' own child processes) are gone afterwards."""
    file = folder / "scheduler.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)]))
    env["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"] = "2"
    common = {"cwd": folder, "env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    secure = [] if tls is None else ["--protocol", "tls", *tls]
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1"]
        + ["--port", "0", "--no-dashboard", "--scheduler-file", str(file), *secure],
        **common,
    )
    procs = [scheduler]
    try:
        _wait_for(file, procs)
        for i in range(workers):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file"]
                    + [str(file), "--nthreads", "1", "--no-dashboard", "--name", f"w{i}"]
                    + ["--local-directory", str(folder / f"w{i}")]
                    + ["--preload", "evoband.execution._dask", *(tls or [])],
                    **common,
                )
            )
        yield file
    finally:
        family = [psutil.Process(p.pid) for p in procs if p.poll() is None]
        family += [c for p in family for c in p.children(recursive=True)]
        for group in (procs[1:], procs[:1]):  # the workers, then the scheduler
            for p in group:
                p.send_signal(signal.SIGTERM)
            psutil.wait_procs([q for q in family if q.pid in {p.pid for p in group}], timeout=30)
        _gone, alive = psutil.wait_procs(family, timeout=30)
        for p in alive:
            p.kill()
        assert not alive, f"cluster processes still alive after SIGTERM: {alive}"


@pytest.fixture(scope="module")
def process_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A scheduler and two single-thread workers in processes; their scheduler file."""
    with cluster_processes(tmp_path_factory.mktemp("cluster")) as file:
        yield file


def _install_killer(client, switch: Path, fold: int | None = None) -> None:
    """Make the cluster's current workers SIGKILL themselves in the first fold job (of ``fold``,
    if given) that starts once ``switch`` exists; only one job in all claims the kill (and writes
    its worker's PID into ``<switch>.claimed``). Workers that join later (the restarted one)
    train normally."""

    def install(switch: str, fold: int | None) -> None:
        import evoband.execution._dask as module

        original = module.run_fold

        def run_fold(job, task, on_epoch=None):
            if os.path.exists(switch) and fold in (None, job.fold):
                try:
                    claim = os.open(switch + ".claimed", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    pass
                else:
                    os.write(claim, str(os.getpid()).encode())
                    os.close(claim)
                    os.kill(os.getpid(), signal.SIGKILL)
            return original(job, task, on_epoch)

        module.run_fold = run_fold

    client.run(install, str(switch), fold)


def _worker_pids(client) -> set[int]:
    return set(client.run(os.getpid).values())


# -- executor ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_local_cluster_folds_equal_serial_and_a_dead_worker_fails_only_its_fold(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    task = Task(load_data(data_dir), cv_folds=3, split_seed=1)
    serial = evaluate(SMALL_CONFIG, 3, task=task, seed=4)
    executor = DaskExecutor(2, retries=0)
    try:
        executor.start(task)
        client = executor.client
        assert client is not None
        assert set(client.run(lambda: __import__("torch").get_num_threads()).values()) == {1}
        # the nanny's allocator setting would slow training down 1.4x (evoband.training._allocator)
        trim = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
        assert set(trim.values()) == {None} and "MALLOC_TRIM_THRESHOLD_" not in os.environ
        profiling = client.run(
            lambda: __import__("dask").config.get("distributed.worker.profile.enabled")
        )
        assert set(profiling.values()) == {False}  # the quieter LocalCluster settings reach them
        evaluate(
            SMALL_CONFIG, 1, task=task, seed=4, checkpoint_dir=tmp_path / "ckpt", executor=executor
        )
        on_dask = evaluate(
            SMALL_CONFIG,
            3,
            task=task,
            seed=4,
            checkpoint_dir=tmp_path / "ckpt",
            executor=executor,
            deadline=time.monotonic() + 600,
        )
        # a worker dies in fold 1's job; with retries=0 the fold is recorded failed at once
        _install_killer(client, tmp_path / "kill", fold=1)
        (tmp_path / "kill").touch()
        killed = evaluate(SMALL_CONFIG, 3, task=task, seed=4, executor=executor)
        processes = [psutil.Process(p) for p in _worker_pids(client)]
        tuned = client.run(
            lambda: __import__("evoband.training._allocator").training._allocator._tuned
        )
        assert set(tuned.values()) == {platform.libc_ver()[0] == "glibc"}
    finally:
        executor.close()
    assert [f.fold for f in on_dask.folds] == [0, 1, 2]
    for a, b in zip(serial.folds, on_dask.folds, strict=True):
        assert (a.top3, a.precision, a.epochs, b.status) == (b.top3, b.precision, b.epochs, "ok")
        assert a.loss == pytest.approx(b.loss, abs=1e-6)
        assert b.model is None and b.checkpoint_sha256
    assert (tmp_path / "kill.claimed").exists()
    assert [f.status for f in killed.folds] == [Status.OK, Status.FAILED, Status.OK]
    assert "worker" in killed.folds[1].message and "died" in killed.folds[1].message
    assert killed.folds[0].precision == serial.folds[0].precision
    assert killed.status == Status.FAILED
    assert executor.client is None
    _gone, alive = psutil.wait_procs(processes, timeout=30)
    assert not alive, "the LocalCluster's workers outlived close()"


def test_executor_arguments_checked() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        DaskExecutor()
    with pytest.raises(ConfigError, match="exactly one"):
        DaskExecutor(2, scheduler_address="tcp://127.0.0.1:8786")
    with pytest.raises(ConfigError, match="workers"):
        DaskExecutor(0)
    with pytest.raises(ConfigError, match="tcp://host:port"):
        DaskExecutor(scheduler_address="127.0.0.1:8786")


@pytest.mark.parametrize(
    "options, words",
    [
        ({"scheduler_address": "tcp://a:1", "scheduler_file": "f.json"}, "either"),
        ({"scheduler_address": "tcp://host"}, "tcp://host:port"),
        ({"scheduler_address": "http://host:8786"}, "tcp://host:port"),
    ],
)
def test_search_config_checks_the_cluster_options(options: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        SearchConfig(**options)


# -- searches ------------------------------------------------------------------------------------


class InterruptAfter(BaseCallback):
    """Ctrl-C after ``n`` evaluations; notes the processes this one had started by then."""

    def __init__(self, n: int) -> None:
        self.n, self.seen = n, 0
        self.before = {p.pid for p in psutil.Process().children(recursive=True)}
        self.started: list[psutil.Process] = []

    def on_evaluation(self, search: SearchView, member: Member, result: Result) -> None:
        self.seen += 1
        if self.seen == self.n:
            children = psutil.Process().children(recursive=True)
            self.started = [  # multiprocessing's resource tracker lives as long as this process
                p
                for p in children
                if p.pid not in self.before and "resource_tracker" not in " ".join(p.cmdline())
            ]
            raise KeyboardInterrupt


@pytest.mark.slow
def test_search_with_the_dask_executor_equals_the_serial_search(
    serial_run: Path, data_dir: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    interrupt = InterruptAfter(2)
    with pytest.raises(KeyboardInterrupt):
        run_search(search_config(data_dir, run_dir, workers=2), [interrupt])
    assert len(interrupt.started) >= 2  # the LocalCluster's worker processes
    _gone, alive = psutil.wait_procs(interrupt.started, timeout=30)
    assert not alive, "the LocalCluster outlived the interrupted search"
    assert read_json(run_dir / "run.json")["stopped_by"] == "interrupted"
    config = search_config(data_dir, run_dir, workers=2, resume=True)
    report = run_search(config)
    assert report.n_evaluations == CAP
    assert_same_ledger(run_dir, serial_run)
    run = read_json(run_dir / "run.json")
    assert (run["executor"], run["workers"], run["tls"]) == ("dask", 2, True)
    assert run["search"] == read_json(serial_run / "run.json")["search"]  # not search-defining
    # the executor is not part of the search: the run resumes serially (all replayed)
    resumed = run_search(search_config(data_dir, run_dir, workers=1, resume=True))
    assert resumed.n_evaluations == CAP
    assert read_json(run_dir / "run.json")["executor"] == "serial"
    assert_same_ledger(run_dir, serial_run)


class KillAfterFirstEvaluation(BaseCallback):
    """Arms the workers' kill switch once the first evaluation is recorded."""

    def __init__(self, switch: Path) -> None:
        self.switch = switch

    def on_evaluation(self, search: SearchView, member: Member, result: Result) -> None:
        self.switch.touch()


@pytest.mark.slow
def test_search_survives_a_worker_killed_mid_evaluation(
    process_cluster: Path, serial_run: Path, data_dir: Path, tmp_path: Path
) -> None:
    from distributed import Client

    with Client(scheduler_file=str(process_cluster), timeout=30) as client:
        client.wait_for_workers(2, timeout=120)
        before = _worker_pids(client)
        _install_killer(client, tmp_path / "kill")
        run_dir = tmp_path / "run"
        config = search_config(data_dir, run_dir, scheduler_file=str(process_cluster))
        report = run_search(config, callbacks=[KillAfterFirstEvaluation(tmp_path / "kill")])
    assert (tmp_path / "kill.claimed").exists(), "no worker was killed"
    killed = int((tmp_path / "kill.claimed").read_text())
    assert killed in before and not psutil.pid_exists(killed)
    # the dead worker's fold ran again elsewhere: the search equals the serial one
    assert report.n_evaluations == CAP
    assert_same_ledger(run_dir, serial_run)


@pytest.mark.slow
def test_automl_on_an_existing_cluster(
    process_cluster: Path, data_dir: Path, tmp_path: Path
) -> None:
    from distributed import Client

    address = json.loads(process_cluster.read_text())["address"]
    with Client(address, timeout=30) as client:
        client.wait_for_workers(2, timeout=120)  # a worker killed by an earlier test restarts
    common = ["--data_dir", str(data_dir), "--hyperband", "--space", "course", "--pop_size", "3"]
    common += ["--epochs", "2", "--min_epochs", "1", "-s", "20000", "-p", "0.1", "--no_progress"]
    common += ["--cv_folds", "2", "--eval_time_limit", "600"]
    code, stdout, stderr = call_cli(
        AutoML.main,
        [*common, "--scheduler_address", address, "--max_evaluations", "3"]
        + ["--run_dir", str(tmp_path / "a")],
    )
    assert code == 0, stderr
    assert "Best feasible configuration" in stdout
    run = read_json(tmp_path / "a" / "run.json")
    assert (run["executor"], run["workers"], run["scheduler"]) == ("dask", 2, address)
    assert len(read_json(tmp_path / "a" / "automl_run.json")) == 3
    code, _, stderr = call_cli(
        AutoML.main,
        [*common, "--scheduler_file", str(process_cluster), "--max_evaluations", "1"]
        + ["--run_dir", str(tmp_path / "b")],
    )
    assert code == 0, stderr
    assert read_json(tmp_path / "b" / "run.json")["scheduler"] == str(process_cluster)
    with Client(address, timeout=30) as client:  # the workers hold no copy of the data any more
        plugins = client.run(lambda dask_worker: list(dask_worker.plugins))
    assert not any(p.startswith("evoband") for names in plugins.values() for p in names)


def _evoband_plugins(client) -> tuple[list[str], list[str]]:
    """The evoband plugins (workers' task plugins; the scheduler's worker and scheduler plugins)."""
    on_workers = client.run(lambda dask_worker: list(dask_worker.plugins))
    on_scheduler = client.run_on_scheduler(
        lambda dask_scheduler: [*dask_scheduler.worker_plugins, *dask_scheduler.plugins]
    )
    return (
        [p for names in on_workers.values() for p in names if p.startswith("evoband")],
        [p for p in on_scheduler if p.startswith("evoband")],
    )


@pytest.mark.slow
def test_a_killed_search_leaves_no_training_set_on_an_existing_cluster(
    process_cluster: Path, data_dir: Path, tmp_path: Path
) -> None:
    from distributed import Client

    address = json.loads(process_cluster.read_text())["address"]
    command = [sys.executable, str(REPO_ROOT / "src" / "AutoML.py"), "--data_dir", str(data_dir)]
    command += ["--run_dir", str(tmp_path / "run"), "--scheduler_address", address]
    command += ["--space", "course", "--epochs", "4", "-s", "20000", "--no_progress"]
    with Client(address, timeout=30) as client:
        client.wait_for_workers(2, timeout=120)
        search = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            end = time.monotonic() + 120
            while not _evoband_plugins(client)[0]:  # the training set reached the workers
                assert search.poll() is None and time.monotonic() < end, "the search never started"
                time.sleep(0.2)
        finally:
            search.kill()
            search.wait(timeout=30)
        end = time.monotonic() + 30
        while any(_evoband_plugins(client)) and time.monotonic() < end:
            time.sleep(0.2)
        assert _evoband_plugins(client) == ([], [])


@pytest.mark.slow  # a scheduler and two workers in processes
def test_another_client_in_the_process_does_not_delay_the_results(
    process_cluster: Path, data_dir: Path
) -> None:
    """Results are awaited on the executor's own client, not on the process's current one
    (which only notices them on its periodic ticks, a second or more per evaluation)."""
    from distributed import Client

    task = Task(load_data(data_dir), cv_folds=2, split_seed=1)
    executor = DaskExecutor(scheduler_file=process_cluster)
    with Client(scheduler_file=str(process_cluster), timeout=30):  # the current client
        try:
            executor.start(task)
            evaluate(SMALL_CONFIG, 1, task=task, seed=0, executor=executor)  # warm-up
            start = time.monotonic()
            for seed in range(6):
                assert evaluate(SMALL_CONFIG, 1, task=task, seed=seed, executor=executor).ok
            seconds = time.monotonic() - start
        finally:
            executor.close()
    assert seconds < 3, f"6 tiny evaluations took {seconds:.1f} s"


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--scheduler_address", "tcp://127.0.0.1:{port}"], "Cannot reach the Dask scheduler"),
        (["--scheduler_address", "localhost"], "tcp://host:port"),
        (["--scheduler_file", "{tmp}/none.json"], "does not exist"),
        (["--scheduler_file", "f.json", "--scheduler_address", "tcp://a:1"], "not allowed"),
    ],
    ids=["refused", "malformed", "no_file", "both"],
)
def test_bad_cluster_flags_are_one_error_line_and_write_nothing(
    flags: list[str], words: str, data_dir: Path, tmp_path: Path
) -> None:
    flags = [f.format(port=_free_port(), tmp=tmp_path) for f in flags]
    run_dir = tmp_path / "run"
    argv = ["--data_dir", str(data_dir), "--run_dir", str(run_dir), "--no_progress", *flags]
    start = time.monotonic()
    code, stdout, stderr = call_cli(AutoML.main, argv)
    assert code == 2, stdout + stderr
    lines = error_lines(stderr)
    assert len(lines) == 1 and words in lines[0], stderr
    assert "Traceback" not in stderr
    assert not run_dir.exists()
    assert time.monotonic() - start < 30


# --- signals while waiting for a fold ------------------------------------------------------------


class _Stop(Exception):
    pass


class _SignalledWhileAsked:
    """Stands in for ``distributed.as_completed``: every call into it receives SIGTERM, as when
    the signal comes while the main thread is inside Dask's locks."""

    def __init__(self, ready_after: int) -> None:
        self.calls, self.ready_after, self.raised_inside = 0, ready_after, False

    def has_ready(self) -> bool:
        self.calls += 1
        try:
            signal.raise_signal(signal.SIGTERM)
            return self.calls >= self.ready_after
        except _Stop:
            self.raised_inside = True
            raise

    def __next__(self) -> str:
        return "future"


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop


@pytest.mark.parametrize("ready_after", [1, 3])
def test_a_signal_while_waiting_for_a_fold_is_raised_outside_dask(ready_after: int) -> None:
    """An exception from a signal handler inside ``as_completed`` can leave a lock of it held,
    and closing the cluster then hangs on it (seen as a SIGTERMed search that never exited)."""
    waiting = _SignalledWhileAsked(ready_after)
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        with pytest.raises(_Stop):
            next_finished(waiting, poll=0.01)  # type: ignore[arg-type]
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not waiting.raised_inside
    assert waiting.calls == 1  # delivered at once, not after a fold finished


@pytest.mark.slow  # a LocalCluster
def test_the_local_cluster_refuses_clients_without_its_credentials() -> None:
    """Its workers unpickle what they are sent: nobody else on the machine may reach them."""
    from distributed import Client
    from distributed.comm.core import CommClosedError
    from distributed.security import Security

    executor = DaskExecutor(1)
    try:
        address = executor.connect().scheduler.address
        assert address.startswith("tls://")
        with pytest.raises(TypeError, match="TLS expects"):  # no TLS configured at all
            Client(address, timeout=5)
        with pytest.raises((OSError, CommClosedError)):  # plain TCP to the same port
            Client(address.replace("tls://", "tcp://"), timeout=5)
        with pytest.raises((OSError, CommClosedError)):  # TLS, but credentials of its own
            Client(address, security=Security.temporary(), timeout=5)
        assert executor._cluster is not None
        with Client(address, security=executor._cluster.security, timeout=10) as allowed:
            assert len(allowed.nthreads()) == 1
    finally:
        executor.close()


@pytest.mark.slow  # a scheduler and a worker in processes
def test_automl_on_a_tls_cluster_with_dasks_own_credentials(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distributed import Client
    from distributed.security import Security

    credentials = Security.temporary()  # PEM text: one self-signed certificate for everyone
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "cert.pem", "key.pem"))
    ca.write_text(str(credentials.tls_ca_file))
    cert.write_text(str(credentials.tls_client_cert))
    key.write_text(str(credentials.tls_client_key))
    tls = ["--tls-ca-file", str(ca), "--tls-cert", str(cert), "--tls-key", str(key)]
    argv = ["--data_dir", str(data_dir), "--hyperband", "--space", "course", "--pop_size", "2"]
    argv += ["--epochs", "1", "--min_epochs", "1", "-s", "20000", "-p", "0.1", "--no_progress"]
    argv += ["--cv_folds", "2", "--eval_time_limit", "600", "--max_evaluations", "1"]
    with cluster_processes(tmp_path, workers=1, tls=tls) as file:
        address = json.loads(file.read_text())["address"]
        assert address.startswith("tls://")
        mine = Security(tls_ca_file=str(ca), tls_client_cert=str(cert), tls_client_key=str(key))
        with Client(address, security=mine, timeout=30) as client:
            client.wait_for_workers(1, timeout=120)  # it imports torch first
        code, _, stderr = call_cli(
            AutoML.main, [*argv, "--scheduler_address", address, "--run_dir", str(tmp_path / "a")]
        )
        assert code == 2 and len(error_lines(stderr)) == 1, stderr
        assert "distributed.comm.tls.ca-file" in stderr and not (tmp_path / "a").exists()
        monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TLS__CA_FILE", str(ca))
        monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT", str(cert))
        monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY", str(key))
        dask.config.refresh()  # the variables, as a fresh process reads them
        try:
            code, _, stderr = call_cli(
                AutoML.main,
                [*argv, "--scheduler_file", str(file), "--run_dir", str(tmp_path / "b")],
            )
        finally:
            monkeypatch.undo()
            dask.config.refresh()
        assert code in (0, 1), stderr
        assert len(read_json(tmp_path / "b" / "automl_run.json")) == 1
