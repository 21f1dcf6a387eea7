"""The sandbox benchmark runs end to end and reports the figures the issue asks for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codeit_jax.bench import sandbox as bench_sandbox


def test_benchmark_prints_figures_and_a_final_json_line(
    codeit_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--tasks", "12", "--n-policy", "40", "--repeats", "1", "--workers", "2"]
    figures = bench_sandbox.main([*argv, "--data", str(codeit_data)])
    last_line = capsys.readouterr().out.strip().split("\n")[-1]
    assert json.loads(last_line) == figures
    assert figures["scaling"] > 0 and figures["overhead"] < 1 and "overhead_cpu" in figures
    for name in ("a", "b"):
        assert figures[name]["mismatches"] == {"1": 0, "2": 0}  # same outcomes in every mode
        for mode in ("bare", "inprocess", "sandbox_1", "sandbox_2"):
            assert figures[name][f"{mode}_runs_per_s"] > 0
    assert figures["b"]["programs"] == 40
    assert figures["b"]["parse_fail_fraction"] < 0.5  # most fail at run time
    assert figures["a"]["outcomes"].get("ok", 0) > 0


def test_benchmark_refuses_bad_arguments(codeit_data: Path) -> None:
    with pytest.raises(SystemExit):
        bench_sandbox.main(["--workers", "0", "--data", str(codeit_data)])
