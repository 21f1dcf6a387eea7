"""Where the sampler's or the trainer's time goes: one traced run, op by op, summed per piece.

Method: the XLA CPU runtime records one trace event per op it executes (a "thunk": a fused
loop, a library matmul, a copy), named after the op in the compiled program. The compiled HLO
gives each op the JAX source path it came from (its ``op_name`` metadata, e.g.
``while/body/T5.decode/decoder/layers_3/mlp/wi/dot_general``); each op goes to the first piece
whose pattern matches that path (`SAMPLER_PIECES`, `TRAINER_PIECES`). XLA drops the metadata of
a few ops it creates itself; in the sampler's loop those are the batched products of the
queries with the self-attention cache, and unnamed dots go to that piece.

The table gives each piece's traced seconds, its share of all traced op time, its model FLOPs
(`codeit_jax.policy.flops`, the same counts as the benchmarks' peak fractions) and their rate.
Traced times are wall times: where other processes share the CPUs they include time spent
waiting for one, so read the shares, with the load average printed alongside. ``--cpus 1``
pins the process to one CPU before XLA starts (XLA then runs one thread), which gives clean
single-core times where another CPU is busy, and each piece's FLOP rate can be compared with
the one-core matmul peak measured in the same run. Piece patterns are regular expressions
over the op's source path, its opcode and its name, joined by spaces.

Run: ``python -m codeit_jax.bench.op_profile sampler|trainer [--cpus 1] [--config
codet5_small --tasks 4 --samples 24 --input-length 512 --new-tokens 128 --batch 8
--label-length 128 --trace-dir DIR --ops N --eigen-matmuls --cache-chunk 0]``. The last line
printed is one JSON object.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax

from codeit_jax.bench.timing import load_average
from codeit_jax.host_process import prepare_process

#: (piece, pattern) for the sampler; the first match wins. Loop-body ops say ``while/body``.
SAMPLER_PIECES = (
    ("encoder", r"T5\.encode/|T5\.cross_kv/"),
    ("lm_head", r"T5\.decode/(shared\.attend|.*ntd,(dv|ad)->nt)"),
    ("feed_forward", r"T5\.decode/.*/mlp/"),
    ("self_attention_projections", r"self_attention/(q|o)/|self_attention\.project_kv/"),
    ("cross_attention_projections", r"cross_attention/(q|o)/"),
    ("self_attention", r"self_attention/|dynamic_update_slice|^ dot "),
    ("cross_attention", r"cross_attention/"),
    ("norms_and_residuals", r"_norm/|decoder/.*/add\b"),
    ("sampling", r"while/body/(?!T5\.decode)"),
    ("other_decode", r"T5\.decode/"),
)

#: (piece, pattern) for a train step: forward and backward (``transpose(jvp(...))``) together.
TRAINER_PIECES = (
    ("dropout", r"(?i)dropout"),
    ("lm_head", r"shared\.attend"),
    ("loss", r"jvp\(\)|take_along_axis|log_softmax|logsumexp"),
    ("feed_forward", r"/mlp/"),
    ("attention_projections", r"attention/(q|k|v|o)/|project_kv/"),
    ("attention", r"attention/|relative_position_bias"),
    ("norms", r"_norm/"),
    ("embedding", r"/shared/|scatter-add"),
    ("residuals_and_other_model", r"jvp\(T5\)"),
    ("optimizer", r"jit\(train_step\)/|state\.params|^ "),
)


def op_times(trace_dir: str) -> tuple[dict[str, float], dict[str, int]]:
    """(seconds, executions) per op name, from the newest Perfetto trace under ``trace_dir``."""
    paths = sorted(glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True))
    if not paths:
        raise FileNotFoundError(f"no *.trace.json.gz under {trace_dir}")
    with gzip.open(paths[-1]) as f:
        events = json.load(f)["traceEvents"]
    seconds: dict[str, float] = collections.Counter()
    counts: dict[str, int] = collections.Counter()
    for event in events:
        op = event.get("args", {}).get("hlo_op")
        if event.get("ph") == "X" and op is not None:
            seconds[op] += event["dur"] / 1e6
            counts[op] += 1
    return dict(seconds), dict(counts)


_INSTRUCTION = re.compile(r"\s*(?:ROOT )?%([\w.\-]+) = \S+ ([\w\-]+)\(")
_OP_NAME = re.compile(r'op_name="([^"]*)"')


def op_sources(hlo_text: str) -> dict[str, str]:
    """Each instruction's ``"<source path> <opcode> <name>"`` (the source path may be empty)."""
    sources = {}
    for line in hlo_text.splitlines():
        match = _INSTRUCTION.match(line)
        if match:
            name, opcode = match.groups()
            source = _OP_NAME.search(line)
            sources[name] = f"{source.group(1) if source else ''} {opcode} {name}"
    return sources


