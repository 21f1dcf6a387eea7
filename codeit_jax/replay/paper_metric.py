"""The paper's headline number: the policy's solutions merged with the mutation baseline's.

The CodeIt curve of the paper (results.ipynb, ``get_codeit_cumulative_performance`` and the
figure "CodeIt vs mutation baseline") does not score the policy alone. The solutions that the
mutation baseline found with its first ``NUM_MUTATED`` = 19,200 sampled programs (the file
``mutation_solutions_19200.json``) are merged into the policy's cumulative solutions of each
meta-iteration, a program present in both taking the mutation record (the notebook's dict
assignment), and the merge is scored with the top-3 rule. Meta-iteration ``i`` (0-based) is
placed at ``NUM_MUTATED + samples_per_meta_iteration * (i + 1)`` sampled programs: the mutated
programs the buffer started from count as samples. Ablation A6 (no mutated tasks) has neither
the merge nor the offset.

This module reads the mutation solutions (the official format, or the records our mutation
baseline writes), resolves the config fields that name them (checked in
`codeit_jax.config`), and computes the two extra ``performance.csv`` columns,
``num_sampled_programs`` and ``paper_cumulative_performance``. Ranking is
`codeit_jax.replay.metrics.rank_key`'s, so without a file the paper figure equals the policy's
``cumulative_performance``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from absl import logging

from codeit_jax.errors import ConfigError
from codeit_jax.replay.metrics import (
    PAPER_COLUMNS,
    SUBMISSIONS_PER_TASK,
    Scoreboard,
    SolutionRecord,
    rank_key,
)
from codeit_jax.tasks import TaskFormatError, read_json

#: Mutation samples behind the official ``mutation_solutions_19200.json`` (the notebook's
#: NUM_MUTATED): the x offset of the paper's CodeIt curve.
NUM_MUTATED = 19_200
#: ``metric.mutation_samples`` value meaning "take it from the file name, else NUM_MUTATED".
AUTO_SAMPLES = -1
#: Placeholder for the CodeIt data directory in path fields.
#: ``meta_iteration`` given to mutation records: they precede every policy sample.
MUTATION_ITERATION = -1

_OFFICIAL_FIELDS = ("task_demonstration_performance", "test_performance")
_NAMED_FILE = re.compile(r"mutation_solutions_(\d+)\.json\Z")
_FETCH_HINT = "bash data/fetch_codeit_data.sh copies it into the CodeIt data directory"


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class MetricConfig:
    """``config.metric``, resolved: the mutation baseline's solutions file ('' for none) and
    how many mutation samples precede the policy's."""

    mutation_solutions: str = ""
    mutation_samples: int = 0


def samples_from_name(path: str | Path) -> int | None:
    """``n`` of a ``mutation_solutions_<n>.json`` file name, else None."""
    match = _NAMED_FILE.search(Path(path).name)
    return int(match.group(1)) if match else None


def default_mutation_samples(path: str) -> int:
    """``metric.mutation_samples`` when left at `AUTO_SAMPLES`: ``n`` of a
    ``mutation_solutions_<n>.json`` name, else `NUM_MUTATED`; 0 without a file."""
    return (samples_from_name(path) or NUM_MUTATED) if path else 0


def missing_file_message(path: str) -> str:
    """The ConfigError text for a mutation solutions file that is not there."""
    return (
        f"config.metric.mutation_solutions: {path} is not a file (the official "
        f"mutation_solutions_{NUM_MUTATED}.json: {_FETCH_HINT}; '' scores the policy alone)"
    )


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class MutationSolutions:
    """The mutation baseline's solution records per inference task (program -> record, in file
    order), as merged into the policy's solutions."""

    source: str
    by_task: Mapping[str, Mapping[str, SolutionRecord]] = field(default_factory=dict)

    @property
    def num_records(self) -> int:
        return sum(len(programs) for programs in self.by_task.values())


def _performance(value: Any, what: str) -> tuple[float, ...]:
    """A mean (the official file) or a per-example list (bools or numbers) -> a tuple."""
    values = value if isinstance(value, list) else [value]
    numbers = []
    for v in values:
        ok = isinstance(v, (int, float)) and math.isfinite(v) and 0.0 <= v <= 1.0
        if not ok:
            raise ValueError(f"{what} must be a number in [0, 1] or a non-empty list of them")
        numbers.append(float(v))
    if not numbers:
        raise ValueError(f"{what} is an empty list")
    return tuple(numbers)


