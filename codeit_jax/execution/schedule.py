"""How the sandbox splits a batch among its workers: chunk sizes, work stealing, match jobs.

Chunks: items go out in chunks (guided: big ones first, smaller ones as the batch drains), one
chunk in flight per worker, so that the parent never blocks writing to a busy worker and a
killed worker loses at most one chunk of finished work.

Stealing: the time of a program is unknown until it runs, and a policy's samples range from
microseconds to a full time budget (several seconds for a long program). The inputs of one
program sit next to each other in a batch, so a slow program's runs land in the same chunk,
and without stealing its worker works through them one after the other while the others,
the queue empty, wait. So when a worker is idle and nothing is queued, it takes the later
half of the items not yet started in the chunk with the most such items
(:func:`steal_limit`); the victim stops before them (see :mod:`codeit_jax.execution.worker`).
Which worker runs an item changes nothing in its outcome, so results stay in batch order and
do not depend on the number of workers.

Order: a run's time budget grows with its program's length (``timeout_s`` per line), so the
runs that can take longest are those of the longest programs. `longest_first` queues them at the
start of the batch (the classic longest-processing-time rule): a program that runs out its
budget then starts while the other workers still have the short runs to fill their time with,
instead of starting near the end and leaving them idle while it finishes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from codeit_jax.execution.batch import _Runs
from codeit_jax.execution.line_sharing import Faults
from codeit_jax.execution.worker import IDLE, _Progress

MAX_CHUNK = 128  # items per chunk at most: bounds the work redone when a worker is killed


class Job(NamedTuple):
    """How the scheduler handles one kind of work item."""

    message: Any  # (chunk (item indices), worker handle) -> the picklable message for it
    decode: Any  # a worker's record -> the item's result
    lost: Any  # (error kind, detail) -> the result of an item lost with its worker
    # (item, timed out, progress at death) -> True if the item's culprit was set aside and the
    # item should run again; None: an item in progress at a death is always lost.
    blame: Any = None


def program_lines(text: str) -> int:
    """Non-blank lines of a program text: what its runs' time budget is proportional to."""
    return sum(1 for line in text.splitlines() if line and not line.isspace())


def longest_first(texts: Sequence[str]) -> list[int]:
    """Indices of runs ordered by their program's length, longest first; runs of programs of
    the same length keep their batch order, so a program's runs stay next to each other."""
    lines: dict[str, int] = {}
    for text in texts:
        if text not in lines:
            lines[text] = program_lines(text)
    return sorted(range(len(texts)), key=lambda k: -lines[texts[k]])


def chunk_length(n_pending: int, n_workers: int, chunk_size: int | None) -> int:
    """Items in the next chunk: ``chunk_size`` if set, else guided (a share of what is left)."""
    if chunk_size is not None:
        return chunk_size
    return max(1, min(MAX_CHUNK, math.ceil(n_pending / (2 * n_workers))))


def steal_limit(chunk_length: int, index: int) -> int | None:
    """The new limit of a chunk whose worker is in item ``index``: it keeps that item and the
    first half of the rest (rounded down), the thief gets the others; None when no item is
    left to take (or the worker is between items: ``index`` is IDLE)."""
    rest = chunk_length - index - 1
    if index == IDLE or rest < 1:
        return None
    return chunk_length - (rest + 1) // 2


def runs_message(flat: _Runs, chunk: list[int], sent: set[int]) -> tuple:
    """``("runs", fresh, {grid index: grid}, [(text, grid index)])`` for a chunk of
    :meth:`Sandbox.run`: each grid of a batch goes to a worker once, with the first chunk that
    needs it there (``sent``: the grid indices this worker already has, updated here). With
    none yet, this is its first chunk of the batch, and ``fresh`` tells it to drop the previous
    batch's grids.

    A batch's runs reuse few grids (every program of a task on the same demonstration inputs),
    so this sends most of the grids once per worker instead of once per run, which is most of
    what the parent pickles and the worker unpickles otherwise.
    """
    fresh = not sent
    grids: dict[int, Any] = {}
    work = []
    for k in chunk:
        _, number = run = flat.runs[k]
        if number not in sent:
            sent.add(number)
            grids[number] = flat.grids[number]
        work.append(run)
    return ("runs", fresh, grids, work)


def match_message(
    units: list[tuple[tuple[str, ...], Any, Any]], chunk: list[int], faults: dict[int, Faults]
) -> tuple:
    """``("match", {group id: texts}, [(group id, grid, expected, faults or None)])``: each
    group's texts once."""
    ids: dict[int, int] = {}
    groups: dict[int, tuple[str, ...]] = {}
    work = []
    for k in chunk:
        texts, grid, expected = units[k]
        gid = ids.get(id(texts))
        if gid is None:
            gid = ids[id(texts)] = len(groups)
            groups[gid] = texts
        work.append((gid, grid, expected, faults.get(k)))
    return ("match", groups, work)


def blame_unit(faults: dict[int, Faults], unit: int, timed_out: bool, at: _Progress) -> bool:
    """Set aside what a unit's worker died in: the node in progress, else the program; False
    when it died outside any program (then the unit is lost)."""
    entry = faults.setdefault(unit, Faults({}, {}))
    if at.program == IDLE:
        return False
    if at.node != IDLE and at.node not in entry.nodes:
        entry.nodes[at.node] = timed_out
    elif at.program not in entry.programs:
        entry.programs[at.program] = timed_out
    else:
        return False
    return True
