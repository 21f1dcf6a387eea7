"""Token length statistics of model inputs and labels on the 400 ARC training tasks.

For the built-in DSL tokenizer and, given ``--hf_tokenizer=PATH`` (a local directory), for a
Hugging Face tokenizer: mean, 95th percentile and maximum of the full input (all
``--n_examples`` demonstrations, untruncated), of the input after per-side truncation to
``--input_state_max`` tokens, and of the label (program + eos); plus the fraction of tasks whose
input gets truncated. Prints the figures, then one JSON line.

    python -m codeit_jax.bench.tokens [--hf_tokenizer=PATH] [--data=DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from codeit_jax.files import codeit_data_dir
from codeit_jax.policy.encoding import bare_program, encode_program, encode_task, task_sides
from codeit_jax.policy.tokenizer import DSLTokenizer, HFTokenizer, Tokenizer
from codeit_jax.tasks import Task, load_codeit_dir


def _stats(lengths: list[int]) -> dict[str, float]:
    values = np.asarray(lengths)
    return {
        "mean": round(float(values.mean()), 1),
        "p95": round(float(np.percentile(values, 95)), 1),
        "max": int(values.max()),
    }


def measure(
    tasks: list[Task], tokenizer: Tokenizer, n_examples: int, input_state_max: int
) -> dict[str, object]:
    """Length statistics of one tokenizer on the tasks."""
    full, truncated, labels = [], [], []
    for task in tasks:
        inputs, outputs = task_sides(task, n_examples)
        full.append(len(tokenizer.encode(inputs + "\n" + outputs)) + 1)
        truncated.append(len(encode_task(task, tokenizer, n_examples, input_state_max)))
        labels.append(len(encode_program(bare_program(task.program or ""), tokenizer)))
    cut = sum(f > t for f, t in zip(full, truncated))
    return {
        "vocab_size": tokenizer.vocab_size,
        "input_full": _stats(full),
        "input_truncated": _stats(truncated),
        "label": _stats(labels),
        "truncated_fraction": round(cut / len(tasks), 4),
    }


def _print(name: str, figures: dict[str, object]) -> None:
    print(f"{name} (vocabulary {figures['vocab_size']}):")
    for key in ("input_full", "input_truncated", "label"):
        s = figures[key]
        print(f"  {key:16s} mean {s['mean']:8.1f}  p95 {s['p95']:8.1f}  max {s['max']:6d}")
    print(f"  inputs truncated: {figures['truncated_fraction']:.1%} of tasks")


def main(argv: list[str]) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="CodeIt data directory")
    parser.add_argument("--hf_tokenizer", type=Path, default=None, help="local HF tokenizer dir")
    parser.add_argument("--n_examples", type=int, default=10)
    parser.add_argument("--input_state_max", type=int, default=512)
    args = parser.parse_args(argv)

    training = (args.data or codeit_data_dir()) / "training"
    if not training.is_dir():
        raise SystemExit(
            f"CodeIt training tasks not found at {training} (set CODEIT_DATA or --data)"
        )
    tasks = [t for t in load_codeit_dir(training) if t.program]
    print(f"{len(tasks)} training tasks with programs from {training}")
    print(f"n_examples={args.n_examples}, input_state_max={args.input_state_max} per side")

    figures: dict[str, object] = {"tasks": len(tasks)}
    figures["dsl"] = measure(tasks, DSLTokenizer(), args.n_examples, args.input_state_max)
    _print("built-in DSL tokenizer", figures["dsl"])
    if args.hf_tokenizer is not None:
        hf = HFTokenizer(args.hf_tokenizer)
        figures["hf"] = measure(tasks, hf, args.n_examples, args.input_state_max)
        _print(f"Hugging Face tokenizer {args.hf_tokenizer}", figures["hf"])
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
