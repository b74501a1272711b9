"""Tests of evoband.analysis, .summary and .significance on hand-made frames and synthetic runs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from evoband import analysis as an
from evoband import retrain, significance, summary
from evoband.constraints import Constraints
from evoband.errors import StoreError
from evoband.hyperband import HyperbandSchedule
from evoband.member import MUTATED, SAMPLED, Member
from evoband.space import DEFAULT_NETWORK
from evoband.store import RunStore
from evoband.target import FoldResult, Result
from helpers import SMALL_CONFIG as HELPER_CONFIG

SMALL_CONFIG: dict[str, Any] = dict(HELPER_CONFIG, batch_size=8, n_channels_fc_0=8)


def write_run(
    run_dir: Path,
    *,
    seed: int = 0,
    random_search: bool = False,
    generations: int = 2,
    max_params: int = 10_000,
    min_precision: float = 0.5,
    data: str | None = None,
) -> Path:
    """A real run directory with a synthetic EA+HB (or RS+HB) history on a 2..8 epoch schedule."""
    rng = np.random.default_rng(seed)
    schedule = HyperbandSchedule(2, 8, 2)
    store = RunStore(run_dir)
    search = {
        "space": "course",
        "max_params": max_params,
        "min_precision": min_precision,
        "cv_folds": 3,
        "data": data or "nowhere",
        "pop_size": 4,
        "hyperband": True,
        "min_epochs": 2,
        "max_epochs": 8,
        "eta": 2,
        "seed": seed,
        "random_search": random_search,
    }
    store.set_run_info({"search": search})
    members: list[Member] = []
    clock = [0.0]
    quality: dict[int, float] = {}

    def new(generation: int, bracket: int | None) -> Member:
        member_id = len(members)
        config = dict(SMALL_CONFIG, n_channels_conv_0=16 + member_id)
        member = Member(
            member_id,
            config,
            seed=member_id,
            num_params=int(rng.choice([3_000, 8_000, 30_000])),
            origin=SAMPLED if generation == 0 or random_search else MUTATED,
            parents=() if generation == 0 else (0,),
            generation=generation,
            bracket=bracket,
        )
        store.add_member(member)
        members.append(member)
        quality[member_id] = float(rng.uniform(0.2, 0.7))
        return member

    def run_eval(
        member: Member, epochs: int, generation: int, bracket: int | None, rung: int | None
    ) -> float:
        clock[0] += float(rng.uniform(5, 15))
        top3 = min(
            1.0, quality[member.member_id] + 0.04 * math.log2(epochs) + float(rng.normal(0, 0.02))
        )
        precision = min(1.0, top3 * float(rng.uniform(0.6, 1.0)))
        status = "diverged" if rng.random() < 0.05 else "ok"
        if status != "ok":
            top3 = precision = 0.0
        result = Result(top3, top3 * 0.6, precision, member.num_params, epochs, 1.0, status)
        member.results[epochs] = result
        store.record_evaluation(
            member.member_id,
            result,
            generation=generation,
            bracket=bracket,
            rung=rung,
            elapsed=clock[0],
            state={},
        )
        return top3

    def end_generation(generation: int, population: list[Member]) -> None:
        accs = [m.result.top3 for m in population if m.result]
        precs = [m.result.precision for m in population if m.result]
        store.record_generation(
            generation,
            {
                "elapsed": clock[0],
                "population": [m.member_id for m in population],
                "avg_acc": float(np.mean(accs)),
                "best_acc": max(accs),
                "avg_prec": float(np.mean(precs)),
                "best_prec": max(precs),
                "best_feasible_acc": None,
                "n_evaluated": 0,
                "n_feasible": 0,
                "epochs_spent": 0,
            },
        )

    population = [new(0, None) for _ in range(4)]
    for m in population:
        run_eval(m, 2, 0, None, None)
    end_generation(0, population)
    for generation in range(1, generations + 1):
        for bracket in schedule.brackets:
            alive = [new(generation, bracket.s) for _ in range(bracket.n_members[0])]
            for rung, (n, budget) in enumerate(
                zip(bracket.n_members, bracket.budgets, strict=True)
            ):
                alive = alive[:n]
                for m in alive:
                    run_eval(m, budget, generation, bracket.s, rung)
                alive.sort(key=lambda m: -(m.result.top3 if m.result else 0.0))
            population = sorted(
                population + alive, key=lambda m: -(m.result.top3 if m.result else 0.0)
            )[:4]
        end_generation(generation, population)
    store.write_run_json(
        {
            "algorithm": "RS+HB" if random_search else "EA+HB",
            "search": search,
            "hyperband": schedule.to_dict(),
            "elapsed_seconds": clock[0] + 1.0,
            "data": {"name": "tiny", "location": data or "nowhere"},
            "arguments": {"image_size": None},
        }
    )
    store.close()
    return run_dir


def frame_of(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A ledger-like frame; unspecified columns take harmless defaults."""
    base = {
        "status": "ok",
        "top1": 0.0,
        "seconds": 1.0,
        "elapsed": 0.0,
        "finished": 0.0,
        "generation": 0,
        "bracket": None,
        "rung": None,
        "epochs": 2,
        "origin": SAMPLED,
        "parents": (),
    }
    out = [{**base, "finished": float(i), "elapsed": float(i), **row} for i, row in enumerate(rows)]
    return pd.DataFrame(out)


