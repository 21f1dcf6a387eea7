"""The sandbox runs programs like Program.run, turns every fault into an outcome, and leaves no
processes behind."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import codeit_jax.execution.sandbox as sandbox_module
import codeit_jax.execution.worker as worker_module
from codeit_jax.execution.batch import run_in_process
from codeit_jax.execution.run import (
    ERROR_KINDS,
    FUNCTION,
    MEMORY,
    OUTPUT_SIZE,
    RUNTIME,
    STATE_SIZE,
    SYNTAX,
)
from codeit_jax.execution.sandbox import CRASH, TIMEOUT, Outcome, Sandbox, SandboxError
from codeit_jax.programs.program import parse
from codeit_jax.tasks import is_grid

HOOKS = "sandbox_hooks:compile_with_hooks"
TESTS_DIR = Path(__file__).resolve().parent
REPO_DIR = TESTS_DIR.parent
GRID = ((1, 2, 3), (4, 5, 6))
SQUARE = ((0, 1), (2, 3))
TALL = ((1,), (2,), (3,), (4,))
TIMEOUT_S = 0.2
HARD_FACTOR = 2.0
HARD_GRACE_S = 1.5

VALID = [
    "O = vmirror(I)",
    "x1 = hmirror(I)\nO = vmirror(x1)",
    "def solve_x(I):\n    x1 = rot90(I)\n    O = hconcat(x1, x1)\n    return O\n",
    "x1 = size(I)\nO = multiply(x1, TWO)",
    "O = rbind(add, ONE)",
]
MIXED = VALID + [
    "O = vmirror(",  # syntax
    "O = nonsense(I)",  # syntax
    "x1 = size(I)\nO = vmirror(x1)",  # runtime
    "O = add(I, ONE)",  # runtime
    "hook:spin",  # timeout
    "hook:raise:KeyError",  # runtime
]


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids: list[int], within_s: float) -> list[int]:
    """The pids still alive after waiting up to ``within_s`` seconds."""
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        left = [pid for pid in pids if alive(pid)]
        if not left:
            return []
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


@pytest.fixture(scope="module")
def sandbox():
    """Two workers with the test hooks; a hard deadline of 2 x budget + 1.5 s of wall time
    (generous: on a busy machine a run gets its CPU-time budget slowly)."""
    with Sandbox(
        workers=2,
        timeout_s=TIMEOUT_S,
        memory_mb=1024,
        _compiler=HOOKS,
        hard_factor=HARD_FACTOR,
        hard_grace_s=HARD_GRACE_S,
    ) as sb:
        yield sb


def expected(text: str, grid) -> object:
    value = parse(text).run(grid, 1000)
    return FUNCTION if callable(value) else value


# ---------------------------------------------------------------------------- interface


def test_runs_match_program_run_and_keep_the_batch_shape(sandbox):
    batch = [(text, [GRID, SQUARE]) for text in VALID] + [("O = vmirror(I)", [])]
    outcomes = sandbox.run(batch)
    assert [len(row) for row in outcomes] == [2] * len(VALID) + [0]
    for (text, grids), row in zip(batch, outcomes):
        for grid, outcome in zip(grids, row):
            assert outcome == Outcome(True, expected(text, grid), None, "")
    assert sandbox.run([]) == []


def test_outcome_fields_and_error_kinds(sandbox):
    assert ERROR_KINDS == (SYNTAX, RUNTIME, TIMEOUT, MEMORY, STATE_SIZE, CRASH, OUTPUT_SIZE)
    rows = sandbox.run([(text, [GRID]) for text in MIXED[len(VALID) :]])
    got = [(row[0].ok, row[0].error, row[0].detail) for row in rows]
    assert got[0][:2] == (False, SYNTAX) and "line 1" in got[0][2]
    assert got[1][:2] == (False, SYNTAX) and "nonsense" in got[1][2]
    assert got[2] == (False, RUNTIME, "TypeError")
    assert got[3] == (False, RUNTIME, "TypeError")
    assert got[4][:2] == (False, TIMEOUT)
    assert got[5] == (False, RUNTIME, "KeyError")
    assert all(row[0].value is None for row in rows)


def test_function_values_come_back_as_the_marker(sandbox):
    (top,), (nested,) = sandbox.run(
        [("O = rbind(add, ONE)", [GRID]), ("hook:function_in_tuple", [GRID])]
    )
    assert top.ok and top.value is FUNCTION
    assert nested.ok and nested.value == (FUNCTION, 1, FUNCTION)
    assert nested.value[0] is FUNCTION


def test_is_grid_is_reexported():
    assert is_grid(GRID) and not is_grid(((1, 2), (3,))) and not is_grid(((True,),))


def test_duplicate_runs_share_one_execution(sandbox):
    (first, other), (second,) = sandbox.run(
        [("hook:count", [GRID, SQUARE]), ("hook:count", [GRID])]
    )
    assert first.ok and first == second
    assert other.ok and other != first


# ---------------------------------------------------------------------------- limits


def test_state_size_limit_is_configurable():
    with (
        Sandbox(workers=1, max_state_size=3) as small,
        Sandbox(workers=1, max_state_size=None) as off,
    ):
        batch = [("O = vmirror(I)", [GRID, TALL]), ("x1 = vmirror(I)\nO = size(x1)", [TALL])]
        limited = small.run(batch)
        unlimited = off.run(batch)
    assert limited[0][0] == Outcome(True, vmirror_of(GRID))
    assert limited[0][1].error == STATE_SIZE and "O was not stored" in limited[0][1].detail
    assert limited[1][0].error == STATE_SIZE and "x1" in limited[1][0].detail
    assert unlimited[0][1] == Outcome(True, vmirror_of(TALL))
    assert unlimited[1][0] == Outcome(True, 4)


def vmirror_of(grid):
    return tuple(row[::-1] for row in grid)


def test_output_size_cap_is_configurable():
    big = tuple(tuple(range(10)) * 3 for _ in range(30))
    with Sandbox(workers=1, max_output_bytes=300) as sb:
        (small,), (large,) = sb.run([("O = size(I)", [big]), ("O = vmirror(I)", [big])])
    assert small == Outcome(True, 30)
    assert large.error == OUTPUT_SIZE and "300 bytes" in large.detail


def test_time_budget_is_per_line_and_survives_swallowed_signals(sandbox):
    spin = f"hook:spin:{TIMEOUT_S * 0.5}"
    (quick,), (slow,), (swallow,) = sandbox.run(
        [(spin, [GRID]), ("hook:spin:5", [GRID]), ("hook:swallow_timeouts:5", [GRID])]
    )
    assert quick == Outcome(True, GRID)
    assert slow.error == TIMEOUT and "cpu time" in slow.detail
    assert swallow.error == TIMEOUT


def test_a_line_over_its_budget_fails_the_run_however_fast_the_others_are(sandbox):
    """CodeIt times each line on its own: a slow line cannot borrow from nine fast ones."""
    padding = "\n#" * 9  # nine lines that do nothing: ten lines, ten budgets in all
    (slow,), (quick,) = sandbox.run(
        [
            (f"hook:spin:{TIMEOUT_S * 2}{padding}", [GRID]),
            (f"hook:spin:{TIMEOUT_S * 0.5}{padding}", [GRID]),
        ]
    )
    assert slow.error == TIMEOUT and f"{TIMEOUT_S:.3g} s of cpu time" in slow.detail
    assert quick == Outcome(True, GRID)


def test_wall_clock_timer_interrupts_sleep():
    with Sandbox(workers=1, timeout_s=0.1, clock="wall", _compiler=HOOKS) as sb:
        start = time.monotonic()
        ((outcome,),) = sb.run([("hook:spin:5", [GRID])])
        assert outcome.error == TIMEOUT and "wall time" in outcome.detail
        assert time.monotonic() - start < 3


def test_memory_limit_gives_memory_error_and_worker_survives(sandbox):
    restarts = sandbox.restarts
    (big,), (ok,) = sandbox.run([("hook:allocate:4096", [GRID]), ("O = vmirror(I)", [GRID])])
    assert big == Outcome(False, None, MEMORY, "MemoryError")
    assert ok == Outcome(True, vmirror_of(GRID))
    assert sandbox.restarts == restarts


# ---------------------------------------------------------------------------- faults


def test_segfault_is_a_crash_and_the_batch_goes_on(sandbox):
    restarts = sandbox.restarts
    batch = [(f"x1 = rot90(I)\nO = {f}(x1)", [GRID]) for f in ("vmirror", "hmirror", "dmirror")]
    batch += [("hook:segfault", [GRID]), ("hook:exit:7", [GRID])] + batch
    outcomes = sandbox.run(batch)
    assert outcomes[3] == [Outcome(False, None, CRASH, "worker killed by SIGSEGV")]
    assert outcomes[4] == [Outcome(False, None, CRASH, "worker exited with status 7")]
    for (text, grids), row in zip(batch, outcomes):
        if not text.startswith("hook:"):
            assert row == [Outcome(True, expected(text, grids[0]))]
    assert sandbox.restarts == restarts + 2


def test_worker_stuck_in_c_is_killed_and_replaced(sandbox):
    pids_before = set(sandbox.pids)
    batch = [(f"hook:spin:0.0{k}", [GRID]) for k in range(1, 6)]
    batch.insert(2, ("hook:block_signals_and_sleep", [GRID]))
    start = time.monotonic()
    outcomes = sandbox.run(batch)
    elapsed = time.monotonic() - start
    assert outcomes[2][0].error == TIMEOUT and "watchdog" in outcomes[2][0].detail
    assert all(row == [Outcome(True, GRID)] for i, row in enumerate(outcomes) if i != 2)
    assert elapsed < 10 * (HARD_FACTOR * TIMEOUT_S + HARD_GRACE_S)
    assert wait_gone(list(pids_before - set(sandbox.pids)), 5) == []
    assert sandbox.run([("O = vmirror(I)", [GRID])]) == [[Outcome(True, vmirror_of(GRID))]]
    assert len(sandbox.pids) == 2


# ---------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("workers,chunk_size", [(1, 1), (3, 2)])
def test_outcomes_do_not_depend_on_workers_or_chunking(sandbox, workers, chunk_size):
    grids = [GRID, SQUARE, TALL]
    batch = [(text, grids) for text in MIXED if text != "hook:spin"]
    reference = sandbox.run(batch)
    with Sandbox(
        workers=workers, chunk_size=chunk_size, timeout_s=TIMEOUT_S, _compiler=HOOKS
    ) as sb:
        assert sb.run(batch) == reference
    plain = [(t, g) for t, g in batch if not t.startswith("hook:")]
    assert run_in_process(plain) == sandbox.run(plain)


# ---------------------------------------------------------------------------- bad input


def test_bad_batches_are_refused_with_clear_errors(sandbox):
    with pytest.raises(TypeError, match="list of"):
        sandbox.run("O = vmirror(I)")
    with pytest.raises(TypeError, match=r"batch\[0\] must be a"):
        sandbox.run(["O = vmirror(I)"])
    with pytest.raises(TypeError, match="program text must be a str"):
        sandbox.run([(b"O = vmirror(I)", [GRID])])
    with pytest.raises(TypeError, match="inputs must be a list of grids"):
        sandbox.run([("O = vmirror(I)", GRID[0][0])])
    with pytest.raises(ValueError, match=r"batch\[1\] input 0 is not a valid grid"):
        sandbox.run([("O = vmirror(I)", [GRID]), ("O = vmirror(I)", [((1, 2), (3,))])])
    with pytest.raises(ValueError, match="not a valid grid"):
        run_in_process([("O = vmirror(I)", [[[1]]])])


@pytest.mark.parametrize(
    "kwargs,error",
    [
        ({"workers": 0}, ValueError),
        ({"workers": 1.5}, TypeError),
        ({"timeout_s": 0}, ValueError),
        ({"timeout_s": float("inf")}, ValueError),
        ({"memory_mb": -1}, ValueError),
        ({"max_state_size": 0}, ValueError),
        ({"max_state_size": True}, TypeError),
        ({"chunk_size": 0}, ValueError),
        ({"clock": "gpu"}, ValueError),
        ({"hard_factor": 0.5}, ValueError),
        ({"hard_grace_s": "1"}, TypeError),
        ({"housekeeping_s": 0}, ValueError),
        ({"_compiler": "no_colon"}, ValueError),
        ({"_compiler": "no_such_module_xyz:parse"}, ImportError),
    ],
)
def test_bad_settings_are_refused(kwargs, error):
    with pytest.raises(error):
        Sandbox(**kwargs)


def test_workers_that_cannot_start_raise_sandbox_error(monkeypatch):
    monkeypatch.setattr(worker_module, "BOOTSTRAP", "import sys; sys.exit(5)")
    with pytest.raises(SandboxError, match="failed to start.*status 5"):
        Sandbox(workers=2)


# ---------------------------------------------------------------------------- cleanup


def test_close_kills_and_reaps_workers():
    sb = Sandbox(workers=2)
    pids = sb.pids
    assert len(pids) == 2 and all(alive(pid) for pid in pids)
    sb.close()
    assert sb.closed and not any(alive(pid) for pid in pids)
    with pytest.raises(SandboxError, match="closed"):
        sb.run([("O = vmirror(I)", [GRID])])
    sb.close()  # idempotent


def test_exception_in_caller_leaves_no_workers():
    with pytest.raises(RuntimeError, match="caller failed"), Sandbox(workers=2) as sb:
        pids = sb.pids
        raise RuntimeError("caller failed")
    assert not any(alive(pid) for pid in pids)


class _Interrupt(Exception):
    pass


def test_exception_during_run_drops_the_busy_worker(sandbox):
    def interrupt(signum, frame):
        raise _Interrupt

    previous = signal.signal(signal.SIGUSR1, interrupt)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR1))
    pids = sandbox.pids
    try:
        timer.start()
        with pytest.raises(_Interrupt):
            sandbox.run([("hook:block_signals_and_sleep:30", [GRID])])
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
    assert len(wait_gone(pids, 0)) == 1  # the idle one is kept, the busy one is gone
    assert gc.isenabled()  # the collector, paused for the batch, is back on
    assert sandbox.run([("O = vmirror(I)", [GRID])]) == [[Outcome(True, vmirror_of(GRID))]]


def test_the_parent_collects_no_garbage_while_it_runs_a_batch(sandbox, monkeypatch):
    seen = []
    step, flatten = Sandbox._step, sandbox_module._flatten

    def watched_step(self, *args):
        seen.append(gc.isenabled())
        return step(self, *args)

    def watched_flatten(batch):
        seen.append(gc.isenabled())
        return flatten(batch)

    monkeypatch.setattr(Sandbox, "_step", watched_step)
    monkeypatch.setattr(sandbox_module, "_flatten", watched_flatten)
    batch = [(text, [GRID, SQUARE]) for text in VALID]
    assert sandbox.run(batch) == run_in_process(batch)
    assert seen and not any(seen) and gc.isenabled()
    gc.disable()  # a caller that keeps it off finds it off afterwards
    try:
        sandbox.run(batch)
        assert not gc.isenabled()
    finally:
        gc.enable()


CHILD = """
import json, signal, sys, threading, time
# A shell starts background jobs with SIGINT ignored, and Python then installs no
# KeyboardInterrupt handler: give this child a terminal's Ctrl-C whatever started pytest.
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path[:0] = {paths!r}
from codeit_jax.execution.sandbox import Sandbox
GRID = ((1, 2), (3, 4))

