"""The sandbox worker process: receives chunks of runs, returns their records.

Started by :class:`codeit_jax.execution.sandbox.Sandbox` as a fresh interpreter (``python -c`` with
:data:`BOOTSTRAP`), never forked from the parent: the parent may hold JAX/XLA threads, which a
``fork`` would copy in a broken state, and a fresh interpreter that imports only this module,
the program parser and the DSL starts quickly (docs/benchmarks.md).

Channels, all inherited file descriptors:

* commands (parent -> worker): pickled ``("runs", fresh, {grid index: grid}, [(text, grid
  index)])`` chunks (each grid of a batch is sent once, with the first chunk that needs it;
  ``fresh`` starts a new batch's table, see :func:`~codeit_jax.execution.schedule.runs_message`),
  or ``("match", {group id: texts}, [(group id, grid, expected)])`` for
  :meth:`~codeit_jax.execution.sandbox.Sandbox.match`, or ``None`` to stop;
* replies (worker -> parent): ``("ready", pid, cpu)`` once, then per chunk one pickled
  ``(records, times, cpu)``: the records of the items it ran (see
  :mod:`codeit_jax.execution.run`; for a match chunk, ``GroupMatches`` tuples), each item's
  wall-clock and CPU seconds (two floats per item, for
  :mod:`codeit_jax.execution.stats`), and the worker's CPU seconds so far;
* lifeline: a pipe the parent never writes; end-of-file means the parent is gone;
* progress slot: 48 shared bytes: ``int64`` index of the run (or match unit) in progress, -1
  when idle; ``float64`` monotonic deadline after which the parent's watchdog kills this
  worker; for a match unit, ``int64`` index of the program in progress and ``int64`` node (see
  :mod:`codeit_jax.execution.line_sharing`) being computed, -1 for none (the parent reads these
  two after a kill or a crash to tell which program of the unit was to blame); ``int64``
  limit, written by the parent; ``float64`` monotonic time the item in progress started;
  ``float64`` the worker's CPU-time deadline (see below).

Work stealing: before each item the worker reads the limit and stops the chunk when the item's
index has reached it, replying with the records of the items it ran. The parent lowers the
limit to hand the tail of a busy worker's chunk to an idle one (see
:mod:`codeit_jax.execution.schedule`), so one slow program does not keep the rest of its chunk
from the other workers. The worker may read the limit just before the parent lowers it and run
one item past it; the parent then uses the other worker's copy of that item (the same program
on the same input) and ignores the extra record.

Garbage collection is tuned for a worker's life (:mod:`codeit_jax.execution.collector`).

Deadlines: a run's starts when the run starts and is ``hard_factor * budget + hard_grace_s``
(for a match unit, the same per program). The worker's own steps around it, parsing the text
before and checking and pickling the value after, get :data:`HOUSEKEEPING_S` instead: their
cost depends on the text and the output cap, not on what the program does, and a short grace
there would let a busy machine turn an instant program into a timeout. Each deadline is
published twice: in wall-clock time and in this process's CPU time (the same allowance counted
from the CPU time the item started at). With the CPU clock, a worker past its wall-clock
deadline that is runnable and has not used its CPU allowance is waiting for a core, not stuck:
the watchdog lets it go on (:func:`starved`), up to :data:`STARVED_FACTOR` times the allowance
in wall-clock time, so a loaded machine does not turn a run that its own timer will stop into
a killed worker, a lost chunk and a restart.

Parent death is detected three ways so that no worker outlives its parent by more than a few
seconds: ``PR_SET_PDEATHSIG`` (Linux; immediate even while stuck in C code, but tied to the
thread that started the worker, so the parent asks for it only from its main thread), a thread
blocked reading the lifeline, and end-of-file on the command pipe while idle.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import math
import mmap
import os
import pickle
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

from codeit_jax import block_cache
from codeit_jax.execution import collector
from codeit_jax.execution.line_sharing import ProgramGroup, match_group
from codeit_jax.execution.run import ProgramRunner, load_compiler

#: Program groups kept per worker for :meth:`Sandbox.match` (oldest evicted first).
GROUP_CACHE_SIZE = 256

#: Code run by ``python -c``; argv[1] is the JSON config. Ctrl-C is ignored from the first
#: instruction on (it is the parent's to handle), then the parent's sys.path is installed so
#: the worker imports the same codeit_jax (and test modules) as the parent.
BOOTSTRAP = (
    "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "import json, sys; config = json.loads(sys.argv[1]); sys.path[:] = config['sys_path']; "
    "from codeit_jax.execution.worker import main; main(config)"
)

INDEX = struct.Struct("q")
DEADLINE = struct.Struct("d")
PROGRAM = struct.Struct("q")
NODE = struct.Struct("q")
LIMIT = struct.Struct("q")
STARTED = struct.Struct("d")
CPU_DEADLINE = struct.Struct("d")
# byte offsets in the slot (INDEX is at 0)
DEADLINE_AT, PROGRAM_AT, NODE_AT, LIMIT_AT, STARTED_AT, CPU_DEADLINE_AT = 8, 16, 24, 32, 40, 48
SLOT_BYTES = 56
IDLE = -1

#: A run waiting for a core is given at most this many times its wall-clock allowance.
STARVED_FACTOR = 10.0

#: Wall-clock seconds the watchdog allows a worker's own steps around a run (parsing a text,
#: building a program group, checking and pickling a value) before it kills the worker.
HOUSEKEEPING_S = 30.0

_PR_SET_PDEATHSIG = 1
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent thread exits (best effort)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # the lifeline thread still covers parent death


def _watch_lifeline(fd: int) -> None:
    """Exit the whole process as soon as the parent's end of the lifeline closes."""
    try:
        while os.read(fd, 1):
            pass
    finally:
        os._exit(0)