LIMITS = Constraints.of(10_000, 0.5)


# -- ranking and constraint classes ----------------------------------------------------------


def test_constraint_classes_match_constraints() -> None:
    frame = frame_of(
        [
            {"member_id": 0, "top3": 0.8, "precision": 0.6, "num_params": 5_000},
            {"member_id": 1, "top3": 0.8, "precision": 0.4, "num_params": 5_000},
            {"member_id": 2, "top3": 0.8, "precision": 0.6, "num_params": 50_000},
            {"member_id": 3, "top3": 0.8, "precision": 0.4, "num_params": 50_000},
            {
                "member_id": 4,
                "top3": 0.8,
                "precision": 0.6,
                "num_params": 5_000,
                "status": "timed_out",
            },
            {
                "member_id": 5,
                "top3": 0.8,
                "precision": 0.5,
                "num_params": 10_000,
            },  # limits are inclusive
        ]
    )
    classes = an.constraint_classes(frame, LIMITS).tolist()
    assert classes == [an.BOTH, an.PARAMS_ONLY, an.PRECISION_ONLY, an.NEITHER, an.NOT_OK, an.BOTH]
    feasible = an.feasible_mask(frame, LIMITS)
    assert feasible.tolist() == [c == an.BOTH for c in classes]


def test_constraint_classes_agree_with_constraints_on_a_synthetic_run(tmp_path: Path) -> None:
    run = an.read_run(write_run(tmp_path / "run", generations=1))
    classes = an.constraint_classes(run.evaluations, run.constraints)
    for row, cls in zip(run.evaluations.to_dict("records"), classes, strict=True):
        result = an.result_of(row)
        violated = {c.name for c in run.constraints.violated(result)}
        expected = {
            frozenset(): an.BOTH,
            frozenset({"min_precision"}): an.PARAMS_ONLY,
            frozenset({"max_params"}): an.PRECISION_ONLY,
            frozenset({"max_params", "min_precision"}): an.NEITHER,
        }[frozenset(violated)]
        assert cls == (expected if result.ok else an.NOT_OK)


