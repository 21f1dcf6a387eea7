"""The entry point: config dispatch, clear errors, and the data check job end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ml_collections import ConfigDict

from codeit_jax.errors import ConfigError
from codeit_jax.main import resolve_experiment, resolve_workdir

REPO = Path(__file__).resolve().parent.parent


def test_unknown_experiment_is_a_clear_error():
    with pytest.raises(ConfigError, match="config.experiment is 'nope'"):
        resolve_experiment(ConfigDict({"experiment": "nope"}))


def test_workdir_required():
    with pytest.raises(ConfigError, match="--workdir"):
        resolve_workdir(ConfigDict({"workdir": ""}), None)
    assert resolve_workdir(ConfigDict({"workdir": "a"}), "/tmp/b") == Path("/tmp/b")


def test_check_data_job_end_to_end(codeit_data, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "codeit_jax.main",
            "--config=configs/check_data.py",
            f"--workdir={tmp_path}",
            f"--config.data_dir={codeit_data}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.splitlines()[-1])
    # docs/dsl.md, "The 400 training programs": with CodeIt's executor rule
    # (max_state_size=1000), 385 of 400 reproduce.
    assert summary["tasks"] == 400
    assert summary["programs_reproducing_all_outputs"] == 385
    assert len(json.loads((tmp_path / "check_data.json").read_text())) == 400


def test_check_data_reports_mutated_files_on_its_last_line(codeit_data, tmp_path):
    data = tmp_path / "data"
    (data / "training").mkdir(parents=True)
    task = json.loads((codeit_data / "training" / "3c9b0459.json").read_text())
    (data / "training" / "3c9b0459.json").write_text(json.dumps(task))
    mutated = {}
    for key, output in [("ok", [[1]]), ("big", [[1] * 40] * 40), ("negative", [[-1]])]:
        mutated[key] = {
            **task,
            "task_key": key,
            "training_examples": [{"input": [[1]], "output": output}],
        }
    (tmp_path / "a.json").write_text(json.dumps(mutated))
    (tmp_path / "b.json").write_text(json.dumps({"x": {**task, "task_key": "x", "program": "?"}}))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "codeit_jax.main",
            "--config=configs/check_data.py",
            f"--workdir={tmp_path / 'out'}",
            f"--config.data_dir={data}",
            f"--config.mutated_files={tmp_path / 'a.json'},{tmp_path / 'b.json'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["tasks"] == 1 and summary["programs_reproducing_all_outputs"] == 1
    assert summary["mutated_loaded"] == 1
    assert summary["mutated_skipped"] == {
        "over_1000_cells": 1,
        "not_encodable": 1,
        "program_unparsable": 1,
    }
    assert "built-in DSL tokenizer" in proc.stderr


def test_check_data_refuses_a_missing_mutated_file_before_writing(codeit_data, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "codeit_jax.main",
            "--config=configs/check_data.py",
            f"--workdir={tmp_path / 'out'}",
            f"--config.data_dir={codeit_data}",
            f"--config.mutated_files={tmp_path / 'missing.json'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "invalid config: mutated_files:" in proc.stderr and "missing.json" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_bad_config_file_exits_nonzero(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "codeit_jax.main",
            "--config=configs/check_data.py",
            f"--workdir={tmp_path}",
            "--config.no_such_field=3",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "no_such_field" in proc.stderr


def test_invalid_config_value_exits_cleanly_and_writes_nothing(tmp_path):
    workdir = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "codeit_jax.main",
            "--config=configs/check_data.py",
            f"--workdir={workdir}",
            f"--config.data_dir={tmp_path / 'missing'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "invalid config: data_dir: no training/ directory" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not workdir.exists()