def work(sb):
    print(json.dumps(sb.pids), flush=True)
    sb.run([({program!r}, [GRID]), ("hook:spin:30", [GRID])])

def main():
    with Sandbox(workers=3, timeout_s=30, _compiler="sandbox_hooks:compile_with_hooks") as sb:
        try:
            work(sb)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            raise

if {in_thread!r}:
    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    thread.join()
else:
    main()
"""


def start_child(tmp_path: Path, program: str, in_thread: bool) -> tuple[subprocess.Popen, list]:
    script = tmp_path / "child.py"
    paths = [str(REPO_DIR), str(TESTS_DIR)]
    script.write_text(CHILD.format(paths=paths, program=program, in_thread=in_thread))
    child = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    pids = json.loads(child.stdout.readline())
    time.sleep(0.5)  # let the runs start
    assert len(pids) == 3 and all(alive(pid) for pid in pids)
    return child, pids


@pytest.mark.parametrize(
    "program,in_thread",
    [("hook:block_signals_and_sleep:60", False), ("hook:spin:30", True)],
    ids=["stuck-in-c-pdeathsig", "lifeline-thread"],
)
def test_workers_exit_when_the_parent_is_killed(tmp_path, program, in_thread):
    child, pids = start_child(tmp_path, program, in_thread)
    child.kill()
    child.wait()
    assert wait_gone(pids, 5) == []


def test_ctrl_c_leaves_no_workers(tmp_path):
    child, pids = start_child(tmp_path, "hook:block_signals_and_sleep:60", False)
    os.killpg(child.pid, signal.SIGINT)  # like Ctrl-C: the whole process group
    out, _ = child.communicate(timeout=20)
    assert "interrupted" in out and child.returncode != 0
    assert wait_gone(pids, 2) == []


def test_workers_do_not_import_jax_even_if_the_parent_did():
    pytest.importorskip("jax")
    with Sandbox(workers=1, _compiler=HOOKS) as sb:
        ((outcome,),) = sb.run([("hook:modules", [GRID])])
    assert outcome.ok and "jax" not in outcome.value and "codeit_jax.dsl" in outcome.value


def test_hooks_are_not_reachable_from_program_text():
    with Sandbox(workers=1) as sb:
        ((outcome,),) = sb.run([("hook:segfault", [GRID])])
    assert outcome.error == SYNTAX and sb.restarts == 0


def test_run_in_process_enforces_the_time_budget():
    deep = ["x1 = compose(vmirror, hmirror)"]
    deep += [f"x{k} = compose(x{k - 1}, x{k - 1})" for k in range(2, 31)]
    text = "\n".join(deep + ["O = x30(I)"])
    ((outcome,),) = run_in_process([(text, [GRID])], timeout_s=0.01)
    assert outcome.error == TIMEOUT
    assert run_in_process([("O = vmirror(I)", [GRID])]) == [[Outcome(True, vmirror_of(GRID))]]
