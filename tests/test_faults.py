"""Fault injection (issue 19): corrupted checkpoints, bad inputs and config values, two runs on
one workdir, and the modes of the files a run writes.

Every bad input must stop the program with one line naming the file or field and what is
wrong, exit status 2 (bad input or config) or 1 (runtime fault), and nothing written. The
command-line cases run ``python -m codeit_jax.main`` as a user would.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from codeit_jax.atomic_io import write_json_atomic, write_text_atomic
from codeit_jax.metrics import write_performance_csv
from codeit_jax.tasks import Task, save_codeit_dir, save_codeit_file

REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- file modes


@pytest.fixture
def umask():
    """Sets the process umask for one test and restores it."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    task = Task("t", train=[(((1,),), ((2,),))], test=[])
    row = {
        "meta_iteration": 0,
        "cumulative_performance": 0.0,
        "performance": 0.0,
        "step": 1,
        "num_mutated_tasks": 0,
        "num_policy_tasks": 0,
        "train_seconds": 0.0,
        "sample_seconds": 0.0,
        "execute_seconds": 0.0,
        "num_sampled_programs": 0,
        "paper_cumulative_performance": 0.0,
    }
    write_text_atomic(tmp_path / "a.txt", "x")
    write_json_atomic(tmp_path / "b.json", {"a": 1})
    write_performance_csv(tmp_path / "performance.csv", [row])
    save_codeit_file([task], tmp_path / "mutated_tasks_train_1.json")
    save_codeit_dir([task], tmp_path / "tasks")
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) == 5
    assert {p.name: oct(_mode(p)) for p in written} == {p.name: oct(expected) for p in written}
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_atomic_write_leaves_the_old_file_when_it_fails(tmp_path):
    target = tmp_path / "a.json"
    write_json_atomic(target, {"old": True})
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(target, "a lone surrogate cannot be written: \ud800")
    assert target.read_text() == '{\n "old": true\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
