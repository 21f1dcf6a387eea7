"""What the sampler's matmul shapes allow: each weight matmul of a decoding step, timed alone.

A decoding step multiplies few rows (tasks x samples / devices: 48 per CPU device on the sampler
benchmark's workload) by the decoder's weights and the LM head. Matmul kernels pack the weight
operand on every call, and with few rows that packing is a large part of the work, so these
shapes run well below the 2048^3 matmul the peak is measured with. This benchmark times each
distinct weight matmul of a step at its real shape, on every device at once (as the sampler
runs them, rows split over the devices, weights whole on each), against the peak measured in the
same run, and derives a ceiling for `codeit_jax.bench.sampler`'s ``peak_fraction``: the
workload's model FLOPs over the time its decoder weight matmuls alone take at these rates, as
if the encoder, the attention products over the cache and the encoder, the sampling passes and
every small op took no time. It also times the LM head split by vocabulary instead of by rows
(each device all rows, a share of the columns), which the sampler does not do: the rows' logits
would then have to be gathered across devices every step.

Run: ``python -m codeit_jax.bench.decode_shapes [--config codet5_small --tasks 4 --samples 24
--input-length 512 --new-tokens 128 --repeats 5]``. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from codeit_jax.bench.timing import MatmulPeak, finish, load_average, spread
from codeit_jax.host_process import prepare_process
from codeit_jax.policy.t5 import T5Config, named_config

#: Seconds of back-to-back calls per timing, so short matmuls are not lost in dispatch.
MIN_TIMING_S = 0.2


class Shape(NamedTuple):
    """``per_step`` matmuls of [rows, k] x [k, n] on each device in every decoding step."""

    name: str
    rows: int
    k: int
    n: int
    per_step: int

    @property
    def flops(self) -> float:
        """FLOPs of one such matmul on one device."""
        return 2.0 * self.rows * self.k * self.n


def decode_shapes(config: T5Config, rows: int) -> list[Shape]:
    """The decoder's weight matmuls of one step for ``rows`` rows on a device (cross-attention
    keys/values are projected once per task, before the loop, so they are not here)."""
    layers, d, inner, ff = (
        config.num_decoder_layers,
        config.d_model,
        config.inner_dim,
        config.d_ff,
    )
    wi = 2 if config.gated else 1
    return [
        Shape("attention q, k, v (self), q (cross)", rows, d, inner, 4 * layers),
        Shape("attention o (self and cross)", rows, inner, d, 2 * layers),
        Shape("feed-forward in", rows, d, ff, wi * layers),
        Shape("feed-forward out", rows, ff, d, layers),
        Shape("LM head", rows, d, config.vocab_size, 1),
    ]


def time_matmul(mesh: Mesh, shape: Shape, repeats: int, dtype: Any = np.float32) -> list[float]:
    """Seconds per call of ``shape`` in ``dtype`` on every device of ``mesh`` at once, one per
    timing."""
    devices = mesh.devices.size
    rows = NamedSharding(mesh, PartitionSpec("data"))
    whole = NamedSharding(mesh, PartitionSpec())
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.standard_normal((shape.rows * devices, shape.k)).astype(dtype), rows)
    w = jax.device_put(rng.standard_normal((shape.k, shape.n)).astype(dtype), whole)
    specs = dict(in_specs=(PartitionSpec("data"), PartitionSpec()), out_specs=PartitionSpec("data"))
    matmul = jax.jit(jax.shard_map(jnp.matmul, mesh=mesh, **specs))
    matmul(x, w).block_until_ready()
    start = time.perf_counter()
    matmul(x, w).block_until_ready()
    calls = max(1, int(MIN_TIMING_S / max(time.perf_counter() - start, 1e-6)))
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            out = matmul(x, w)
        out.block_until_ready()
        seconds.append((time.perf_counter() - start) / calls)
    return seconds


def summarise(
    shapes: Sequence[Shape], seconds: Sequence[float], devices: int, peak: float
) -> tuple[list[dict[str, Any]], float, float]:
    """Per shape its rate and fraction of ``peak`` (all devices together); the step's weight
    matmul seconds and FLOPs (all devices)."""
    rows, step_s, step_flops = [], 0.0, 0.0
    for shape, s in zip(shapes, seconds, strict=True):
        rate = devices * shape.flops / s
        rows.append(
            {
                "name": shape.name,
                "rows": shape.rows,
                "k": shape.k,
                "n": shape.n,
                "per_step": shape.per_step,
                "ms_per_call": round(s * 1e3, 4),
                "gflops_per_s": round(rate / 1e9, 2),
                "peak_fraction": round(rate / peak, 4),
            }
        )
        step_s += shape.per_step * s
        step_flops += devices * shape.per_step * shape.flops
    return rows, step_s, step_flops


def benchmark(
    config: T5Config,
    tasks: int,
    samples: int,
    input_length: int,
    new_tokens: int,
    repeats: int,
    peak_size: int | None = None,
) -> dict[str, Any]:
    """Time the shapes on all devices, print the table and the JSON line; return the figures.
    ``peak_size``: the peak's matmul side (None: the backend's, 2048 on CPU)."""
    from codeit_jax.policy.flops import sampling_flops

    mesh = Mesh(np.array(jax.devices()), ("data",))
    devices = mesh.devices.size
    total_rows = tasks * samples
    if total_rows % devices:
        raise ValueError(f"tasks x samples ({total_rows}) must divide over {devices} devices")
    load_before = load_average()
    peak = MatmulPeak(size=peak_size, dtype=config.compute_dtype)
    peak.measure()
    shapes = decode_shapes(config, total_rows // devices)
    split_head = Shape(
        "LM head split by vocabulary",
        total_rows,
        config.d_model,
        -(-config.vocab_size // devices),
        1,
    )
    timings = [time_matmul(mesh, s, repeats, config.compute_dtype) for s in [*shapes, split_head]]
    peak.measure()
    medians = [statistics.median(t) for t in timings]
    table, step_s, step_flops = summarise(shapes, medians[:-1], devices, peak.best)
    (split,), _, _ = summarise([split_head], medians[-1:], devices, peak.best)
    workload = sampling_flops(config, tasks, samples, input_length, new_tokens)
    ceiling = workload / (new_tokens * step_s) / peak.best
    print(
        f"{total_rows} rows over {devices} device(s); matmul peak {peak.best / 1e9:.1f} GFLOP/s "
        f"({peak.size}^3)"
    )
    for row in [*table, split]:
        print(
            f"  {row['name']:38s} [{row['rows']}, {row['k']}] x [{row['k']}, {row['n']}] "
            f"x{row['per_step']:3d}: {row['ms_per_call']:8.3f} ms, {row['gflops_per_s']:6.1f} "
            f"GFLOP/s, {row['peak_fraction']:.1%} of peak"
        )
    print(
        f"decoder weight matmuls per step: {step_s * 1e3:.1f} ms, "
        f"{step_flops / step_s / peak.best:.1%} of peak; the sampler's ceiling if nothing else "
        f"took time: {ceiling:.1%} of peak"
    )
    figures: dict[str, Any] = {
        "tasks": tasks,
        "samples": samples,
        "input_length": input_length,
        "new_tokens": new_tokens,
        "repeats": repeats,
        "shapes": table,
        "lm_head_split_by_vocabulary": split,
        "weight_matmul_ms_per_step": round(step_s * 1e3, 3),
        "weight_matmul_peak_fraction": round(step_flops / step_s / peak.best, 4),
        "sampler_ceiling_peak_fraction": round(ceiling, 4),
        **peak.summary(),
    }
    spreads = {row["name"]: spread(t) for row, t in zip([*table, split], timings, strict=True)}
    finish(figures, spreads, load_before)
    return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="codet5_small")
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--input-length", type=int, default=512)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if min(args.tasks, args.samples, args.input_length, args.new_tokens, args.repeats) < 1:
        parser.error("--tasks, --samples, --input-length, --new-tokens and --repeats must be >= 1")
    try:
        config = named_config(args.config)
    except KeyError as error:
        parser.error(str(error))
    prepare_process()
    print(f"config {args.config}, {config.compute_dtype.name}")
    try:
        figures = benchmark(
            config, args.tasks, args.samples, args.input_length, args.new_tokens, args.repeats
        )
    except ValueError as error:
        parser.error(str(error))
    return figures


if __name__ == "__main__":
    main()
