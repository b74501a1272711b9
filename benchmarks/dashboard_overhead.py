"""Does a search slow down while it is watched? Interleaved pairs of the same search (the demo's:
``AutoML.py --pop_size 6 --hyperband True --max_time 120``, the pair's seed), one with
``evaluation.py RUN --dashboard`` following it and headless Chromium reloading its trial list every
``--reload`` seconds (or, with ``--live``, loading it once and leaving it open, as a user watching
does: the page's own Live Update fetches new trials every 10 s), one without; the order alternates
from pair to pair. Throughput is the
evaluations (and trained epochs x folds) per minute of search, from the ledger; the table gives
each pair's ratio watched / unwatched and their median. Run from the repository root::

    python benchmarks/dashboard_overhead.py --pairs 3
    python benchmarks/dashboard_overhead.py --pairs 3 --live --out benchmarks/results/dashboard_overhead_live.csv

Needs the extra ``evoband[dashboard]``, Selenium, and Debian's chromium and chromium-driver.
Prints a table and writes ``benchmarks/results/dashboard_overhead.csv`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench_common import REPO_ROOT, RESULTS_DIR, write_csv
from evoband import load_run


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def browser_polling(url: str, every: float | None, profile: Path) -> Iterator[dict[str, Any]]:
    """Headless Chromium loading ``url`` again every ``every`` seconds until the block ends
    (once, when ``every`` is None: the page updates itself); yields a dict it fills: the
    page-load seconds (``loads``) and, at the end, the trial count the page shows."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for arg in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        f"--user-data-dir={profile}", "--window-size=1400,1000",
    ):  # fmt: skip
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    seen: dict[str, Any] = {"loads": [], "shown_trials": None}
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            with contextlib.suppress(Exception):
                browser.get(url)
                seen["loads"].append(time.perf_counter() - start)
            if every is None:
                return
            stop.wait(every)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(timeout=60)
        with contextlib.suppress(Exception):
            shown = re.search(r"(\d+) Trials", browser.find_element("tag name", "body").text)
            seen["shown_trials"] = int(shown.group(1)) if shown else None
        browser.quit()


def throughput(run: Path) -> dict[str, float]:
    """Evaluations and epoch-folds per minute of search, from the run's ledger."""
    frame = load_run(run)
    started = float((frame["finished"] - frame["seconds"]).min())
    minutes = (float(frame["finished"].max()) - started) / 60.0
    epoch_folds = 0  # continuation: an evaluation trains from the member's previous budget on
    for _, member in frame.sort_values("epochs").groupby("member_id"):
        previous = 0
        for folds, epochs in zip(member["n_folds"], member["epochs"], strict=True):
            epoch_folds += int(folds) * (int(epochs) - previous)
            previous = int(epochs)
    return {
        "evaluations": len(frame),
        "members": int(frame["member_id"].nunique()),
        "search_minutes": round(minutes, 3),
        "evaluations_per_minute": len(frame) / minutes,
        "epoch_folds_per_minute": epoch_folds / minutes,
    }