def _start_lifeline(fd: int) -> None:
    threading.stack_size(256 * 1024)  # keep the thread's reserved address space small
    thread = threading.Thread(target=_watch_lifeline, args=(fd,), name="lifeline", daemon=True)
    thread.start()


def _limit_memory(memory_mb: int | None) -> None:
    """Cap the address space so that a huge allocation raises MemoryError in this worker."""
    if memory_mb is None:
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = memory_mb * 1024 * 1024
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _stopped(slot: Any, index: int) -> bool:
    """True when the parent has handed item ``index`` and the rest to another worker;
    otherwise the item's start time is published for the parent's statistics."""
    if index >= LIMIT.unpack_from(slot, LIMIT_AT)[0]:
        return True
    STARTED.pack_into(slot, STARTED_AT, time.monotonic())
    return False


def _publish(
    slot: mmap.mmap, index: int, deadlines: tuple[float, float], program: int = IDLE
) -> None:
    """Tell the watchdog which run (and program) is in progress and when to give up on it
    (``deadlines``: wall-clock and CPU time).

    The deadline is written first: the parent reads index, deadline, program and deadline
    again, so a program it reads always belongs to the deadline it saw or to a later one.
    """
    DEADLINE.pack_into(slot, DEADLINE_AT, deadlines[0])
    CPU_DEADLINE.pack_into(slot, CPU_DEADLINE_AT, deadlines[1])
    PROGRAM.pack_into(slot, PROGRAM_AT, program)
    NODE.pack_into(slot, NODE_AT, IDLE)
    INDEX.pack_into(slot, 0, index)


