"""Batches, outcomes and the `Executor` protocol: what every caller of the sandbox sees.

A batch is ``[(program text, [input grid, ...]), ...]``; running it gives ``outcomes[i][j]``,
the `Outcome` of program ``i`` on input ``j``. `Executor` is the one protocol the stages
above accept, so a `Sandbox`, a multi-host `ShareExecutor` (``execution.shared``) or a test
stand-in can be passed wherever programs are run. `run_in_process` and `match_in_process`
give the sandbox's outcomes without worker processes, for debugging and tests.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from codeit_jax.execution.line_sharing import GroupMatches, ProgramGroup, match_group
from codeit_jax.execution.run import (
    DEFAULT_MAX_OUTPUT_BYTES,
    ProgramRunner,
    Record,
    decode_value,
)
from codeit_jax.tasks import is_grid

Batch = Sequence[tuple[str, Sequence[Any]]]


#: ``(program texts, input grid, expected output grid)`` work units of :meth:`Sandbox.match`.
MatchUnits = Sequence[tuple[Sequence[str], Any, Any]]


class Executor(Protocol):
    """Runs batches: ``run(batch)[i][j]`` is the `Outcome` of program text ``i`` on input ``j``
    of its list. `Sandbox` also has ``match`` (the mutation baseline needs it)."""

    def run(self, batch: Batch) -> list[list[Any]]: ...


class MatchingExecutor(Executor, Protocol):
    """An `Executor` that also matches: ``match(units)[k]`` says which programs of unit ``k``
    (program texts, input, expected output) return the expected grid (`Sandbox.match`)."""

    def match(self, units: MatchUnits) -> list[Any]: ...


class Outcome(NamedTuple):
    """The result of one program on one input.

    ``ok`` is True when the run finished and ``value`` holds the value bound to ``O`` (data, or
    :data:`FUNCTION` for a function). Otherwise ``error`` is one of :data:`ERROR_KINDS` and
    ``detail`` says more: the parser's message for ``syntax``, the exception type name for
    ``runtime``. Use :func:`is_grid` to check that a value is a valid ARC grid.
    """

    ok: bool
    value: Any = None
    error: str | None = None
    detail: str = ""


class SandboxError(RuntimeError):
    """The sandbox itself failed (workers cannot start, or it was used after close)."""


def _outcome(record: Record) -> Outcome:
    kind, payload = record
    if kind is None:
        return Outcome(True, decode_value(payload))
    return Outcome(False, None, kind, payload)


class _Runs(NamedTuple):
    """A validated batch flattened to distinct runs, and where each run's outcome goes."""

    runs: list[tuple[str, int]]  # distinct (text, index into grids) pairs
    shape: list[list[int]]  # shape[i][j]: index into runs of program i on input j
    grids: list[Any]  # the distinct grid objects


def _flatten(batch: Batch) -> _Runs:
    """Validate the batch and list its distinct (text, grid) runs, keyed by grid identity."""
    if isinstance(batch, (str, bytes)) or not isinstance(batch, Sequence):
        raise TypeError(
            f"batch must be a list of (program_text, inputs) pairs, got {type(batch).__name__}"
        )
    runs: list[tuple[str, int]] = []
    index_of: dict[tuple[str, int], int] = {}
    grid_index: dict[int, int] = {}  # id of a checked grid -> its index in grids
    grids: list[Any] = []  # also keeps the grids alive: ids are only unique while they live
    shape: list[list[int]] = []
    for i, item in enumerate(batch):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(f"batch[{i}] must be a (program_text, inputs) pair, got {item!r:.80}")
        text, inputs = item
        if not isinstance(text, str):
            raise TypeError(f"batch[{i}]: program text must be a str, got {type(text).__name__}")
        if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
            raise TypeError(
                f"batch[{i}]: inputs must be a list of grids, got {type(inputs).__name__}"
            )
        row = []
        for j, grid in enumerate(inputs):
            number = grid_index.get(id(grid))
            if number is None:
                if not is_grid(grid):
                    raise ValueError(
                        f"batch[{i}] input {j} is not a valid grid (a tuple of 1..30 equal-length "
                        f"tuples of 1..30 ints in 0..9): {grid!r:.80}"
                    )
                number = grid_index[id(grid)] = len(grids)
                grids.append(grid)
            run = (text, number)
            index = index_of.get(run)
            if index is None:
                index = index_of[run] = len(runs)
                runs.append(run)
            row.append(index)
        shape.append(row)
    return _Runs(runs, shape, grids)


