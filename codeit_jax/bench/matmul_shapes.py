"""What the policy's matmul shapes allow: each weight matmul of a decoding step or of a train
step, timed alone at its real shape, and the peak fraction the sampler or trainer could reach.

The 2048^3 matmul the peak is measured with is the best case; the model's own matmuls are not.
A decoding step multiplies few rows (tasks x samples / devices: 48 per CPU device on
`codeit_jax.bench.sampler`'s workload) by each weight matrix, and matmul kernels pack the weight
operand on every call, which few rows do not amortise. A train step multiplies many rows, but
two of every three of its matmuls take an operand transposed (the input gradient
``dy @ W^T`` and the weight gradient ``x^T @ dy``). This benchmark times each distinct weight
matmul of a step at its shape, in every form the step runs it, on every device at once (rows
split over the devices, weights whole on each, as the sampler and the data-parallel trainer
run them), against the peak measured in the same run. From those it derives a ceiling for the
workload's ``peak_fraction`` (`codeit_jax.policy.flops` model FLOPs): its weight matmuls at the
rates measured here, every other model FLOP (attention scores and mixing, the sampler's encoder)
at the peak itself, and softmax, dropout, norms, sampling, the optimizer and every small op in
no time. No implementation on this machine can beat it with these kernels and shapes.

For the sampler it also times the LM head split by vocabulary instead of by rows (each device
all rows, a share of the columns), which the sampler does not do: the logits, or the sampling
over them, would then have to be combined across devices every step.

Run: ``python -m codeit_jax.bench.matmul_shapes sampler [--config codet5_small --tasks 4
--samples 24 --input-length 512 --new-tokens 128]`` or ``... trainer [--batch 8 --input-length
512 --label-length 128 | --paper-shape]``, both with ``--repeats 5``. The last line printed is
one JSON object.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from codeit_jax.bench.timing import MatmulPeak, Timings, finish, load_average, repeat
from codeit_jax.host_process import prepare_process
from codeit_jax.policy.mesh import batch_sharding, batch_spec, make_mesh, replicated_sharding
from codeit_jax.policy.t5 import T5Config, named_config

#: Seconds of back-to-back calls per timing, so short matmuls are not lost in dispatch.
MIN_TIMING_S = 0.2
#: How a step runs a weight matmul of [rows, k] x [k, n]: the forward product, the input
#: gradient [rows, n] x [n, k] (the weight transposed), the weight gradient [k, rows] x [rows, n]
#: (the input transposed).
FORMS = ("forward", "input_gradient", "weight_gradient")


class Shape(NamedTuple):
    """``count`` matmuls of [rows, k] x [k, n] on each device per step, in each of ``forms``."""

    name: str
    rows: int
    k: int
    n: int
    count: int
    forms: tuple[str, ...] = ("forward",)

    @property
    def flops(self) -> float:
        """FLOPs of one such matmul, in any form, on one device."""
        return 2.0 * self.rows * self.k * self.n


def _layer_shapes(config: T5Config, rows: int, prefix: str, count: int) -> list[Shape]:
    """A stack's feed-forward matmuls for ``rows`` rows, ``count`` layers."""
    gated = 2 if config.gated else 1
    return [
        Shape(f"{prefix} feed-forward in", rows, config.d_model, config.d_ff, gated * count),
        Shape(f"{prefix} feed-forward out", rows, config.d_ff, config.d_model, count),
    ]


def sampler_shapes(config: T5Config, rows: int) -> list[Shape]:
    """The decoder's weight matmuls of one decoding step for ``rows`` rows on a device (the
    cross-attention keys and values are projected once per task before the loop, not here)."""
    layers, d, inner = config.num_decoder_layers, config.d_model, config.inner_dim
    return [
        Shape("attention q, k, v (self), q (cross)", rows, d, inner, 4 * layers),
        Shape("attention o (self and cross)", rows, inner, d, 2 * layers),
        *_layer_shapes(config, rows, "decoder", layers),
        Shape("LM head", rows, d, config.vocab_size, 1),
    ]


