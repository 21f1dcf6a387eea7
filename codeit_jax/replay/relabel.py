"""Hindsight relabelling: sandbox outcomes of sampled programs -> new tasks and solution records.

For one inference task, its sampled programs (deduplicated before execution, see
`unique_programs`) and their outcomes on the demonstration inputs:

* every program with at least one valid output grid (`codeit_jax.tasks.is_grid`, which also
  enforces the 30 x 30 size cap) becomes a *relabelled task* keyed ``<task>_it<i>__<j>`` (``i``
  the meta-iteration, ``j`` the program's index in the deduplicated list): the demonstration
  inputs whose outputs are valid, paired with those outputs — what the program actually does,
  so it is a correct solution of the new task. Its test examples are built the same way from the
  test outcomes when the program was run on the test inputs, else there are none. ``extra``
  records the per-example ``rewards`` against the real outputs, the ``distance`` (mean of
  1 - reward), the ``demonstration_performance`` and the ``meta_iteration``;
* every program that solves at least one demonstration exactly (`needs_test_run`) must also have
  been run on the test inputs and yields a `SolutionRecord`.

Demonstration performance is the fraction of demonstration examples solved exactly; the reward
of an example is 1 - fraction of differing cells, 0 for a shape mismatch or an invalid output.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from codeit_jax.execution.batch import Outcome
from codeit_jax.replay.experience import Experience
from codeit_jax.replay.metrics import SolutionRecord, example_reward, solves
from codeit_jax.tasks import Grid, Task, is_grid


@dataclass
class RelabelResult:
    """The relabelled tasks and the solution records of one inference task."""

    tasks: list[Task] = field(default_factory=list)
    experiences: list[Experience] = field(default_factory=list)  # one per task, for the buffer
    solutions: list[SolutionRecord] = field(default_factory=list)


def unique_programs(programs: Iterable[str]) -> list[str]:
    """Programs without repeats, first occurrence order (so ``j`` in the keys is stable)."""
    return list(dict.fromkeys(programs))


def output_grid(outcome: Outcome) -> Grid | None:
    """The outcome's value if the run succeeded and returned a valid ARC grid, else None."""
    if outcome.ok and is_grid(outcome.value):
        return outcome.value  # type: ignore[return-value]
    return None


def relabel_key(task_key: str, meta_iteration: int, index: int) -> str:
    return f"{task_key}_it{meta_iteration}__{index}"


def needs_test_run(task: Task, demo_outcomes: Sequence[Outcome], shown: int | None = None) -> bool:
    """The program solves at least one of the first ``shown`` demonstrations (default: all),
    so it must be scored on the test inputs."""
    _check_count(task, demo_outcomes, len(task.train), "demonstration")
    pairs = list(zip(demo_outcomes, task.train))[:shown]
    return any(solves(output_grid(o), y) for o, (_, y) in pairs)


def relabel(
    task: Task,
    programs: Sequence[str],
    demo_outcomes: Sequence[Sequence[Outcome]],
    test_outcomes: Sequence[Sequence[Outcome] | None],
    meta_iteration: int,
    shown: int | None = None,
) -> RelabelResult:
    """Relabelled tasks and solution records for one inference task (see the module docstring).

    ``demo_outcomes[j]`` are program ``j``'s outcomes on ``task.train`` inputs, in order;
    ``test_outcomes[j]`` its outcomes on ``task.test`` inputs, or None when it was not run
    there (allowed only for programs that solve none of the shown demonstrations).

    ``shown``: the demonstrations the model sees (``encoding.n_examples``; default all). As in
    CodeIt's inference, the relabelled task, its rewards and its distance come from the first
    ``shown`` demonstrations; a solution is recorded only when one of those is solved; the
    demonstration performance (solution score and priority) is over all demonstrations, and 0
    for a program that solves none of the shown ones. With every demonstration shown (ARC-AGI-1
    tasks have at most 7, the paper shows 10) this is the plain rule; it differs under A5.
    """
    if len(set(programs)) != len(programs):
        raise ValueError(f"task {task.key!r}: programs must be deduplicated before relabelling")
    if not (len(demo_outcomes) == len(test_outcomes) == len(programs)):
        raise ValueError(
            f"task {task.key!r}: {len(programs)} programs but {len(demo_outcomes)} demonstration "
            f"and {len(test_outcomes)} test outcome lists"
        )
    result = RelabelResult()
    for j, (program, demos, tests) in enumerate(zip(programs, demo_outcomes, test_outcomes)):
        _check_count(task, demos, len(task.train), "demonstration")
        demo_outputs = [output_grid(o) for o in demos]
        test_outputs = None
        if tests is not None:
            _check_count(task, tests, len(task.test), "test")
            test_outputs = [output_grid(o) for o in tests]
        seen = list(zip(task.train, demo_outputs))[:shown]
        rewards = [example_reward(out, y) for (_, y), out in seen]
        solved = [1.0 if solves(out, y) else 0.0 for out, (_, y) in zip(demo_outputs, task.train)]
        solves_shown = any(solved[: len(seen)])
        performance = sum(solved) / len(solved) if solves_shown else 0.0
        distance = sum(1.0 - r for r in rewards) / len(rewards)

        train = [(x, out) for (x, _), out in seen if out is not None]
        if train:
            test = []
            if test_outputs is not None:
                test = [(x, out) for (x, _), out in zip(task.test, test_outputs) if out is not None]
            relabelled = Task(
                key=relabel_key(task.key, meta_iteration, j),
                train=train,
                test=test,
                program=program,
                parent_key=task.key,
                extra={
                    "rewards": rewards,
                    "distance": distance,
                    "demonstration_performance": performance,
                    "meta_iteration": meta_iteration,
                },
            )
            result.tasks.append(relabelled)
            result.experiences.append(Experience(relabelled, task.key, performance, distance))
        if solves_shown:
            if test_outputs is None:
                raise ValueError(
                    f"task {task.key!r}: program {j} solves a demonstration "
                    "but has no test outcomes"
                )
            result.solutions.append(
                SolutionRecord(
                    task_key=task.key,
                    program=program,
                    meta_iteration=meta_iteration,
                    demonstration_performance=tuple(solved),
                    test_performance=tuple(
                        1.0 if solves(out, y) else 0.0
                        for out, (_, y) in zip(test_outputs, task.test)
                    ),
                )
            )
    return result


def _check_count(task: Task, outcomes: Sequence[Outcome], expected: int, what: str) -> None:
    if len(outcomes) != expected:
        raise ValueError(
            f"task {task.key!r}: {len(outcomes)} {what} outcomes for {expected} {what} examples"
        )


__all__ = [
    "Outcome",
    "RelabelResult",
    "needs_test_run",
    "output_grid",
    "relabel",
    "relabel_key",
    "unique_programs",
]
