"""One meta-iteration's inference: sample programs, execute them, relabel the outcomes.

Every inference task gets ``n_samples`` programs from the policy; the distinct ones run on the
task's demonstration inputs, and those that solve at least one demonstration also on its test
inputs (a second, much smaller batch). `relabel.relabel` turns the outcomes into relabelled
tasks (hindsight experience) and solution records.

Execution goes through an `Executor`: on one host the sandbox itself. On several hosts every
process holds the same samples, and an executor that runs its process's share and gathers the
outcomes from the others fits here unchanged (outcomes are a pure function of the programs and
inputs, so the relabelled tasks are the same everywhere).

Memory: a meta-iteration holds every outcome until it is relabelled, tens of thousands of them.
Relabelling reads only valid grids, so as each executor call returns, other values are dropped
(the outcome stays ``ok`` with ``value`` None) and equal grids are kept once. What the parent
holds is then bounded by the number of runs times the size of a 30 x 30 grid, plus one call's
outcomes before they are compacted (each value bounded by the sandbox's output cap).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from codeit_jax import block_cache
from codeit_jax.execution.batch import Executor
from codeit_jax.policy.sampler import Constraint, Sampler, SamplingConfig
from codeit_jax.policy.tokenizer import Tokenizer
from codeit_jax.progress import track
from codeit_jax.replay.experience import Experience
from codeit_jax.replay.metrics import SolutionRecord
from codeit_jax.replay.relabel import needs_test_run, output_grid, relabel, unique_programs
from codeit_jax.tasks import Task, is_grid

#: Program runs per sandbox call: large enough to keep every worker busy, small enough for a
#: progress bar that moves.
RUNS_PER_CALL = 4096


@dataclass
class InferenceResult:
    """What one meta-iteration's inference produced."""

    relabelled: list[Experience] = field(default_factory=list)  # for the buffer
    solutions: list[SolutionRecord] = field(default_factory=list)
    log: dict[str, Any] = field(default_factory=dict)  # per task: samples and their outcomes
    sample_seconds: float = 0.0
    execute_seconds: float = 0.0


def sample_programs(
    sampler: Sampler,
    params: Any,
    tokenizer: Tokenizer,
    inputs: Sequence[Sequence[int]],
    key: jax.Array,
    settings: SamplingConfig,
    allowed_tokens: np.ndarray,
    progress: bool = True,
    constraint: Constraint | None = None,
) -> list[list[str]]:
    """``n_samples`` decoded program texts per task input, in sample order.

    Chunk ``c`` of ``tasks_per_batch`` tasks uses ``fold_in(key, c)``, so the samples depend on
    the key and the chunking only. A ``constraint`` (constrained decoding) replaces
    ``allowed_tokens`` and cannot be combined with ``settings.end_on_disallowed``.
    """
    if constraint is not None and settings.end_on_disallowed:
        raise ValueError("constrained decoding cannot end samples on disallowed tokens")
    texts: list[list[str]] = []
    starts = range(0, len(inputs), settings.tasks_per_batch)
    for chunk, start in enumerate(track(starts, "sampling", "batch", enabled=progress)):
        out = sampler.sample(
            params,
            inputs[start : start + settings.tasks_per_batch],
            jax.random.fold_in(key, chunk),
            num_samples=settings.n_samples,
            max_new_tokens=settings.max_new_tokens,
            temperature=settings.temperature or 1.0,
            greedy=settings.temperature == 0,
            allowed_tokens=None if constraint is not None else allowed_tokens,
            top_k=settings.top_k,
            end_on_disallowed=settings.end_on_disallowed,
            constraint=constraint,
        )
        for rows in out.tokens:
            texts.append([program_text(tokenizer.decode(row)) for row in rows])
    return texts


def program_text(decoded: str) -> str:
    """A decoded sample as the program to run: the text before any ``#``, as CodeIt's
    ``decode_actions`` cuts it (a ``#`` is never part of a program; a sample that ends right
    after one, as CodeIt's disallowed-token rule makes it, keeps its program)."""
    return decoded.split("#", 1)[0]


def run_batched(
    executor: Executor,
    runs: list[tuple[str, Sequence[Any]]],
    what: str,
    progress: bool,
    grids: dict[Any, Any] | None = None,
) -> list[list[Any]]:
    """``executor.run`` over ``runs`` in calls of about `RUNS_PER_CALL` program runs, each
    call's outcomes passed through `keep_grids` as soon as it returns."""
    grids = {} if grids is None else grids
    outcomes: list[list[Any]] = []
    calls: list[list[tuple[str, Sequence[Any]]]] = [[]]
    size = 0
    for run in runs:
        if size >= RUNS_PER_CALL:
            calls.append([])
            size = 0
        calls[-1].append(run)
        size += len(run[1])
    for call in track(calls, what, "call", enabled=progress and len(calls) >= 2):
        if call:
            for row in executor.run(call):
                outcomes.append([keep_grids(outcome, grids) for outcome in row])
    return outcomes


