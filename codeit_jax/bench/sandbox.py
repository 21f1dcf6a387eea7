"""Sandbox benchmark: runs/s with 1 and N workers against in-process execution.

Workloads:

(a) the 400 CodeIt training programs on all their inputs (demonstration and test);
(b) a policy-like workload: ``--n-policy`` (default 5,000) random name-level edits of the
    ground-truth programs, each run on the demonstration inputs of another task, so that most
    fail at run time rather than at parse time (the parse-fail fraction is reported).

Modes: ``bare`` (parse once, then ``Program.run`` under the same CPU-time budget, no value
export: the cost of execution alone), ``inprocess`` (:func:`run_in_process`: the sandbox's exact
semantics without processes), and ``sandbox`` with 1 and N workers (pool start excluded,
reported separately). Each repeat runs every mode in turn on a batch of new texts (a new seed for
(b), renamed functions for (a)), so that modes share the background load of a shared machine
and none profits from parse caches warmed by an earlier repeat; runs/s is over all repeats.
``mismatches`` counts outcomes that differ from ``inprocess`` outside timeouts: programs that
put functions inside sets or grids depend on address-based hashing (see
:mod:`codeit_jax.execution.sandbox`; the rate measured is in docs/benchmarks.md).
``overhead`` is ``1 - sandbox_1 / bare`` on (b) (``overhead_vs_inprocess`` likewise against
``inprocess``) and ``scaling`` is ``sandbox_N / sandbox_1`` on (b).

Run: ``python -m codeit_jax.bench.sandbox [--workers N] [--repeats 3] [--n-policy 5000]``; the
last line printed is a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from codeit_jax.bench.policy_like import policy_like_workload
from codeit_jax.execution.batch import run_in_process
from codeit_jax.execution.run import RunTimeout, RunTimer
from codeit_jax.execution.sandbox import TIMEOUT, Outcome, Sandbox, default_workers
from codeit_jax.files import codeit_data_dir
from codeit_jax.programs.program import Program, ProgramError, parse
from codeit_jax.tasks import Task, load_codeit_dir

TIMEOUT_S = 0.25
STATE_LIMIT = 1000
IN_PROCESS_MEMORY_MB = 4096  # guards the benchmark process itself during in-process runs

Batch = list[tuple[str, list[Any]]]


def ground_truth_batch(tasks: list[Task], variant: int = 0) -> Batch:
    """Workload (a): every training program on all its inputs.

    ``variant`` renames the function (``def solve_<key>_<variant>(I):``), which changes the text
    but not the program, so each repeat meets cold parse caches as a fresh batch would.
    """
    batch = []
    for t in tasks:
        text = parse(t.program).to_function_text(f"solve_{t.key}_{variant}")
        batch.append((text, [x for x, _ in t.train] + [x for x, _ in t.test]))
    return batch


def policy_batch(tasks: list[Task], n: int, seed: int) -> Batch:
    """Workload (b): edited programs on other tasks' demonstration inputs."""
    programs = [parse(t.program) for t in tasks]
    inputs = [[x for x, _ in t.train] for t in tasks]
    return policy_like_workload(programs, inputs, n, seed=seed)


def parse_fail_fraction(batch: Batch) -> float:
    failed = 0
    for text, _ in batch:
        try:
            parse(text)
        except ProgramError:
            failed += 1
    return failed / len(batch)


def bare_run(batch: Batch) -> None:
    """Execution alone: parse each text once, run under the CPU budget, drop the value."""
    timer = RunTimer("cpu")
    try:
        for text, grids in batch:
            try:
                program: Program | None = parse(text)
            except ProgramError:
                program = None
            for grid in grids:
                if program is None:
                    continue
                try:
                    timer.start(TIMEOUT_S * len(program))
                    try:
                        program.run(grid, STATE_LIMIT)
                    finally:
                        timer.stop()
                except (Exception, RunTimeout):
                    pass
    finally:
        timer.restore()


class _MemoryGuard:
    """Caps this process's address space while in-process modes run untrusted edits."""

    def __enter__(self) -> None:
        self.saved = resource.getrlimit(resource.RLIMIT_AS)
        soft = IN_PROCESS_MEMORY_MB * 1024 * 1024
        if self.saved[1] != resource.RLIM_INFINITY:
            soft = min(soft, self.saved[1])
        resource.setrlimit(resource.RLIMIT_AS, (soft, self.saved[1]))

    def __exit__(self, *exc: object) -> None:
        resource.setrlimit(resource.RLIMIT_AS, self.saved)


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the given processes so far (Linux /proc; 0 elsewhere)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def _mismatches(got: list[list[Outcome]], want: list[list[Outcome]]) -> int:
    """Outcomes that differ, ignoring runs that timed out on either side."""
    pairs = zip((o for row in got for o in row), (o for row in want for o in row))
    return sum(1 for a, b in pairs if a != b and TIMEOUT not in (a.error, b.error))


