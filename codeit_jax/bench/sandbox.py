"""Sandbox benchmark: runs/s with 1 and N workers against in-process execution, and why.

Workloads:

(a) the 400 CodeIt training programs on all their inputs (demonstration and test);
(b) a policy-like workload: ``--batches`` (default 3) batches of ``--n-policy`` (default 5,000)
    random name-level edits of the ground-truth programs, seeds ``--seed``, ``--seed`` + 1, ...,
    each program run on the demonstration inputs of another task, so that most fail at run
    time rather than at parse time (the parse-fail fraction is reported). Each batch is one
    ``Sandbox.run`` call, as a meta-iteration's would be.

Modes: ``bare`` (parse once, then ``Program.run`` under the same CPU-time budget, no value
export: the cost of execution alone), ``inprocess`` (:func:`run_in_process`: the sandbox's exact
semantics without processes), and ``sandbox`` with 1 and N workers (pool start excluded,
reported separately). The in-process modes run with the collector thresholds of a worker
(:mod:`codeit_jax.execution.collector`) and this process's own objects frozen, so that the
comparison measures isolation, not garbage collection (``--in-process-gc default`` keeps the
interpreter's settings instead, to see what the workers' settings bring). Every repeat runs
every mode on every batch in turn (modes share the background load of a shared machine); a
repeat appends newlines to every text (the parser ignores them), so no mode profits from parse
caches warmed by an earlier repeat, and every repeat is the same work. Per mode, the figures
are the median over repeats with its spread (:mod:`codeit_jax.bench.timing`); ``noisy`` flags
a spread over 15%.

Figures on (b): ``scaling`` = sandbox_N / sandbox_1 runs/s; ``overhead`` = 1 - sandbox_1 / bare
(``overhead_vs_inprocess`` likewise, ``overhead_cpu`` the same in CPU seconds, workers and parent
together). Both are paired: the median over every batch of every repeat of the two modes' ratio
on that batch (``scaling_per_batch``, ``overhead_per_batch``, their spreads in
``ratio_spreads``), since the modes run a batch one after the other and so share its background
load; the ratio of the two modes' medians over the whole run, which a burst of load on one side
moves, is kept as ``scaling_unpaired`` and ``overhead_unpaired``.

Why scaling falls short is split three ways: ``scaling_bound`` is what a perfect scheduler
could reach with these run times (the runs of a batch cannot be split; longest-first schedule
of the 1-worker run's per-run CPU times, batch by batch); ``busy_fraction_<n>`` is the share
of the workers' time they had work (the scheduler's part); ``cores_<mode>`` is the CPU seconds
the mode got per second of wall-clock time (the machine's part: on a loaded machine a pool of
N gets fewer than N cores). ``scaling_quiet_estimate`` = N x busy fraction x sandbox_1
CPU / sandbox_N CPU, what the same scheduling would give with a whole core per worker.

Diagnosis per sandbox mode: the distribution of per-run wall-clock seconds and the tail
(``--tail`` slowest runs: seconds, CPU seconds, worker lane, outcome, program), busy and idle
time per lane, the number and sizes of chunks, steals, restarts with their cause
(``watchdog``: a run stuck past its hard deadline; ``crash``; ``between_items``; ``start``)
and what replacing the worker took.
``mismatches``: outcomes that differ from ``inprocess`` outside timeouts, each with the program,
both outcomes and the reason (:func:`~codeit_jax.bench.sandbox_diagnosis.mismatches`).

Run: ``python -m codeit_jax.bench.sandbox [--workers N] [--repeats 3] [--n-policy 5000]
[--batches 3] [--no-steal]``; the last line printed is a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from codeit_jax.bench import sandbox_diagnosis as diagnosis
from codeit_jax.bench.policy_like import policy_like_workload
from codeit_jax.bench.timing import load_average, noise_fields, spread
from codeit_jax.execution.batch import run_in_process
from codeit_jax.execution.collector import GC_THRESHOLDS
from codeit_jax.execution.run import RunTimeout, RunTimer
from codeit_jax.execution.sandbox import Outcome, Sandbox, default_workers
from codeit_jax.execution.stats import distribution
from codeit_jax.files import codeit_data_dir
from codeit_jax.programs.program import Program, ProgramError, parse
from codeit_jax.tasks import Task, load_codeit_dir

TIMEOUT_S = 0.25
STATE_LIMIT = 1000
IN_PROCESS_MEMORY_MB = 4096  # guards the benchmark process itself during in-process runs

Batch = list[tuple[str, list[Any]]]


def ground_truth_batch(tasks: list[Task], variant: int = 0) -> Batch:
    """Workload (a): every training program on all its inputs (``variant`` renames the
    function, ``def solve_<key>_<variant>(I):``)."""
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


def fresh(batch: Batch, repeat: int) -> Batch:
    """The same programs as new texts: ``repeat`` newlines appended (the parser ignores them)."""
    tail = "\n" * repeat
    return [(text + tail, grids) for text, grids in batch]


def parse_fail_fraction(batch: Batch) -> float:
    failed = 0
    for text, _ in batch:
        try:
            parse(text)
        except ProgramError:
            failed += 1
    return failed / len(batch)


def bare_run(batch: Batch) -> None:
    """Execution alone: parse each text once, run under the per-line CPU budget, drop the
    value."""
    timer = RunTimer("cpu")
    next_line = functools.partial(timer.restart, TIMEOUT_S)  # CodeIt's budget is per line
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
                    timer.start(TIMEOUT_S)
                    try:
                        program.run(grid, STATE_LIMIT, next_line)
                    finally:
                        timer.stop()
                except (Exception, RunTimeout):
                    pass
    finally:
        timer.restore()


@contextlib.contextmanager
def in_process_conditions(worker_gc: bool = True) -> Any:
    """A worker's conditions for the in-process modes: the address space capped (they run
    untrusted edits), this process's objects frozen and the worker's collector threshold
    (``worker_gc``; else the interpreter's collector settings, untouched)."""
    saved_limit = resource.getrlimit(resource.RLIMIT_AS)
    soft = IN_PROCESS_MEMORY_MB * 1024 * 1024
    if saved_limit[1] != resource.RLIM_INFINITY:
        soft = min(soft, saved_limit[1])
    saved_threshold = gc.get_threshold()
    resource.setrlimit(resource.RLIMIT_AS, (soft, saved_limit[1]))
    if worker_gc:
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        if worker_gc:
            gc.set_threshold(*saved_threshold)
            gc.unfreeze()
        resource.setrlimit(resource.RLIMIT_AS, saved_limit)


class _Mode:
    """What one mode measured over the repeats."""

    def __init__(self) -> None:
        self.seconds: list[float] = []  # per repeat, all batches
        self.batch_seconds: list[list[float]] = []  # per repeat, per batch
        self.cpu: list[float] = []  # per repeat: parent + workers
        self.parent_cpu: list[float] = []
        self.stats: list[tuple[int, int, Any]] = []  # (repeat, batch, BatchStats)

    def add(self, repeat: int, seconds: float, cpu: float, parent_cpu: float) -> None:
        if len(self.seconds) == repeat:
            self.seconds.append(0.0)
            self.batch_seconds.append([])
            self.cpu.append(0.0)
            self.parent_cpu.append(0.0)
        self.seconds[repeat] += seconds
        self.batch_seconds[repeat].append(seconds)
        self.cpu[repeat] += cpu
        self.parent_cpu[repeat] += parent_cpu


def measure(
    batches: list[Batch],
    workers: list[int],
    repeats: int,
    steal: bool = True,
    tail: int = 10,
    worker_gc: bool = True,
) -> dict[str, Any]:
    """Per mode: median runs/s and CPU over the repeats; per sandbox mode, the diagnosis."""
    n_runs = sum(len(grids) for batch in batches for _, grids in batch)
    modes = ["bare", "inprocess"] + [f"sandbox_{n}" for n in workers]
    measured = {mode: _Mode() for mode in modes}
    figures: dict[str, Any] = {"programs": sum(map(len, batches)), "runs": n_runs}
    outcomes: Counter[str] = Counter()
    found: dict[int, list[dict[str, Any]]] = {n: [] for n in workers}
    sources: dict[int, tuple[Batch, dict[int, list[list[Outcome]]]]] = {}
    with contextlib.ExitStack() as stack:
        pools = {}
        for n in workers:
            start = time.perf_counter()
            pools[n] = stack.enter_context(
                Sandbox(workers=n, timeout_s=TIMEOUT_S, max_state_size=STATE_LIMIT, _steal=steal)
            )
            figures[f"start_s_{n}"] = round(time.perf_counter() - start, 4)
        for repeat in range(repeats):
            for index, original in enumerate(batches):
                batch = fresh(original, repeat)
                results: dict[str, list[list[Outcome]]] = {}
                for mode in modes:
                    workers_cpu = 0.0
                    if mode in ("bare", "inprocess"):
                        with in_process_conditions(worker_gc):
                            cpu, start = time.process_time(), time.perf_counter()
                            if mode == "bare":
                                bare_run(batch)
                            else:
                                results[mode] = run_in_process(batch)
                            seconds = time.perf_counter() - start
                    else:
                        pool = pools[int(mode.split("_")[1])]
                        meter = diagnosis.ChildCpu(pool.pids)
                        cpu, start = time.process_time(), time.perf_counter()
                        results[mode] = pool.run(batch)
                        seconds = time.perf_counter() - start
                        workers_cpu = meter.stop(pool.pids)
                        measured[mode].stats.append((repeat, index, pool.last_stats))
                    parent = time.process_time() - cpu
                    measured[mode].add(repeat, seconds, parent + workers_cpu, parent)
                reference = results["inprocess"]
                for n in workers:
                    for m in diagnosis.mismatches(batch, results[f"sandbox_{n}"], reference):
                        found[n].append({"repeat": repeat, "batch": index, **m})
                if repeat == 0:  # to describe the tail
                    outcomes.update(o.error or "ok" for row in reference for o in row)
                    sources[index] = (batch, {n: results[f"sandbox_{n}"] for n in workers})
        for n in workers:
            figures[f"restarts_{n}"] = pools[n].restarts
    for mode in modes:
        seconds = statistics.median(measured[mode].seconds)
        cpu = statistics.median(measured[mode].cpu)
        figures[f"{mode}_runs_per_s"] = round(n_runs / seconds, 1)
        figures[f"{mode}_cpu_ms_per_run"] = round(1000 * cpu / n_runs, 4)
        figures[f"cores_{mode}"] = round(cpu / seconds, 3)
    for n in workers:
        mode = measured[f"sandbox_{n}"]
        figures[f"parent_cpu_fraction_{n}"] = round(
            statistics.median(p / s for p, s in zip(mode.parent_cpu, mode.seconds)), 4
        )
        figures[f"diagnosis_{n}"] = _diagnose(mode.stats, sources, n, tail)
        figures[f"busy_fraction_{n}"] = figures[f"diagnosis_{n}"]["busy_fraction"]
    figures["scaling_bound"] = _scaling_bound(measured[f"sandbox_{workers[0]}"].stats, workers[-1])
    figures["outcomes"] = dict(outcomes)
    figures["mismatches"] = {str(n): len(found[n]) for n in workers}
    figures["mismatch_details"] = {str(n): found[n] for n in workers}
    figures |= noise_fields({mode: spread(measured[mode].seconds) for mode in modes})
    figures["seconds_per_repeat"] = {
        mode: [round(x, 3) for x in measured[mode].seconds] for mode in modes
    }
    figures["seconds_per_batch"] = {
        mode: [[round(x, 4) for x in row] for row in measured[mode].batch_seconds] for mode in modes
    }
    return figures


def paired_ratios(workload: dict[str, Any], numerator: str, denominator: str) -> list[float]:
    """``numerator`` / ``denominator`` seconds for each batch of each repeat: the two modes
    ran that batch seconds apart, under nearly the same background load, so these ratios
    vary far less on a shared machine than a ratio of two medians taken over the whole run."""
    rows = zip(
        workload["seconds_per_batch"][numerator],
        workload["seconds_per_batch"][denominator],
        strict=True,
    )
    return [a / b for top, bottom in rows for a, b in zip(top, bottom, strict=True)]


def _diagnose(
    stats: list[tuple[int, int, Any]], sources: dict[int, Any], n: int, tail: int
) -> dict[str, Any]:
    """A sandbox mode's statistics summed over its batches, and its slowest runs."""
    lanes = [dict.fromkeys(("busy_s", "idle_s", "starting_s", "cpu_s"), 0.0) for _ in range(n)]
    chunks, steals, duplicates, restarts, slow = 0, 0, 0, [], []
    walls: list[float] = []  # per run, first repeat
    sizes: list[int] = []  # per chunk, first repeat
    for repeat, index, batch_stats in stats:
        summary = batch_stats.summary()
        for total, lane in zip(lanes, summary["lanes"]):
            for key in total:
                total[key] += lane[key]
        chunks += summary["chunks"]
        steals += summary["steals"]
        duplicates += summary["duplicates"]
        batch, outcomes = sources[index]
        for restart in summary["restarts"]:
            if restart["item"] is not None and batch_stats.sources:
                i, _ = batch_stats.sources[restart["item"]]
                restart["text"] = diagnosis.snippet(batch[i][0], 100)
            restarts.append({"repeat": repeat, "batch": index, **restart})
        if repeat == 0:
            walls += [w for w in batch_stats.item_wall if w == w]  # NaN: never timed
            sizes += batch_stats.chunk_sizes
            for entry in batch_stats.tail(tail):
                i, j = entry.pop("source")
                entry["item"] = f"batch {index} program {i} input {j}"
                entry["outcome"] = diagnosis.describe(outcomes[n][i][j], 60)
                entry["lines"] = batch[i][0].strip("\n").count("\n") + 1
                entry["text"] = diagnosis.snippet(batch[i][0], 100)
                slow.append(entry)
    slow.sort(key=lambda entry: entry["wall_s"], reverse=True)
    busy = sum(lane["busy_s"] for lane in lanes)
    total = sum(lane["busy_s"] + lane["idle_s"] for lane in lanes)
    causes = Counter(restart["cause"] for restart in restarts)
    return {
        "lanes": [{key: round(value, 3) for key, value in lane.items()} for lane in lanes],
        "busy_fraction": round(busy / total, 4) if total else 0.0,
        "run_wall_s": distribution(sorted(walls)),
        "chunks": chunks,
        "chunk_size": distribution(sorted(sizes)),
        "steals": steals,
        "duplicates": duplicates,
        "restart_causes": dict(causes),
        "restarts": restarts,
        "tail": slow[:tail],
    }


def _scaling_bound(stats: list[tuple[int, int, Any]], n: int) -> float:
    """What a perfect scheduler could reach with N workers, batch by batch, from the per-run
    CPU seconds of the first repeat (a run cannot be split between workers)."""
    total, makespan = 0.0, 0.0
    for repeat, _, batch_stats in stats:
        if repeat == 0:
            seconds = [s for s in batch_stats.item_cpu if s == s]  # NaN: lost with a worker
            total += sum(seconds)
            makespan += diagnosis.lpt_makespan(seconds, n)
    return round(total / makespan, 3) if makespan else float(n)


def _print_workload(name: str, w: dict[str, Any], workers: list[int]) -> None:
    print(f"({name}) {w['programs']} programs, {w['runs']} runs; outcomes {w['outcomes']}")
    labels = {"bare": "bare in-process", "inprocess": "run_in_process"}
    for mode in ["bare", "inprocess"] + [f"sandbox_{k}" for k in workers]:
        label = labels.get(mode) or f"sandbox {mode.split('_')[-1]} worker(s)"
        print(
            f"    {label:20} {w[f'{mode}_runs_per_s']:7.0f} runs/s"
            f"  {w[f'{mode}_cpu_ms_per_run']:.3f} CPU ms/run  {w[f'cores_{mode}']:.2f} cores"
            f"  spread {w['spreads'][mode]:.1%}"
        )
    for k in workers:
        d = w[f"diagnosis_{k}"]
        lanes = ", ".join(f"{lane['busy_s']:.1f}/{lane['idle_s']:.1f}" for lane in d["lanes"])
        print(
            f"    sandbox {k}: pool start {w[f'start_s_{k}']:.2f} s, busy/idle s per lane {lanes}"
            f" (busy {d['busy_fraction']:.0%}), {d['chunks']} chunks, {d['steals']} steals,"
            f" restarts {d['restart_causes'] or 0}, mismatches {w['mismatches'][str(k)]},"
            f" parent CPU {w[f'parent_cpu_fraction_{k}']:.0%} of wall"
        )
        for entry in d["tail"][:5]:
            print(
                f"        {entry['wall_s']:7.3f} s ({entry['cpu_s']} CPU) lane {entry['lane']}"
                f" {entry['item']}, {entry['lines']} lines: {entry['outcome']}"
            )
    shown = set()
    for k in workers:
        for m in w["mismatch_details"][str(k)]:
            key = (m["batch"], m["program"], m["input"])
            if key not in shown:
                shown.add(key)
                print(f"    mismatch {key}: {m['sandbox']} vs {m['in_process']}: {m['reason']}")
                print(f"        {m['text']}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-policy", type=int, default=5000)
    parser.add_argument("--batches", type=int, default=3, help="policy-like batches (seeds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tail", type=int, default=10, help="slowest runs to report")
    parser.add_argument("--no-steal", action="store_true", help="turn work stealing off")
    parser.add_argument(
        "--in-process-gc",
        choices=["worker", "default"],
        default="worker",
        help="collector settings of the in-process modes (default: a worker's)",
    )
    parser.add_argument("--data", type=Path, default=None, help="CodeIt data directory")
    parser.add_argument("--tasks", type=int, default=None, help="use only the first N tasks")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.repeats < 1 or args.n_policy < 2 or args.batches < 1:
        parser.error("--workers, --repeats and --batches must be >= 1, --n-policy >= 2")
    data = args.data or codeit_data_dir()
    if not (data / "training").is_dir():
        sys.exit(f"CodeIt data not found at {data}: set CODEIT_DATA or pass --data")
    tasks = [t for t in load_codeit_dir(data / "training") if t.program][: args.tasks]
    if len(tasks) < 2:
        sys.exit("need at least two tasks with programs")
    workers = sorted({1, args.workers})
    n, steal = args.workers, not args.no_steal
    options = {"steal": steal, "tail": args.tail, "worker_gc": args.in_process_gc == "worker"}

    load_before, load_triple = load_average(), list(os.getloadavg())
    policy = [policy_batch(tasks, args.n_policy, args.seed + k) for k in range(args.batches)]
    figures: dict[str, Any] = {
        "a": measure([ground_truth_batch(tasks)], workers, args.repeats, **options),
        "b": measure(policy, workers, args.repeats, **options),
    }
    b = figures["b"]
    b["parse_fail_fraction"] = round(parse_fail_fraction([p for x in policy for p in x]), 4)
    figures["workers"] = n
    figures["steal"] = steal
    figures["in_process_gc"] = args.in_process_gc
    scaling = paired_ratios(b, "sandbox_1", f"sandbox_{n}")
    bare_share = paired_ratios(b, "bare", "sandbox_1")
    inprocess_share = paired_ratios(b, "inprocess", "sandbox_1")
    figures["scaling"] = round(statistics.median(scaling), 3)
    figures["scaling_per_batch"] = [round(x, 3) for x in scaling]
    figures["scaling_unpaired"] = round(b[f"sandbox_{n}_runs_per_s"] / b["sandbox_1_runs_per_s"], 3)
    figures["scaling_bound"] = b["scaling_bound"]
    figures["scaling_quiet_estimate"] = round(
        n
        * b[f"busy_fraction_{n}"]
        / b["busy_fraction_1"]
        * b["sandbox_1_cpu_ms_per_run"]
        / b[f"sandbox_{n}_cpu_ms_per_run"],
        3,
    )
    figures["overhead"] = round(1 - statistics.median(bare_share), 4)
    figures["overhead_per_batch"] = [round(1 - x, 4) for x in bare_share]
    figures["overhead_unpaired"] = round(1 - b["sandbox_1_runs_per_s"] / b["bare_runs_per_s"], 4)
    figures["overhead_vs_inprocess"] = round(1 - statistics.median(inprocess_share), 4)
    figures["ratio_spreads"] = {
        "scaling": round(spread(scaling), 4),
        "overhead": round(spread(bare_share), 4),
    }
    figures["overhead_cpu"] = round(1 - b["bare_cpu_ms_per_run"] / b["sandbox_1_cpu_ms_per_run"], 4)
    figures["noisy"] = figures["a"]["noisy"] or b["noisy"]
    figures["load_average_before"] = load_before
    figures["load_average_after"] = load_average()
    figures["conditions"] = {
        "cpus": default_workers(),
        "load_avg_before": load_triple,
        "load_avg_after": list(os.getloadavg()),
        "python": platform.python_version(),
        "repeats": args.repeats,
        "batches": args.batches,
        "n_policy": args.n_policy,
        "seed": args.seed,
    }

    for name in ("a", "b"):
        _print_workload(name, figures[name], workers)
    print(f"(b) parse-fail fraction {b['parse_fail_fraction']:.3f}")
    print(
        f"scaling {figures['scaling']:.2f} ({n} vs 1 worker on b; bound for these run times "
        f"{figures['scaling_bound']:.2f}, busy {b[f'busy_fraction_{n}']:.0%}, cores "
        f"{b[f'cores_sandbox_{n}']:.2f} vs {b['cores_sandbox_1']:.2f}, quiet-machine estimate "
        f"{figures['scaling_quiet_estimate']:.2f}); overhead {figures['overhead']:.3f} vs bare, "
        f"{figures['overhead_vs_inprocess']:.3f} vs run_in_process, "
        f"{figures['overhead_cpu']:.3f} in CPU time"
    )
    print(
        f"per batch: scaling {figures['scaling_per_batch']} (spread "
        f"{figures['ratio_spreads']['scaling']:.0%}; unpaired {figures['scaling_unpaired']:.2f}), "
        f"overhead {figures['overhead_per_batch']} (unpaired {figures['overhead_unpaired']:.3f})"
    )
    print(
        f"load average {load_triple} -> {figures['conditions']['load_avg_after']}"
        f"{'; NOISY: ' + ', '.join(figures['b']['noisy_sides']) if figures['noisy'] else ''}"
    )
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
