"""The mutation-evaluation benchmark runs end to end; both evaluation paths find the same hits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codeit_jax.bench import mutation_eval


def test_benchmark_prints_figures_and_a_final_json_line(
    codeit_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--samples", "60", "--tasks", "4", "--workers", "2", "--data", str(codeit_data)]
    figures = mutation_eval.main(argv)
    last_line = capsys.readouterr().out.strip().split("\n")[-1]
    assert json.loads(last_line) == figures
    assert figures["programs"] > 0 and figures["inputs"] == 4
    assert figures["agreement"] and figures["hits"] == figures["reference_hits"]
    assert figures["speedup"] > 0


def test_benchmark_refuses_bad_arguments(codeit_data: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        mutation_eval.main(["--tasks", "0", "--data", str(codeit_data)])
    with pytest.raises(SystemExit, match="mutated_tasks_train"):
        mutation_eval.main(["--programs", str(tmp_path / "other.json")])
