"""CodeIt's submission rule, for the mutation baseline's curve.

Per task, the candidate programs (those that solved at least one demonstration example) are
ranked by mean demonstration performance, highest first, then by shorter program text (in
characters, as CodeIt's ``calculate_performance`` sorts), then by the order they were found;
the top 3 are submitted and the task counts as solved if one of them solves every test example.

Written here because ``codeit_jax.metrics`` (which will own this rule for the CodeIt loop) did
not exist yet when the baseline was built; switch to it once it lands.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

#: How many programs per task are submitted.
TOP_K = 3


@dataclass(frozen=True)
class Candidate:
    """One program's record on one task."""

    text: str  # normalised bare program text
    demo_performance: float  # fraction of demonstration examples solved, in (0, 1]
    test_performance: float  # fraction of test examples solved, in [0, 1]
    order: int  # when it was found (sample index or program index): the last tie-breaker


def submitted(candidates: Iterable[Candidate], k: int = TOP_K) -> list[Candidate]:
    """The ``k`` candidates CodeIt would submit for one task."""
    ranked = sorted(candidates, key=lambda c: (-c.demo_performance, len(c.text), c.order))
    return ranked[:k]


def task_solved(candidates: Iterable[Candidate], k: int = TOP_K) -> bool:
    """True if one of the submitted candidates solves all test examples."""
    return any(c.test_performance == 1.0 for c in submitted(candidates, k))


def fraction_solved(
    candidates_by_task: Mapping[str, Sequence[Candidate]], task_keys: Sequence[str]
) -> float:
    """Fraction of ``task_keys`` solved (a task without candidates is unsolved)."""
    if not task_keys:
        raise ValueError("no tasks to score")
    solved = sum(task_solved(candidates_by_task.get(key, ())) for key in task_keys)
    return solved / len(task_keys)
