"""Model FLOPs of the T5 policy, and the machine's measured matmul peak.

Counts are *model* FLOPs: 2 per multiply-add of the matmuls the maths needs (projections,
attention scores and mixing, feed-forward, LM head), ignoring norms, softmax and other
element-wise work. Causal attention counts only the keys a query may see, and the sampler's
padding (unused cache slots, padding tasks) counts nothing, so "fraction of peak" measures useful
work. Training is the usual 3x a forward pass (forward + two backward matmuls).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from codeit_jax.policy.sampler import CPU_COMPILER_OPTIONS
from codeit_jax.policy.t5 import T5Config, default_compute_dtype


def _feed_forward(config: T5Config) -> float:
    """Per token per layer."""
    return (3 if config.gated else 2) * 2 * config.d_model * config.d_ff


def _projections(config: T5Config, n: int) -> float:
    """``n`` of the d_model x (heads * d_kv) projections, per token per layer."""
    return n * 2 * config.d_model * config.inner_dim


def _attention(config: T5Config, keys: float) -> float:
    """Scores and weighted values for one query over ``keys`` keys, per layer."""
    return 2 * 2 * keys * config.inner_dim


def encoder_flops_by_piece(config: T5Config, batch: int, length: int) -> dict[str, float]:
    """`encoder_flops` split into its attention projections, attention and feed-forward."""
    tokens = batch * length * config.num_layers
    return {
        "attention_projections": tokens * _projections(config, 4),
        "attention": tokens * _attention(config, length),
        "feed_forward": tokens * _feed_forward(config),
    }


def encoder_flops(config: T5Config, batch: int, length: int) -> float:
    """Encoder forward over ``batch`` sequences of ``length`` tokens (padding counted)."""
    return sum(encoder_flops_by_piece(config, batch, length).values())


def cross_kv_flops(config: T5Config, batch: int, source_length: int) -> float:
    """Projecting the encoder output to every decoder layer's cross-attention keys/values."""
    return batch * source_length * config.num_decoder_layers * _projections(config, 2)


#: The pieces of a decoder token's FLOPs (`decoder_token_flops_by_piece`).
DECODER_PIECES = (
    "self_attention_projections", "self_attention", "cross_attention_projections",
    "cross_attention", "feed_forward", "lm_head",
)  # fmt: skip


def decoder_token_flops_by_piece(
    config: T5Config, position: int, source_length: int
) -> dict[str, float]:
    """`decoder_token_flops` split into `DECODER_PIECES`."""
    layers = config.num_decoder_layers
    return {
        "self_attention_projections": layers * _projections(config, 4),  # q, k, v, o
        "self_attention": layers * _attention(config, position + 1),
        "cross_attention_projections": layers * _projections(config, 2),  # q, o
        "cross_attention": layers * _attention(config, source_length),
        "feed_forward": layers * _feed_forward(config),
        "lm_head": 2 * config.d_model * config.vocab_size,
    }


def decoder_token_flops(config: T5Config, position: int, source_length: int) -> float:
    """One decoder token at ``position`` (0-based), cross K/V excluded, LM head included."""
    return sum(decoder_token_flops_by_piece(config, position, source_length).values())


def decoder_flops_by_piece(
    config: T5Config, rows: int, source_length: int, steps: int
) -> dict[str, float]:
    """``rows`` decoder sequences of ``steps`` tokens (positions 0.. steps-1), by piece."""
    total = dict.fromkeys(DECODER_PIECES, 0.0)
    for t in range(steps):
        for piece, flops in decoder_token_flops_by_piece(config, t, source_length).items():
            total[piece] += rows * flops
    return total


def forward_flops(config: T5Config, batch: int, source_length: int, target_length: int) -> float:
    """Teacher-forced forward pass (``T5.__call__``) on a padded batch."""
    decoder = sum(decoder_token_flops(config, t, source_length) for t in range(target_length))
    return (
        encoder_flops(config, batch, source_length)
        + cross_kv_flops(config, batch, source_length)
        + batch * decoder
    )


def train_step_flops(config: T5Config, batch: int, source_length: int, target_length: int) -> float:
    """Forward + backward: 3x the forward matmuls."""
    return 3 * forward_flops(config, batch, source_length, target_length)


