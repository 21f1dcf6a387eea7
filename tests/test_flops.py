"""Model FLOP counts: checked against XLA's own count of the compiled forward pass."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import pytest

from codeit_jax.policy.flops import (
    decoder_token_flops,
    encoder_flops,
    forward_flops,
    measure_matmul_peak,
    peak_matmul_size,
    sampling_flops,
    sampling_flops_by_piece,
    train_step_flops,
    train_step_flops_by_piece,
)
from codeit_jax.policy.t5 import T5, init_params, named_config


@pytest.mark.parametrize("proj", ["relu", "gated-gelu"])
def test_forward_flops_agree_with_xla_cost_analysis(proj):
    """Matmul-dominated shapes, one decoder token (causal counting = full counting there):
    XLA also counts element-wise work, so ours is a little lower, never higher."""
    config = named_config(
        "tiny", d_model=64, d_kv=16, d_ff=512, vocab_size=2048, dtype="float32",
        feed_forward_proj=proj, tie_word_embeddings=proj == "relu",
    )  # fmt: skip
    params = jax.eval_shape(lambda k: init_params(config, k), jax.random.key(0))
    ids = jax.ShapeDtypeStruct((2, 8), jnp.int32)
    decoder_ids = jax.ShapeDtypeStruct((2, 1), jnp.int32)
    forward = jax.jit(lambda p, i, m, d: T5(config).apply({"params": p}, i, m, d))
    cost = forward.lower(params, ids, ids, decoder_ids).compile().cost_analysis()
    xla = (cost[0] if isinstance(cost, list) else cost)["flops"]
    assert 0.9 * xla <= forward_flops(config, 2, 8, 1) <= xla


def test_sampling_with_one_sample_is_a_forward_pass():
    config = named_config("codet5_small")
    assert math.isclose(sampling_flops(config, 4, 1, 512, 100), forward_flops(config, 4, 512, 100))
    assert sampling_flops(config, 4, 24, 512, 100) < 24 * forward_flops(config, 4, 512, 100)
    assert train_step_flops(config, 8, 64, 32) == 3 * forward_flops(config, 8, 64, 32)


def test_the_pieces_add_up_to_the_totals():
    config = named_config("codet5_small")
    assert decoder_token_flops(config, 0, 512) == pytest.approx(
        6 * (12 * 512 * 512 + 4 * 512 + 4 * 512 * 512 + 4 * 512 * 2048) + 2 * 512 * 32100
    )
    assert encoder_flops(config, 1, 4) == pytest.approx(
        4 * 6 * (8 * 512 * 512 + 4 * 4 * 512 + 4 * 512 * 2048)
    )
    pieces = sampling_flops_by_piece(config, 4, 24, 512, 128)
    assert sum(pieces.values()) == pytest.approx(sampling_flops(config, 4, 24, 512, 128))
    assert pieces["lm_head"] == 4 * 24 * 128 * 2 * 512 * 32100
    pieces = train_step_flops_by_piece(config, 8, 512, 128)
    assert sum(pieces.values()) == pytest.approx(train_step_flops(config, 8, 512, 128))


def test_matmul_peak_is_a_rate():
    rate = measure_matmul_peak(size=128, repeats=2)
    assert math.isfinite(rate) and rate > 0


def test_the_cpu_peak_is_the_best_of_both_matmul_kernels():
    from codeit_jax.policy.flops import matmul_rates, peak_kernel_options
    from codeit_jax.policy.sampler import CPU_COMPILER_OPTIONS

    assert peak_kernel_options("cpu") == [{}, CPU_COMPILER_OPTIONS]
    assert peak_kernel_options("gpu") == [{}]
    assert len(matmul_rates(size=64, repeats=2)) == 2 * len(peak_kernel_options())


def test_matmul_peak_defaults_follow_the_backend():
    """float32 2048^3 on the CPU as before; accelerators need a bigger (bfloat16) matmul."""
    assert peak_matmul_size("cpu") == 2048
    assert peak_matmul_size("gpu") == peak_matmul_size("tpu") == 8192
    rate = measure_matmul_peak(size=128, repeats=1, dtype=jnp.bfloat16, calls=3)
    assert math.isfinite(rate) and rate > 0