def test_optimum_is_feasibility_first_over_each_members_highest_budget() -> None:
    frame = frame_of(
        [
            {
                "member_id": 0,
                "epochs": 2,
                "top3": 0.95,
                "precision": 0.9,
                "num_params": 5_000,
            },  # superseded
            {"member_id": 0, "epochs": 4, "top3": 0.60, "precision": 0.9, "num_params": 5_000},
            {
                "member_id": 1,
                "epochs": 2,
                "top3": 0.99,
                "precision": 0.3,
                "num_params": 5_000,
            },  # infeasible
            {"member_id": 2, "epochs": 2, "top3": 0.70, "precision": 0.6, "num_params": 5_000},
            {
                "member_id": 3,
                "epochs": 2,
                "top3": 0.70,
                "precision": 0.7,
                "num_params": 5_000,
            },  # tie: older wins
        ]
    )
    best = an.optimum(frame, LIMITS)
    assert best is not None and int(best["member_id"]) == 2
    ranked = an.rank(an.member_results(frame), LIMITS)
    assert ranked["member_id"].tolist() == [2, 3, 0, 1]


def test_optimum_without_feasible_member_is_the_most_precise_ok_one() -> None:
    frame = frame_of(
        [
            {"member_id": 0, "top3": 0.9, "precision": 0.2, "num_params": 5_000},
            {"member_id": 1, "top3": 0.1, "precision": 0.45, "num_params": 5_000},
            {
                "member_id": 2,
                "top3": 0.0,
                "precision": 0.9,
                "num_params": 5_000,
                "status": "failed",
            },
        ]
    )
    best = an.optimum(frame, LIMITS)
    assert best is not None and int(best["member_id"]) == 1


def test_optimum_agrees_with_constraints_rank_key(tmp_path: Path) -> None:
    run = an.read_run(write_run(tmp_path / "run", seed=3))
    results = an.member_results(run.evaluations)
    keys = [
        (run.constraints.rank_key(an.result_of(r)), r["member_id"])
        for r in results.to_dict("records")
    ]
    best = an.optimum(run.evaluations, run.constraints)
    assert best is not None and int(best["member_id"]) == min(keys)[1]


# -- traces ----------------------------------------------------------------------------------


def test_best_so_far_is_monotone_and_nan_until_first_feasible() -> None:
    best = an.best_so_far([0.9, 0.3, 0.5, 0.4, 0.8, 0.7], [False, False, True, True, False, True])
    assert np.isnan(best[:2]).all()
    np.testing.assert_allclose(best[2:], [0.5, 0.5, 0.5, 0.7])
    assert an.best_so_far([], []).size == 0


@pytest.mark.parametrize("x", ["elapsed", "evaluations", "epochs"])
def test_best_feasible_trace_is_monotone(tmp_path: Path, x: str, seed: int) -> None:
    run = an.read_run(write_run(tmp_path / "run", seed=seed))
    trace = an.best_feasible_trace(run, x)
    assert len(trace) == len(run.evaluations)
    assert np.all(np.diff(trace["x"]) >= 0)
    values = trace["best"].dropna().to_numpy()
    assert len(values) > 0 and np.all(np.diff(values) >= 0)
    first = int(np.argmax(trace["best"].notna().to_numpy()))
    assert trace["best"].iloc[first:].notna().all()


def test_cumulative_epochs_counts_only_extra_epochs_of_promoted_members() -> None:
    frame = frame_of(
        [
            {"member_id": 0, "epochs": 2},
            {"member_id": 1, "epochs": 2},
            {"member_id": 0, "epochs": 4},
            {"member_id": 0, "epochs": 8},
        ]
    )
    np.testing.assert_allclose(an.cumulative_epochs(frame, folds=3), [6, 12, 18, 30])
    # with the ledger's fold records: member 1's second fold timed out after 1 of 2 epochs
    frame["fold_epochs"] = [{0: 2, 1: 2}, {0: 2, 1: 1}, {0: 4, 1: 4}, {0: 8, 1: 8}]
    np.testing.assert_allclose(an.cumulative_epochs(frame), [4, 7, 11, 19])


