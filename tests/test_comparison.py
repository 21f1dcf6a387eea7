"""The comparison job (configs/first_run.py): the mutation baseline, then CodeIt on the same
tasks with the baseline's files, then the report; and the first run itself (slow)."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from ml_collections import ConfigDict

from codeit_jax.errors import ConfigError
from codeit_jax.jobs import comparison
from codeit_jax.main import continue_command
from tests.codeit_testing import CONFIGS, tiny_config

REPO = Path(__file__).resolve().parent.parent


def first_run_config() -> ConfigDict:
    return runpy.run_path(str(CONFIGS / "first_run.py"))["get_config"]()


def small_config(codeit_data: Path) -> ConfigDict:
    """configs/first_run.py with both jobs shrunk to seconds: 40 mutation samples, CodeIt's
    shapes from the loop tests, both on the first 2 validation tasks."""
    config = first_run_config()
    mutation = config.mutation
    mutation.data_dir = str(codeit_data)
    mutation.n_samples, mutation.save_chunk_size = 40, 30  # files at 30 and 40 samples
    mutation.n_eval_tasks = 2
    mutation.workers = 1
    codeit = tiny_config(codeit_data)
    codeit.data.eval_tasks = "validation"
    codeit.data.seeds = "codeit"
    codeit.sampling.constrained = True
    config.codeit = codeit
    return config


def test_codeit_reads_the_baseline_s_files_on_the_same_tasks(tmp_path) -> None:
    mutation, codeit = comparison.linked_configs(first_run_config(), tmp_path)
    assert mutation.workdir == str(tmp_path / "mutation")
    assert codeit.workdir == str(tmp_path / "codeit")
    chunks = [tmp_path / f"mutation/mutated_tasks_train_{n}.json" for n in (240, 480, 720, 960)]
    assert codeit.data.mutated_files == ",".join(map(str, chunks))
    assert codeit.metric.mutation_solutions == str(
        tmp_path / "mutation/mutation_solutions_960.json"
    )
    assert codeit.metric.mutation_samples == 960
    assert codeit.data.eval_tasks == mutation.eval_tasks == "validation"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: setattr(c.mutation, "eval_tasks", "arc1"), "must name the same tasks"),
        (lambda c: setattr(c.mutation, "evaluate", False), "mutation.evaluate must be True"),
        (lambda c: setattr(c.mutation, "phi_arg", 2.0), "phi_arg"),
        (lambda c: setattr(c.codeit.train, "batch_size", 0), "train.batch_size"),
        (lambda c: c.update({"wrkdir": "x"}), "did you mean config.workdir"),
        (lambda c: c.__delattr__("codeit"), "config.codeit is missing"),
    ],
)
def test_bad_configs_are_refused_before_anything_is_written(
    tmp_path, codeit_data, change, message
) -> None:
    config = small_config(codeit_data)
    change(config)
    with pytest.raises(ConfigError, match=message):
        comparison.run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_small_comparison_end_to_end(tmp_path, codeit_data) -> None:
    workdir = tmp_path / "run"
    summary = comparison.run(small_config(codeit_data), workdir)
    baseline, codeit = summary["mutation"], summary["codeit"]
    assert (workdir / "mutation" / "mutation_performance.csv").is_file()
    assert (workdir / "mutation" / "mutated_tasks_train_30.json").is_file()
    assert (workdir / "mutation" / "mutated_tasks_train_40.json").is_file()
    assert len((workdir / "mutation" / "mutation_performance.csv").read_text().splitlines()) == 2
    assert codeit["inference_tasks"] == 2 and codeit["meta_iterations_completed"] == 1
    # The paper figure counts the baseline's 40 samples before the policy's.
    assert codeit["num_sampled_programs"] == 40 + 2 * 2
    assert baseline["n_samples"] == 40
    report = Path(summary["report"])
    assert report == workdir / "codeit" / "report.html"
    page = report.read_text()
    assert 'alt="CodeIt against the mutation baseline"' in page
    assert str(workdir / "mutation" / "mutation_performance.csv") in page
    saved = json.loads((workdir / comparison.SUMMARY_FILE).read_text())
    assert saved["codeit"]["params_sha256"] == codeit["params_sha256"]

    again = comparison.run(small_config(codeit_data), workdir)  # resumes: nothing to do
    assert again["codeit"]["resumed_from"] == 1
    assert again["codeit"]["params_sha256"] == codeit["params_sha256"]


def test_the_continue_command_doubles_the_run_s_length() -> None:
    config = first_run_config()
    argv = ["main.py", "--config=configs/first_run.py", "--config.codeit.n_meta_iterations=5"]
    config.codeit.n_meta_iterations = 5
    assert continue_command(config, argv) == (
        "python -m codeit_jax.main --config=configs/first_run.py "
        "--config.codeit.n_meta_iterations=10"
    )
    mutation = runpy.run_path(str(CONFIGS / "mutation.py"))["get_config"]()
    assert continue_command(mutation, ["main.py", "--config=configs/mutation.py"]) is None


@pytest.mark.slow
def test_the_first_run(tmp_path, codeit_data) -> None:
    """The README's first command as a new user runs it, end to end (about 10 minutes on 2
    cores): one JSON summary line, the files it names, a report with the baseline's curve."""
    workdir = tmp_path / "first_run"
    env = {**os.environ, "CODEIT_DATA": str(codeit_data)}
    done = subprocess.run(
        [sys.executable, "-m", "codeit_jax.main", "--config=configs/first_run.py",
         f"--workdir={workdir}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    codeit = summary["codeit"]
    assert codeit["inference_tasks"] == 89 and codeit["meta_iterations_completed"] == 3
    for key in ("performance_csv", "solutions", "checkpoints", "report"):
        assert Path(codeit[key]).exists(), key
    assert Path(summary["report"]).read_text().count("CodeIt against the mutation baseline") == 1
    log = done.stderr
    assert "Unable to initialize backend" not in log and "\r" not in log
    assert f"python -m codeit_jax.report --workdir={workdir / 'codeit'}" in log
    assert "--config.codeit.n_meta_iterations=6" in log