def _serve(config: dict[str, Any], commands: Connection, replies: Connection, slot: Any) -> None:
    executor = ProgramRunner(
        timeout_s=config["timeout_s"],
        max_state_size=config["max_state_size"],
        max_output_bytes=config["max_output_bytes"],
        clock=config["clock"],
        compiler=load_compiler(config["compiler"]),
    )
    limits = _Limits(config["hard_factor"], config["hard_grace_s"], config["housekeeping_s"])
    _limit_memory(config["memory_mb"])
    groups: dict[tuple[str, ...], ProgramGroup] = {}
    grids: dict[int, Any] = {}  # the current batch's grids that this worker has been sent
    collector.tune()
    replies.send_bytes(pickle.dumps(("ready", os.getpid(), time.process_time())))
    chunks = 0
    while True:
        try:
            message = commands.recv_bytes()
        except (EOFError, OSError):
            return  # parent gone
        work = pickle.loads(message)
        if work is None:
            return
        times: list[float] = []
        if work[0] == "match":
            records = _match(executor, groups, work, slot, limits, times)
        else:
            _, fresh, new_grids, runs = work
            if fresh:
                grids = {}
            grids.update(new_grids)
            records = _runs(executor, runs, grids, slot, limits, times)
            del new_grids, runs  # not survivors (the table is)
        _publish(slot, IDLE, (math.inf, math.inf))
        reply = (records, times, time.process_time())
        replies.send_bytes(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
        del work, records, times, reply  # not survivors
        chunks += 1
        collector.freeze_survivors(chunks)


class _Limits(NamedTuple):
    """The watchdog's allowances (see the module docstring): deadlines in wall-clock time and
    in CPU time counted from ``cpu``, the CPU time the item started at."""

    hard_factor: float
    hard_grace: float
    housekeeping: float

    def run_deadline(self, budget: float, cpu: float) -> tuple[float, float]:
        allowance = self.hard_factor * budget + self.hard_grace
        return time.monotonic() + allowance, cpu + allowance

    def housekeeping_deadline(self, cpu: float) -> tuple[float, float]:
        return time.monotonic() + self.housekeeping, cpu + self.housekeeping


def _runs(
    executor: ProgramRunner,
    runs: list[tuple[str, int]],
    grids: dict[int, Any],
    slot: Any,
    limits: _Limits,
    times: list[float],
) -> list[tuple]:
    """Records of a chunk of ``(text, grid index)`` runs, up to the limit the parent set."""
    records = []
    for index, (text, grid) in enumerate(runs):
        if _stopped(slot, index):
            break
        wall, cpu = time.perf_counter(), time.process_time()
        records.append(_run(executor, index, text, grids[grid], slot, limits, cpu))
        times += (time.perf_counter() - wall, time.process_time() - cpu)
    return records


def _run(
    executor: ProgramRunner,
    index: int,
    text: str,
    grid: Any,
    slot: Any,
    limits: _Limits,
    cpu: float,
) -> tuple:
    """One run's record; only the run itself is under the run's deadline."""
    _publish(slot, index, limits.housekeeping_deadline(cpu))
    program = executor.compile(text)
    if isinstance(program, tuple):
        return program
    _publish(slot, index, limits.run_deadline(executor.budget(program), cpu))
    record = executor.run(program, grid)
    _publish(slot, index, limits.housekeeping_deadline(cpu))
    return executor.export(record)


def _match(
    executor: ProgramRunner,
    groups: dict[tuple[str, ...], ProgramGroup],
    message: tuple,
    slot: Any,
    limits: _Limits,
    times: list[float],
) -> list[tuple]:
    """Records of a match chunk; the watchdog deadline is renewed for every program, and the
    program and node in progress are published so that a kill blames only them."""
    _, texts_by_id, units = message
    per_line = executor.timeout_s

    def on_node(node: int) -> None:
        NODE.pack_into(slot, NODE_AT, node)

    records = []
    for index, (gid, grid, expected, faults) in enumerate(units):
        if _stopped(slot, index):
            break

        def on_program(program: int, lines: int, index: int = index) -> None:
            budget = per_line * max(1, lines)
            _publish(slot, index, limits.run_deadline(budget, time.process_time()), program)

        wall, cpu = time.perf_counter(), time.process_time()
        _publish(slot, index, limits.housekeeping_deadline(cpu))
        result = match_group(
            _group(executor, groups, texts_by_id[gid]),
            grid,
            expected,
            timer=executor.timer,
            timeout_s=executor.timeout_s,
            max_state_size=executor.max_state_size,
            on_program=on_program,
            on_node=on_node,
            faults=faults,
        )
        records.append(tuple(result))
        times += (time.perf_counter() - wall, time.process_time() - cpu)
    return records


def _group(
    executor: ProgramRunner, groups: dict[tuple[str, ...], ProgramGroup], texts: tuple[str, ...]
) -> ProgramGroup:
    """The program group of ``texts``, compiled once per worker (bounded cache)."""
    group = groups.get(texts)
    if group is None:
        if len(groups) >= GROUP_CACHE_SIZE:
            del groups[next(iter(groups))]
        group = groups[texts] = ProgramGroup([executor.compile(t) for t in texts])
    return group


def main(config: dict[str, Any]) -> None:
    """Worker entry point (called by :data:`BOOTSTRAP`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if config["pdeathsig"]:
        _die_with_parent()
    if os.getppid() != config["parent_pid"]:
        os._exit(0)  # the parent died before we could watch it
    _start_lifeline(config["lifeline_fd"])
    commands = Connection(config["command_fd"], writable=False)
    replies = Connection(config["reply_fd"], readable=False)
    slot = mmap.mmap(config["slot_fd"], SLOT_BYTES)
    _serve(config, commands, replies, slot)
    os._exit(0)


if __name__ == "__main__":  # manual debugging: python -m codeit_jax.execution.worker '<json>'
    main(json.loads(sys.argv[1]))


class _Progress(NamedTuple):
    """A worker's progress slot, read consistently (see :mod:`codeit_jax.execution.worker`)."""

    index: int  # run or unit of the chunk in progress, IDLE between them
    deadline: float
    program: int  # program of a match unit in progress, or IDLE
    node: int  # node of that program being computed, or IDLE
    started: float = math.nan  # when the item in progress started (for statistics)
    cpu_deadline: float = math.inf  # the deadline in the worker's CPU time


class _Worker:
    """Parent-side handle of one worker process and its channels.

    ``lane`` is the worker's position in the pool, which its replacement inherits (statistics
    are kept per lane).
    """

    def __init__(self, config: dict[str, Any], pdeathsig: bool, lane: int = 0) -> None:
        command_r, command_w = os.pipe()
        reply_r, reply_w = os.pipe()
        lifeline_r, lifeline_w = os.pipe()
        slot_fd = _shared_file()
        child_fds = (command_r, reply_w, lifeline_r, slot_fd)
        try:
            os.ftruncate(slot_fd, SLOT_BYTES)
            self.slot = mmap.mmap(slot_fd, SLOT_BYTES)
            INDEX.pack_into(self.slot, 0, IDLE)
            config = dict(
                config,
                command_fd=command_r,
                reply_fd=reply_w,
                lifeline_fd=lifeline_r,
                slot_fd=slot_fd,
                pdeathsig=pdeathsig,
                parent_pid=os.getpid(),
            )
            environ = block_cache.without_preload(os.environ)  # RLIMIT_AS would count its blocks
            self.process = subprocess.Popen(
                [sys.executable, "-c", BOOTSTRAP, json.dumps(config)],
                pass_fds=child_fds, stdin=subprocess.DEVNULL, env=environ,
            )  # fmt: skip
        except BaseException:
            for fd in (command_w, reply_r, lifeline_w):
                os.close(fd)
            raise
        finally:
            for fd in child_fds:
                os.close(fd)
        self.commands = Connection(command_w, readable=False)
        self.replies = Connection(reply_r, writable=False)
        self.lifeline = lifeline_w
        self.lane = lane
        self.state = "starting"
        self.started_at = time.monotonic()
        self.sent_at = 0.0  # when the chunk in progress was sent
        self.cpu = 0.0  # the worker's CPU seconds at its last reply
        self.chunk: list[int] = []
        self.killed_at: _Progress | None = None  # where the watchdog killed it

    @property
    def pid(self) -> int:
        return self.process.pid

    def progress(self) -> _Progress:
        """What the worker is doing and its hard deadline, read consistently: the worker writes
        the deadline first and the index last, so equal index and deadline before and after
        mean the program and node read between belong to them (or to a later deadline)."""
        slot = self.slot
        while True:
            index = INDEX.unpack_from(slot, 0)[0]
            deadline = DEADLINE.unpack_from(slot, DEADLINE_AT)[0]
            cpu_deadline = CPU_DEADLINE.unpack_from(slot, CPU_DEADLINE_AT)[0]
            program = PROGRAM.unpack_from(slot, PROGRAM_AT)[0]
            node = NODE.unpack_from(slot, NODE_AT)[0]
            if (
                DEADLINE.unpack_from(slot, DEADLINE_AT)[0] == deadline
                and INDEX.unpack_from(slot, 0)[0] == index
            ):
                started = STARTED.unpack_from(slot, STARTED_AT)[0]
                return _Progress(index, deadline, program, node, started, cpu_deadline)

    def cpu_and_state(self) -> tuple[float, str] | None:
        """The process's CPU seconds and scheduler state (``R``: running or runnable) from
        ``/proc`` (Linux; None elsewhere or when it cannot be read)."""
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            return None
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / _CLOCK_TICKS, fields[0].decode()

    def set_limit(self, limit: int) -> None:
        """Items of the chunk in progress from ``limit`` on are not to be started."""
        LIMIT.pack_into(self.slot, LIMIT_AT, limit)

    def kill(self) -> None:
        """SIGKILL and reap the process, and release every channel (idempotent)."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait()
        for channel in (self.commands, self.replies):
            channel.close()
        if self.lifeline >= 0:
            os.close(self.lifeline)
            self.lifeline = -1
        if not self.slot.closed:
            self.slot.close()


def starved(at: _Progress, now: float, cpu_and_state: tuple[float, str] | None) -> bool:
    """True when a worker past its wall-clock deadline is only waiting for a core: runnable,
    under its CPU-time deadline, and not yet :data:`STARVED_FACTOR` times its allowance past
    the item's start (see the module docstring). Only meaningful with the CPU clock."""
    if cpu_and_state is None or math.isnan(at.started):
        return False
    cpu, state = cpu_and_state
    patience = STARVED_FACTOR * max(0.0, at.deadline - at.started)
    return state == "R" and cpu < at.cpu_deadline and now < at.started + patience


def _shared_file() -> int:
    """A file descriptor of an anonymous file for the worker's progress slot."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("codeit-sandbox-slot")
    with tempfile.TemporaryFile() as handle:
        return os.dup(handle.fileno())


def _kill_all(workers: list[_Worker], owner: int) -> None:
    """Finaliser: kill and reap every worker; also run at garbage collection and exit.

    Only the process that started the workers may do so: a forked copy of the parent that
    exits must not take the real parent's workers down.
    """
    if os.getpid() != owner:
        return
    while workers:
        workers.pop().kill()


def _death_detail(worker: _Worker) -> str:
    code = worker.process.returncode
    if code is not None and code < 0:
        try:
            return f"worker killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"worker killed by signal {-code}"
    return f"worker exited with status {code}"