def test_epochs_spent_of_a_run_match_its_fold_records(tmp_path: Path) -> None:
    path = tmp_path / "run"
    write_run(path, generations=1)
    store = RunStore(path)
    store.record_fold(0, 2, FoldResult(0, 0.5, 0.3, 0.5, 1.0, 2, 1.0))
    store.record_fold(0, 2, FoldResult(1, 0.5, 0.3, 0.5, 1.0, 1, 1.0, "timed_out"))
    store.close()
    run = an.read_run(path)
    frame = an.chronological(run.evaluations)
    assert frame["member_id"].iloc[0] == 0 and frame["fold_epochs"].iloc[0] == {0: 2, 1: 1}
    spent = an.cumulative_epochs(frame, run.cv_folds)
    assert spent[0] == 3 and spent[1] == 3 + 2 * 3  # member 1 has no fold records: 3 folds x 2


def test_step_on_grid_and_band() -> None:
    grid = np.array([0.0, 1.0, 1.5, 2.0, 3.0, 4.0])
    values = an.step_on_grid([1.0, 2.0], [0.2, 0.5], grid, end=3.0)
    np.testing.assert_allclose(values, [np.nan, 0.2, 0.2, 0.5, np.nan, np.nan])
    b = an.band([np.array([1.0, np.nan, 2.0]), np.array([3.0, 4.0, np.nan])], np.arange(3.0))
    np.testing.assert_allclose(b.mean, [2.0, 4.0, 2.0])
    np.testing.assert_allclose(b.std, [math.sqrt(2.0), 0.0, 0.0])
    assert b.n.tolist() == [2, 1, 1]


# -- Pareto, Spearman, feasible fraction -----------------------------------------------------


def test_pareto_front_known_case() -> None:
    params = [100, 200, 200, 300, 400, 50, 400]
    top3 = [0.5, 0.6, 0.4, 0.6, 0.9, 0.2, 0.9]
    # 200/0.4 is dominated by 100/0.5, 300/0.6 by 200/0.6; the second 400/0.9 duplicates the first.
    assert an.pareto_mask(params, top3).tolist() == [True, True, False, False, True, True, False]
    frame = pd.DataFrame({"num_params": params, "top3": top3})
    front = an.pareto_front(frame)
    assert front["num_params"].tolist() == [50, 100, 200, 400]
    assert np.all(np.diff(front["top3"]) > 0)


def _rungs_frame(rung0: list[float], final: list[float], extra: list[float]) -> pd.DataFrame:
    rows = []
    for i, (a, b) in enumerate(zip(rung0, final, strict=True)):
        rows += [
            {"member_id": i, "epochs": 4, "bracket": 1, "rung": 0, "top3": a},
            {"member_id": i, "epochs": 8, "bracket": 1, "rung": 1, "top3": b},
        ]
    for j, a in enumerate(extra):  # stopped at rung 0
        rows.append({"member_id": 100 + j, "epochs": 4, "bracket": 1, "rung": 0, "top3": a})
    return frame_of([{**r, "precision": 0.5, "num_params": 1} for r in rows])


def test_spearman_per_rung_known_cases() -> None:
    table = an.spearman_per_rung(
        _rungs_frame([0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8], [0.9]), {1: 1}
    )
    assert table[["bracket", "rung", "epochs", "n"]].values.tolist() == [[1, 0, 4, 4]]
    assert table["rho"].iloc[0] == pytest.approx(1.0)
    reverse = an.spearman_per_rung(_rungs_frame([0.1, 0.2, 0.3, 0.4], [0.8, 0.7, 0.6, 0.5], []))
    assert reverse["rho"].iloc[0] == pytest.approx(-1.0)
    rung0, final = [0.3, 0.1, 0.4, 0.2, 0.5], [0.2, 0.1, 0.5, 0.4, 0.3]
    mixed = an.spearman_per_rung(_rungs_frame(rung0, final, []))
    assert mixed["rho"].iloc[0] == pytest.approx(stats.spearmanr(rung0, final).statistic)
    few = an.spearman_per_rung(_rungs_frame([0.1, 0.2], [0.3, 0.4], [0.5, 0.6]))
    assert few["n"].iloc[0] == 2 and math.isnan(few["rho"].iloc[0])
    # the schedule says rung 2 is final and nobody got there: n/a, not a correlation with rung 1
    unfinished = an.spearman_per_rung(_rungs_frame([0.1, 0.2, 0.3], [0.3, 0.4, 0.5], []), {1: 2})
    assert unfinished["n"].tolist() == [0, 0] and unfinished["rho"].isna().all()


