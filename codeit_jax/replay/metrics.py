"""Scoring: per-example reward, solution records, CodeIt's top-3 submission rule, per
meta-iteration and cumulative performance, and the performance.csv / solutions JSON files.

Submission rule (CodeIt): for each task the candidate programs are ranked by mean demonstration
performance (higher first), then by program length in characters (shorter first), then by
program text (only to make the order deterministic); the first three are submitted, and the task
counts as solved when one of them solves every test example. The *performance* of
meta-iteration ``i`` uses only the solutions found in it; the *cumulative performance* uses every
solution found up to and including ``i``. Both are fractions of the inference tasks. The paper's
headline figure also merges in the mutation baseline's solutions (`codeit_jax.replay.paper_metric`).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from codeit_jax.files import write_text_atomic
from codeit_jax.replay.sample_stats import SAMPLE_COLUMNS
from codeit_jax.tasks import Grid, is_grid

#: CodeIt submits this many programs per task.
SUBMISSIONS_PER_TASK = 3

#: performance.csv columns of runs written before the paper columns existed.
LEGACY_PERFORMANCE_COLUMNS = (
    "meta_iteration",
    "cumulative_performance",
    "performance",
    "step",
    "num_mutated_tasks",
    "num_policy_tasks",
    "train_seconds",
    "sample_seconds",
    "execute_seconds",
)
#: The paper's x (programs sampled, mutation baseline included) and its CodeIt figure (the
#: policy's cumulative solutions merged with the mutation baseline's;
#: `codeit_jax.replay.paper_metric`).
PAPER_COLUMNS = ("num_sampled_programs", "paper_cumulative_performance")
#: performance.csv columns, in order (new columns last, so old positions do not move): the
#: training loss and the sample rates of `codeit_jax.replay.sample_stats` follow the paper columns.
#: Earlier files end after the legacy or the paper columns; a row restored from a checkpoint
#: older than the learning columns has them empty (unknown), as has a meta-iteration that
#: trained on nothing.
#: The last epoch's mean training loss, then the sample rates.
LEARNING_COLUMNS = ("train_loss", *SAMPLE_COLUMNS)
#: The buffer's seed tasks (`codeit_jax.replay.buffer.TaskCounts`), last. ``num_mutated_tasks``
#: counts the mutated tasks without them; files written before this column counted both in
#: ``num_mutated_tasks``. An empty cell (a row of such a file or checkpoint, or of a run resumed
#: from such a checkpoint, whose buffer cannot tell them apart) means exactly that: the seed
#: count is unknown and ``num_mutated_tasks`` holds seed and mutated tasks together.
SEED_COLUMNS = ("num_seed_tasks",)
PERFORMANCE_COLUMNS = LEGACY_PERFORMANCE_COLUMNS + PAPER_COLUMNS + LEARNING_COLUMNS + SEED_COLUMNS
#: Columns that may be empty (None): unknown in rows written before them.
UNKNOWN_ALLOWED = LEARNING_COLUMNS + SEED_COLUMNS
_READABLE_HEADERS = (
    LEGACY_PERFORMANCE_COLUMNS,
    LEGACY_PERFORMANCE_COLUMNS + PAPER_COLUMNS,
    LEGACY_PERFORMANCE_COLUMNS + PAPER_COLUMNS + LEARNING_COLUMNS,
    PERFORMANCE_COLUMNS,
)
_INT_COLUMNS = {
    "meta_iteration",
    "step",
    "num_mutated_tasks",
    "num_policy_tasks",
    "num_sampled_programs",
    "num_seed_tasks",
}


def example_reward(output: object, target: Grid) -> float:
    """1 - fraction of differing cells; 0 when ``output`` is not a valid grid or its shape
    differs from the target's."""
    if not is_grid(output) or len(output) != len(target) or len(output[0]) != len(target[0]):
        return 0.0
    cells = len(target) * len(target[0])
    differing = sum(
        a != b for out_row, tgt_row in zip(output, target) for a, b in zip(out_row, tgt_row)
    )
    return 1.0 - differing / cells