def by_piece(
    seconds: dict[str, float],
    counts: dict[str, int],
    sources: dict[str, str],
    pieces: Sequence[tuple[str, str]],
    top: int = 0,
) -> dict[str, dict[str, Any]]:
    """{piece: {"seconds", "ops", "top"}} in the order of ``pieces``, then ``unmatched``;
    "top" lists the piece's ``top`` slowest ops as (seconds, executions, source)."""
    patterns = [(piece, re.compile(pattern)) for piece, pattern in pieces]
    names = [piece for piece, _ in pieces] + ["unmatched"]
    total: dict[str, dict[str, Any]] = {p: {"seconds": 0.0, "ops": 0, "top": []} for p in names}
    for op, spent in sorted(seconds.items(), key=lambda item: -item[1]):
        source = sources.get(op, f" ? {op}")
        piece = next((p for p, rx in patterns if rx.search(source)), "unmatched")
        total[piece]["seconds"] += spent
        total[piece]["ops"] += counts[op]
        if len(total[piece]["top"]) < top:
            total[piece]["top"].append((round(spent, 4), counts[op], source.strip()))
    return total


def table(
    pieces: dict[str, dict[str, float]], flops: dict[str, float], peak: float
) -> tuple[str, dict[str, Any]]:
    """The printed table and its JSON form; FLOP rates also as fractions of ``peak``."""
    traced = sum(p["seconds"] for p in pieces.values())
    lines = [
        f"{'piece':30s} {'seconds':>8s} {'share':>6s} {'GFLOP':>8s} {'GFLOP/s':>8s} "
        f"{'of peak':>7s} {'ops':>7s}"
    ]
    rows = {}
    for piece, p in pieces.items():
        gflop = flops.get(piece, 0.0) / 1e9
        rate = gflop / p["seconds"] if p["seconds"] and gflop else 0.0
        rows[piece] = {
            "seconds": round(p["seconds"], 3),
            "share": round(p["seconds"] / traced, 4) if traced else 0.0,
            "gflop": round(gflop, 2),
            "gflops_per_s": round(rate, 1),
            "ops": int(p["ops"]),
        }
        lines.append(
            f"{piece:30s} {p['seconds']:8.3f} {rows[piece]['share']:6.1%} {gflop:8.1f} "
            f"{rate:8.1f} {rate * 1e9 / peak if rate else 0:7.1%} {int(p['ops']):7d}"
        )
        for spent, executions, source in p.get("top", []):
            lines.append(f"    {spent:8.3f} s x{executions:<5d} {source[-100:]}")
    gflop = sum(flops.values()) / 1e9
    lines.append(
        f"{'total':30s} {traced:8.3f} {1:6.1%} {gflop:8.1f} {gflop / traced:8.1f} "
        f"{gflop * 1e9 / traced / peak:7.1%}"
    )
    return "\n".join(lines), rows


def traced_run(
    run: Callable[[], Any],
    compiled_text: str,
    pieces: Sequence[tuple[str, str]],
    trace_dir: str,
    top: int = 0,
) -> tuple[dict[str, dict[str, Any]], float]:
    """Per-piece times of one traced ``run()`` (already warmed up) and its wall seconds."""
    jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
    start = time.perf_counter()
    try:
        run()
    finally:
        wall = time.perf_counter() - start
        jax.profiler.stop_trace()
    seconds, counts = op_times(trace_dir)
    return by_piece(seconds, counts, op_sources(compiled_text), pieces, top), wall