def test_feasible_fraction_per_generation() -> None:
    frame = frame_of(
        [
            {"member_id": 0, "generation": 0, "top3": 0.5, "precision": 0.6, "num_params": 1_000},
            {"member_id": 1, "generation": 0, "top3": 0.5, "precision": 0.4, "num_params": 1_000},
            {"member_id": 2, "generation": 1, "top3": 0.5, "precision": 0.6, "num_params": 1_000},
            {
                "member_id": 2,
                "generation": 1,
                "epochs": 4,
                "top3": 0.5,
                "precision": 0.6,
                "num_params": 1_000,
            },
            {"member_id": 3, "generation": 1, "top3": 0.5, "precision": 0.6, "num_params": 99_000},
            {
                "member_id": 4,
                "generation": 1,
                "top3": 0.5,
                "precision": 0.6,
                "num_params": 1_000,
                "status": "diverged",
            },
        ]
    )
    table = an.feasible_fraction(frame, LIMITS)
    assert table["generation"].tolist() == [0, 1]
    assert table["n_evaluations"].tolist() == [2, 4]
    assert table["n_feasible"].tolist() == [1, 2]
    np.testing.assert_allclose(table["fraction"], [0.5, 0.5])


# -- statistical tests -----------------------------------------------------------------------


def test_mcnemar_known_case() -> None:
    # 8 images only A gets right, 2 only B, 5 both, 3 neither: p = P(Bin(10, .5) far from 5) = 0.109375
    a = [True] * 8 + [False] * 2 + [True] * 5 + [False] * 3
    b = [False] * 8 + [True] * 2 + [True] * 5 + [False] * 3
    result = significance.mcnemar(a, b)
    assert (result.b, result.c) == (8, 2)
    assert result.pvalue == pytest.approx(0.109375)
    assert significance.mcnemar([True, False], [True, False]).pvalue == 1.0
    with pytest.raises(ValueError):
        significance.mcnemar([True], [True, False])


def test_wilcoxon_paired_by_seed() -> None:
    a = {1: 0.6, 2: 0.7, 3: 0.8, 4: 0.65, 5: 0.9, 6: 0.75}
    b = {1: 0.5, 2: 0.55, 3: 0.7, 4: 0.6, 5: 0.7, 6: 0.7, 99: 0.1}
    n, stat, p = significance.wilcoxon_paired(a, b)
    assert n == 6 and p == pytest.approx(stats.wilcoxon(list(a.values()), [b[k] for k in a]).pvalue)
    assert math.isnan(significance.wilcoxon_paired({1: 0.5, 2: 0.6}, {1: 0.4, 2: 0.3})[2])


# -- reading runs and summaries --------------------------------------------------------------


