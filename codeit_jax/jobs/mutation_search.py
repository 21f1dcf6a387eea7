"""The mutation baseline's evaluation: its mutants searched against the evaluation tasks.

Every distinct mutant runs on every evaluation task's demonstration inputs, grouped by parent
so that shared lines run once (`Sandbox.match`); solving programs are scored on the test
inputs, CodeIt's top-3 rule gives the curve, and the official-format solution and search files
are written per chunk. `codeit_jax.jobs.mutation` (the job) calls `evaluate`.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from absl import logging
from ml_collections import ConfigDict

from codeit_jax.errors import ConfigError
from codeit_jax.execution.batch import MatchingExecutor
from codeit_jax.files import write_json_atomic, write_text_atomic
from codeit_jax.programs.program import Program, parse
from codeit_jax.progress import track
from codeit_jax.replay.metrics import SolutionRecord, submission, task_solved
from codeit_jax.replay.mutated_tasks import official_cells, search_file
from codeit_jax.tasks import (
    Task,
    load_codeit_file,
    save_codeit_file,
)

FILE_PATTERN = re.compile(r"mutated_tasks_train_(\d+)\.json\Z")


PERFORMANCE_FILE = "mutation_performance.csv"


#: Every (program, evaluation task) record with at least one demonstration solved, for rescoring.
CANDIDATES_FILE = "mutation_candidates.json"


def saved_chunks(workdir: Path) -> dict[int, Path]:
    """``mutated_tasks_train_<n>.json`` files in ``workdir``: n -> path."""
    found = {}
    for path in workdir.glob("mutated_tasks_train_*.json"):
        match = FILE_PATTERN.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class EvalPrograms:
    """The distinct mutant programs to evaluate, and how they are grouped for line sharing.

    ``found_at[p]`` is the chunk end (file ``n``) where program ``p`` first appears; ``groups``
    lists program indices, one group per parent (split at ``eval_group_size``): mutants of one
    parent repeat most of its lines, which a group computes once per input.
    """

    texts: list[str]
    found_at: list[int]
    ends: list[int]
    groups: list[list[int]]


def group_programs(parents: Sequence[str], max_size: int) -> list[list[int]]:
    """Program indices grouped by parent key, in first-seen order, at most ``max_size`` each."""
    by_parent: dict[str, list[int]] = {}
    for p, parent in enumerate(parents):
        by_parent.setdefault(parent, []).append(p)
    return [
        members[i : i + max_size]
        for members in by_parent.values()
        for i in range(0, len(members), max_size)
    ]


def collect_programs(workdir: Path, n_samples: int, max_group: int = 64) -> EvalPrograms:
    """Distinct program texts of the chunk files (<= n_samples), in sample order, grouped."""
    texts: list[str] = []
    found_at: list[int] = []
    parents: list[str] = []
    seen: set[str] = set()
    ends = [n for n in saved_chunks(workdir) if n <= n_samples]
    if not ends:
        raise ConfigError(f"no mutated_tasks_train_<n>.json files in {workdir} to evaluate")
    for n in ends:
        path = workdir / f"mutated_tasks_train_{n}.json"
        for task in load_codeit_file(path):
            if task.program is None:
                raise ConfigError(f"{path}: task {task.key} has no program")
            text = parse(task.program).text
            if text not in seen:
                seen.add(text)
                texts.append(text)
                found_at.append(n)
                parents.append(task.parent_key or task.key)
    return EvalPrograms(texts, found_at, ends, group_programs(parents, max_group))


#: Match units handed to the executor per call (a progress step).
UNITS_PER_CALL = 8192


def _match_all(
    executor: MatchingExecutor,
    units: list[tuple[Sequence[str], Any, Any]],
    what: str,
) -> list[Any]:
    """``executor.match`` over all units, in calls of :data:`UNITS_PER_CALL` with progress."""
    results: list[Any] = []
    calls = range(0, len(units), UNITS_PER_CALL)
    for start in track(calls, what, "call"):
        results.extend(executor.match(units[start : start + UNITS_PER_CALL]))
    return results


def demo_scores(
    programs: EvalPrograms, tasks: Sequence[Task], executor: MatchingExecutor, config: ConfigDict
) -> dict[tuple[int, int], int]:
    """(program index, task index) -> demonstrations solved, where at least one."""
    texts = programs.texts
    scores: dict[tuple[int, int], int] = {}
    if not config.early_exit:
        cases = [(t, k) for t, task in enumerate(tasks) for k in range(len(task.train))]
        units, owners = [], []
        for group in programs.groups:  # group-major: a worker keeps reusing its parsed group
            group_texts = [texts[p] for p in group]
            for t, k in cases:
                units.append((group_texts, *tasks[t].train[k]))
                owners.append((group, t))
        for (group, t), found in zip(owners, _match_all(executor, units, "demonstrations")):
            for i in found.indices:
                key = (group[i], t)
                scores[key] = scores.get(key, 0) + 1
        return scores
    # Early exit: stage k runs demonstration k only where demonstrations 0..k-1 were right.
    alive = {(g, t): group for g, group in enumerate(programs.groups) for t in range(len(tasks))}
    depth = max(len(task.train) for task in tasks)
    for k in range(depth):
        units, owners = [], []
        for (g, t), members in alive.items():
            if len(tasks[t].train) > k:
                units.append(([texts[p] for p in members], *tasks[t].train[k]))
                owners.append((g, t, members))
        survivors: dict[tuple[int, int], list[int]] = {}
        for (g, t, members), found in zip(
            owners, _match_all(executor, units, f"demonstration {k + 1}")
        ):
            if found.indices:
                survivors[(g, t)] = [members[i] for i in found.indices]
        alive = survivors
        for (_, t), members in alive.items():
            if len(tasks[t].train) == k + 1:
                for p in members:
                    scores[(p, t)] = k + 1
    return scores


def test_scores(
    pairs: Sequence[tuple[int, int]],
    programs: EvalPrograms,
    tasks: Sequence[Task],
    executor: MatchingExecutor,
) -> dict[tuple[int, int], tuple[float, ...]]:
    """(program, task) -> per test example, 1.0 if solved else 0.0."""
    group_of = {p: g for g, group in enumerate(programs.groups) for p in group}
    by_unit: dict[tuple[int, int], list[int]] = {}
    for p, t in pairs:
        by_unit.setdefault((group_of[p], t), []).append(p)
    units, owners = [], []
    for (_, t), members in by_unit.items():
        member_texts = [programs.texts[p] for p in members]
        for e, example in enumerate(tasks[t].test):
            units.append((member_texts, *example))
            owners.append((t, e, members))
    solved: set[tuple[int, int, int]] = set()
    for (t, e, members), found in zip(owners, _match_all(executor, units, "tests")):
        solved.update((members[i], t, e) for i in found.indices)
    return {
        (p, t): tuple(float((p, t, e) in solved) for e in range(len(tasks[t].test)))
        for p, t in pairs
    }


def evaluate(
    config: ConfigDict, workdir: Path, executor: MatchingExecutor, tasks: list[Task]
) -> dict[str, Any]:
    """Score the saved mutants on the evaluation ``tasks``; write the performance curve, the
    solutions and (``save_search_tasks``) the search tasks."""
    start = time.time()
    programs = collect_programs(workdir, config.n_samples, config.eval_group_size)
    texts, found_at, ends = programs.texts, programs.found_at, programs.ends
    logging.info(
        "evaluating %d distinct programs (%d groups) on %d tasks",
        len(texts),
        len(programs.groups),
        len(tasks),
    )
    demo = demo_scores(programs, tasks, executor, config)
    demo_seconds = time.time() - start
    tests = test_scores(sorted(demo), programs, tasks, executor)
    keys = [task.key for task in tasks]
    # A record's meta_iteration holds the sample count of the file where its program first
    # appeared: the curve point from which it counts.
    records: list[tuple[int, SolutionRecord]] = []
    for (p, t), right in demo.items():
        n_demos = len(tasks[t].train)
        performance = (1.0,) * right + (0.0,) * (n_demos - right)
        record = SolutionRecord(keys[t], texts[p], found_at[p], performance, tests[(p, t)])
        records.append((t, record))
    curve = []
    for n in ends:
        by_task: dict[int, list[SolutionRecord]] = {}
        for t, record in records:
            if record.meta_iteration <= n:
                by_task.setdefault(t, []).append(record)
        solved = sum(task_solved(found) for found in by_task.values())
        curve.append((n, solved / len(tasks)))
    write_text_atomic(
        workdir / PERFORMANCE_FILE, "".join(f"{n},{fraction!r}\n" for n, fraction in curve)
    )
    write_json_atomic(
        workdir / CANDIDATES_FILE, [record.to_json() for _, record in records], indent=None
    )
    final: dict[str, list[SolutionRecord]] = {}
    for t, record in records:
        final.setdefault(keys[t], []).append(record)
    solutions = {key: [r.to_json() for r in submission(final[key])] for key in sorted(final)}
    write_text_atomic(workdir / "mutation_solutions.json", json.dumps(solutions, indent=1))
    for n in ends:
        write_json_atomic(
            workdir / SOLUTIONS_FILE.format(n=n),
            official_solutions([r for _, r in records], n),
            indent=None,
        )
    search_start = time.time()
    search = write_search_tasks(config, workdir, executor, tasks, ends)
    search_seconds = time.time() - search_start
    return {
        "distinct_programs": len(texts),
        "eval_tasks": len(tasks),
        "curve": curve,
        "fraction_solved": curve[-1][1],
        "early_exit": bool(config.early_exit),
        "search_tasks": {str(n): count for n, count in search.items()},
        "search_seconds": search_seconds,
        "demonstration_seconds": demo_seconds,
        "evaluation_seconds": time.time() - start,
    }


#: Cumulative solutions up to ``n`` samples, in the official format.
SOLUTIONS_FILE = "mutation_solutions_{n}.json"


def _mean(values: Sequence[float]) -> float:
    """Mean, NaN for no values (as numpy's mean, which the official files hold)."""
    return sum(values) / len(values) if values else math.nan


def official_solutions(records: Sequence[SolutionRecord], n: int) -> dict[str, Any]:
    """``{task key: {program: {program, task_demonstration_performance, test_performance}}}``
    of the records whose program was found up to ``n`` samples."""
    found: dict[str, dict[str, Any]] = {}
    for record in sorted(records, key=lambda r: (r.task_key, r.meta_iteration)):
        if record.meta_iteration <= n:
            found.setdefault(record.task_key, {})[record.program] = {
                "program": record.program,
                "task_demonstration_performance": _mean(record.demonstration_performance),
                "test_performance": _mean(record.test_performance),
            }
    return found


def is_official_grid(value: Any) -> bool:
    """A grid as the official evaluation accepts one: a rectangular tuple of tuples of ints,
    empty ones included, any size and any int colour (its 0-9 check is a no-op)."""
    if type(value) is not tuple or any(type(row) is not tuple for row in value):
        return False
    width = len(value[0]) if value else 0
    return all(len(row) == width and all(type(c) is int for c in row) for row in value)


def _distance(goal: Any, output: Any) -> float:
    """The official distance: 1 unless the sizes agree, else the fraction of cells that differ."""
    if not is_official_grid(output) or len(goal) != len(output) or len(goal[0]) != len(output[0]):
        return 1.0
    cells = len(goal) * len(goal[0])
    return sum(a != b for r, s in zip(goal, output) for a, b in zip(r, s)) / cells


def search_task(
    mutant: Task, program: Program, index: int, target: Task, row: Sequence[Any], max_cells: int
) -> Task | None:
    """The search task of ``program`` (of ``mutant``) on evaluation task ``target`` (number
    ``index``), from its outcomes on the target's demonstration then test inputs; None when no
    demonstration output is a grid."""
    values = [outcome.value if outcome.ok else None for outcome in row]
    demos, tests = values[: len(target.train)], values[len(target.train) :]
    found = [
        (x, y)
        for (x, _), y in zip(target.train, demos)
        if is_official_grid(y) and (not max_cells or official_cells(y) < max_cells)
    ]
    if not found:
        return None
    key = f"{mutant.key}_{index}"
    return Task(
        key=key,
        train=found,
        test=[],
        program=program.to_function_text(f"solve_{key}"),
        parent_key=target.key,
        extra={
            "distance": _mean([_distance(g, y) for (_, g), y in zip(target.train, demos)]),
            "task_demonstration_performance": _mean(
                [float(y == g) for (_, g), y in zip(target.train, demos)]
            ),
            "test_performance": _mean([float(y == g) for (_, g), y in zip(target.test, tests)]),
        },
    )


def write_search_tasks(
    config: ConfigDict,
    workdir: Path,
    executor: MatchingExecutor,
    tasks: Sequence[Task],
    ends: Sequence[int],
) -> dict[int, int]:
    """``mutated_tasks_search_<n>.json`` for every chunk end (module docstring); returns
    n -> tasks written. Each file holds its own chunk's search tasks only, as the official."""
    if not config.get("save_search_tasks", True):
        return {}
    done: set[str] = set()  # programs that gave a search task in an earlier chunk
    written = {}
    for n in ends:
        todo = []
        for mutant in load_codeit_file(workdir / f"mutated_tasks_train_{n}.json"):
            program = parse(mutant.program or "")
            if program.text not in done:
                index = random.Random(f"{config.seed}:search:{mutant.key}").randrange(len(tasks))
                todo.append((mutant, program, index))
        batch = []
        for _, program, index in todo:
            target = tasks[index]
            batch.append((program.text, [x for x, _ in target.train + target.test]))
        found = []
        for (mutant, program, index), row in zip(todo, executor.run(batch)):
            task = search_task(mutant, program, index, tasks[index], row, config.max_state_size)
            if task is not None:
                found.append(task)
        save_codeit_file(found, search_file(workdir, n))
        done.update(parse(task.program).text for task in found)
        written[n] = len(found)
        logging.info("samples up to %d: %d search tasks from %d programs", n, len(found), len(todo))
    return written
