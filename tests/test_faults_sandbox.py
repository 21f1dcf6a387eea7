"""Fault injection into the execution stage (issue 19).

* Output size: a value small by CodeIt's length rule but large in memory is an ``output_size``
  failure of its program, measured before pickling; a meta-iteration keeps only grids.
* Watchdog: only the run is timed, so a slow parse or a slow export is not a timeout.

Stalls are sleeps with the timer signals blocked (``tests/sandbox_hooks.py``): the worker's
interval timer cannot stop them, only the parent's watchdog.
"""

from __future__ import annotations

import io
import pickle
import sys
import tracemalloc
from pathlib import Path

import pytest

from codeit_jax import inference
from codeit_jax.bench import sandbox_memory
from codeit_jax.program import parse
from codeit_jax.relabel import relabel
from codeit_jax.sandbox import OUTPUT_SIZE, TIMEOUT, Outcome, Sandbox
from codeit_jax.sandbox_exec import DEFAULT_MAX_OUTPUT_BYTES, _ValuePickler, value_size
from codeit_jax.tasks import Task

HOOKS = "sandbox_hooks:compile_with_hooks"
GRID = ((1, 2, 3), (4, 5, 6))
TEN = tuple(tuple((r * c) % 10 for c in range(10)) for r in range(10))
BIG = tuple(tuple((r + c) % 10 for c in range(30)) for r in range(30))
TIMEOUT_S = 0.1
HARD_FACTOR = 1.0
HARD_GRACE_S = 0.3
STALL_S = 1.5  # well past a run's hard deadline (HARD_FACTOR * TIMEOUT_S + HARD_GRACE_S)
STUCK = "hook:block_signals_and_sleep"

# partition(upscale(I, 30)): ten frozensets, 90,000 cells on TEN; ~0.9 MB pickled, ~16 MB
# once unpickled.
LARGE = "x1 = multiply(TEN, THREE)\nx2 = upscale(I, x1)\nO = partition(x2)"


def hooked(**settings) -> Sandbox:
    """A sandbox with the test hooks and a watchdog that gives up quickly."""
    options = dict(
        workers=1,
        timeout_s=TIMEOUT_S,
        memory_mb=1024,
        hard_factor=HARD_FACTOR,
        hard_grace_s=HARD_GRACE_S,
        _compiler=HOOKS,
    )
    options.update(settings)
    return Sandbox(**options)


def vmirror(grid):
    return tuple(row[::-1] for row in grid)


# ---------------------------------------------------------------------------- item 1: output size


def test_a_short_value_large_in_memory_is_an_output_size_failure():
    with Sandbox(workers=1) as sb:
        (large,), (small,) = sb.run([(LARGE, [TEN]), ("O = vmirror(I)", [BIG])])
        assert sb.restarts == 0
    assert large.error == OUTPUT_SIZE and "in memory" in large.detail
    assert small == Outcome(True, vmirror(BIG))  # the largest valid grid still comes back


def _unpickled_bytes(value) -> int:
    """Memory the parent's copy of ``value`` takes, measured."""
    buffer = io.BytesIO()
    _ValuePickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    data = buffer.getvalue()
    tracemalloc.start()
    try:
        copy = pickle.loads(data)
        size = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del copy
    return size


@pytest.mark.parametrize(
    "text",
    [
        LARGE,
        "x1 = multiply(TEN, THREE)\nx2 = upscale(I, x1)\nO = fgpartition(x2)",
        "x1 = upscale(I, TEN)\nO = objects(x1, T, F, F)",
        "x1 = multiply(TEN, TEN)\nO = hupscale(I, x1)",  # one wide grid
        "x1 = multiply(TEN, THREE)\nO = upscale(I, x1)",  # its rows are shared objects
        "x1 = upscale(I, FIVE)\nx2 = partition(x1)\nO = totuple(x2)",
    ],
)
def test_value_size_estimates_the_parents_copy(text):
    value = parse(text).run(TEN, 1000)
    measured = _unpickled_bytes(value)
    assert measured > 20_000  # large enough for the allocator's free lists not to matter
    assert 0.7 * measured <= value_size(value, 1 << 40) <= 1.5 * measured


def test_value_size_stops_soon_after_the_limit():
    value = parse(LARGE).run(TEN, 1000)
    full = value_size(value, 1 << 40)
    capped = value_size(value, 10_000)
    assert full > 10_000_000
    # Over the limit by at most the last object counted: here one of the colour frozensets.
    assert 10_000 < capped <= 10_000 + max(sys.getsizeof(part) for part in value)


def test_value_size_counts_sharing_as_pickle_does():
    row = tuple(range(300, 330))  # ints above 256 are not shared by CPython
    shared = (row,) * 20
    assert value_size(shared, 1 << 40) == value_size((row,), 1 << 40) + 19 * 8
    assert value_size(10**100, 1 << 40) > value_size(10, 1 << 40) == 0
    assert value_size((len, print, None, True), 1 << 40) == value_size((0, 0, 0, 0), 1 << 40)


