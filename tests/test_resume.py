"""Resumption: a run SIGKILLed in the middle of a meta-iteration and restarted ends exactly like
a run that was never interrupted (timing columns aside), and a larger n_meta_iterations
continues a finished run.

The runs are subprocesses sharing a persistent compilation cache, so only the first compiles.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codeit_jax.replay.metrics import read_performance_csv
from codeit_jax.tasks import load_codeit_dir, save_codeit_dir

CHILD = Path(__file__).with_name("codeit_resume_child.py")
TIMING = ("train_seconds", "sample_seconds", "execute_seconds")
#: Files that must match between the interrupted and the uninterrupted run.
SAME_FILES = ("solutions_0.json", "solutions_1.json", "log_0.json", "log_1.json")


def _env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["JAX_COMPILATION_CACHE_DIR"] = str(cache)
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return env


@pytest.fixture
def children():
    """Child processes of the test; any still running at the end are killed."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(60)


def _start(
    children: list, data: Path, workdir: Path, n: int, cache: Path, *flags: str
) -> subprocess.Popen:
    with open(workdir.parent / f"{workdir.name}.log", "a") as log:
        process = subprocess.Popen(
            [sys.executable, str(CHILD), str(data), str(workdir), str(n), *flags],
            env=_env(cache),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    children.append(process)
    return process


def _finish(process: subprocess.Popen, workdir: Path, timeout: float = 600) -> dict:
    assert process.wait(timeout) == 0, workdir.parent / f"{workdir.name}_*.log"
    return json.loads((workdir / "summary.json").read_text())


def _rows(workdir: Path) -> list[dict]:
    return [
        {k: v for k, v in row.items() if k not in TIMING}
        for row in read_performance_csv(workdir / "performance.csv")
    ]


@pytest.fixture
def data_dir(tmp_path, codeit_data) -> Path:
    """The CodeIt training data, with two training tasks (and their programs) as the
    inference tasks: the child samples their programs, so solutions and experience appear."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "training").symlink_to(codeit_data / "training")
    tasks = {t.key: t for t in load_codeit_dir(codeit_data / "training")}
    save_codeit_dir([tasks["3c9b0459"], tasks["67a3c6ac"]], data / "evaluation")
    return data


@pytest.mark.parametrize("mode", [(), ("--official",)], ids=["ours", "official"])
def test_sigkill_mid_iteration_then_resume_matches_uninterrupted(
    tmp_path, data_dir, children, mode
):
    cache = tmp_path / "jax_cache"
    reference = tmp_path / "reference"
    whole = _finish(_start(children, data_dir, reference, 2, cache, *mode), reference)
    assert whole["meta_iterations_completed"] == 2
    assert whole["tasks_solved"] == 2 and whole["buffer_policy"] >= 2

    interrupted = tmp_path / "interrupted"
    process = _start(children, data_dir, interrupted, 2, cache, "--pause", *mode)
    paused = tmp_path / "paused"  # the child is inside meta-iteration 1's sandbox call
    deadline = time.monotonic() + 600
    while not (paused.exists() and (interrupted / "checkpoints" / "1").is_dir()):
        assert process.poll() is None, "the run ended before it was killed"
        assert time.monotonic() < deadline, "the run never reached meta-iteration 1"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(60)
    assert not (interrupted / "checkpoints" / "2").exists()
    assert not (interrupted / "log_1.json").exists()
    assert len(read_performance_csv(interrupted / "performance.csv")) == 1

    resumed = _finish(_start(children, data_dir, interrupted, 2, cache, *mode), interrupted)
    assert resumed["resumed_from"] == 1
    assert resumed["meta_iterations_completed"] == 2
    for key in ("params_sha256", "buffer_sha256", "step", "tasks_solved", "buffer_policy"):
        assert resumed[key] == whole[key], key
    assert _rows(interrupted) == _rows(reference)
    for name in SAME_FILES:
        assert (interrupted / name).read_text() == (reference / name).read_text(), name

    more = _finish(_start(children, data_dir, interrupted, 3, cache, *mode), interrupted)
    assert more["resumed_from"] == 2 and more["meta_iterations_completed"] == 3
    rows = _rows(interrupted)
    assert [r["meta_iteration"] for r in rows] == [0, 1, 2]
    assert rows[:2] == _rows(reference)
    assert rows[2]["step"] > rows[1]["step"]
    assert more["params_sha256"] != whole["params_sha256"]
