"""Parent memory of the execution stage: peak RSS of the process that executes and relabels a
policy-like meta-iteration's programs through the sandbox, with and without hostile outputs.

Workload: ``--n`` (default 5,000) policy-like programs (name-level edits of the ground-truth
programs, as (b) of :mod:`codeit_jax.bench.sandbox`), each assigned to a training task other
than its source and run by :func:`codeit_jax.loop.inference.execute_and_relabel` on that task's
demonstration inputs (and on its test inputs if it solves one), as one meta-iteration does.
Case ``hostile`` replaces ``--hostile-fraction`` (default 1%) of the programs by ones whose
output passes CodeIt's length rule but is large in memory (:func:`large_output_text`: an
upscaled input split by colour into a few frozensets of about 90,000 cells).

Each case runs in a fresh child process so that its peak RSS is its own. Figures per case: the
parent's RSS before executing (JAX, the tasks and the sandbox loaded), its peak while executing
and relabelling (``VmHWM``, reset just before where Linux allows), the growth between the two,
runs/s and the outcome kinds. The workers' memory is not the parent's and is not counted.

Run: ``python -m codeit_jax.bench.sandbox_memory [--n 5000] [--hostile-fraction 0.01]
[--workers N]``; the last line printed is a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from codeit_jax.bench.policy_like import edited_text, large_output_text
from codeit_jax.execution.sandbox import Sandbox, default_workers
from codeit_jax.files import codeit_data_dir
from codeit_jax.programs.program import parse
from codeit_jax.tasks import Task, load_codeit_dir

CASES = ("clean", "hostile")
TIMEOUT_S = 0.25
STATE_LIMIT = 1000
MEMORY_MB = 2048


def assign_samples(
    tasks: list[Task], n: int, seed: int, hostile_fraction: float
) -> list[list[str]]:
    """Per task, the programs that run on its inputs: edits of another task's program, and for
    a ``hostile_fraction`` of them a large-output program instead (same draws either way)."""
    programs = [parse(t.program) for t in tasks]
    rng = random.Random(seed)
    hostile_rng = random.Random(f"{seed}:hostile")
    samples: list[list[str]] = [[] for _ in tasks]
    for _ in range(n):
        source = rng.randrange(len(tasks))
        target = rng.randrange(len(tasks) - 1)
        target += target >= source
        text = edited_text(programs[source], rng)
        if hostile_rng.random() < hostile_fraction:
            primitive = hostile_rng.choice(["partition", "fgpartition"])
            text = large_output_text([x for x, _ in tasks[target].train], primitive=primitive)
        samples[target].append(text)
    return samples


def _status_kb(field: str) -> int:
    """A ``VmRSS``/``VmHWM`` figure of this process in KiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class _Counting:
    """Executor wrapper that counts runs and outcome kinds."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.kinds: Counter[str] = Counter()

    def run(self, batch: Any) -> list[list[Any]]:
        outcomes = self.sandbox.run(batch)
        self.kinds.update(o.error or "ok" for row in outcomes for o in row)
        return outcomes


def run_case(args: argparse.Namespace) -> dict[str, Any]:
    """One case in this process (the child's job)."""
    from codeit_jax.loop.inference import execute_and_relabel  # imports JAX, as the real parent

    tasks = [t for t in load_codeit_dir(args.data / "training") if t.program][: args.tasks]
    fraction = args.hostile_fraction if args.case == "hostile" else 0.0
    samples = assign_samples(tasks, args.n, args.seed, fraction)
    with Sandbox(
        workers=args.workers, timeout_s=TIMEOUT_S, memory_mb=MEMORY_MB, max_state_size=STATE_LIMIT
    ) as sandbox:
        executor = _Counting(sandbox)
        rss_before = _status_kb("VmRSS")
        exact_peak = _reset_peak()
        start = time.perf_counter()
        result = execute_and_relabel(tasks, samples, executor, meta_iteration=0, progress=False)
        seconds = time.perf_counter() - start
        peak = _status_kb("VmHWM")
        rss_after = _status_kb("VmRSS")
    runs = sum(executor.kinds.values())
    return {
        "case": args.case,
        "programs": sum(len(s) for s in samples),
        "runs": runs,
        "seconds": seconds,
        "runs_per_s": runs / seconds,
        "rss_before_mb": rss_before / 1024,
        "peak_rss_mb": peak / 1024,
        "peak_growth_mb": (peak - rss_before) / 1024,
        "rss_after_mb": rss_after / 1024,
        "peak_reset": exact_peak,
        "relabelled": len(result.relabelled),
        "outcomes": dict(executor.kinds),
    }


def _child(args: argparse.Namespace, case: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", "codeit_jax.bench.sandbox_memory", "--case", case]
    argv += ["--n", str(args.n), "--seed", str(args.seed), "--workers", str(args.workers)]
    argv += ["--hostile-fraction", str(args.hostile_fraction), "--data", str(args.data)]
    if args.tasks is not None:
        argv += ["--tasks", str(args.tasks)]
    done = subprocess.run(argv, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="policy-like programs")
    parser.add_argument("--hostile-fraction", type=float, default=0.01)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=None, help="CodeIt data directory")
    parser.add_argument("--tasks", type=int, default=None, help="use only the first N tasks")
    parser.add_argument("--case", choices=CASES, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.n < 1 or args.workers < 1 or not 0 <= args.hostile_fraction <= 1:
        parser.error("need --n >= 1, --workers >= 1 and 0 <= --hostile-fraction <= 1")
    args.data = args.data or codeit_data_dir()
    if not (args.data / "training").is_dir():
        sys.exit(f"CodeIt data not found at {args.data}: set CODEIT_DATA or pass --data")
    if args.case is not None:  # child: one case, one JSON line
        figures = run_case(args)
        print(json.dumps(figures))
        return figures

    load_before = list(os.getloadavg())
    print(f"load average before {load_before}")
    figures: dict[str, Any] = {case: _child(args, case) for case in CASES}
    figures["conditions"] = {
        "workers": args.workers,
        "hostile_fraction": args.hostile_fraction,
        "load_avg_before": load_before,
        "load_avg_after": list(os.getloadavg()),
        "python": platform.python_version(),
    }
    for case in CASES:
        f = figures[case]
        print(
            f"{case:8} {f['programs']} programs, {f['runs']} runs, {f['runs_per_s']:.0f} runs/s;"
            f" parent RSS {f['rss_before_mb']:.0f} MB before, peak {f['peak_rss_mb']:.0f} MB"
            f" (+{f['peak_growth_mb']:.0f} MB), {f['rss_after_mb']:.0f} MB after;"
            f" {f['relabelled']} relabelled; outcomes {f['outcomes']}"
        )
    print(f"load average after {figures['conditions']['load_avg_after']}")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
