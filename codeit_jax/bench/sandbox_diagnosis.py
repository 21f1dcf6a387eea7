"""Diagnostics for the sandbox benchmark: CPU time of the workers, why outcomes differ between
processes, the scaling that indivisible runs allow, and the tail of slow runs.

Kept apart from :mod:`codeit_jax.bench.sandbox` so that the benchmark's loop stays readable.
"""

from __future__ import annotations

import heapq
import os
import resource
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codeit_jax.execution.batch import Outcome
from codeit_jax.execution.run import TIMEOUT, RunTimeout, RunTimer
from codeit_jax.programs.program import ProgramError, parse

#: Containers walked at most when looking for a function value inside a value.
_WALK_LIMIT = 20_000


class ChildCpu:
    """CPU seconds used by the given worker processes between :meth:`start` and :meth:`stop`.

    Live workers are read from ``/proc``; a worker killed and reaped in between (a restart) is
    counted through ``RUSAGE_CHILDREN``, which receives a child's total when it is reaped.
    Reading only the live workers' ``/proc`` entries would drop a dead worker's time and even
    subtract what it had used before (Linux; 0 elsewhere).
    """

    def __init__(self, pids: Sequence[int]) -> None:
        self.before = _proc_cpu(pids) + _reaped_cpu()

    def stop(self, pids: Sequence[int]) -> float:
        return _proc_cpu(pids) + _reaped_cpu() - self.before


def _reaped_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _proc_cpu(pids: Sequence[int]) -> float:
    """User + system CPU seconds of the given live processes (Linux ``/proc``)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def lpt_makespan(seconds: Sequence[float], workers: int) -> float:
    """Length of the longest-processing-time-first schedule of ``seconds`` on ``workers``
    (within 4/3 of the best possible): a batch cannot finish sooner than about this."""
    lanes = [0.0] * workers
    for value in sorted(seconds, reverse=True):
        heapq.heapreplace(lanes, lanes[0] + value)
    return max(lanes)


def _holds_function(value: Any) -> bool:
    """True when a tuple, set or list inside ``value`` (at any depth) holds a callable."""
    stack, walked = [value], 0
    while stack and walked < _WALK_LIMIT:
        item = stack.pop()
        if isinstance(item, (tuple, frozenset, set, list)):
            walked += 1
            for element in item:
                if callable(element):
                    return True
                if isinstance(element, (tuple, frozenset, set, list)):
                    stack.append(element)
    return False


def function_in_container(text: str, grid: Any, budget_s: float = 5.0) -> str | None:
    """The first variable of the program whose value on ``grid`` holds a function inside a
    container, or None. Such a container's order (a set's iteration, ``leastcommon``'s
    tie-break, which cell ``paint`` writes last) follows the functions' hashes, which are
    their addresses and differ from process to process."""
    try:
        compiled = parse(text).bind()
    except ProgramError:
        return None
    values = compiled.template.copy()
    values[0] = grid
    timer = RunTimer("cpu")
    try:
        timer.start(budget_s)
        for function, callee_slot, single, getter, target, _ in compiled.steps:
            if function is None:
                function = values[callee_slot]
            value = function(values[single]) if single >= 0 else function(*getter(values))
            if _holds_function(value):
                return compiled.names[target]
            values[target] = value
    except (Exception, RunTimeout):
        return None
    finally:
        timer.restore()
    return None


def snippet(text: str, limit: int = 160) -> str:
    """A program text on one line, cut to ``limit`` characters."""
    one_line = "; ".join(line.strip() for line in text.strip("\n").split("\n"))
    return one_line if len(one_line) <= limit else one_line[: limit - 3] + "..."


def describe(outcome: Outcome, limit: int = 100) -> str:
    """An outcome in a few words: ``ok <value>`` or ``<error kind> <detail>``."""
    text = f"ok {outcome.value!r}" if outcome.ok else f"{outcome.error} {outcome.detail}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def mismatches(
    batch: Sequence[tuple[str, Sequence[Any]]],
    got: list[list[Outcome]],
    want: list[list[Outcome]],
) -> list[dict[str, Any]]:
    """Outcomes that differ from the reference outside timeouts, each with the reason found."""
    found = []
    for i, (row_got, row_want) in enumerate(zip(got, want)):
        for j, (a, b) in enumerate(zip(row_got, row_want)):
            if a == b or TIMEOUT in (a.error, b.error):
                continue
            text, grids = batch[i]
            culprit = function_in_container(text, grids[j])
            reason = (
                f"function value inside a container from {culprit} on: its order follows "
                "function addresses, which differ between processes"
                if culprit
                else "unexplained: no function value inside a container"
            )
            found.append(
                {
                    "program": i,
                    "input": j,
                    "text": snippet(text),
                    "sandbox": describe(a),
                    "in_process": describe(b),
                    "reason": reason,
                    "inherent": culprit is not None,
                }
            )
    return found
