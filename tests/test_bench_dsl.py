"""The DSL benchmark runs end to end and reports the figures the issue asks for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codeit_jax.bench import dsl as bench_dsl
from codeit_jax.programs.program import parse


@pytest.mark.slow
def test_benchmark_prints_figures_and_a_final_json_line(
    codeit_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = bench_dsl.main(["--repeats", "1", "--data", str(codeit_data / "training")])
    last_line = capsys.readouterr().out.strip().split("\n")[-1]
    assert json.loads(last_line) == figures
    assert figures["runs"] == 1717
    assert figures["tasks_solved"] == figures["tasks_solved_direct"] == 393
    assert figures["tasks_solved_state_limit"] == 385
    assert figures["runs_per_s"] > 0 and "overhead" in figures and len(figures["slowest"]) == 5


def test_direct_function_matches_the_interpreter() -> None:
    program = parse("x1 = compose(size, identity)\nx2 = x1(I)\nO = add(x2, ONE)")
    grid = ((1, 2), (3, 4), (5, 6))
    assert bench_dsl.direct_function(program)(grid) == program.run(grid) == 4
