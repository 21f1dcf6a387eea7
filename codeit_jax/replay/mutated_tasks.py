"""Mutated task collections, kept and skipped as the official CodeIt run keeps them.

The paper's buffer starts with the ARC training tasks plus the tasks of
``mutated_tasks_train_9600.json`` and ``mutated_tasks_train_19200.json``; ablation A1 adds the
tasks of one ``mutated_tasks_search_<n>.json`` before each meta-iteration's training. Both are
dicts of CodeIt task records, and the official code filters them with one rule only: a record
is dropped when one of its *training* outputs has more than 1,000 cells (rows x columns; a grid
with 0 columns counts its rows). Records are stored by their ``task_key``, so a later record
with a key already seen replaces the earlier content and keeps its position; the seed files give
the first ``max_mutated_tasks`` (19,200) records that pass.

Everything else is kept there, including grids no ARC task has (empty, sides over 30, colours
outside 0-9), so they are kept here too (`codeit_jax.policy.encoding.grid_to_text` writes them).
What
this implementation cannot represent, encode or execute is skipped and counted by reason, never
an exception for the whole file:

- ``malformed``: not a JSON object, a missing or mistyped field, a grid that is not a
  rectangular list of lists of ints, a priority field out of range;
- ``program_unparsable``: the program is refused by `codeit_jax.programs.program.parse`;
- ``not_encodable``: the run's tokenizer cannot write the model input or the program losslessly
  (built-in tokenizer: ``strict`` encoding fails, e.g. on a negative colour; a Hugging Face
  tokenizer encodes any text), or the task has no demonstration to show.

The official rule and the cap are applied first (a record the rule cannot even read counts as
``malformed`` and takes no place), then the checks above, so the tasks loaded are exactly the
official ones minus those counted here. A file that is not a JSON object stops with one error
naming it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from absl import logging

from codeit_jax.policy.encoding import bare_program, task_to_text
from codeit_jax.policy.tokenizer import DSLTokenizer, Tokenizer
from codeit_jax.programs.program import ProgramError, parse
from codeit_jax.replay.buffer import ReplayBuffer
from codeit_jax.replay.experience import EncodingConfig, Experience, add_experiences
from codeit_jax.tasks import Example, Grid, Task, TaskFormatError, read_json

#: The official filter: a training output with more cells than this drops its task.
MAX_OUTPUT_CELLS = 1_000
#: The official ``replay_buffer.max_mutated_train_tasks``.
OFFICIAL_MAX_MUTATED_TASKS = 19_200
#: Why a record was not loaded, in the order the checks run.
SKIP_REASONS = (
    "validation_descendant",
    "malformed",
    "over_1000_cells",
    "over_max_tasks",
    "program_unparsable",
    "not_encodable",
)
#: A1's files, one per sample count ``n`` of the mutation baseline (official name).
SEARCH_FILE = "mutated_tasks_search_{n}.json"


class _Skip(Exception):
    """A record is skipped for ``reason`` (one of `SKIP_REASONS`)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class MutatedLoad:
    """The tasks loaded from mutated collection files and what was left out, by reason."""

    tasks: list[Task] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    replaced: int = 0  # records that replaced an earlier record with the same task_key

    def summary(self) -> str:
        """One log line: loaded count and skipped counts per reason."""
        skipped = ", ".join(f"{r} {self.skipped[r]}" for r in SKIP_REASONS if self.skipped[r])
        return (
            f"{len(self.tasks)} mutated tasks loaded; skipped: {skipped or 'none'}; "
            f"{self.replaced} records replaced an earlier one with the same task_key"
        )


def official_cells(grid: list[Any]) -> int:
    """Cells of a JSON grid as the official filter counts them: rows x columns of row 0, or
    the number of rows when row 0 is empty (``[]`` has 0, ``[[]]`` has 1)."""
    columns = len(grid[0]) if grid else 0
    return len(grid) if columns == 0 else len(grid) * columns


def read_collection(path: str | Path) -> dict[str, Any]:
    """The records of a collection file; `TaskFormatError` naming it when it cannot be read or
    is not a JSON object (records themselves are checked, and skipped, by the loader)."""
    records = read_json(Path(path))
    if not isinstance(records, dict):
        raise TaskFormatError(f"{path}: expected a JSON object keyed by task key")
    return records


def check_collections(paths: Sequence[Path]) -> None:
    """Read every collection file once, so that a bad one stops a run before it writes."""
    for path in paths:
        read_collection(path)


