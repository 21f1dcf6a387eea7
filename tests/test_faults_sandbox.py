"""Fault injection into the execution stage (issue 19, items 1, 4 and 8).

* Output size: a value small by CodeIt's length rule but large in memory is an ``output_size``
  failure of its program, measured before pickling; a meta-iteration keeps only grids.
* Watchdog: only the run is timed, so a slow parse or a slow export is not a timeout.
* Match groups: a program stuck or crashing inside a group fails alone; the other programs of
  the group, and the other units of the chunk, get their real results. ``Sandbox.run`` likewise
  reruns the rest of a killed worker's chunk.

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

from codeit_jax.bench import sandbox_memory
from codeit_jax.execution.batch import match_in_process
from codeit_jax.execution.line_sharing import Faults, ProgramGroup, match_group
from codeit_jax.execution.run import (
    DEFAULT_MAX_OUTPUT_BYTES,
    OUTPUT_SIZE,
    RunTimer,
    _ValuePickler,
    value_size,
)
from codeit_jax.execution.sandbox import CRASH, TIMEOUT, GroupMatches, Outcome, Sandbox
from codeit_jax.loop import inference
from codeit_jax.programs.program import parse
from codeit_jax.replay.relabel import relabel
from codeit_jax.tasks import Task, load_codeit_dir

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
        expected += relabel(task, texts, demo, test, 1).experiences
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


# ---------------------------------------------------------------------------- item 8: groups


GROUP = ["O = identity(I)", "O = vmirror(I)", "x1 = vmirror(I)\nO = vmirror(x1)", "hook:identity"]


@pytest.mark.parametrize(
    "culprit,timeouts,failures",
    [
        (STUCK, 1, 0),  # stuck in a line
        (f"hook:slow_hash:{60}", 1, 0),  # stuck hashing the line's value
        (f"hook:slow_compare:{60}", 1, 0),  # stuck comparing the output, outside any line
        ("hook:segfault", 0, 1),  # a crash
    ],
    ids=["line", "hash", "compare", "crash"],
)
def test_a_stuck_or_crashing_program_fails_alone_in_its_group(culprit, timeouts, failures):
    texts = GROUP[:2] + [culprit] + GROUP[2:]
    with hooked() as sb:
        [found] = sb.match([(texts, GRID, GRID)])
        assert sb.restarts == 1
    assert found == GroupMatches((0, 3, 4), timeouts, failures)


def test_other_units_of_the_chunk_keep_their_results():
    with_two = GROUP[:1] + [STUCK] + GROUP[1:3] + [f"hook:slow_hash:{60}"] + GROUP[3:]
    units = [(GROUP, GRID, GRID), (with_two, GRID, GRID), (GROUP, TEN, vmirror(TEN))]
    with hooked(chunk_size=3) as sb:
        found = sb.match(units)
        assert sb.restarts == 2
    assert found == [
        GroupMatches((0, 2, 3), 0, 0),
        GroupMatches((0, 3, 5), 2, 0),
        GroupMatches((1,), 0, 0),
    ]


def test_a_dead_line_fails_every_program_that_needs_it():
    texts = [
        "x1 = vmirror(I)\nO = hmirror(x1)",
        "x1 = hmirror(I)\nO = vmirror(x1)",
        "x1 = vmirror(I)\nO = identity(x1)",
        "x1 = remove(SIX, I)\nO = vmirror(x1)",
        "x1 = remove(SEVEN, I)\nO = vmirror(x1)",  # the same computation as the line above
        "x1 = hmirror(I)\nO = rot180(x1)",  # vmirror(I) computed otherwise
        "O = identity(I)",
    ]
    group = ProgramGroup([parse(t) for t in texts])
    mirror = group.plans[0][0][0]  # the node of vmirror(I)
    after_remove = group.plans[3][0][1]  # the node of vmirror(remove(SIX, I))
    timer = RunTimer()
    try:
        settings = dict(timer=timer, timeout_s=1.0, max_state_size=1000)
        clean = match_group(group, GRID, vmirror(GRID), **settings)
        dead = Faults({mirror: True, after_remove: False}, {})
        faulty = match_group(group, GRID, vmirror(GRID), faults=dead, **settings)
        crashed = match_group(group, GRID, GRID, faults=Faults({}, {6: False}), **settings)
    finally:
        timer.restore()
    assert clean == GroupMatches((2, 3, 4, 5), 0, 0)
    assert faulty == GroupMatches((5,), 2, 2)  # programs 0, 2 time out; 3, 4 fail
    assert crashed == GroupMatches((), 0, 1)


@pytest.mark.slow
def test_groups_with_stuck_programs_match_the_groups_without(codeit_data: Path):
    """Mutant-like groups of the training programs, each with a stuck program and a crashing
    one inserted: everything else as in process without them."""
    tasks = [t for t in load_codeit_dir(codeit_data / "training") if t.program][:12]
    texts = [parse(t.program).text for t in tasks]
    units, plain = [], []
    for k, task in enumerate(tasks):
        group = (texts * 2)[k : k + 6]
        grid, expected = task.train[0]
        plain.append((group, grid, expected))
        faulty = group[:2] + [STUCK] + group[2:4] + ["hook:segfault"] + group[4:]
        units.append((faulty, grid, expected))
    with hooked(workers=2, timeout_s=0.25) as sb:
        found = sb.match(units)
    reference = match_in_process(plain, timeout_s=0.25)
    for got, want in zip(found, reference):
        shifted = tuple(i - (i > 2) - (i > 5) for i in got.indices)
        assert shifted == want.indices
        assert (got.timeouts, got.failures) == (want.timeouts + 1, want.failures + 1)


# ---------------------------------------------------------------------------- run: the chunk


@pytest.mark.parametrize("culprit,error", [(STUCK, TIMEOUT), ("hook:segfault", CRASH)])
def test_run_reruns_the_rest_of_a_dead_workers_chunk(culprit, error):
    batch = [("hook:count", [GRID, TEN]), (culprit, [GRID]), ("hook:count", [BIG, vmirror(GRID)])]
    with hooked(chunk_size=5) as sb:
        (first_pid,) = sb.pids
        (a, b), (dead,), (c, d) = sb.run(batch)
        (second_pid,) = sb.pids
        assert sb.restarts == 1
    assert dead.error == error
    # The two runs before the culprit were done by the killed worker, but their results died
    # with it: all four come from its replacement, none is lost.
    assert all(o.ok for o in (a, b, c, d))
    assert {a.value[0], b.value[0], c.value[0], d.value[0]} == {second_pid} != {first_pid}
