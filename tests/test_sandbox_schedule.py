"""Scheduling in the sandbox: an idle worker takes the unstarted runs of a busy worker's chunk,
results stay in batch order and equal to in-process execution, and the batch statistics say
where the time went (which worker ran what, restarts and their causes)."""

from __future__ import annotations

import math

import pytest

from codeit_jax.execution.batch import _flatten, run_in_process
from codeit_jax.execution.run import CRASH, TIMEOUT
from codeit_jax.execution.sandbox import Outcome, Sandbox
from codeit_jax.execution.schedule import (
    chunk_length,
    longest_first,
    program_lines,
    runs_message,
    steal_limit,
)
from codeit_jax.execution.stats import CRASH_IN_RUN, WATCHDOG, BatchStats
from codeit_jax.execution.worker import IDLE, STARVED_FACTOR, _Progress, starved

HOOKS = "sandbox_hooks:compile_with_hooks"
GRIDS = [((k, 1), (2, 3)) for k in range(4)]  # distinct inputs: one run each
FAST = [
    "O = vmirror(I)",
    "x1 = hmirror(I)\nO = vmirror(x1)",
    "x1 = rot90(I)\nO = hconcat(x1, x1)",
    "O = add(I, ONE)",  # runtime error
    "O = vmirror(",  # syntax error
]
SLOW_S = 1.0  # CPU seconds of each slow run: long enough for the other worker to go idle


def fast_batch(copies: int) -> list[tuple[str, list]]:
    return [(text + "\n" * k, GRIDS) for k in range(copies) for text in FAST]


def test_steal_limit_keeps_the_run_in_progress_and_half_of_the_rest():
    assert steal_limit(5, 0) == 3  # keeps 0, 1, 2; gives 3, 4
    assert steal_limit(4, 0) == 2  # keeps 0, 1; gives 2, 3
    assert steal_limit(2, 0) == 1  # gives the only unstarted run
    assert steal_limit(5, 4) is None  # nothing left to take
    assert steal_limit(5, IDLE) is None  # not started or finished: leave it alone
    assert chunk_length(1000, 2, None) == 128 and chunk_length(10, 2, None) == 3
    assert chunk_length(1000, 2, 7) == 7


def test_a_worker_is_sent_each_grid_of_a_batch_once():
    flat = _flatten([("O = I", GRIDS[:2]), ("O = vmirror(I)", [GRIDS[1], GRIDS[2]])])
    assert flat.grids == GRIDS[:3] and [g for _, g in flat.runs] == [0, 1, 1, 2]
    first, second = set(), set()
    runs = [("O = I", 0), ("O = I", 1), ("O = vmirror(I)", 1)]
    assert runs_message(flat, [0, 1, 2], first) == ("runs", True, {0: GRIDS[0], 1: GRIDS[1]}, runs)
    assert runs_message(flat, [3], first) == ("runs", False, {2: GRIDS[2]}, [("O = vmirror(I)", 2)])
    assert runs_message(flat, [1], first)[1:3] == (False, {})  # it has them all now
    # Another worker (or a replacement) starts from nothing, whatever the first one has.
    assert runs_message(flat, [2, 3], second)[1:3] == (True, {1: GRIDS[1], 2: GRIDS[2]})


def test_consecutive_batches_use_their_own_grids_whatever_their_indices():
    """The second batch's grid 0 is another grid than the first's: what a worker was sent
    for one batch is never taken for the next (one run per chunk, so both workers serve
    every batch)."""
    texts = ["O = I", "O = vmirror(I)", "x1 = rot90(I)\nO = hconcat(x1, x1)"]
    batches = [[(t, GRIDS[k : k + 2]) for t in texts] for k in range(3)]
    with Sandbox(workers=2, chunk_size=1) as sb:
        for batch in batches:
            assert sb.run(batch) == run_in_process(batch)