def trainer_shapes(
    config: T5Config, batch: int, input_length: int, label_length: int
) -> list[Shape]:
    """The weight matmuls of one train step for ``batch`` rows on a device, each run forward
    and in both gradients (the embeddings are trained, so every layer needs its input
    gradient)."""
    d, inner = config.d_model, config.inner_dim
    enc, dec = config.num_layers, config.num_decoder_layers
    source, target = batch * input_length, batch * label_length
    shapes = [
        # Encoder q, k, v and the decoder's cross-attention k, v all project encoder rows.
        Shape("encoder rows: q, k, v, cross k, v", source, d, inner, 3 * enc + 2 * dec),
        Shape("encoder attention o", source, inner, d, enc),
        *_layer_shapes(config, source, "encoder", enc),
        Shape("decoder rows: q, k, v (self), q (cross)", target, d, inner, 4 * dec),
        Shape("decoder attention o (self and cross)", target, inner, d, 2 * dec),
        *_layer_shapes(config, target, "decoder", dec),
        Shape("LM head", target, d, config.vocab_size, 1),
    ]
    return [s._replace(forms=FORMS) for s in shapes]


def _form(shape: Shape, form: str) -> tuple[tuple[int, int], tuple[int, int], bool, Callable]:
    """(per-device left operand shape, right operand shape, whether the right one is whole on
    every device, the product) of ``form``; the left operand is always split by rows over the
    devices."""
    if form == "forward":
        return (shape.rows, shape.k), (shape.k, shape.n), True, jnp.matmul
    if form == "input_gradient":  # dy @ W^T
        return (shape.rows, shape.n), (shape.k, shape.n), True, lambda dy, w: dy @ w.T
    if form == "weight_gradient":  # x^T @ dy, one [k, n] per device, stacked
        return (shape.rows, shape.k), (shape.rows, shape.n), False, lambda x, dy: (x.T @ dy)[None]
    raise ValueError(f"unknown matmul form {form!r}; known: {FORMS}")


def time_matmul(mesh: Mesh, shape: Shape, form: str, repeats: int, dtype: Any) -> Timings:
    """Seconds per call of ``shape`` in ``form`` and ``dtype`` on every device of ``mesh`` at
    once, one per timing."""
    left, right, right_whole, product = _form(shape, form)
    rng = np.random.default_rng(0)

    def array(local: tuple[int, int], whole: bool) -> jax.Array:
        rows = local[0] if whole else local[0] * mesh.devices.size
        value = rng.standard_normal((rows, local[1])).astype(dtype)
        return jax.device_put(value, replicated_sharding(mesh) if whole else batch_sharding(mesh))

    x, w = array(left, False), array(right, right_whole)
    specs = (batch_spec(), PartitionSpec() if right_whole else batch_spec())
    run = jax.jit(jax.shard_map(product, mesh=mesh, in_specs=specs, out_specs=batch_spec()))
    run(x, w).block_until_ready()
    start = time.perf_counter()
    run(x, w).block_until_ready()
    calls = max(1, int(MIN_TIMING_S / max(time.perf_counter() - start, 1e-6)))

    def back_to_back() -> None:
        for _ in range(calls):
            out = run(x, w)
        out.block_until_ready()

    return repeat(back_to_back, repeats, units=calls)


def benchmark(
    config: T5Config,
    shapes: Sequence[Shape],
    workload_flops: float,
    steps: int,
    repeats: int,
    extra: Sequence[Shape] = (),
    peak_size: int | None = None,
) -> dict[str, Any]:
    """Time every form of ``shapes`` (and of ``extra``, reported apart and left out of the
    step) on all devices, print the table and the JSON line; return the figures.
    ``workload_flops``: the model FLOPs of ``steps`` steps on all devices; ``peak_size``: the
    peak's matmul side (None: the backend's, 2048 on CPU)."""
    mesh = make_mesh()
    devices = mesh.devices.size
    load_before = load_average()
    peak = MatmulPeak(size=peak_size, dtype=config.compute_dtype)
    peak.measure()
    cases = [(s, form, False) for s in shapes for form in s.forms]
    cases += [(s, form, True) for s in extra for form in s.forms]
    timings = [time_matmul(mesh, s, form, repeats, config.compute_dtype) for s, form, _ in cases]
    peak.measure()
    rows, step_s, step_flops, spreads = [], 0.0, 0.0, {}
    for (shape, form, apart), times in zip(cases, timings, strict=True):
        seconds = times.median
        rate = devices * shape.flops / seconds
        spreads[f"{shape.name}, {form}"] = times.spread
        rows.append(
            {
                "name": shape.name,
                "form": form,
                "rows": shape.rows,
                "k": shape.k,
                "n": shape.n,
                "count": shape.count,
                "in_step": not apart,
                "ms_per_call": round(seconds * 1e3, 4),
                "gflops_per_s": round(rate / 1e9, 2),
                "peak_fraction": round(rate / peak.best, 4),
            }
        )
        if not apart:
            step_s += shape.count * seconds
            step_flops += devices * shape.count * shape.flops
    matmul_fraction = step_flops / step_s / peak.best
    untimed = workload_flops - steps * step_flops  # attention products, the encoder: at peak
    ceiling = workload_flops / (steps * step_s + untimed / peak.best) / peak.best
    print(f"{devices} device(s); matmul peak {peak.best / 1e9:.1f} GFLOP/s ({peak.size}^3)")
    for row in rows:
        print(
            f"  {row['name'] + ', ' + row['form']:52s} [{row['rows']}, {row['k']}] x "
            f"[{row['k']}, {row['n']}] x{row['count']:3d}: {row['ms_per_call']:9.3f} ms, "
            f"{row['peak_fraction']:6.1%} of peak{'' if row['in_step'] else ' (not in the step)'}"
        )
    print(
        f"weight matmuls of a step: {step_s * 1e3:.1f} ms, {matmul_fraction:.1%} of peak; "
        f"ceiling (other FLOPs at peak, other ops free): {ceiling:.1%} of peak"
    )
    figures: dict[str, Any] = {  # `finish` adds the device count
        "repeats": repeats,
        "matmuls": rows,
        "weight_matmul_ms_per_step": round(step_s * 1e3, 3),
        "weight_matmul_peak_fraction": round(matmul_fraction, 4),
        "ceiling_peak_fraction": round(ceiling, 4),
        **peak.summary(),
    }
    finish(figures, spreads, load_before)
    return figures