def load_mutated_files(
    paths: Sequence[Path],
    tokenizer: Tokenizer,
    n_examples: int,
    max_tasks: int = 0,
    held_out: Collection[str] = (),
) -> MutatedLoad:
    """Tasks of the collection files, in the official order, at most ``max_tasks`` (0: all).

    ``tokenizer`` and ``n_examples`` are the run's: they decide what can be encoded. A record
    whose key starts with a ``held_out`` task key (a validation task, or a mutant or search task
    derived from one) is skipped first, as the official loader filters validation keys.
    """
    prefixes = tuple(held_out)
    kept: dict[str, tuple[dict[str, Any], str]] = {}
    load = MutatedLoad()
    for path in paths:
        for name, record in read_collection(path).items():
            where = f"{path}: {name}"
            if prefixes and _held_out(name, record, prefixes):
                load.skipped["validation_descendant"] += 1
                continue
            try:
                key = _official_filter(record)
            except _Skip as skip:
                load.skipped[skip.reason] += 1
                continue
            load.replaced += key in kept
            kept[key] = (record, where)
    entries = list(kept.items())
    if max_tasks and len(entries) > max_tasks:
        load.skipped["over_max_tasks"] += len(entries) - max_tasks
        entries = entries[:max_tasks]
    for key, (record, where) in entries:
        try:
            load.tasks.append(_usable_task(key, record, tokenizer, n_examples))
        except _Skip as skip:
            load.skipped[skip.reason] += 1
            logging.debug("%s skipped: %s", where, skip.reason)
    return load


def _held_out(name: str, record: object, prefixes: tuple[str, ...]) -> bool:
    """The record's file key or task_key starts with a held-out task key."""
    key = record.get("task_key") if isinstance(record, dict) else None
    return str(name).startswith(prefixes) or (isinstance(key, str) and key.startswith(prefixes))


def _official_filter(record: object) -> str:
    """The record's task key if the official filter keeps it; else `_Skip`."""
    if not isinstance(record, dict):
        raise _Skip("malformed")
    key, examples = record.get("task_key"), record.get("training_examples")
    if not isinstance(key, str) or not key or not isinstance(examples, list):
        raise _Skip("malformed")
    too_big = False
    for example in examples:
        output = example.get("output") if isinstance(example, dict) else None
        if not isinstance(output, list) or (output and not isinstance(output[0], list)):
            raise _Skip("malformed")
        too_big = too_big or official_cells(output) > MAX_OUTPUT_CELLS
    if too_big:
        raise _Skip("over_1000_cells")
    return key


def _usable_task(key: str, record: dict[str, Any], tokenizer: Tokenizer, n: int) -> Task:
    """The record as a `Task` this implementation can train on; else `_Skip` with the reason."""
    program = record.get("program")
    parent = record.get("parent_key")
    extra = record.get("extra_info")
    extra = {} if extra in ("", None) else extra
    if not isinstance(program, str) or not (parent is None or isinstance(parent, str)):
        raise _Skip("malformed")
    if not isinstance(extra, dict) or not _priority_fields_ok(extra):
        raise _Skip("malformed")
    task = Task(
        key=key,
        train=_examples(record.get("training_examples")),
        test=_examples(record.get("test_examples")),
        program=program,
        parent_key=parent,
        extra=dict(extra),
    )
    try:
        parse(program)
        label = bare_program(program)
    except (ProgramError, ValueError):
        raise _Skip("program_unparsable") from None
    if not _encodable(task, label, tokenizer, n):
        raise _Skip("not_encodable")
    return task


def _examples(value: object) -> list[Example]:
    if not isinstance(value, list):
        raise _Skip("malformed")
    examples = []
    for example in value:
        if not isinstance(example, dict):
            raise _Skip("malformed")
        examples.append((_grid(example.get("input")), _grid(example.get("output"))))
    return examples


def _grid(value: object) -> Grid:
    """A JSON grid of any size and any int colours (rectangular, maybe empty) -> Grid."""
    if not isinstance(value, list) or not all(isinstance(row, list) for row in value):
        raise _Skip("malformed")
    width = len(value[0]) if value else 0
    for row in value:
        if len(row) != width or not all(type(cell) is int for cell in row):
            raise _Skip("malformed")
    return tuple(tuple(row) for row in value)