def test_every_valid_grid_fits_the_default_cap():
    assert value_size(BIG, 1 << 40) < DEFAULT_MAX_OUTPUT_BYTES / 3


class _Stub:
    """An executor whose ok values are fresh objects: a large non-grid value for texts
    starting with "large", a new copy of a grid for "grid", else a failure."""

    def __init__(self):
        self.calls = 0

    def run(self, batch):
        self.calls += 1
        rows = []
        for text, inputs in batch:
            row = []
            for x in inputs:
                if text.startswith("large"):
                    row.append(Outcome(True, frozenset((k, (k, len(x))) for k in range(3000))))
                elif text.startswith("grid"):
                    row.append(Outcome(True, tuple(tuple(r) for r in vmirror(x))))
                else:
                    row.append(Outcome(False, None, "runtime", "TypeError"))
            rows.append(row)
        return rows


def _tasks(n: int) -> list[Task]:
    return [
        Task(key=f"t{k}", train=[(GRID, vmirror(GRID)), (TEN, TEN)], test=[(GRID, GRID)])
        for k in range(n)
    ]


def test_a_meta_iteration_keeps_only_grids_each_once():
    runs = [("large", [GRID]), ("grid a", [GRID, TEN]), ("grid b", [GRID]), ("bad", [GRID])]
    outcomes = inference.run_batched(_Stub(), runs, "executing", progress=False)
    (large,), (a, a_ten), (b,), (bad,) = outcomes
    assert large == Outcome(True, None)  # ran, but its value is not a grid: not kept
    assert a == b == Outcome(True, vmirror(GRID)) and a.value is b.value
    assert a_ten.value == vmirror(TEN) and bad.error == "runtime"


def test_relabelling_is_unchanged_by_dropping_other_values():
    tasks = _tasks(2)
    samples = [["grid", "large", "bad"], ["large", "grid"]]
    result = inference.execute_and_relabel(tasks, samples, _Stub(), 1, progress=False)
    expected = []
    for task, texts in zip(tasks, samples):
        demo = _Stub().run([(t, [x for x, _ in task.train]) for t in texts])
        test = _Stub().run([(t, [x for x, _ in task.test]) for t in texts])
        expected += relabel(task, texts, demo, test, 1).tasks
    assert result.relabelled == expected and len(expected) == 2


def test_the_parent_holds_one_call_of_large_values_at_most(monkeypatch):
    monkeypatch.setattr(inference, "RUNS_PER_CALL", 8)
    tasks = _tasks(16)
    samples = [[f"large {k}", f"large {k + 1}"] for k in range(16)]  # 64 runs in 8 calls
    one_value = _unpickled_bytes(_Stub().run([("large", [GRID])])[0][0].value)
    executor = _Stub()
    tracemalloc.start()
    try:
        inference.execute_and_relabel(tasks, samples, executor, 0, progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert executor.calls == 8
    assert peak < 16 * one_value  # one call's 8 values and some slack, not all 64


@pytest.mark.slow
def test_benchmark_hostile_outputs_do_not_grow_the_parent(codeit_data: Path, capsys):
    argv = ["--n", "300", "--hostile-fraction", "0.05", "--tasks", "40", "--workers", "2"]
    figures = sandbox_memory.main([*argv, "--data", str(codeit_data)])
    assert figures["hostile"]["outcomes"].get(OUTPUT_SIZE, 0) > 0
    assert figures["hostile"]["peak_growth_mb"] < 50
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("{")


# ---------------------------------------------------------------------------- item 4: watchdog


def test_a_slow_parse_is_not_the_runs_time():
    with hooked() as sb:
        outcomes = sb.run([(f"hook:slow_compile:{STALL_S}", [GRID]), ("O = vmirror(I)", [GRID])])
        assert outcomes == [[Outcome(True, GRID)], [Outcome(True, vmirror(GRID))]]
        assert sb.restarts == 0


def test_a_slow_export_is_not_the_runs_time():
    with hooked() as sb:
        ((outcome,),) = sb.run([(f"hook:slow_export:{STALL_S}", [GRID])])
        assert outcome == Outcome(True, GRID) and sb.restarts == 0


def test_a_stuck_parse_is_still_killed():
    with hooked(housekeeping_s=0.5) as sb:
        (stuck,), (fine,) = sb.run([("hook:slow_compile:3600", [GRID]), ("O = vmirror(I)", [GRID])])
        assert stuck.error == TIMEOUT and "watchdog" in stuck.detail
        assert fine == Outcome(True, vmirror(GRID)) and sb.restarts == 1


def test_the_run_is_still_timed():
    with hooked() as sb:
        ((outcome,),) = sb.run([(f"hook:block_signals_and_sleep:{STALL_S}", [GRID])])
        assert outcome.error == TIMEOUT and "watchdog" in outcome.detail and sb.restarts == 1
