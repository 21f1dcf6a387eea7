"""The sandbox benchmark runs end to end and reports the figures the issue asks for: scaling
and what limits it, overhead, the tail of slow runs, restarts with causes, mismatches with
reasons, the load average and a noise flag."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from codeit_jax.bench import sandbox as bench_sandbox
from codeit_jax.bench import sandbox_diagnosis as diagnosis
from codeit_jax.execution.batch import Outcome
from codeit_jax.execution.run import FUNCTION

GRID = ((1, 2), (3, 4))


def test_benchmark_prints_figures_and_a_final_json_line(
    codeit_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--tasks", "12", "--n-policy", "40", "--batches", "2", "--repeats", "2", "--tail", "3"]
    figures = bench_sandbox.main([*argv, "--workers", "2", "--data", str(codeit_data)])
    last_line = capsys.readouterr().out.strip().split("\n")[-1]
    assert json.loads(last_line) == figures
    assert figures["scaling"] > 0 and figures["overhead"] < 1 and "overhead_cpu" in figures
    assert 1 <= figures["scaling_bound"] <= 2 and figures["scaling_quiet_estimate"] > 0
    assert len(figures["scaling_per_batch"]) == 4 == len(figures["overhead_per_batch"])
    assert figures["scaling"] == pytest.approx(
        statistics.median(figures["scaling_per_batch"]), 1e-2
    )
    assert figures["scaling_unpaired"] > 0 and set(figures["ratio_spreads"]) == {
        "scaling",
        "overhead",
    }
    assert isinstance(figures["noisy"], bool)
    assert figures["load_average_before"] >= 0 and figures["load_average_after"] >= 0
    for name in ("a", "b"):
        w = figures[name]
        assert w["mismatches"] == {"1": 0, "2": 0}  # same outcomes in every mode
        assert w["mismatch_details"] == {"1": [], "2": []}
        assert set(w["spreads"]) == {"bare", "inprocess", "sandbox_1", "sandbox_2"}
        for mode in ("bare", "inprocess", "sandbox_1", "sandbox_2"):
            assert w[f"{mode}_runs_per_s"] > 0 and w[f"{mode}_cpu_ms_per_run"] > 0
            assert len(w["seconds_per_repeat"][mode]) == 2
        for k in (1, 2):
            d = w[f"diagnosis_{k}"]
            assert len(d["lanes"]) == k and 0 < d["busy_fraction"] <= 1
            assert d["restarts"] == [] and d["restart_causes"] == {}
            assert 1 <= len(d["tail"]) <= 3
            assert d["run_wall_s"]["max"] == pytest.approx(d["tail"][0]["wall_s"], abs=1e-3)
            assert d["chunk_size"]["max"] <= 128 and d["chunks"] >= k
            slowest = d["tail"][0]
            assert {"wall_s", "cpu_s", "lane", "outcome", "text", "item"} <= set(slowest)
    assert figures["b"]["programs"] == 80
    assert figures["b"]["parse_fail_fraction"] < 0.5  # most fail at run time
    assert figures["a"]["outcomes"].get("ok", 0) > 0


def test_benchmark_refuses_bad_arguments(codeit_data: Path) -> None:
    with pytest.raises(SystemExit):
        bench_sandbox.main(["--workers", "0", "--data", str(codeit_data)])


def test_a_function_inside_a_container_explains_a_mismatch() -> None:
    text = "x1 = astuple(vmirror, ONE)\nO = first(x1)"
    assert diagnosis.function_in_container(text, GRID) == "x1"
    assert diagnosis.function_in_container("O = vmirror(I)", GRID) is None
    batch = [(text, [GRID]), ("O = vmirror(I)", [GRID])]
    want = [[Outcome(True, FUNCTION)], [Outcome(True, ((2, 1), (4, 3)))]]
    got = [[Outcome(True, 1)], [Outcome(False, None, "runtime", "TypeError")]]
    found = diagnosis.mismatches(batch, got, want)
    assert [(m["program"], m["inherent"]) for m in found] == [(0, True), (1, False)]
    assert "function addresses" in found[0]["reason"] and "unexplained" in found[1]["reason"]
    timed_out = [[Outcome(False, None, "timeout", "")], want[1]]
    assert diagnosis.mismatches(batch, timed_out, want) == []


def test_longest_first_schedule_bounds_the_scaling() -> None:
    assert diagnosis.lpt_makespan([9.0, 9.0, 9.0, 1.0, 1.0], 2) == 18.0
    assert diagnosis.lpt_makespan([1.0] * 4, 2) == 2.0
    assert diagnosis.lpt_makespan([], 2) == 0.0


def test_paired_ratios_divide_each_batch_by_the_same_batch_of_the_other_mode() -> None:
    workload = {
        "seconds_per_batch": {
            "sandbox_1": [[4.0, 3.0], [8.0, 6.0]],  # the second repeat ran under load
            "sandbox_2": [[2.0, 2.0], [4.0, 3.0]],
        }
    }
    ratios = bench_sandbox.paired_ratios(workload, "sandbox_1", "sandbox_2")
    assert ratios == [2.0, 1.5, 2.0, 2.0]
    with pytest.raises(ValueError):  # a batch missing on one side is an error, not a skip
        workload["seconds_per_batch"]["sandbox_2"][1].pop()
        bench_sandbox.paired_ratios(workload, "sandbox_1", "sandbox_2")
