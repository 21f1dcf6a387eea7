"""A run checkpointed by the code before the package redesign (commit d353974) resumes with
this code: the checkpoint format did not change with the layout.

The old checkpoint is not committed (about 1.3 MB): the test extracts commit d353974 with
``git archive``, runs its ``main`` on configs/tiny.py for one meta-iteration, then resumes the
run here for a second one. It needs the git history and the CodeIt data; it takes minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BEFORE_REDESIGN = "d353974"


def _main(code: Path, workdir: Path, meta_iterations: int, data: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "CODEIT_DATA": str(data)}
    result = subprocess.run(
        [sys.executable, "-m", "codeit_jax.main", f"--config={code / 'configs' / 'tiny.py'}",
         f"--workdir={workdir}", f"--config.n_meta_iterations={meta_iterations}"],
        cwd=code, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_checkpoint_written_before_the_redesign_resumes(tmp_path, codeit_data):
    archive = tmp_path / "old.tar"
    with open(archive, "wb") as out:
        made = subprocess.run(
            ["git", "-C", str(REPO), "archive", BEFORE_REDESIGN], stdout=out, stderr=subprocess.PIPE
        )
    if made.returncode != 0:
        pytest.skip(f"git history with commit {BEFORE_REDESIGN} is not available")
    old = tmp_path / "old"
    with tarfile.open(archive) as tar:
        tar.extractall(old, filter="data")
    workdir = tmp_path / "run"
    first = _main(old, workdir, 1, codeit_data)
    assert first["meta_iterations_completed"] == 1
    resumed = _main(REPO, workdir, 2, codeit_data)
    assert resumed["resumed_from"] == 1
    assert resumed["meta_iterations_completed"] == 2
    assert resumed["step"] > first["step"]