def solves(output: object, target: Grid) -> bool:
    """The output is a valid grid equal to the target."""
    return is_grid(output) and output == target


@dataclass(frozen=True)
class SolutionRecord:
    """A program that solved at least one demonstration of an inference task.

    Performances are per example: 1.0 when the example is solved exactly, else 0.0.
    """

    task_key: str
    program: str
    meta_iteration: int
    demonstration_performance: tuple[float, ...]
    test_performance: tuple[float, ...]

    @property
    def mean_demonstration_performance(self) -> float:
        perf = self.demonstration_performance
        return sum(perf) / len(perf) if perf else 0.0

    @property
    def solves_test(self) -> bool:
        """Solves every test example (and there is at least one)."""
        return bool(self.test_performance) and all(p == 1.0 for p in self.test_performance)

    def to_json(self) -> dict[str, Any]:
        return {
            "task_key": self.task_key,
            "program": self.program,
            "meta_iteration": self.meta_iteration,
            "demonstration_performance": list(self.demonstration_performance),
            "test_performance": list(self.test_performance),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> SolutionRecord:
        try:
            return cls(
                task_key=str(obj["task_key"]),
                program=str(obj["program"]),
                meta_iteration=int(obj["meta_iteration"]),
                demonstration_performance=tuple(float(p) for p in obj["demonstration_performance"]),
                test_performance=tuple(float(p) for p in obj["test_performance"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a solution record ({e!r}): {str(obj)[:120]}") from e


def rank_key(record: SolutionRecord) -> tuple[float, int, str]:
    """Sort key of the submission rule: best demonstration performance, then shorter program
    text in characters (as CodeIt's scoring sorts by ``len(program)``), then the text itself
    (CodeIt leaves that last tie to dictionary order; the text makes it deterministic)."""
    return (-record.mean_demonstration_performance, len(record.program), record.program)


def submission(
    records: Iterable[SolutionRecord], k: int = SUBMISSIONS_PER_TASK
) -> list[SolutionRecord]:
    """The top ``k`` distinct programs of one task's records (earliest record of each program)."""
    first: dict[str, SolutionRecord] = {}
    for record in sorted(records, key=lambda r: r.meta_iteration):
        first.setdefault(record.program, record)
    return sorted(first.values(), key=rank_key)[:k]


def task_solved(records: Iterable[SolutionRecord], k: int = SUBMISSIONS_PER_TASK) -> bool:
    """One of the submitted programs solves every test example."""
    return any(r.solves_test for r in submission(records, k))


class Scoreboard:
    """Solution records of every inference task across meta-iterations, and the scores."""

    def __init__(self, task_keys: Sequence[str], k: int = SUBMISSIONS_PER_TASK) -> None:
        if not task_keys:
            raise ValueError("a scoreboard needs at least one inference task")
        if len(set(task_keys)) != len(task_keys):
            raise ValueError("inference task keys must be unique")
        self.task_keys = tuple(task_keys)
        self.k = k
        self._records: dict[str, list[SolutionRecord]] = {key: [] for key in self.task_keys}

    def add(self, records: Iterable[SolutionRecord]) -> None:
        """Add records; all are checked before any is stored."""
        records = list(records)
        for record in records:
            if record.task_key not in self._records:
                raise ValueError(f"solution for unknown task {record.task_key!r}")
        for record in records:
            self._records[record.task_key].append(record)

    def records(
        self, task_key: str, meta_iteration: int | None = None, cumulative: bool = True
    ) -> list[SolutionRecord]:
        """A task's records: all, or those of ``meta_iteration`` (``cumulative``: up to it)."""
        records = self._records[task_key]
        if meta_iteration is None:
            return list(records)
        if cumulative:
            return [r for r in records if r.meta_iteration <= meta_iteration]
        return [r for r in records if r.meta_iteration == meta_iteration]

    def solved_tasks(self, meta_iteration: int | None = None, cumulative: bool = True) -> list[str]:
        """Keys of the tasks solved by the submission rule."""
        return [
            key
            for key in self.task_keys
            if task_solved(self.records(key, meta_iteration, cumulative), self.k)
        ]

    def performance(self, meta_iteration: int) -> float:
        """Fraction of tasks solved by the solutions found in this meta-iteration alone."""
        return len(self.solved_tasks(meta_iteration, cumulative=False)) / len(self.task_keys)

    def cumulative_performance(self, meta_iteration: int) -> float:
        """Fraction of tasks solved by the solutions found up to this meta-iteration."""
        return len(self.solved_tasks(meta_iteration, cumulative=True)) / len(self.task_keys)

    def solutions_document(self, meta_iteration: int | None = None) -> dict[str, Any]:
        """JSON-able summary (cumulative up to ``meta_iteration``): per task with records,
        whether it is solved, the submitted programs and every record in rank order."""
        tasks = {}
        for key in self.task_keys:
            records = self.records(key, meta_iteration, cumulative=True)
            if not records:
                continue
            submitted = submission(records, self.k)
            tasks[key] = {
                "solved": any(r.solves_test for r in submitted),
                "submitted": [r.program for r in submitted],
                "solutions": [r.to_json() for r in sorted(records, key=rank_key)],
            }
        return {
            "meta_iteration": meta_iteration,
            "num_tasks": len(self.task_keys),
            "num_solved": sum(t["solved"] for t in tasks.values()),
            "tasks": tasks,
        }

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state (for the checkpoint)."""
        return {
            "task_keys": list(self.task_keys),
            "k": self.k,
            "records": [r.to_json() for key in self.task_keys for r in self._records[key]],
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> Scoreboard:
        try:
            board = cls(list(state["task_keys"]), int(state["k"]))
            records = [SolutionRecord.from_json(r) for r in state["records"]]
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a scoreboard state (missing {e})") from e
        board.add(records)
        return board


# --------------------------------------------------------------------------- files


def write_performance_csv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Write every row (the whole history, so a resumed run rewrites the same file)."""
    for k, row in enumerate(rows):
        missing = [c for c in PERFORMANCE_COLUMNS if c not in row]
        extra = [c for c in row if c not in PERFORMANCE_COLUMNS]
        if missing or extra:
            raise ValueError(
                f"performance row {k}: missing columns {missing}, unknown columns {extra}"
            )
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=PERFORMANCE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, out.getvalue())


def read_performance_csv(path: str | os.PathLike[str]) -> list[dict[str, int | float]]:
    """Rows of a performance.csv, with ints and floats restored.

    Files written before the paper, the sample or the seed columns existed are read too; their
    rows lack those keys (and their ``num_mutated_tasks`` includes the seed tasks).
    """
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) not in _READABLE_HEADERS:
            raise ValueError(
                f"{path}: columns {reader.fieldnames}, expected {list(PERFORMANCE_COLUMNS)}"
            )
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                rows.append({c: _number(c, v) for c, v in row.items()})
            except (TypeError, ValueError) as e:
                raise ValueError(f"{path}:{line}: {e}") from e
    return rows


def _number(column: str, text: str) -> int | float | None:
    """A CSV cell: an int or float, None for an empty learning or seed cell (unknown)."""
    if text == "" and column in UNKNOWN_ALLOWED:
        return None
    return int(text) if column in _INT_COLUMNS else float(text)


def write_solutions_json(path: str | os.PathLike[str], document: Mapping[str, Any]) -> None:
    """Write a `Scoreboard.solutions_document` (atomically)."""
    write_text_atomic(path, json.dumps(document, indent=1) + "\n")


__all__ = [
    "LEARNING_COLUMNS",
    "LEGACY_PERFORMANCE_COLUMNS",
    "PAPER_COLUMNS",
    "PERFORMANCE_COLUMNS",
    "SEED_COLUMNS",
    "UNKNOWN_ALLOWED",
    "SUBMISSIONS_PER_TASK",
    "Scoreboard",
    "SolutionRecord",
    "example_reward",
    "rank_key",
    "read_performance_csv",
    "solves",
    "submission",
    "task_solved",
    "write_performance_csv",
    "write_solutions_json",
]