def wait_for_study(base: str, timeout: float = 60) -> int:
    """The mirrored study's id once the dashboard serves it."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
            with urllib.request.urlopen(f"{base}/api/studies", timeout=5) as response:
                return int(json.load(response)["study_summaries"][0]["study_id"])
        if time.monotonic() > deadline:
            raise RuntimeError(f"the dashboard at {base} did not serve the study in {timeout} s")
        time.sleep(0.5)


def run_search(
    run: Path, seed: int, max_time: float, watched: bool, reload: float | None, browser: bool = True
) -> dict[str, Any]:
    """One search; with ``watched``, followed by the dashboard (and, with ``browser``, a
    polling browser)."""
    search = subprocess.Popen(
        [
            sys.executable, "src/AutoML.py", "--pop_size", "6", "--hyperband", "True",
            "--max_time", str(max_time), "--seed", str(seed), "--run_dir", str(run), "--no_progress",
        ],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    row: dict[str, Any] = {
        "seed": seed,
        "watched": watched,
        "run_dir": str(run.relative_to(REPO_ROOT)),
    }
    if not watched:
        row["exit"] = search.wait()
        return row | throughput(run)
    while not (run / "history.sqlite").exists() and search.poll() is None:
        time.sleep(0.2)
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        board = subprocess.Popen(
            [
                sys.executable, "src/evaluation.py", str(run), "--dashboard", "--port", str(port),
                "--journal", str(Path(scratch) / "journal.log"),
            ],
            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # started from a script in the background, it would inherit SIGINT ignored
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        try:
            study_id = wait_for_study(f"http://127.0.0.1:{port}")
            url = f"http://127.0.0.1:{port}/dashboard/studies/{study_id}/trials"
            if browser:
                with browser_polling(url, reload, Path(scratch) / "profile") as seen:
                    row["exit"] = search.wait()
                    time.sleep(12 if reload is None else 0)  # one more Live Update after the end
                loads = seen["loads"]
                row["page_loads"] = len(loads)
                row["page_load_seconds"] = round(statistics.median(loads), 2) if loads else None
                row["shown_trials_at_end"] = seen["shown_trials"]
            else:
                row["exit"] = search.wait()
        finally:
            board.send_signal(signal.SIGINT)
            row["dashboard_exit"] = board.wait(timeout=60)
    return row | throughput(run)


def main(argv: list[str] | None = None) -> None:
    """Run the pairs, print a table and write the CSV."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3, help="interleaved pairs (default 3)")
    parser.add_argument("--max_time", type=float, default=120, help="seconds per search (120)")
    parser.add_argument("--reload", type=float, default=5, help="seconds between page loads (5)")
    parser.add_argument(
        "--live",
        action="store_true",
        help="load the page once and let its Live Update poll (every 10 s) instead of reloading",
    )
    parser.add_argument(
        "--no_browser",
        action="store_true",
        help="watched runs without the browser (dashboard alone)",
    )
    parser.add_argument(
        "--out", default=None, help="CSV (default benchmarks/results/dashboard_overhead.csv)"
    )
    args = parser.parse_args(argv)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    rows = []
    for pair in range(args.pairs):
        order = (True, False) if pair % 2 == 0 else (False, True)
        for watched in order:
            run = (
                REPO_ROOT
                / "runs"
                / f"dashboard_overhead_{stamp}"
                / f"pair{pair}_{'watched' if watched else 'alone'}"
            )
            row = {"pair": pair} | run_search(
                run,
                pair,
                args.max_time,
                watched,
                None if args.live else args.reload,
                not args.no_browser,
            )
            print(row, flush=True)
            rows.append(row)
    out = Path(args.out) if args.out else RESULTS_DIR / "dashboard_overhead.csv"
    write_csv(out, rows)
    print(
        "\n| pair | evaluations/min watched | alone | ratio | epoch-folds/min watched | alone | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    ratios = []
    for pair in range(args.pairs):
        w, a = (
            next(r for r in rows if r["pair"] == pair and r["watched"] is flag)
            for flag in (True, False)
        )
        ratio = w["evaluations_per_minute"] / a["evaluations_per_minute"]
        work = w["epoch_folds_per_minute"] / a["epoch_folds_per_minute"]
        ratios.append((ratio, work))
        print(
            f"| {pair} | {w['evaluations_per_minute']:.1f} | {a['evaluations_per_minute']:.1f} | {ratio:.3f} "
            f"| {w['epoch_folds_per_minute']:.0f} | {a['epoch_folds_per_minute']:.0f} | {work:.3f} |"
        )
    print(
        f"\nmedian ratio: evaluations {statistics.median(r for r, _ in ratios):.3f}, "
        f"epoch-folds {statistics.median(w for _, w in ratios):.3f}"
    )
    print(f"Wrote {out}")


if __name__ == "__main__":
    main()
