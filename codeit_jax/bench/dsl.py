"""DSL benchmark: the 400 CodeIt training programs on all their examples (1,717 runs).

Executing sampled programs is CodeIt's CPU bottleneck, so this measures what the sandbox will
pay per run: ``parse(text).run(grid)`` throughput, how many tasks the ground-truth programs solve
(plainly and under CodeIt's ``max_state_size=1000`` rule), and the interpreter's overhead over
calling the very same primitives from straight-line Python functions. Each task is timed in
every mode in turn, several times, and the best time per task and mode is kept, so load from
other processes disturbs the comparison as little as possible.

Run: ``python -m codeit_jax.bench.dsl [--repeats 3] [--data DIR]``; the last line printed is a
JSON object of the figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codeit_jax.dsl import CONSTANTS, PRIMITIVES
from codeit_jax.files import codeit_data_dir
from codeit_jax.programs.program import Program, parse
from codeit_jax.tasks import Task, load_codeit_dir

STATE_LIMIT = 1000
MODES = ("interpreter", "direct", "interpreter_limited")


def direct_function(program: Program) -> Callable[[Any], Any]:
    """The program as a plain Python function: the no-interpreter baseline, benchmark only.

    Built from the parsed (validated, whitelisted) lines of trusted ground-truth programs; model
    text never reaches this module. Names resolve as module globals, as when CodeIt's
    ``solve_<key>`` functions are called directly.
    """
    body = "".join(f"    {line.text}\n" for line in program.lines)
    source = f"def solve(I):\n{body}    return O\n"
    namespace: dict[str, Any] = {**PRIMITIVES, **CONSTANTS}
    exec(compile(source, "<benchmark direct function>", "exec"), namespace)
    return namespace["solve"]


@dataclass
class TaskTiming:
    """Best time per mode over the repeats, and whether each mode reproduced every output."""

    key: str
    runs: int
    best: dict[str, float] = field(default_factory=lambda: dict.fromkeys(MODES, float("inf")))
    solved: dict[str, bool] = field(default_factory=dict)
    error: dict[str, str] = field(default_factory=dict)


def _time_mode(
    function: Callable[[Any], Any], examples: Sequence[tuple[Any, Any]]
) -> tuple[float, bool, str]:
    """Seconds for all examples, whether every output matched, and the first error's type."""
    solved, error = True, ""
    start = time.perf_counter()
    for grid, expected in examples:
        try:
            if function(grid) != expected:
                solved = False
        except Exception as exc:  # a DSL error is a failed run, as in CodeIt's executor
            solved = False
            error = error or type(exc).__name__
    return time.perf_counter() - start, solved, error


def measure(tasks: Sequence[Task], repeats: int) -> list[TaskTiming]:
    """Time every task in every mode, interleaved, ``repeats`` times after one warm-up pass.

    The order of the modes rotates between repeats, so none always runs on a cold cache.
    """
    prepared = []
    for task in tasks:
        program = parse(task.program or "")
        program.bind()  # outside the timed region, like building the direct functions
        functions = {
            "interpreter": program.run,
            "direct": direct_function(program),
            "interpreter_limited": lambda grid, p=program: p.run(grid, STATE_LIMIT),
        }
        examples = list(task.train) + list(task.test)
        prepared.append((TaskTiming(task.key, len(examples)), functions, examples))
    for _, functions, examples in prepared:  # warm-up: fills per-shape caches of the DSL
        for mode in MODES:
            _time_mode(functions[mode], examples)
    for repeat in range(repeats):
        order = MODES[repeat % len(MODES) :] + MODES[: repeat % len(MODES)]
        for timing, functions, examples in prepared:
            for mode in order:
                seconds, solved, error = _time_mode(functions[mode], examples)
                timing.best[mode] = min(timing.best[mode], seconds)
                timing.solved[mode] = solved
                if error:
                    timing.error[mode] = error
    return [timing for timing, _, _ in prepared]


def _parse_seconds(tasks: Sequence[Task], repeats: int) -> float:
    """Best time to parse all programs (what the sandbox pays once per sampled program)."""
    texts = [task.program or "" for task in tasks]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for text in texts:
            parse(text)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timings per task and mode")
    parser.add_argument("--data", type=Path, default=None, help="CodeIt training directory")
    parser.add_argument("--top", type=int, default=5, help="how many slowest tasks to list")
    args = parser.parse_args(argv)
    data = args.data or codeit_data_dir() / "training"
    tasks = [task for task in load_codeit_dir(data) if task.program]
    if not tasks:
        raise SystemExit(f"no tasks with programs in {data}")
    print(
        f"{len(tasks)} programs from {data}; Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start, "
        f"best of {args.repeats} per task and mode"
    )
    gc.collect()
    wall_start = time.perf_counter()
    timings = measure(tasks, args.repeats)
    wall = time.perf_counter() - wall_start
    parse_s = _parse_seconds(tasks, args.repeats)

    runs = sum(t.runs for t in timings)
    total = {mode: sum(t.best[mode] for t in timings) for mode in MODES}
    solved = {mode: sum(t.solved[mode] for t in timings) for mode in MODES}
    ratios = sorted(t.best["interpreter"] / t.best["direct"] for t in timings)
    overhead = total["interpreter"] / total["direct"] - 1.0
    median_overhead = ratios[len(ratios) // 2] - 1.0
    slowest = sorted(timings, key=lambda t: t.best["interpreter"], reverse=True)[: args.top]
    unsolved = sorted(t.key for t in timings if not t.solved["interpreter"])
    unsolved_limited = sorted(t.key for t in timings if not t.solved["interpreter_limited"])

    print(f"runs: {runs} ({len(timings)} tasks); wall time of all passes {wall:.1f} s")
    for mode in MODES:
        print(
            f"  {mode:20s} {total[mode]:7.2f} s  {runs / total[mode]:8.1f} runs/s  "
            f"tasks solved {solved[mode]}/{len(timings)}"
        )
    print(
        f"interpreter overhead over direct calls: {overhead:+.1%} in total, "
        f"{median_overhead:+.1%} for the median task"
    )
    print(f"parse: {parse_s / len(tasks) * 1e6:.0f} us per program")
    print(f"not solved: {' '.join(unsolved)}")
    print(f"not solved with max_state_size={STATE_LIMIT}: {' '.join(unsolved_limited)}")
    print("slowest tasks (interpreter):")
    for t in slowest:
        print(f"  {t.key}  {t.best['interpreter']:.3f} s for {t.runs} runs")
    figures = {
        "runs": runs,
        "runs_per_s": round(runs / total["interpreter"], 1),
        "runs_per_s_direct": round(runs / total["direct"], 1),
        "runs_per_s_state_limit": round(runs / total["interpreter_limited"], 1),
        "tasks_solved": solved["interpreter"],
        "tasks_solved_direct": solved["direct"],
        "tasks_solved_state_limit": solved["interpreter_limited"],
        "overhead": round(overhead, 4),
        "overhead_median_task": round(median_overhead, 4),
        "parse_us_per_program": round(parse_s / len(tasks) * 1e6, 1),
        "slowest": {t.key: round(t.best["interpreter"], 4) for t in slowest},
        "repeats": args.repeats,
        "load_average_end": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
