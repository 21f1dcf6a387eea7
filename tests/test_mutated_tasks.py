"""Mutated collection files: kept and skipped exactly as the official filter does, plus what
this implementation cannot represent, encode or execute, counted by reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from codeit_jax.policy.tokenizer import DSLTokenizer
from codeit_jax.replay.buffer import BufferConfig, ReplayBuffer
from codeit_jax.replay.experience import EncodingConfig
from codeit_jax.replay.mutated_tasks import (
    add_mutated_tasks,
    first_missing_search_file,
    load_mutated_files,
    official_cells,
    search_file,
)
from codeit_jax.tasks import TaskFormatError

PROGRAM = "def solve_x(I):\n    O = vmirror(I)\n    return O\n"
SMALL = [[1, 2], [3, 4]]
TOKENIZER = DSLTokenizer()


def grid(rows: int, cols: int, colour: int = 1) -> list[list[int]]:
    return [[colour] * cols for _ in range(rows)]


def record(
    key: str, outputs: list[Any] | None = None, test_output: Any = None, **fields: Any
) -> dict[str, Any]:
    """A CodeIt task record whose training examples have the given outputs."""
    outputs = [SMALL] if outputs is None else outputs
    value = {
        "program": PROGRAM,
        "training_examples": [{"input": SMALL, "output": y} for y in outputs],
        "test_examples": [
            {"input": SMALL, "output": SMALL if test_output is None else test_output}
        ],
        "task_key": key,
        "parent_key": "p",
        "extra_info": {"mutation": "m", "equivalent": False},
    }
    value.update(fields)
    return value


def write(path: Path, records: list[Any], keys: list[str] | None = None) -> Path:
    keys = keys or [
        r["task_key"] if isinstance(r, dict) else f"bad{i}" for i, r in enumerate(records)
    ]
    path.write_text(json.dumps(dict(zip(keys, records))))
    return path


def load(paths: list[Path], tokenizer: Any = TOKENIZER, max_tasks: int = 0):
    return load_mutated_files(paths, tokenizer, n_examples=10, max_tasks=max_tasks)


def test_official_cell_count():
    assert official_cells([]) == 0
    assert official_cells([[]]) == 1
    assert official_cells([[], [], []]) == 3
    assert official_cells(grid(3, 7)) == 21


def test_the_official_filter_looks_at_training_outputs_only(tmp_path):
    records = [
        record("exactly_1000", [SMALL, grid(20, 50)]),
        record("over_1000", [grid(7, 143)]),  # 1,001 cells
        record("rows_without_columns_1001", [[[]] * 1001]),
        record("big_test_output", test_output=grid(40, 40)),
        record("big_input", training_examples=[{"input": grid(40, 40), "output": SMALL}]),
        record("empty_grids", [[], [[]]]),
        record("side_31", [grid(31, 2)]),
        record("colour_12", [grid(2, 2, colour=12)]),
    ]
    result = load([write(tmp_path / "m.json", records)])
    assert [t.key for t in result.tasks] == [
        "exactly_1000",
        "big_test_output",
        "big_input",
        "empty_grids",
        "side_31",
        "colour_12",
    ]
    assert dict(result.skipped) == {"over_1000_cells": 2}
    empty = next(t for t in result.tasks if t.key == "empty_grids")
    assert [y for _, y in empty.train] == [(), ((),)]
    assert next(t for t in result.tasks if t.key == "colour_12").train[0][1] == ((12, 12),) * 2
    # They all go into the buffer, encoded with the built-in tokenizer.
    buffer = ReplayBuffer(BufferConfig())
    settings = EncodingConfig(10, 512, 512)
    assert add_mutated_tasks(buffer, result.tasks, TOKENIZER, settings, 0, key_by_parent=False) == 6
    assert buffer.size("mutated") == 6


class _AnyTextTokenizer:
    """Stands in for a Hugging Face tokenizer: encodes any text."""

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]


def test_what_cannot_be_represented_encoded_or_parsed_is_counted_by_reason(tmp_path):
    records = [
        record("ok"),
        record("negative_colour", [grid(2, 2, colour=-1)]),
        record(
            "unparsable", program="def solve_x(I):\n    O = no_such_primitive(I)\n    return O\n"
        ),
        record("no_program", program=None),
        record("ragged", [[[1, 2], [3]]]),
        record("float_cell", [[[1.5]]]),
        record("bool_cell", test_output=[[True]]),
        record("bad_priority", extra_info={"task_demonstration_performance": 2.0}),
        record("no_demonstrations", []),
        ["not", "an", "object"],
        {"task_key": "no_training_examples"},
        record("output_not_a_grid", [7]),
    ]
    result = load([write(tmp_path / "m.json", records)])
    assert [t.key for t in result.tasks] == ["ok"]
    assert dict(result.skipped) == {
        "not_encodable": 2,  # the negative colour, no demonstration to show
        "program_unparsable": 1,
        "malformed": 8,
    }
    # A tokenizer that encodes any text keeps the negative colour.
    kept = load([tmp_path / "m.json"], tokenizer=_AnyTextTokenizer())
    assert [t.key for t in kept.tasks] == ["ok", "negative_colour"]


def test_a_later_record_with_a_seen_key_replaces_the_content_and_keeps_the_position(tmp_path):
    first = write(tmp_path / "a.json", [record("k1"), record("k2"), record("k4")])
    second = write(
        tmp_path / "b.json",
        [
            record("k3"),
            record("k1", [grid(3, 3, colour=5)]),
            record("k4", [grid(11, 100)]),  # filtered: the earlier k4 stays
        ],
    )
    result = load([first, second])
    assert [t.key for t in result.tasks] == ["k1", "k2", "k4", "k3"]
    assert result.tasks[0].train[0][1] == ((5, 5, 5),) * 3
    assert result.tasks[2].train[0][1] == ((1, 2), (3, 4))
    assert result.replaced == 1 and dict(result.skipped) == {"over_1000_cells": 1}
    # The record's task_key names the task, whatever the key of the file's dict.
    third = write(tmp_path / "c.json", [record("k5")], keys=["something_else"])
    assert [t.key for t in load([third]).tasks] == ["k5"]


def test_descendants_of_held_out_tasks_are_skipped_first(tmp_path):
    """The validation split: records whose key starts with a validation task's key (the task's
    mutants, its search tasks) are left out before the other filters, as the official loader."""
    path = write(
        tmp_path / "m.json",
        [record("val1_m3"), record("train1_m4"), record("val1_9", [grid(11, 100)]), record("x")],
        keys=["val1_m3", "train1_m4", "val1_9", "renamed"],
    )
    path.write_text(path.read_text().replace('"task_key": "x"', '"task_key": "val2_r1"'))
    result = load_mutated_files([path], TOKENIZER, n_examples=10, held_out=["val1", "val2"])
    assert [t.key for t in result.tasks] == ["train1_m4"]
    assert dict(result.skipped) == {"validation_descendant": 3}


def test_the_cap_takes_the_first_tasks_after_the_official_filter(tmp_path):
    records = [
        record("a"),
        record("too_big", [grid(40, 40)]),
        record("b", program="O = nothing(I)"),  # takes a place, then is skipped
        record("c"),
        record("d"),
    ]
    result = load([write(tmp_path / "m.json", records)], max_tasks=3)
    assert [t.key for t in result.tasks] == ["a", "c"]
    assert dict(result.skipped) == {
        "over_1000_cells": 1,
        "over_max_tasks": 1,
        "program_unparsable": 1,
    }
    assert "2 mutated tasks loaded" in result.summary()
    assert "over_max_tasks 1" in result.summary()


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_a_file_that_is_not_a_json_object_is_one_error_naming_it(tmp_path, content):
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(TaskFormatError, match="broken.json"):
        load([path])


def test_mutated_entries_take_the_official_priority_inputs_and_keys(tmp_path):
    search_extra = {"task_demonstration_performance": 0.5, "distance": 0.25}
    records = [
        record("plain", parent_key=None),
        record("search", extra_info=search_extra, parent_key="eval_task"),
        record("mutant_1", parent_key="train_task"),
        record("mutant_2", [[[7]]], parent_key="train_task"),  # same parent, same program
    ]
    tasks = load([write(tmp_path / "m.json", records)]).tasks
    buffer = ReplayBuffer(BufferConfig())
    add_mutated_tasks(buffer, tasks, TOKENIZER, EncodingConfig(10, 512, 512), age=3)
    entries = {e.parent_key: e for e in buffer.entries("mutated")}
    assert sorted(entries) == ["eval_task", "plain", "train_task"]
    assert (entries["plain"].performance, entries["plain"].distance) == (0.0, 0.0)
    assert (entries["eval_task"].performance, entries["eval_task"].distance) == (0.5, 0.25)
    assert "7" in TOKENIZER.decode(entries["train_task"].input_ids)  # the later mutant's grids
    assert {e.age for e in entries.values()} == {3}
    assert {e.origin for e in entries.values()} == {"mutated"}  # not seeds: counted apart
    add_mutated_tasks(buffer, tasks[:1], TOKENIZER, EncodingConfig(10, 512, 512), 4, seed=True)
    assert (buffer.task_counts().seed, buffer.task_counts().mutated) == (1, 2)  # "plain" again


def test_search_files_are_named_by_sample_count(tmp_path):
    assert search_file(tmp_path, 38_400) == tmp_path / "mutated_tasks_search_38400.json"
    for n in (10, 12):
        search_file(tmp_path, n).write_text("{}")
    assert first_missing_search_file(tmp_path, 10, 2, 2) is None
    assert first_missing_search_file(tmp_path, 10, 2, 3) == (2, search_file(tmp_path, 14))