def train_step_flops_by_piece(
    config: T5Config, batch: int, source_length: int, target_length: int
) -> dict[str, float]:
    """`train_step_flops` by kind of matmul, encoder and decoder together: ``lm_head``,
    ``feed_forward``, ``attention_projections`` (every q, k, v, o and the cross K/V) and
    ``attention`` (scores and mixing of every attention)."""
    encoder = encoder_flops_by_piece(config, batch, source_length)
    decoder = decoder_flops_by_piece(config, batch, source_length, target_length)
    pieces = {
        "lm_head": decoder["lm_head"],
        "feed_forward": encoder["feed_forward"] + decoder["feed_forward"],
        "attention_projections": encoder["attention_projections"]
        + decoder["self_attention_projections"]
        + decoder["cross_attention_projections"]
        + cross_kv_flops(config, batch, source_length),
        "attention": encoder["attention"] + decoder["self_attention"] + decoder["cross_attention"],
    }
    return {piece: 3 * flops for piece, flops in pieces.items()}


def sampling_flops_by_piece(
    config: T5Config, tasks: int, samples: int, source_length: int, steps: int
) -> dict[str, float]:
    """`sampling_flops` split into ``encoder`` (with the cross K/V, once per task) and the
    decoder's `DECODER_PIECES`."""
    encoder = encoder_flops(config, tasks, source_length)
    return {
        "encoder": encoder + cross_kv_flops(config, tasks, source_length),
        **decoder_flops_by_piece(config, tasks * samples, source_length, steps),
    }


def sampling_flops(
    config: T5Config, tasks: int, samples: int, source_length: int, steps: int
) -> float:
    """The sampler's useful work: encoder and cross K/V once per task, ``steps`` decoder steps
    for each of ``tasks * samples`` rows (as if no row stopped early)."""
    return sum(sampling_flops_by_piece(config, tasks, samples, source_length, steps).values())


#: Matmul side of the peak measurement by backend: on CPU 2048^3 (~17 GFLOP) already saturates
#: the cores; an H100 does that in ~20 us, under the dispatch overhead, so accelerators use
#: 8192^3 (~1.1 TFLOP, ~1.4 ms in bfloat16 on an H100).
PEAK_SIZE = {"cpu": 2048}
ACCELERATOR_PEAK_SIZE = 8192


def peak_matmul_size(backend: str | None = None) -> int:
    """The matmul side ``measure_matmul_peak`` uses by default on ``backend`` (default: JAX's)."""
    backend = jax.default_backend() if backend is None else backend
    return PEAK_SIZE.get(backend, ACCELERATOR_PEAK_SIZE)


def peak_kernel_options(backend: str | None = None) -> list[dict[str, str]]:
    """The XLA option sets whose matmuls the peak is the best of: XLA's defaults and, on CPU,
    the sampler's (XLA's own matmul kernels instead of YNNPACK's), so that a program which
    picks the faster kernels is measured against the faster kernels' peak."""
    backend = jax.default_backend() if backend is None else backend
    return [{}] + ([dict(CPU_COMPILER_OPTIONS)] if backend == "cpu" else [])


def matmul_rates(
    size: int | None = None, repeats: int = 5, dtype=None, calls: int | None = None
) -> list[float]:
    """FLOP/s of each of ``repeats`` timings of jitted [size, size] @ [size, size] matmuls, for
    each of `peak_kernel_options` (timed in turn).

    A large square matmul is the fastest thing the backend does, so it stands in for the
    machine's attainable peak (it includes whatever load other processes put on it). Defaults
    follow the backend: ``dtype`` is the model's default compute dtype (float32 on CPU,
    bfloat16 on GPU/TPU, so "fraction of peak" compares like with like), ``size`` is
    ``peak_matmul_size()``, and each timing covers ``calls`` back-to-back matmuls (1 on CPU, 10
    elsewhere, so the per-call dispatch is hidden behind the queue). Every rate is returned,
    not only the best, so that a benchmark can report how much they spread.
    """
    backend = jax.default_backend()
    size = peak_matmul_size(backend) if size is None else size
    dtype = jnp.dtype(default_compute_dtype(backend) if dtype is None else dtype)
    calls = (1 if backend == "cpu" else 10) if calls is None else calls
    a = jax.random.normal(jax.random.key(0), (size, size), dtype)
    b = jax.random.normal(jax.random.key(1), (size, size), dtype)
    matmuls = [
        jax.jit(jnp.matmul, compiler_options=options or None)
        for options in peak_kernel_options(backend)
    ]
    for matmul in matmuls:
        matmul(a, b).block_until_ready()
    rates = []
    for _ in range(repeats):
        for matmul in matmuls:
            start = time.perf_counter()
            for _ in range(calls):
                out = matmul(a, b)
            out.block_until_ready()
            rates.append(2 * size**3 * calls / (time.perf_counter() - start))
    return rates


def measure_matmul_peak(
    size: int | None = None, repeats: int = 5, dtype=None, calls: int | None = None
) -> float:
    """FLOP/s of the best of ``repeats`` timings (`matmul_rates`): a busy moment does not lower
    the peak."""
    return max(matmul_rates(size, repeats, dtype, calls))