def _check_units(units: MatchUnits) -> list[tuple[tuple[str, ...], Any, Any]]:
    """Validate match units (grids checked once per object); texts as tuples."""
    if isinstance(units, (str, bytes)) or not isinstance(units, Sequence):
        raise TypeError(
            "units must be a list of (program texts, input, expected) triples, got "
            f"{type(units).__name__}"
        )
    checked: list[tuple[tuple[str, ...], Any, Any]] = []
    good_grids: set[int] = set()
    keep_alive: list[Any] = []  # ids are only unique while the objects live
    texts_of: dict[int, tuple[str, ...]] = {}
    for i, unit in enumerate(units):
        if not isinstance(unit, (tuple, list)) or len(unit) != 3:
            raise TypeError(f"units[{i}] must be a (texts, input, expected) triple: {unit!r:.80}")
        texts, grid, expected = unit
        as_tuple = texts_of.get(id(texts))
        if as_tuple is None:
            if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
                raise TypeError(f"units[{i}]: program texts must be a list of str")
            as_tuple = tuple(texts)
            if not all(isinstance(text, str) for text in as_tuple):
                raise TypeError(f"units[{i}]: program texts must be a list of str")
            texts_of[id(texts)] = as_tuple
            keep_alive.append(texts)
        for what, value in (("input", grid), ("expected output", expected)):
            if id(value) not in good_grids:
                if not is_grid(value):
                    raise ValueError(f"units[{i}]: the {what} is not a valid grid: {value!r:.80}")
                good_grids.add(id(value))
                keep_alive.append(value)
        checked.append((as_tuple, grid, expected))
    return checked


def _check_settings(
    timeout_s: float, max_state_size: int | None, max_output_bytes: int, clock: str
) -> None:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)):
        raise TypeError(f"timeout_s must be a number, got {timeout_s!r}")
    if not (timeout_s > 0 and math.isfinite(timeout_s)):
        raise ValueError(f"timeout_s must be positive and finite, got {timeout_s!r}")
    if max_state_size is not None and (
        isinstance(max_state_size, bool) or not isinstance(max_state_size, int)
    ):
        raise TypeError(f"max_state_size must be an int or None, got {max_state_size!r}")
    if max_state_size is not None and max_state_size < 1:
        raise ValueError(f"max_state_size must be positive, got {max_state_size}")
    if isinstance(max_output_bytes, bool) or not isinstance(max_output_bytes, int):
        raise TypeError(f"max_output_bytes must be an int, got {max_output_bytes!r}")
    if max_output_bytes < 1:
        raise ValueError(f"max_output_bytes must be positive, got {max_output_bytes}")
    if clock not in ("cpu", "wall"):
        raise ValueError(f"clock must be 'cpu' or 'wall', got {clock!r}")


def _check_watchdog(hard_factor: float, hard_grace_s: float, housekeeping_s: float) -> None:
    """The parent watchdog's settings (see :class:`~codeit_jax.execution.sandbox.Sandbox`)."""
    for name, value in (
        ("hard_factor", hard_factor),
        ("hard_grace_s", hard_grace_s),
        ("housekeeping_s", housekeeping_s),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, got {value!r}")
    finite = all(math.isfinite(value) for value in (hard_factor, hard_grace_s, housekeeping_s))
    if not (finite and hard_factor >= 1 and hard_grace_s >= 0 and housekeeping_s > 0):
        raise ValueError(
            "need 1 <= hard_factor, 0 <= hard_grace_s and 0 < housekeeping_s, all finite; "
            f"got {hard_factor}, {hard_grace_s}, {housekeeping_s}"
        )


def _positive_int_or_none(name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_in_process(
    batch: Batch,
    *,
    timeout_s: float = 0.25,
    max_state_size: int | None = 1000,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    clock: str = "cpu",
) -> list[list[Outcome]]:
    """Run a batch in this process with the sandbox's outcome semantics, for debugging.

    Same parsing, time budget, state-size rule and value export as a worker, but without
    isolation: no memory limit, no watchdog (a run stuck in C code hangs the caller), a crash
    takes the caller down, and the time budget applies only when called from the main thread.
    """
    _check_settings(timeout_s, max_state_size, max_output_bytes, clock)
    flat = _flatten(batch)
    executor = ProgramRunner(
        timeout_s=timeout_s,
        max_state_size=max_state_size,
        max_output_bytes=max_output_bytes,
        clock=clock,
    )
    try:
        outcomes = [
            _outcome(executor.execute(executor.compile(text), flat.grids[number]))
            for text, number in flat.runs
        ]
    finally:
        executor.close()
    return [[outcomes[k] for k in row] for row in flat.shape]


def match_in_process(
    units: MatchUnits,
    *,
    timeout_s: float = 0.25,
    max_state_size: int | None = 1000,
    clock: str = "cpu",
) -> list[GroupMatches]:
    """:meth:`Sandbox.match` in this process, without isolation (as :func:`run_in_process`)."""
    _check_settings(timeout_s, max_state_size, DEFAULT_MAX_OUTPUT_BYTES, clock)
    executor = ProgramRunner(timeout_s=timeout_s, max_state_size=max_state_size, clock=clock)
    groups: dict[tuple[str, ...], ProgramGroup] = {}
    try:
        results = []
        for texts, grid, expected in _check_units(units):
            group = groups.get(texts)
            if group is None:
                group = groups[texts] = ProgramGroup([executor.compile(t) for t in texts])
            results.append(
                match_group(
                    group,
                    grid,
                    expected,
                    timer=executor.timer,
                    timeout_s=timeout_s,
                    max_state_size=max_state_size,
                )
            )
    finally:
        executor.close()
    return results