def _priority_fields_ok(extra: dict[str, Any]) -> bool:
    """The official priority asserts 0 <= task_demonstration_performance <= 1 and
    0 <= 1 - distance <= 1 for entries that carry them."""
    for name in ("task_demonstration_performance", "distance"):
        value = extra.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            return False
    return True


def _encodable(task: Task, label: str, tokenizer: Tokenizer, n_examples: int) -> bool:
    try:
        text = task_to_text(task, n_examples)
    except ValueError:  # no demonstration example
        return False
    if not isinstance(tokenizer, DSLTokenizer):
        return True  # a byte-level Hugging Face tokenizer encodes any text
    try:
        tokenizer.encode(text, strict=True)
        tokenizer.encode(label, strict=True)
    except ValueError:
        return False
    return True


def add_mutated_tasks(
    buffer: ReplayBuffer,
    tasks: Sequence[Task],
    tokenizer: Tokenizer,
    settings: EncodingConfig,
    age: int,
    key_by_parent: bool = True,
    seed: bool = False,
) -> int:
    """Add tasks to the mutated partition as the official buffer does; returns how many.

    The official priority reads ``task_demonstration_performance`` (and ``distance``) from a
    task's extra info and takes 0 when it is absent, as for the training tasks, the seed files'
    mutants and random seeds: those entries all weigh the same, while A1's search tasks weigh by
    how much of their evaluation task's demonstrations the program got right. Entries are keyed
    by (parent key, program), the parent being the task itself when it has none, so two mutants
    of one parent with the same program make one entry, the later one; ``key_by_parent=False``
    keys each task by its own key (seed tasks: the official run keys a training task by itself,
    and random seeds, which it does not have, stay distinct tasks). ``seed`` marks the entries
    as seed tasks, so that logs and performance.csv count them apart from mutated tasks (the
    partition, its sampling and its priorities stay one, as in the official run).
    """
    experiences = [
        Experience(
            t,
            (t.parent_key if key_by_parent else None) or t.key,
            # the official files' extra_info fields
            float(t.extra.get("task_demonstration_performance", 0.0)),
            float(t.extra.get("distance", 0.0)),
        )
        for t in tasks
    ]
    return add_experiences(buffer, "mutated", experiences, tokenizer, settings, age=age, seed=seed)


# --------------------------------------------------------------------------- A1 search files


@dataclass(frozen=True)
class NoExitConfig:
    """Where ablation A1 finds its search files (``config.no_exit``): meta-iteration ``i``
    adds ``<search_dir>/mutated_tasks_search_<start_samples + i * interval>.json``."""

    search_dir: str
    start_samples: int
    interval: int


def search_file(directory: str | Path, n: int) -> Path:
    """``<directory>/mutated_tasks_search_<n>.json``."""
    return Path(directory).expanduser() / SEARCH_FILE.format(n=n)


def search_samples(start: int, interval: int, iteration: int) -> int:
    """The sample count ``n`` of the search file meta-iteration ``iteration`` adds."""
    return start + iteration * interval


def first_missing_search_file(
    directory: str | Path, start: int, interval: int, n_iterations: int
) -> tuple[int, Path] | None:
    """(meta-iteration, path) of the first search file a run of ``n_iterations`` lacks."""
    for i in range(n_iterations):
        path = search_file(directory, search_samples(start, interval, i))
        if not path.is_file():
            return i, path
    return None


def search_files(no_exit: NoExitConfig, n_iterations: int) -> list[Path]:
    """The search file of each of meta-iterations 0 .. n_iterations - 1 (A1)."""
    return [
        search_file(no_exit.search_dir, search_samples(no_exit.start_samples, no_exit.interval, i))
        for i in range(n_iterations)
    ]


def add_search_tasks(
    buffer: ReplayBuffer,
    no_exit: NoExitConfig,
    iteration: int,
    tokenizer: Tokenizer,
    settings: EncodingConfig,
    held_out: Collection[str] = (),
) -> int:
    """A1: the tasks of meta-iteration ``iteration``'s search file into the mutated partition
    (filtered like the seed files, no cap); returns how many were added."""
    n = search_samples(no_exit.start_samples, no_exit.interval, iteration)
    path = search_file(no_exit.search_dir, n)
    load = load_mutated_files([path], tokenizer, settings.n_examples, held_out=held_out)
    added = add_mutated_tasks(buffer, load.tasks, tokenizer, settings, age=iteration)
    logging.info("A1, meta-iteration %d: %s: %s; %d added", iteration, path, load.summary(), added)
    return added