def test_read_run_reports_unusable_directories(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        an.read_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="history.sqlite"):
        an.read_run(tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "history.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError):
        an.read_run(tmp_path / "broken")
    RunStore(tmp_path / "fresh").close()
    with pytest.raises(StoreError, match="no evaluations"):
        an.read_run(tmp_path / "fresh")


def test_read_run_takes_constraints_from_run_json_unless_overridden(tmp_path: Path) -> None:
    path = write_run(tmp_path / "run", max_params=12_345, min_precision=0.42)
    run = an.read_run(path)
    assert (run.constraints.max_params.limit, run.constraints.min_precision.limit) == (12_345, 0.42)
    assert run.algorithm == "EA+HB" and run.cv_folds == 3 and run.final_rungs == {2: 2, 1: 1, 0: 0}
    run = an.read_run(path, max_params=99, min_precision=0.9)
    assert (run.constraints.max_params.limit, run.constraints.min_precision.limit) == (99, 0.9)


def test_load_groups_by_algorithm_and_explicit_names(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", seed=1)
    b = write_run(tmp_path / "b", seed=2, random_search=True)
    c = write_run(tmp_path / "x" / "a", seed=3)
    groups, problems = an.load_groups(
        [(None, a), (None, b), ("mine", c), (None, tmp_path / "nope")]
    )
    assert list(groups) == ["EA+HB", "RS+HB", "mine"]
    assert groups["mine"][0].name == "a-2"  # folder names alike: made unique
    assert len(problems) == 1 and "nope" in problems[0]


def test_summary_table_rows(tmp_path: Path) -> None:
    runs = [an.read_run(write_run(tmp_path / f"r{i}", seed=i)) for i in range(3)]
    table = summary.summary_table({"EA+HB": runs})
    assert table["level"].tolist() == ["run", "run", "run", "group"]
    group = table.iloc[-1]
    assert group["cv_top3"] == pytest.approx(table["cv_top3"].iloc[:3].mean())
    assert group["evaluations"] == pytest.approx(np.mean([len(r.evaluations) for r in runs]))
    best = an.best_run(runs)
    assert group["run"] == best.name
    first = table.iloc[0]
    assert first["feasible_rate"] == pytest.approx(
        an.feasible_mask(runs[0].evaluations, runs[0].constraints).mean()
    )
    text = summary.markdown_summary(table)
    assert text.count("\n") == 1 + len(table) and "test top-3" not in text


def test_compact_config_of_the_default_network() -> None:
    text = summary.compact_config(DEFAULT_NETWORK)
    assert text == "conv[457,511,38] k5 GAP fc[27,17] drop0.20 bs290 lr1.7e-03 adamw"
    extended = {
        **DEFAULT_NETWORK,
        "use_BN": True,
        "aug_flip": True,
        "aug_shift": 2,
        "use_weight_decay": True,
        "weight_decay": 1e-4,
        "lr_schedule": "cosine",
        "activation": "relu",
        "train_criterion": "mse",
    }
    assert summary.compact_config(extended).endswith("adamw flip shift2 cosine mse wd0.0001")
    assert " BN GAP " in summary.compact_config(extended)


def _fake_test(run: an.RunData, top3: float, correct: list[bool]) -> retrain.TestResult:
    labels = np.arange(len(correct)) % 3
    predicted = np.where(correct, labels, (labels + 1) % 3)
    return retrain.TestResult(
        run.name, {}, 1, run.seed or 0, top3, 0.5, 0.5, 1, "ok", predicted, labels, ("a", "b", "c")
    )


def test_significance_tests_between_groups(tmp_path: Path) -> None:
    ea = [an.read_run(write_run(tmp_path / f"ea{s}", seed=s, generations=1)) for s in range(3)]
    rs = [
        an.read_run(write_run(tmp_path / f"rs{s}", seed=s, generations=1, random_search=True))
        for s in range(3)
    ]
    a = [True] * 8 + [False] * 2 + [True] * 5 + [False] * 3
    b = [False] * 8 + [True] * 2 + [True] * 5 + [False] * 3
    tests = {r.name: _fake_test(r, 0.7 + 0.05 * i, a) for i, r in enumerate(ea)}
    tests |= {r.name: _fake_test(r, 0.6 + 0.01 * i, b) for i, r in enumerate(rs)}
    table = significance.significance_tests({"EA": ea, "RS": rs}, tests)
    assert table["test"].str.split().str[0].tolist() == ["McNemar", "Wilcoxon"]
    assert table["pvalue"].iloc[0] == pytest.approx(0.109375)
    expected = stats.wilcoxon([0.7, 0.75, 0.8], [0.6, 0.61, 0.62]).pvalue
    assert table["n"].iloc[1] == 3 and table["pvalue"].iloc[1] == pytest.approx(expected)
    assert "McNemar" in summary.markdown_tests(table)
