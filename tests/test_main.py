"""The entry point: config dispatch, clear errors, and the data check job end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ml_collections import ConfigDict

from codeit_jax.main import ConfigError, resolve_experiment, resolve_workdir

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
    summary = json.loads(proc.stdout[proc.stdout.index("{") :])
    # SPEC.md: with CodeIt's executor rule (max_state_size=1000), 385 of 400 reproduce.
    assert summary["tasks"] == 400
    assert summary["programs_reproducing_all_outputs"] == 385
    assert len(json.loads((tmp_path / "check_data.json").read_text())) == 400


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
