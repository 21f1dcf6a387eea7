"""Experience: the typed record between relabelling (or a task file) and the replay buffer.

An `Experience` is a task with the program that solves it, the parent task it is keyed by and
its priority inputs (performance, distance): relabelling produces them with fields, not string
keys in ``Task.extra``. Seeds, mutated tasks and relabelled policy samples all enter the buffer
through `add_experiences`, so
every entry is encoded the same way: the task's first ``n_examples`` demonstrations as input,
each side cut to ``input_state_max`` tokens as CodeIt does; the bare program as label.
A program longer than ``max_program_tokens`` is left out (a cut program teaches nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from codeit_jax.policy.encoding import (
    bare_program,
    encode_program,
    encode_task,
    encode_task_cut,
    max_input_length,
)
from codeit_jax.policy.tokenizer import Tokenizer
from codeit_jax.replay.buffer import NewEntry, ReplayBuffer
from codeit_jax.tasks import Task


@dataclass(frozen=True)
class EncodingConfig:
    """How tasks and programs become token ids."""

    n_examples: int
    input_state_max: int  # tokens per side of the model input (CodeIt's input_state_max)
    max_program_tokens: int

    def max_input_length(self, tokenizer: Tokenizer) -> int:
        """The longest model input these settings produce with this tokenizer."""
        return max_input_length(tokenizer, self.input_state_max)


def encode_input(task: Task, tokenizer: Tokenizer, settings: EncodingConfig) -> list[int]:
    """Model input ids of a task (each side cut to ``input_state_max``)."""
    return encode_task(task, tokenizer, settings.n_examples, settings.input_state_max)


def encode_inputs(
    tasks: Sequence[Task], tokenizer: Tokenizer, settings: EncodingConfig
) -> tuple[list[list[int]], int]:
    """Model input ids of each task, and how many of them were cut (`encode_input`)."""
    encoded = [
        encode_task_cut(t, tokenizer, settings.n_examples, settings.input_state_max) for t in tasks
    ]
    return [ids for ids, _ in encoded], sum(cut for _, cut in encoded)


@dataclass(frozen=True)
class Experience:
    """A task with its program, ready for the buffer."""

    task: Task  # its program is what the entry learns
    parent_key: str  # the buffer keys entries by (parent key, program)
    performance: float = 1.0  # fraction of the parent's real demonstrations solved
    distance: float = 0.0  # mean (1 - reward) over the demonstrations shown

    @classmethod
    def of_task(cls, task: Task) -> Experience:
        """A ground-truth or mutated task: keyed by itself, solves itself."""
        return cls(task, task.key)


def add_experiences(
    buffer: ReplayBuffer,
    partition: str,
    experiences: Sequence[Experience],
    tokenizer: Tokenizer,
    settings: EncodingConfig,
    *,
    age: int,
    seed: bool = False,
) -> int:
    """Add each experience to ``partition``; returns how many were added (``seed``: they are
    seed tasks, counted apart from mutated ones; `ReplayBuffer.add_many`)."""
    entries = []
    for e in experiences:
        if e.task.program is None:
            raise ValueError(f"task {e.task.key!r} has no program to learn from")
        program = bare_program(e.task.program)
        labels = encode_program(program, tokenizer)
        if len(labels) > settings.max_program_tokens:
            continue
        inputs = encode_input(e.task, tokenizer, settings)
        entries.append(NewEntry(e.parent_key, program, inputs, labels, e.performance, e.distance))
    if entries:
        buffer.add_many(partition, entries, age, seed=seed)
    return len(entries)
