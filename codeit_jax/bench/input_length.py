"""What CodeIt's per-side input length costs: inputs cut, and train step time, before and after.

Before: the whole model input was cut to ``max_input_tokens`` (512 in the paper config, 256 in
the tiny one), about half of it per side. After: each side is cut to ``input_state_max`` tokens
as CodeIt does (512 in the paper config, 128 in the tiny one), so a paper input reaches 1,024
tokens. For each config this prints

* the fraction of evaluation tasks whose model input is cut, under both rules (built-in DSL
  tokenizer, the config's number of demonstration examples);
* the time of one train step on one micro-batch of the config's shape (the config's model and
  micro-batch rows, random full-length inputs at the old and the new longest input, labels of
  ``--label-length`` tokens), with the model FLOPs as a fraction of the matmul peak measured in
  the same run. A paper step accumulates ``grad_accum_steps`` such micro-batches.

    python -m codeit_jax.bench.input_length [--configs tiny,codeit] [--steps 2]
        [--tasks arc1|codeit] [--rows N]

Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
from pathlib import Path

import jax

from codeit_jax.bench.trainer import random_batch, time_ours
from codeit_jax.files import codeit_data_dir
from codeit_jax.policy.encoding import SIDE_SEPARATOR, task_sides
from codeit_jax.policy.flops import measure_matmul_peak, peak_matmul_size, train_step_flops
from codeit_jax.policy.t5 import T5, named_config
from codeit_jax.policy.tokenizer import DSLTokenizer, Tokenizer
from codeit_jax.tasks import Task, load_arc, load_codeit_dir

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

#: The whole-input cap each config had before per-side truncation (``max_input_tokens``).
OLD_MAX_INPUT_TOKENS = {"codeit": 512, "tiny": 256, "cpu_experiment": 256}


def cut_fractions(
    tasks: list[Task], tokenizer: Tokenizer, n_examples: int, old_max: int, side_max: int
) -> tuple[float, float]:
    """(fraction of tasks cut under the old whole-input rule, under CodeIt's per-side rule).

    Old rule: each side cut to ``(old_max - newline - eos) // 2`` tokens. CodeIt's: the inputs
    side to ``side_max``, the outputs side to ``side_max - 1``.
    """
    fixed = len(tokenizer.encode(SIDE_SEPARATOR)) + 1
    old_side = (old_max - fixed) // 2
    old_cut = new_cut = 0
    for task in tasks:
        inputs, outputs = (len(tokenizer.encode(side)) for side in task_sides(task, n_examples))
        old_cut += inputs > old_side or outputs > old_side
        new_cut += inputs > side_max or outputs > side_max - 1
    return old_cut / len(tasks), new_cut / len(tasks)


def eval_tasks(source: str) -> list[Task]:
    if source == "codeit":
        return load_codeit_dir(codeit_data_dir() / "evaluation")
    return load_arc("arc1", "evaluation")


def measure_config(
    name: str, tasks: list[Task], label_length: int, steps: int, rows: int = 0
) -> dict:
    """Cut fractions and micro-batch step times of one config file, old and new input length
    (``rows`` > 0 times that many rows instead of the config's micro-batch)."""
    from codeit_jax.policy.trainer import TrainConfig, Trainer

    config = runpy.run_path(str(CONFIGS / f"{name}.py"))["get_config"]()
    side = config.encoding.input_state_max
    old_max = OLD_MAX_INPUT_TOKENS[name]
    new_max = 2 * side  # the longest input with the built-in tokenizer
    old_cut, new_cut = cut_fractions(
        tasks, DSLTokenizer(), config.encoding.n_examples, old_max, side
    )
    model = named_config(config.model.name, dropout_rate=config.model.dropout_rate)
    rows = rows or config.train.batch_size // config.train.grad_accum_steps
    labels = min(label_length, config.train.label_buckets[-1])
    figures: dict = {
        "model": config.model.name,
        "micro_batch": rows,
        "grad_accum_steps": config.train.grad_accum_steps,
        "label_length": labels,
        "cut_fraction_old": round(old_cut, 4),
        "cut_fraction_new": round(new_cut, 4),
    }
    trainer = Trainer(T5(model), TrainConfig(batch_size=rows))
    for when, length in (("old", old_max), ("new", new_max)):
        batch = random_batch(rows, length, labels, model.vocab_size)
        first, step, _, _ = time_ours(trainer, batch, steps)
        flops = train_step_flops(model, rows, length, labels)
        figures[f"input_length_{when}"] = length
        figures[f"step_s_{when}"] = round(step, 3)
        figures[f"first_step_s_{when}"] = round(first, 1)
        figures[f"model_gflops_{when}"] = round(flops / 1e9, 1)
    return figures


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="tiny,codeit")
    parser.add_argument("--steps", type=int, default=2, help="timed steps after the first")
    parser.add_argument("--label-length", type=int, default=128)
    parser.add_argument("--tasks", choices=("arc1", "codeit"), default="arc1")
    parser.add_argument(
        "--rows",
        type=int,
        default=0,
        help="rows per timed micro-batch; 0: the config's (the paper config's 8 rows at 1,024 "
        "input tokens need about 22 GB of host memory on CPU)",
    )
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    print(
        f"backend {jax.default_backend()}, {jax.device_count()} devices, {os.cpu_count()} CPUs, "
        f"load average {load_before:.2f}"
    )
    tasks = eval_tasks(args.tasks)
    peak_size = peak_matmul_size()
    peak_before = measure_matmul_peak(peak_size)
    results = {}
    for name in args.configs.split(","):
        results[name] = measure_config(name, tasks, args.label_length, args.steps, args.rows)
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    peak = max(peak_before, measure_matmul_peak(peak_size))
    print(f"{len(tasks)} evaluation tasks ({args.tasks}); matmul peak {peak / 1e9:.1f} GFLOP/s")
    for name, r in results.items():
        for when in ("old", "new"):
            fraction = r[f"model_gflops_{when}"] * 1e9 / r[f"step_s_{when}"] / peak
            r[f"peak_fraction_{when}"] = round(fraction, 4)
        print(
            f"{name} ({r['model']}, micro-batch {r['micro_batch']} x {r['label_length']} label "
            f"tokens): inputs cut on {r['cut_fraction_old']:.1%} of tasks before, "
            f"{r['cut_fraction_new']:.1%} after; step {r['step_s_old']:.3f} s at "
            f"{r['input_length_old']} input tokens ({r['peak_fraction_old']:.1%} of peak), "
            f"{r['step_s_new']:.3f} s at {r['input_length_new']} "
            f"({r['peak_fraction_new']:.1%} of peak)"
        )
    figures = {
        "tasks": args.tasks,
        "configs": results,
        "peak_gflops_per_s": round(peak / 1e9, 2),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