def test_runs_are_queued_longest_program_first_and_stable():
    assert program_lines("x1 = rot90(I)\n\n   \nO = x1\n") == 2
    texts = ["a", "b\nc", "d", "e\nf\ng", "b\nc", "h\n\n\n"]
    assert longest_first(texts) == [3, 1, 4, 0, 2, 5]
    assert longest_first([]) == []


def test_the_longest_program_runs_first_and_results_stay_in_batch_order():
    """With one worker, the runs of the 4-line program are the worker's first two calls."""
    batch = [("hook:count", GRIDS), ("hook:count:\nlong\nlong\nlong", GRIDS[:2])]
    with Sandbox(workers=1, timeout_s=30, _compiler=HOOKS) as sb:
        outcomes = sb.run(batch)
    assert all(o.ok for row in outcomes for o in row)
    assert [o.value[1] for o in outcomes[1]] == [0, 1]
    assert [o.value[1] for o in outcomes[0]] == [2, 3, 4, 5]


def test_a_slow_program_does_not_hold_the_runs_queued_behind_it():
    """Three slow runs of one program sit in one chunk; the idle worker takes some of them."""
    slow = (f"hook:spin:{SLOW_S}", GRIDS[:3])
    batch = [slow] + fast_batch(3)
    with Sandbox(workers=2, timeout_s=30, _compiler=HOOKS) as sb:
        outcomes = sb.run(batch)
        stats = sb.last_stats
    assert outcomes[0] == [Outcome(True, grid) for grid in GRIDS[:3]]
    assert outcomes[1:] == run_in_process(batch[1:])
    assert stats.steals >= 1
    slow_lanes = {stats.item_lane[k] for k in range(3)}
    assert slow_lanes == {0, 1}  # the slow runs were split between the two workers
    assert all(stats.item_cpu[k] >= SLOW_S * 0.9 for k in range(3))
    assert sum(lane.items for lane in stats.lanes) == stats.items
    assert sorted(entry["item"] for entry in stats.tail(3)) == [0, 1, 2]
    assert stats.tail(1)[0]["source"] in {(0, 0), (0, 1), (0, 2)}


def test_stealing_off_gives_the_same_outcomes_and_no_steals():
    batch = [(f"hook:spin:{SLOW_S / 4}", GRIDS[:2])] + fast_batch(2)
    with (
        Sandbox(workers=2, timeout_s=30, _compiler=HOOKS) as stealing,
        Sandbox(workers=2, timeout_s=30, _compiler=HOOKS, _steal=False) as plain,
    ):
        assert stealing.run(batch) == plain.run(batch)
        assert plain.last_stats.steals == 0


@pytest.mark.parametrize("workers,chunk_size", [(1, None), (2, None), (2, 1), (3, 4)])
def test_results_are_in_batch_order_whatever_the_split(workers, chunk_size):
    batch = [(f"hook:spin:{SLOW_S / 4}", GRIDS[1:3])] + fast_batch(4)
    batch.insert(7, (f"hook:spin:{SLOW_S / 4}", GRIDS[:1]))
    expected = [[Outcome(True, g) for g in batch[0][1]]] + run_in_process(batch[1:7])
    expected += [[Outcome(True, GRIDS[0])]] + run_in_process(batch[8:])
    with Sandbox(workers=workers, timeout_s=30, chunk_size=chunk_size, _compiler=HOOKS) as sb:
        assert sb.run(batch) == expected
        stats = sb.last_stats
    assert all(lane >= 0 for lane in stats.item_lane)  # every run was answered by a worker
    assert not any(math.isnan(seconds) for seconds in stats.item_wall)