def sampler(
    config: T5Config,
    tasks: int,
    samples: int,
    input_length: int,
    new_tokens: int,
    repeats: int,
    peak_size: int | None = None,
) -> dict[str, Any]:
    """`benchmark` of `codeit_jax.bench.sampler`'s workload."""
    from codeit_jax.policy.flops import sampling_flops

    devices, rows = jax.device_count(), tasks * samples
    if rows % devices:
        raise ValueError(f"tasks x samples ({rows}) must divide over {devices} devices")
    split = Shape(
        "LM head split by vocabulary", rows, config.d_model, -(-config.vocab_size // devices), 1
    )
    workload = sampling_flops(config, tasks, samples, input_length, new_tokens)
    shapes = sampler_shapes(config, rows // devices)
    return benchmark(config, shapes, workload, new_tokens, repeats, [split], peak_size)


def trainer(
    config: T5Config,
    batch: int,
    input_length: int,
    label_length: int,
    repeats: int,
    peak_size: int | None = None,
) -> dict[str, Any]:
    """`benchmark` of `codeit_jax.bench.trainer`'s workload (``batch`` rows in all)."""
    from codeit_jax.policy.flops import train_step_flops

    devices = jax.device_count()
    if batch % devices:
        raise ValueError(f"--batch ({batch}) must divide over {devices} devices")
    workload = train_step_flops(config, batch, input_length, label_length)
    shapes = trainer_shapes(config, batch // devices, input_length, label_length)
    return benchmark(config, shapes, workload, 1, repeats, peak_size=peak_size)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", choices=("sampler", "trainer"))
    parser.add_argument("--config", default="codet5_small")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--input-length", type=int, default=None, help="default 512")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--batch", type=int, default=None, help="rows in all (default 8)")
    parser.add_argument("--label-length", type=int, default=128)
    parser.add_argument(
        "--paper-shape", action="store_true", help="trainer: as bench.trainer --paper-shape"
    )
    args = parser.parse_args(argv)
    sizes = (
        args.repeats,
        args.tasks,
        args.samples,
        args.input_length,
        args.new_tokens,
        args.batch,
        args.label_length,
    )
    if min(size for size in sizes if size is not None) < 1:
        parser.error("--repeats and every size must be >= 1")
    try:
        config = named_config(args.config)
    except KeyError as error:
        parser.error(str(error))
    prepare_process()
    if args.paper_shape:
        from codeit_jax.bench.trainer import paper_shape

        paper = paper_shape()
        args.batch = args.batch or paper["micro_batch"] * jax.local_device_count()
        args.input_length = args.input_length or paper["input_length"]
    args.batch = args.batch or 8
    args.input_length = args.input_length or 512
    print(f"{args.workload}, config {args.config}, {config.compute_dtype.name}")
    try:
        if args.workload == "sampler":
            return sampler(
                config, args.tasks, args.samples, args.input_length, args.new_tokens, args.repeats
            )
        return trainer(config, args.batch, args.input_length, args.label_length, args.repeats)
    except ValueError as error:
        parser.error(str(error))


if __name__ == "__main__":
    main()
