"""Tasks with programs -> replay buffer entries (model input ids, program label ids).

Seeds, mutated tasks and relabelled policy samples all enter the buffer through `add_tasks`, so
every entry is encoded the same way: the task's first ``n_examples`` demonstrations as input,
each side cut to ``input_state_max`` tokens as CodeIt does; the bare program as label.
A program longer than ``max_program_tokens`` is left out (a cut program teaches nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from codeit_jax.policy.encoding import bare_program, encode_program, encode_task, max_input_length
from codeit_jax.policy.tokenizer import Tokenizer
from codeit_jax.replay.buffer import ReplayBuffer
from codeit_jax.tasks import Task


@dataclass(frozen=True)
class EncodingSettings:
    """How tasks and programs become token ids."""

    n_examples: int
    input_state_max: int  # tokens per side of the model input (CodeIt's input_state_max)
    max_program_tokens: int

    def max_input_length(self, tokenizer: Tokenizer) -> int:
        """The longest model input these settings produce with this tokenizer."""
        return max_input_length(tokenizer, self.input_state_max)


def encode_input(task: Task, tokenizer: Tokenizer, settings: EncodingSettings) -> list[int]:
    """Model input ids of a task (each side cut to ``input_state_max``)."""
    return encode_task(task, tokenizer, settings.n_examples, settings.input_state_max)


def add_tasks(
    buffer: ReplayBuffer,
    partition: str,
    tasks: Sequence[Task],
    tokenizer: Tokenizer,
    settings: EncodingSettings,
    *,
    age: int,
    keys: Sequence[str] | None = None,
    performance: Sequence[float] | None = None,
    distance: Sequence[float] | None = None,
) -> int:
    """Add each task (with its program) to ``partition``; returns how many were added.

    ``keys`` are the entries' parent keys (default: each task's own key); ``performance``
    defaults to 1 (a ground-truth or mutated program solves its own task) and ``distance`` to 0.
    """
    n = len(tasks)
    keys = [t.key for t in tasks] if keys is None else list(keys)
    performance = [1.0] * n if performance is None else list(performance)
    distance = [0.0] * n if distance is None else list(distance)
    if not len(keys) == len(performance) == len(distance) == n:
        raise ValueError("keys, performance and distance must have one item per task")
    kept: dict[str, list] = {"keys": [], "programs": [], "inputs": [], "labels": []}
    kept.update(performance=[], distance=[])
    for task, key, perf, dist in zip(tasks, keys, performance, distance):
        if task.program is None:
            raise ValueError(f"task {task.key!r} has no program to learn from")
        program = bare_program(task.program)
        labels = encode_program(program, tokenizer)
        if len(labels) > settings.max_program_tokens:
            continue
        kept["keys"].append(key)
        kept["programs"].append(program)
        kept["inputs"].append(encode_input(task, tokenizer, settings))
        kept["labels"].append(labels)
        kept["performance"].append(perf)
        kept["distance"].append(dist)
    if kept["keys"]:
        buffer.add_many(
            partition,
            kept["keys"],
            kept["programs"],
            kept["inputs"],
            kept["labels"],
            kept["performance"],
            age,
            kept["distance"],
        )
    return len(kept["keys"])