def measure(batches: list[Batch], workers: list[int]) -> dict[str, Any]:
    """Runs/s per mode over the batches (one per repeat), modes interleaved within a repeat.

    Interleaving exposes every mode to the same background load; each repeat uses a batch of
    new texts so that no mode profits from caches warmed by an earlier repeat.
    """
    n_runs = sum(len(grids) for _, grids in batches[0])
    modes = ["bare", "inprocess"] + [f"sandbox_{n}" for n in workers]
    seconds = dict.fromkeys(modes, 0.0)
    parent_cpu = dict.fromkeys(modes, 0.0)
    worker_cpu = dict.fromkeys(modes, 0.0)
    figures: dict[str, Any] = {"programs": len(batches[0]), "runs": n_runs}
    mismatches = dict.fromkeys(workers, 0)
    outcomes: Counter[str] = Counter()
    with contextlib.ExitStack() as stack:
        pools = {}
        for n in workers:
            start = time.perf_counter()
            pools[n] = stack.enter_context(
                Sandbox(workers=n, timeout_s=TIMEOUT_S, max_state_size=STATE_LIMIT)
            )
            figures[f"start_s_{n}"] = time.perf_counter() - start
        for batch in batches:
            results: dict[str, Any] = {}
            for mode in modes:
                cpu, start = time.process_time(), time.perf_counter()
                if mode == "bare":
                    with _MemoryGuard():
                        bare_run(batch)
                elif mode == "inprocess":
                    with _MemoryGuard():
                        results[mode] = run_in_process(batch)
                else:
                    pool = pools[int(mode.split("_")[1])]
                    pids, before = pool.pids, _cpu_seconds(pool.pids)
                    results[mode] = pool.run(batch)
                    worker_cpu[mode] += _cpu_seconds(pids) - before
                seconds[mode] += time.perf_counter() - start
                parent_cpu[mode] += time.process_time() - cpu
            reference = results["inprocess"]
            outcomes.update(o.error or "ok" for row in reference for o in row)
            for n in workers:
                mismatches[n] += _mismatches(results[f"sandbox_{n}"], reference)
        for n in workers:
            figures[f"restarts_{n}"] = pools[n].restarts
    total_runs = n_runs * len(batches)
    for mode in modes:
        figures[f"{mode}_runs_per_s"] = total_runs / seconds[mode]
    for mode in modes:  # CPU seconds per 1000 runs: robust to other load on the machine
        cpu = parent_cpu[mode] + worker_cpu[mode]
        figures[f"{mode}_cpu_ms_per_run"] = 1000 * cpu / total_runs
    for n in workers:
        figures[f"parent_cpu_fraction_{n}"] = parent_cpu[f"sandbox_{n}"] / seconds[f"sandbox_{n}"]
    figures["outcomes"] = dict(outcomes)
    figures["mismatches"] = {str(n): count for n, count in mismatches.items()}
    return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-policy", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=None, help="CodeIt data directory")
    parser.add_argument("--tasks", type=int, default=None, help="use only the first N tasks")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.repeats < 1 or args.n_policy < 2:
        parser.error("--workers and --repeats must be >= 1, --n-policy >= 2")
    data = args.data or codeit_data_dir()
    if not (data / "training").is_dir():
        sys.exit(f"CodeIt data not found at {data}: set CODEIT_DATA or pass --data")
    tasks = [t for t in load_codeit_dir(data / "training") if t.program][: args.tasks]
    if len(tasks) < 2:
        sys.exit("need at least two tasks with programs")
    workers = sorted({1, args.workers})

    load_before = list(os.getloadavg())
    ground_truth = [ground_truth_batch(tasks, r) for r in range(args.repeats)]
    policy = [policy_batch(tasks, args.n_policy, args.seed + r) for r in range(args.repeats)]
    figures: dict[str, Any] = {
        "a": measure(ground_truth, workers),
        "b": measure(policy, workers),
    }
    figures["b"]["parse_fail_fraction"] = parse_fail_fraction([p for b in policy for p in b])
    b = figures["b"]
    n = args.workers
    figures["workers"] = n
    figures["scaling"] = b[f"sandbox_{n}_runs_per_s"] / b["sandbox_1_runs_per_s"]
    figures["overhead"] = 1 - b["sandbox_1_runs_per_s"] / b["bare_runs_per_s"]
    figures["overhead_vs_inprocess"] = 1 - b["sandbox_1_runs_per_s"] / b["inprocess_runs_per_s"]
    # The same comparison in CPU time (workers + parent), which other load hardly disturbs.
    figures["overhead_cpu"] = 1 - b["bare_cpu_ms_per_run"] / b["sandbox_1_cpu_ms_per_run"]
    figures["conditions"] = {
        "cpus": default_workers(),
        "load_avg_before": load_before,
        "load_avg_after": list(os.getloadavg()),
        "python": platform.python_version(),
        "repeats": args.repeats,
    }

    for name in ("a", "b"):
        w = figures[name]
        print(f"({name}) {w['programs']} programs, {w['runs']} runs; outcomes {w['outcomes']}")
        labels = {"bare": "bare in-process", "inprocess": "run_in_process"}
        for mode in ["bare", "inprocess"] + [f"sandbox_{k}" for k in workers]:
            label = labels.get(mode) or f"sandbox {mode.split('_')[-1]} worker(s)"
            print(
                f"    {label:20} {w[f'{mode}_runs_per_s']:7.0f} runs/s"
                f"  {w[f'{mode}_cpu_ms_per_run']:.3f} CPU ms/run"
            )
        for k in workers:
            print(
                f"    sandbox {k} worker(s):"
                f"  (pool start {w[f'start_s_{k}']:.2f} s, restarts {w[f'restarts_{k}']},"
                f" mismatches {w['mismatches'][str(k)]},"
                f" parent CPU {w[f'parent_cpu_fraction_{k}']:.0%} of wall)"
            )
    print(f"(b) parse-fail fraction {b['parse_fail_fraction']:.3f}")
    print(
        f"scaling {figures['scaling']:.2f} ({n} vs 1 worker on b), overhead "
        f"{figures['overhead']:.3f} vs bare, {figures['overhead_vs_inprocess']:.3f} vs "
        f"run_in_process, {figures['overhead_cpu']:.3f} in CPU time"
    )
    print(f"load average {load_before} -> {figures['conditions']['load_avg_after']}")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