def keep_grids(outcome: Any, grids: dict[Any, Any]) -> Any:
    """The outcome as a meta-iteration keeps it: its value if a valid grid, shared with equal
    grids seen before (``grids`` maps each to its kept copy), else no value."""
    value = outcome.value
    if not outcome.ok or value is None:
        return outcome
    if is_grid(value):
        kept = grids.setdefault(value, value)
        return outcome if kept is value else _with_value(outcome, kept)
    return _with_value(outcome, None)


def _with_value(outcome: Any, value: Any) -> Any:
    """A copy of a named-tuple or dataclass outcome with another value."""
    if hasattr(outcome, "_replace"):
        return outcome._replace(value=value)
    return dataclasses.replace(outcome, value=value)


def execute_and_relabel(
    tasks: Sequence[Task],
    samples: Sequence[Sequence[str]],
    executor: Executor,
    meta_iteration: int,
    progress: bool = True,
    shown: int | None = None,
) -> InferenceResult:
    """Run each task's distinct programs and relabel the outcomes (see the module docstring);
    ``shown``: the demonstrations the model sees (`codeit_jax.replay.relabel.relabel`)."""
    programs = [unique_programs(task_samples) for task_samples in samples]
    grids: dict[Any, Any] = {}  # every valid output grid of this meta-iteration, once
    demo_runs = [
        (program, [x for x, _ in task.train])
        for task, task_programs in zip(tasks, programs)
        for program in task_programs
    ]
    flat_demo = iter(run_batched(executor, demo_runs, "executing", progress, grids))
    demo = [[next(flat_demo) for _ in task_programs] for task_programs in programs]

    needs_test = [
        [needs_test_run(task, outcomes, shown) for outcomes in task_demo]
        for task, task_demo in zip(tasks, demo)
    ]
    test_runs = [
        (program, [x for x, _ in task.test])
        for task, task_programs, flags in zip(tasks, programs, needs_test)
        for program, flag in zip(task_programs, flags)
        if flag
    ]
    flat_test = iter(run_batched(executor, test_runs, "testing", progress, grids))
    result = InferenceResult()
    for task, task_samples, task_programs, task_demo, flags in zip(
        tasks, samples, programs, demo, needs_test
    ):
        test = [next(flat_test) if flag else None for flag in flags]
        relabelled = relabel(task, task_programs, task_demo, test, meta_iteration, shown)
        result.relabelled.extend(relabelled.experiences)
        result.solutions.extend(relabelled.solutions)
        result.log[task.key] = {
            "samples": list(task_samples),
            "programs": [
                _program_log(program, outcomes, task)
                for program, outcomes in zip(task_programs, task_demo)
            ],
        }
    return result


def _program_log(program: str, outcomes: Sequence[Any], task: Task) -> dict[str, Any]:
    """One distinct program's demonstration outcomes, in brief."""
    outputs = [output_grid(o) for o in outcomes]
    return {
        "program": program,
        "valid_outputs": sum(out is not None for out in outputs),
        "solved": sum(out == y for out, (_, y) in zip(outputs, task.train) if out is not None),
        "errors": sorted({o.error for o in outcomes if not o.ok}),
    }


def infer(
    sampler: Sampler,
    params: Any,
    tokenizer: Tokenizer,
    tasks: Sequence[Task],
    inputs: Sequence[Sequence[int]],
    key: jax.Array,
    settings: SamplingConfig,
    allowed_tokens: np.ndarray,
    executor: Executor,
    meta_iteration: int,
    progress: bool = True,
    shown: int | None = None,
    constraint: Constraint | None = None,
) -> InferenceResult:
    """Sample (under ``constraint``, if given), execute and relabel for every inference task,
    timing the two stages."""
    begin = time.perf_counter()
    samples = sample_programs(
        sampler, params, tokenizer, inputs, key, settings, allowed_tokens, progress, constraint
    )
    sampled = time.perf_counter()
    block_cache.release()  # the sampler's kept temporaries: the sandbox's workers need memory
    result = execute_and_relabel(tasks, samples, executor, meta_iteration, progress, shown)
    result.sample_seconds = sampled - begin
    result.execute_seconds = time.perf_counter() - sampled
    return result