def test_a_killed_and_a_crashed_worker_are_restarted_and_reported_with_their_cause():
    """Stuck and crashing runs among slow and fast ones: the same outcomes as before stealing
    (the stuck run a watchdog timeout, the crash a crash, every other run its own result),
    and the statistics name each restart's cause and run."""
    batch = [(f"hook:spin:{SLOW_S / 4}", GRIDS[:2])] + fast_batch(2)
    batch.insert(3, ("hook:block_signals_and_sleep", GRIDS[:1]))
    batch.insert(6, ("hook:segfault", GRIDS[:1]))
    with Sandbox(
        workers=2, timeout_s=2.0, hard_factor=1.0, hard_grace_s=0.5, _compiler=HOOKS
    ) as sb:
        outcomes = sb.run(batch)
        stats = sb.last_stats
        restarts = sb.restarts
    assert outcomes[3][0].error == TIMEOUT and "watchdog" in outcomes[3][0].detail
    assert outcomes[6] == [Outcome(False, None, CRASH, "worker killed by SIGSEGV")]
    assert outcomes[0] == [Outcome(True, g) for g in GRIDS[:2]]
    others = [row for i, row in enumerate(batch) if i not in (0, 3, 6)]
    assert [row for i, row in enumerate(outcomes) if i not in (0, 3, 6)] == run_in_process(others)
    assert restarts == 2
    causes = {(r.cause, stats.sources[r.item][0]) for r in stats.restarts}
    assert causes == {(WATCHDOG, 3), (CRASH_IN_RUN, 6)}
    for restart in stats.restarts:  # a replacement started during the batch, or at its end
        assert restart.spawn_s > 0 and (restart.ready_s is None or restart.ready_s > 0)
        assert restart.item_s is not None and restart.item_s >= 0
    assert stats.item_wall[stats.restarts[0].item] >= 0  # a lost run keeps its time


def test_batch_statistics_summary_adds_up():
    stats = BatchStats(items=4, workers=2, start=0.0)
    stats.answered(0, [0, 1], [0.5, 0.4, 0.1, 0.1], busy_s=0.7, cpu_s=0.5)
    stats.answered(1, [3], [0.2, 0.2, 0.3, 0.3], busy_s=0.5, cpu_s=0.5)  # ran one past a steal
    stats.answered(1, [2], [0.05, 0.05], busy_s=0.1, cpu_s=0.05)
    stats.wall_s = 1.0
    summary = stats.summary()
    assert stats.duplicates == 1
    assert [entry["item"] for entry in stats.tail(2)] == [0, 3]
    assert summary["lanes"][0]["idle_s"] == pytest.approx(0.3)
    assert summary["lanes"][1]["items"] == 2 and summary["lanes"][1]["chunks"] == 2
    assert summary["item_wall_s"]["max"] == 0.5 and summary["item_wall_s_total"] == 0.85


def test_the_watchdog_spares_a_run_that_only_waits_for_a_core():
    """Past its wall-clock deadline, a runnable worker under its CPU deadline lives on; a
    sleeping one (stuck in a blocking call), one over its CPU deadline (stuck in C, spinning)
    and one far past its allowance are killed."""
    at = _Progress(0, deadline=13.0, program=IDLE, node=IDLE, started=10.0, cpu_deadline=5.0)
    now = 14.0
    assert starved(at, now, (4.0, "R"))
    assert not starved(at, now, (4.0, "S")) and not starved(at, now, (4.0, "D"))
    assert not starved(at, now, (5.5, "R"))
    assert not starved(at, 10.0 + 3.0 * STARVED_FACTOR + 0.1, (4.0, "R"))
    assert not starved(at, now, None)  # no /proc: the wall-clock deadline alone, as before


def test_a_run_spinning_in_c_is_still_killed_once_past_its_cpu_allowance():
    batch = [("hook:spin_in_c:12", GRIDS[:1])] + fast_batch(1)
    with Sandbox(
        workers=2, timeout_s=0.1, hard_factor=1.0, hard_grace_s=0.3, _compiler=HOOKS
    ) as sb:
        outcomes = sb.run(batch)
        stats = sb.last_stats
    assert outcomes[0][0].error == TIMEOUT and "watchdog" in outcomes[0][0].detail
    assert outcomes[1:] == run_in_process(batch[1:])
    assert [r.cause for r in stats.restarts] == [WATCHDOG]
    assert stats.restarts[0].item_s < 60
