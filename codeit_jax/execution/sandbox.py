"""A process pool that runs DSL programs on grids fast, bounded and isolated.

CodeIt runs every sampled program on every demonstration input of its task: tens of thousands
of runs per meta-iteration, most of them broken and some pathological (huge upscales, enormous
intervals, functions composed with themselves a billion times). ::

    with Sandbox(workers=None, timeout_s=0.25, memory_mb=2048, max_state_size=1000) as sb:
        outcomes = sb.run([(program_text, [grid, grid, ...]), ...])
    # outcomes[i][j]: Outcome of program i on input j

Design, and why:

* Workers are fresh interpreters (``python -c``, see :mod:`codeit_jax.execution.worker`), not
  forks: the parent usually holds JAX/XLA threads and forking such a process is unsafe, and
  ``multiprocessing``'s spawn/forkserver would re-import the parent's ``__main__`` (and with it
  JAX) in every worker. A worker imports only the program parser and the DSL, so it starts
  quickly (docs/benchmarks.md); a pool is started once per run and a killed worker is replaced
  at little cost.
* Work goes out in chunks of runs (guided: big chunks first, smaller ones near the end to keep
  the workers evenly busy), one chunk in flight per worker so that the parent never blocks
  writing to a busy worker; an idle worker with nothing queued takes the unstarted half of a
  busy worker's chunk, so a slow program does not hold up the runs queued behind it (see
  :mod:`codeit_jax.execution.schedule`). The longest programs' runs, with the largest
  budgets, are queued first. Identical (text, input) pairs in a batch run once. Each worker
  parses and compiles each distinct text once (bounded cache).
* Statistics: :attr:`Sandbox.last_stats` tells where the latest batch's time went
  (:mod:`codeit_jax.execution.stats`). The parent pauses its garbage collector for a batch
  (:mod:`codeit_jax.execution.collector`).
* Outcomes come back as small records; the value of ``O`` is pickled in the worker with every
  function replaced by :data:`FUNCTION`, and refused (``output_size``) when its estimated size
  in the parent's memory or its pickled size passes ``max_output_bytes`` (default 32 KiB, room
  for any valid ARC grid), so a pathological value cannot flood the parent.
* Time: ``timeout_s`` for each line (CodeIt's 0.25 s), so a run takes at most its budget of
  ``timeout_s * len(program)``; enforced in the worker by an interval timer restarted at every
  line, on CPU time by default (``clock="wall"``: CodeIt's clock; see
  :mod:`codeit_jax.execution.run`). A run stuck in C code
  never sees the timer signal, so the parent also runs a wall-clock watchdog: past
  ``hard_factor * budget + hard_grace_s`` after the run started the worker is SIGKILLed, that
  run reports ``timeout``, and the rest of its chunk goes to other workers. With the CPU clock
  a worker that is runnable and has not used that much CPU time is waiting for a core, not
  stuck, and is given longer (bounded; see :mod:`codeit_jax.execution.worker`). Parsing the text
  and exporting the value are not the run's: they get ``housekeeping_s`` instead (see
  :mod:`codeit_jax.execution.worker`), so a loaded machine cannot time out an instant program.
* :meth:`Sandbox.match` units are groups of programs: a kill or a crash there is blamed on the
  program, and the line of it, that was in progress; the unit runs again without that line
  (every program that needs it fails as that program did) and the others get their results.
* Memory: ``RLIMIT_AS`` of ``memory_mb`` per worker, so a huge allocation raises MemoryError
  (``memory``) in the worker instead of exhausting the machine. A worker that dies (segfault,
  abort) reports ``crash`` for the run it was in and is replaced.
* No leftovers: ``close()`` (also the context manager, a finaliser, and any exception escaping
  :meth:`Sandbox.run`) kills and reaps its workers; a worker whose parent is killed outright
  exits by itself (see :mod:`codeit_jax.execution.worker`).
* Determinism: outcomes do not depend on the number of workers or the chunking, except for runs
  that finish close to their time limit, and for programs that put function values inside
  sets or grids (``replace(I, x1, centerofmass)``): Python hashes functions by address, so the
  iteration order of such a set, and what ``leastcolor``/``paint`` make of it, differs from
  process to process (rare: docs/benchmarks.md has the rate on policy-like programs; in-process
  execution has the same property).

This is a resource sandbox, not a security boundary: program text is never evaluated as Python
(see :mod:`codeit_jax.programs.program`), and values are returned with pickle from our own workers.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

from codeit_jax.execution import collector
from codeit_jax.execution.batch import (
    Batch,
    MatchUnits,
    Outcome,
    SandboxError,
    _check_settings,
    _check_units,
    _check_watchdog,
    _flatten,
    _outcome,
    _positive_int_or_none,
    default_workers,
)
from codeit_jax.execution.line_sharing import Faults, GroupMatches
from codeit_jax.execution.run import (
    CRASH,
    DEFAULT_COMPILER,
    DEFAULT_MAX_OUTPUT_BYTES,
    TIMEOUT,
    load_compiler,
)
from codeit_jax.execution.schedule import (
    Job,
    blame_unit,
    chunk_length,
    longest_first,
    match_message,
    runs_message,
    steal_limit,
)
from codeit_jax.execution.stats import BETWEEN_ITEMS, CRASH_IN_RUN, START, WATCHDOG, BatchStats
from codeit_jax.execution.worker import (
    HOUSEKEEPING_S,
    IDLE,
    _death_detail,
    _kill_all,
    _Progress,
    _Worker,
    starved,
)

_POLL_S = 0.05  # how often the watchdog looks at busy workers
_START_TIMEOUT_S = 60.0  # a worker not ready by then counts as a failed start
_MAX_START_FAILURES = 3  # consecutive failed starts before the sandbox gives up
_MAX_UNBLAMED_DEATHS = 2  # deaths outside any run a run may see before it is blamed


class Sandbox:
    """A pool of worker processes that run (program text, inputs) batches under limits.

    Args:
        workers: number of worker processes; None for one per available core.
        timeout_s: time budget of each program line; a run takes at most
            ``timeout_s * len(program)`` (its budget).
        memory_mb: address-space limit per worker in MiB (None: unlimited).
        max_state_size: CodeIt's rule: values of this length or more are not kept (None: off).
        chunk_size: runs per message to a worker; None picks sizes that balance the load.
        max_output_bytes: cap on the size of a returned value, in the parent's memory (as
            estimated in the worker) and pickled; a larger one is an ``output_size`` failure.
        clock: "cpu" (default) or "wall": what the in-worker time budget counts.
        hard_factor, hard_grace_s: the parent's watchdog kills a worker whose run has taken
            ``hard_factor * budget + hard_grace_s`` seconds of wall-clock time.
        housekeeping_s: the watchdog's wall-clock allowance for a worker's steps around a run
            (parsing its text, exporting its value), which do not depend on the program.
        _compiler: "module:function" turning text into a program; tests substitute one with
            fault-injecting programs. Not reachable from program text.
        _steal: False turns work stealing off (to measure what it brings).
    """

    def __init__(
        self,
        workers: int | None = None,
        timeout_s: float = 0.25,
        memory_mb: int | None = 2048,
        max_state_size: int | None = 1000,
        *,
        chunk_size: int | None = None,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        clock: str = "cpu",
        hard_factor: float = 3.0,
        hard_grace_s: float = 1.0,
        housekeeping_s: float = HOUSEKEEPING_S,
        _compiler: str = DEFAULT_COMPILER,
        _steal: bool = True,
    ) -> None:
        _positive_int_or_none("workers", workers)
        _positive_int_or_none("memory_mb", memory_mb)
        _positive_int_or_none("chunk_size", chunk_size)
        _check_settings(timeout_s, max_state_size, max_output_bytes, clock)
        _check_watchdog(hard_factor, hard_grace_s, housekeeping_s)
        load_compiler(_compiler)  # fail here, not in every worker, on a bad spec
        self.n_workers = workers if workers is not None else default_workers()
        self.timeout_s = float(timeout_s)
        self.chunk_size = chunk_size
        self.steal = _steal
        self.restarts = 0  # workers replaced after a kill or a crash
        self.last_stats: BatchStats | None = None  # the latest batch's (see the module doc)
        self._stats: BatchStats | None = None  # the batch in progress
        self._config = {
            "sys_path": list(sys.path),
            "timeout_s": float(timeout_s),
            "memory_mb": memory_mb,
            "max_state_size": max_state_size,
            "max_output_bytes": max_output_bytes,
            "clock": clock,
            "hard_factor": float(hard_factor),
            "hard_grace_s": float(hard_grace_s),
            "housekeeping_s": float(housekeeping_s),
            "compiler": _compiler,
        }
        self._workers: list[_Worker] = []
        self._finalizer = weakref.finalize(self, _kill_all, self._workers, os.getpid())
        self._lock = threading.Lock()
        self._start_failures = 0
        self._unblamed: dict[int, int] = {}
        try:
            self._fill()
            while any(w.state == "starting" for w in self._workers):
                self._step(deque(), [], None)
                self._fill()  # retry failed starts (a SandboxError ends this after a few)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ public interface

    @collector.paused()  # see codeit_jax.execution.collector
    def run(self, batch: Batch) -> list[list[Outcome]]:
        """Run every program on each of its inputs; ``result[i][j]`` is program i on input j."""
        flat = _flatten(batch)
        sent: dict[_Worker, set[int]] = {}  # the grids each worker has of this batch
        job = Job(
            message=lambda chunk, worker: runs_message(flat, chunk, sent.setdefault(worker, set())),
            decode=_outcome,
            lost=lambda kind, detail: Outcome(False, None, kind, detail),
        )
        order = longest_first([text for text, _ in flat.runs])
        outcomes = self._locked_execute(len(flat.runs), job, order)
        if self.last_stats is not None:
            self.last_stats.set_sources(flat.shape)
        return [[outcomes[k] for k in row] for row in flat.shape]

    @collector.paused()
    def match(self, units: MatchUnits) -> list[GroupMatches]:
        """For each ``(program texts, input grid, expected grid)`` unit, which programs return
        exactly the expected grid (see :mod:`codeit_jax.execution.line_sharing`: each distinct
        line of the unit's programs is computed once, with ``timeout_s`` per line).

        Outputs never leave the workers. When a unit's worker is killed by the watchdog or
        crashes, the line in progress (or the program, outside any line) is set aside and the
        unit runs again: the programs that need that line count as timeouts (a kill) or
        failures (a crash), the others get their results.
        """
        checked = _check_units(units)
        faults: dict[int, Faults] = {}
        job = Job(
            message=lambda chunk, worker: match_message(checked, chunk, faults),
            decode=lambda record: GroupMatches(*record),
            lost=lambda kind, detail: None,
            blame=lambda unit, timed_out, at: blame_unit(faults, unit, timed_out, at),
        )
        found = self._locked_execute(len(checked), job, None)
        return [
            GroupMatches((), 0, len(checked[k][0])) if result is None else result
            for k, result in enumerate(found)
        ]

    def close(self) -> None:
        """Kill and reap all workers; the sandbox cannot be used afterwards."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    @property
    def pids(self) -> list[int]:
        """Process ids of the current workers (for monitoring and tests)."""
        return [w.pid for w in self._workers]

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the scheduling loop

    def _locked_execute(self, count: int, job: Job, order: Sequence[int] | None) -> list[Any]:
        with self._lock:
            if not self._finalizer.alive:
                raise SandboxError("the sandbox is closed")
            return self._execute(count, job, order)

    def _execute(self, count: int, job: Job, order: Sequence[int] | None) -> list[Any]:
        """Run work items ``0..count-1`` (what they are is the job's business), queued in
        ``order`` (a permutation of them; None: index order)."""
        outcomes: list[Any] = [None] * count
        pending = deque(range(count) if order is None else order)
        self._unblamed.clear()
        stats = self._stats = BatchStats(count, self.n_workers, time.monotonic())
        try:
            while pending or any(w.state == "busy" for w in self._workers):
                self._fill()
                for worker in self._workers:
                    if worker.state == "idle" and (
                        pending or (self.steal and self._steal(worker, pending))
                    ):
                        self._send(worker, pending, job)
                self._step(pending, outcomes, job)
            self._fill()  # replacements start now, while the caller works on the outcomes
        except BaseException:
            # Replies still in flight would answer the wrong batch: drop those workers.
            for worker in [w for w in self._workers if w.state != "idle"]:
                self._remove(worker)
            raise
        finally:
            stats.wall_s = time.monotonic() - stats.start
            self.last_stats, self._stats = stats, None
        return outcomes  # type: ignore[return-value]

    def _fill(self) -> None:
        """Start workers until the pool is full again (a replacement takes the free lane)."""
        if not self._finalizer.alive:
            raise SandboxError("the sandbox was closed while a batch was running")
        pdeathsig = threading.current_thread() is threading.main_thread()
        while len(self._workers) < self.n_workers:
            taken = {w.lane for w in self._workers}
            lane = min(k for k in range(self.n_workers) if k not in taken)
            start = time.monotonic()
            self._workers.append(_Worker(self._config, pdeathsig, lane))
            if self._stats is not None:
                self._stats.spawned(lane, time.monotonic() - start)

    def _send(self, worker: _Worker, pending: deque[int], job: Job) -> None:
        length = chunk_length(len(pending), self.n_workers, self.chunk_size)
        chunk = [pending.popleft() for _ in range(min(len(pending), length))]
        worker.chunk = chunk
        worker.state = "busy"
        worker.set_limit(len(chunk))
        worker.sent_at = time.monotonic()
        if self._stats is not None:
            self._stats.chunk_sizes.append(len(chunk))
        message = pickle.dumps(job.message(chunk, worker), protocol=pickle.HIGHEST_PROTOCOL)
        # If it died since its last reply, the send fails and _step handles the death.
        with contextlib.suppress(OSError):
            worker.commands.send_bytes(message)

    def _steal(self, thief: _Worker, pending: deque[int]) -> bool:
        """Queue the unstarted later half of the busy chunk with the most unstarted items
        (see :mod:`codeit_jax.execution.schedule`); False when there is none."""
        best: tuple[int, _Worker, int] | None = None
        for worker in self._workers:
            if worker.state == "busy":
                limit = steal_limit(len(worker.chunk), worker.progress().index)
                if limit is not None and (best is None or len(worker.chunk) - limit > best[0]):
                    best = (len(worker.chunk) - limit, worker, limit)
        if best is None:
            return False
        taken, victim, limit = best
        victim.set_limit(limit)
        pending.extendleft(reversed(victim.chunk[limit:]))
        del victim.chunk[limit:]
        if self._stats is not None:
            self._stats.steals += 1
            self._stats.lanes[victim.lane].stolen_from += taken
            self._stats.lanes[thief.lane].steals += 1
        return True

    def _step(self, pending: deque[int], outcomes: list[Any], job: Job | None) -> None:
        """Wait briefly for replies, handle them and any deaths, then run the watchdog."""
        by_channel = {w.replies: w for w in self._workers if w.state != "idle"}
        for channel in wait(list(by_channel), timeout=_POLL_S):
            worker = by_channel[channel]
            try:
                message = pickle.loads(worker.replies.recv_bytes())
            except (EOFError, OSError):
                self._on_death(worker, pending, outcomes, job)
                continue
            now = time.monotonic()
            if worker.state == "starting":
                worker.state = "idle"
                worker.cpu = message[2]
                self._start_failures = 0
                if self._stats is not None:
                    self._stats.ready(worker.lane, worker.started_at, now)
            else:
                records, times, cpu = message
                chunk = worker.chunk
                if len(records) < len(chunk):  # cannot happen (see schedule): never lose items
                    pending.extendleft(reversed(chunk[len(records) :]))
                    chunk = chunk[: len(records)]
                if self._stats is not None:
                    busy = now - worker.sent_at
                    self._stats.answered(worker.lane, chunk, times, busy, cpu - worker.cpu)
                worker.cpu = cpu
                worker.chunk = []
                worker.state = "idle"
                # The next chunk first: decoding these records need not keep the worker waiting.
                if pending or (self.steal and self._steal(worker, pending)):
                    self._send(worker, pending, job)
                for run, record in zip(chunk, records):
                    outcomes[run] = job.decode(record)
        self._watchdog(pending, outcomes, job)

    def _watchdog(self, pending: deque[int], outcomes: list[Any], job: Job | None) -> None:
        """Kill workers stuck past a run's hard deadline, or that never finished starting."""
        now = time.monotonic()
        for worker in list(self._workers):
            if worker.state == "busy":
                at = worker.progress()
                if at.index != IDLE and now > at.deadline and not self._starved(worker, at, now):
                    worker.killed_at = at
                    worker.kill()
                    self._on_death(worker, pending, outcomes, job)
            elif worker.state == "starting" and now - worker.started_at > _START_TIMEOUT_S:
                worker.kill()
                self._on_death(worker, pending, outcomes, job)

    def _starved(self, worker: _Worker, at: _Progress, now: float) -> bool:
        """With the CPU clock, a worker past its deadline that only waits for a core lives on
        (see :mod:`codeit_jax.execution.worker`)."""
        return self._config["clock"] == "cpu" and starved(at, now, worker.cpu_and_state())

    def _on_death(
        self, worker: _Worker, pending: deque[int], outcomes: list[Any], job: Job | None
    ) -> None:
        """Record the run a dead worker was in, requeue the rest of its chunk, replace it."""
        state, chunk = worker.state, worker.chunk
        killed_by_watchdog = worker.killed_at is not None
        if killed_by_watchdog:
            at = worker.killed_at
        elif state == "busy":
            at = worker.progress()
        else:
            at = _Progress(IDLE, math.inf, IDLE, IDLE)
        worker.kill()
        self._remove(worker)
        self._record_death(worker, state, chunk, at, killed_by_watchdog)
        if state == "starting":
            self._start_failures += 1
            if self._start_failures >= _MAX_START_FAILURES:
                raise SandboxError(
                    f"{self._start_failures} sandbox workers in a row failed to start "
                    f"(last: {_death_detail(worker)}); see its stderr above"
                )
            return
        self.restarts += 1
        index = at.index
        if index >= len(chunk) and chunk:  # in an item taken by another worker: not its fault
            requeue = list(chunk)
        elif 0 <= index < len(chunk):
            item = chunk[index]
            requeue = chunk[:index] + chunk[index + 1 :]
            if job.blame is not None and job.blame(item, killed_by_watchdog, at):
                requeue.insert(0, item)  # run it again without its culprit
            elif killed_by_watchdog:
                outcomes[item] = job.lost(
                    TIMEOUT, "killed by the watchdog: stuck past its hard deadline"
                )
            else:
                outcomes[item] = job.lost(CRASH, _death_detail(worker))
        else:  # died between runs: retry the chunk, but not forever
            requeue = []
            for run in chunk:
                deaths = self._unblamed.get(run, 0) + 1
                self._unblamed[run] = deaths
                if deaths > _MAX_UNBLAMED_DEATHS:
                    outcomes[run] = job.lost(CRASH, _death_detail(worker))
                else:
                    requeue.append(run)
        pending.extendleft(reversed(requeue))

    def _record_death(
        self, worker: _Worker, state: str, chunk: list[int], at: _Progress, by_watchdog: bool
    ) -> None:
        """Add a restart, with its cause, to the batch statistics."""
        if self._stats is None:
            return
        in_item = 0 <= at.index < len(chunk)
        if state == "starting":
            cause = START
        else:
            cause = WATCHDOG if by_watchdog else CRASH_IN_RUN if in_item else BETWEEN_ITEMS
        detail = "stuck past its hard deadline" if by_watchdog else _death_detail(worker)
        since = worker.sent_at if state == "busy" else worker.started_at
        item = chunk[at.index] if in_item else None
        self._stats.died(worker.lane, cause, detail, item, at.started, state == "busy", since)

    def _remove(self, worker: _Worker) -> None:
        worker.kill()
        if worker in self._workers:
            self._workers.remove(worker)


@dataclass(frozen=True)
class SandboxConfig:
    """The limits a job gives its sandbox (the ``sandbox`` section of a CodeIt config, the
    same fields of the mutation baseline's)."""

    workers: int = 0  # 0: one per core
    timeout_s: float = 0.25
    memory_mb: int | None = 2048
    max_state_size: int | None = 1000

    @classmethod
    def of(cls, section: Any) -> SandboxConfig:
        """From any object with the four fields (a config section)."""
        return cls(section.workers, section.timeout_s, section.memory_mb, section.max_state_size)


def open_sandbox(settings: SandboxConfig) -> Sandbox:
    """The sandbox with the given limits."""
    return Sandbox(
        workers=settings.workers or None,
        timeout_s=settings.timeout_s,
        memory_mb=settings.memory_mb,
        max_state_size=settings.max_state_size,
    )