def _official_records(task_key: str, programs: Any) -> dict[str, SolutionRecord]:
    """``{program: {"task_demonstration_performance", "test_performance", ...}}`` of one task.

    The program text is the dict key, as the notebook scores it (``"program"`` is not needed)."""
    if not isinstance(programs, dict):
        raise ValueError(f"task {task_key!r}: expected {{program: record}}, got {_kind(programs)}")
    records = {}
    for program, entry in programs.items():
        where = f"task {task_key!r}, program {_short(program)}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a record object, got {_kind(entry)}")
        missing = [k for k in _OFFICIAL_FIELDS if k not in entry]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        demo = _performance(entry["task_demonstration_performance"], f"{where}: demonstration")
        test = _performance(entry["test_performance"], f"{where}: test_performance")
        records[program] = SolutionRecord(task_key, program, MUTATION_ITERATION, demo, test)
    return records


def _our_record(obj: Any, task_key: str | None = None) -> SolutionRecord:
    """A `SolutionRecord.to_json` object of our baseline's files (its task must match)."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a solution record object, got {_kind(obj)}")
    record = SolutionRecord.from_json(obj)
    if task_key is not None and record.task_key != task_key:
        raise ValueError(f"a record of task {record.task_key!r} is listed under {task_key!r}")
    return record


def parse_mutation_solutions(
    document: Any, source: str, max_samples: int | None = None
) -> MutationSolutions:
    """The records of a mutation solutions document, in any of three formats:

    * the official ``mutation_solutions_<n>.json``: ``{task: {program: record}}``, each record
      with ``task_demonstration_performance`` and ``test_performance`` (means or lists);
    * our baseline's ``mutation_solutions.json``: ``{task: [SolutionRecord JSON]}`` (the final
      top-3 of each task);
    * our baseline's ``mutation_candidates.json``: ``[SolutionRecord JSON]``, every record with
      the sample count at which its program appeared in ``meta_iteration``; records that
      appeared after ``max_samples`` are left out, so the file serves any offset.

    Raises ValueError (the caller names the file) on anything else.
    """
    by_task: dict[str, dict[str, SolutionRecord]] = {}
    if isinstance(document, list):
        for k, obj in enumerate(document):
            try:
                record = _our_record(obj)
            except ValueError as e:
                raise ValueError(f"record {k}: {e}") from None
            if max_samples is None or record.meta_iteration <= max_samples:
                _keep_first(by_task, record)
    elif isinstance(document, dict):
        for task_key, entries in document.items():
            if isinstance(entries, list):
                for k, obj in enumerate(entries):
                    try:
                        _keep_first(by_task, _our_record(obj, task_key))
                    except ValueError as e:
                        raise ValueError(f"task {task_key!r}, record {k}: {e}") from None
            else:
                by_task[task_key] = _official_records(task_key, entries)
    else:
        raise ValueError(f"expected a JSON object or list, got {_kind(document)}")
    return MutationSolutions(source, {k: v for k, v in by_task.items() if v})


def _keep_first(by_task: dict[str, dict[str, SolutionRecord]], record: SolutionRecord) -> None:
    """File order, one record per program (our files list a program once per task anyway)."""
    programs = by_task.setdefault(record.task_key, {})
    if record.program not in programs:
        programs[record.program] = SolutionRecord(
            record.task_key,
            record.program,
            MUTATION_ITERATION,
            record.demonstration_performance,
            record.test_performance,
        )


def read_mutation_solutions(path: str | Path, max_samples: int | None = None) -> MutationSolutions:
    """Read a mutation solutions file; a malformed one is a one-line ConfigError naming it."""
    path = Path(path)
    try:
        document = read_json(path)
    except TaskFormatError as e:  # unreadable, not UTF-8, not JSON, nested too deeply
        raise ConfigError(f"mutation solutions file {e}") from None
    try:
        return parse_mutation_solutions(document, str(path), max_samples)
    except ValueError as e:
        message = " ".join(str(e).split())  # one line, whatever the record held
        raise ConfigError(f"mutation solutions file {path}: {message}") from e


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), repr(value)[:40])


def _short(text: Any, limit: int = 40) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


# --------------------------------------------------------------------------- scoring


def earliest_per_program(records: Iterable[SolutionRecord]) -> dict[str, SolutionRecord]:
    """One record per program, the earliest found (as `codeit_jax.replay.metrics.submission`
    keeps)."""
    first: dict[str, SolutionRecord] = {}
    for record in sorted(records, key=lambda r: r.meta_iteration):
        first.setdefault(record.program, record)
    return first


def combined_submission(
    policy: Iterable[SolutionRecord],
    mutation: Mapping[str, SolutionRecord],
    k: int = SUBMISSIONS_PER_TASK,
) -> list[SolutionRecord]:
    """The top ``k`` of one task's policy records merged with its mutation records, a program
    in both taking the mutation record (the notebook's ``combine_solutions``)."""
    merged = earliest_per_program(policy)
    merged.update(mutation)
    return sorted(merged.values(), key=rank_key)[:k]


@dataclass
class PaperMetric:
    """The paper's CodeIt figure of each meta-iteration and where the paper plots it."""

    mutation: MutationSolutions
    offset: int  # programs the mutation baseline sampled before meta-iteration 0
    samples_per_task: int  # policy samples per inference task per meta-iteration
    k: int = SUBMISSIONS_PER_TASK
    _top: dict[str, list[SolutionRecord]] = field(default_factory=dict, repr=False)
    _checked_keys: bool = field(default=False, repr=False)

    @classmethod
    def policy_only(cls, samples_per_task: int) -> PaperMetric:
        return cls(MutationSolutions(""), 0, samples_per_task)

    def num_sampled_programs(self, meta_iteration: int, num_tasks: int) -> int:
        """The paper's x: mutation samples, then every policy sample up to this iteration."""
        return self.offset + self.samples_per_task * num_tasks * (meta_iteration + 1)

    def _mutation_top(self, task_key: str) -> list[SolutionRecord]:
        """A task's best ``k`` mutation records; only these can enter a merged top ``k``
        (rank_key is a total order over distinct programs), so each row sorts few records."""
        if task_key not in self._top:
            records = self.mutation.by_task.get(task_key, {})
            self._top[task_key] = sorted(records.values(), key=rank_key)[: self.k]
        return self._top[task_key]

    def task_solved(self, scoreboard: Scoreboard, task_key: str, meta_iteration: int) -> bool:
        """The merged top ``k`` of a task, cumulative up to ``meta_iteration``, solves it."""
        programs = self.mutation.by_task.get(task_key, {})
        policy = earliest_per_program(scoreboard.records(task_key, meta_iteration))
        own = [r for program, r in policy.items() if program not in programs]
        top = sorted([*own, *self._mutation_top(task_key)], key=rank_key)[: self.k]
        return any(r.solves_test for r in top)

    def cumulative_performance(self, scoreboard: Scoreboard, meta_iteration: int) -> float:
        """Fraction of the scoreboard's tasks solved by the merged solutions."""
        self._check_keys(scoreboard.task_keys)
        keys = scoreboard.task_keys
        return sum(self.task_solved(scoreboard, key, meta_iteration) for key in keys) / len(keys)

    def row_fields(self, scoreboard: Scoreboard, meta_iteration: int) -> dict[str, int | float]:
        """The paper columns of a performance.csv row."""
        return {
            "num_sampled_programs": self.num_sampled_programs(
                meta_iteration, len(scoreboard.task_keys)
            ),
            "paper_cumulative_performance": self.cumulative_performance(scoreboard, meta_iteration),
        }

    def fill_rows(
        self, rows: Sequence[Mapping[str, Any]], scoreboard: Scoreboard
    ) -> list[dict[str, Any]]:
        """Rows with the paper columns recomputed from the scoreboard (restored rows of a run
        checkpointed before these columns existed lack them; a changed file changes them)."""
        filled = []
        changed = 0
        for row in rows:
            fields = self.row_fields(scoreboard, int(row["meta_iteration"]))
            changed += any(row.get(name) != value for name, value in fields.items())
            filled.append({**row, **fields})
        if changed:
            logging.info(
                "paper columns of %d restored performance row(s) (re)computed from the "
                "restored solutions and %s",
                changed,
                self.mutation.source or "no mutation solutions",
            )
        return filled

    def _check_keys(self, task_keys: Sequence[str]) -> None:
        """Warn once when the mutation file shares no task with the run: a wrong file scores
        like no file, which should not pass silently."""
        if self._checked_keys or not self.mutation.by_task:
            return
        self._checked_keys = True
        if not set(self.mutation.by_task) & set(task_keys):
            logging.warning(
                "%s has solutions for %d tasks, none of them among the run's %d inference "
                "tasks: the paper figure equals the policy's",
                self.mutation.source,
                len(self.mutation.by_task),
                len(task_keys),
            )


def load_paper_metric(metric: MetricConfig, samples_per_task: int) -> PaperMetric:
    """The metric of a run that samples ``samples_per_task`` programs per task."""
    offset = int(metric.mutation_samples)
    if not metric.mutation_solutions:
        return PaperMetric(MutationSolutions(""), offset, samples_per_task)
    mutation = read_mutation_solutions(metric.mutation_solutions, max_samples=offset)
    logging.info(
        "paper metric: %d mutation solution records on %d tasks from %s, CodeIt placed after "
        "%d mutation samples",
        mutation.num_records,
        len(mutation.by_task),
        mutation.source,
        offset,
    )
    return PaperMetric(mutation, offset, samples_per_task)


__all__ = [
    "AUTO_SAMPLES",
    "NUM_MUTATED",
    "PAPER_COLUMNS",
    "MetricConfig",
    "MutationSolutions",
    "PaperMetric",
    "default_mutation_samples",
    "missing_file_message",
    "combined_submission",
    "load_paper_metric",
    "parse_mutation_solutions",
    "read_mutation_solutions",
]