def profile_sampler(args: argparse.Namespace, trace_dir: str) -> tuple[dict, dict, float, dict]:
    """(pieces, FLOPs by piece, wall seconds, settings) of one traced sampler call."""
    from codeit_jax.bench.sampler import TEMPERATURE, random_inputs
    from codeit_jax.policy.flops import sampling_flops_by_piece
    from codeit_jax.policy.sampler import CPU_COMPILER_OPTIONS, DEFAULT_CACHE_CHUNK, Sampler
    from codeit_jax.policy.t5 import init_params, named_config

    config = named_config(args.config)
    params = init_params(config, jax.random.key(0))
    inputs = random_inputs(args.tasks, args.input_length, config.vocab_size)
    chunk = DEFAULT_CACHE_CHUNK if args.cache_chunk is None else (args.cache_chunk or None)
    options = CPU_COMPILER_OPTIONS if args.eigen_matmuls else {}
    sampler = Sampler(config, cache_chunk=chunk, compiler_options=options)
    settings = dict(num_samples=args.samples, max_new_tokens=args.new_tokens)
    kwargs = dict(settings, temperature=TEMPERATURE)
    compiled = sampler.lower(params, inputs, jax.random.key(0), **kwargs).compile()
    sampler.sample(params, inputs, jax.random.key(0), **kwargs)  # warm-up
    out: list = []

    def run() -> None:
        out.append(sampler.sample(params, inputs, jax.random.key(1), **kwargs))

    pieces, wall = traced_run(run, compiled.as_text(), SAMPLER_PIECES, trace_dir, args.ops)
    steps = int(out[0].lengths.max())
    flops = sampling_flops_by_piece(config, args.tasks, args.samples, args.input_length, steps)
    settings.update(
        tasks=args.tasks, input_length=args.input_length, steps=steps, cache_chunk=chunk
    )
    return pieces, flops, wall, settings


def profile_trainer(args: argparse.Namespace, trace_dir: str) -> tuple[dict, dict, float, dict]:
    """(pieces, FLOPs by piece, wall seconds, settings) of one traced train step."""
    from codeit_jax.bench.trainer import random_batch
    from codeit_jax.policy.flops import train_step_flops_by_piece
    from codeit_jax.policy.t5 import T5, named_config
    from codeit_jax.policy.trainer import TrainConfig, Trainer

    config = named_config(args.config)
    trainer = Trainer(T5(config), TrainConfig(batch_size=args.batch))
    batch = random_batch(args.batch, args.input_length, args.label_length, config.vocab_size)
    state = trainer.init_state()
    compiled = trainer._step.lower(state, trainer.shard_batch(batch)).compile()
    state, metrics = trainer.step(state, batch)  # warm-up
    jax.block_until_ready((state, metrics))

    def run() -> None:
        nonlocal state, metrics
        state, metrics = trainer.step(state, batch)
        jax.block_until_ready((state, metrics))

    pieces, wall = traced_run(run, compiled.as_text(), TRAINER_PIECES, trace_dir, args.ops)
    flops = train_step_flops_by_piece(config, args.batch, args.input_length, args.label_length)
    settings = dict(batch=args.batch, input_length=args.input_length, labels=args.label_length)
    return pieces, flops, wall, settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", choices=("sampler", "trainer"))
    parser.add_argument("--config", default="codet5_small")
    parser.add_argument("--cpus", default="", help="pin to these CPUs, e.g. 1 or 0,1")
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--input-length", type=int, default=512)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--cache-chunk", type=int, default=None, help="0: one loop segment")
    parser.add_argument(
        "--eigen-matmuls",
        action="store_true",
        help="compile the sampler with policy.sampler.CPU_COMPILER_OPTIONS",
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--label-length", type=int, default=128)
    parser.add_argument("--trace-dir", default=None, help="keep the trace here")
    parser.add_argument("--ops", type=int, default=0, help="list each piece's N slowest ops")
    args = parser.parse_args()
    if args.cpus:  # before XLA starts its thread pool, which it sizes to the allowed CPUs
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    from codeit_jax.policy.flops import measure_matmul_peak

    load_before = load_average()
    cpus = sorted(os.sched_getaffinity(0))
    peak = measure_matmul_peak()
    profile = profile_sampler if args.workload == "sampler" else profile_trainer
    with tempfile.TemporaryDirectory() as scratch:
        pieces, flops, wall, settings = profile(args, args.trace_dir or scratch)
    peak = max(peak, measure_matmul_peak())
    text, rows = table(pieces, flops, peak)
    print(
        f"{args.workload}, {args.config}, {settings}; CPUs {cpus}; load average {load_before} "
        f"before, {load_average()} after; wall {wall:.2f} s; matmul peak {peak / 1e9:.1f} GFLOP/s"
    )
    print(text)
    figures = {
        "workload": args.workload,
        "config": args.config,
        **settings,
        "cpus": cpus,
        "wall_s": round(wall, 3),
        "peak_gflops_per_s": round(peak / 1e9, 2),
        "pieces": rows,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    prepare_process()  # before JAX starts
    main()
