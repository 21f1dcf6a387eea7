"""Choosing a row's next token from its logits, on every device and without sorting.

* `sample_from_logits`: inverse-CDF sampling with one uniform number per row and step,
  two-level (128-token blocks, then within the block), which costs about as much as a
  softmax; Gumbel-max would need one random number per vocabulary entry per row and step
  (docs/benchmarks.md has how much slower it was).
* `kth_largest`: the k-th largest logit of each row, the threshold of top-k sampling (CodeIt
  samples with transformers' default top-k of 50). ``lax.top_k`` sorts each row on the CPU,
  a sort of 32,100 logits per row and step that cost several times the whole decoder step
  (docs/benchmarks.md). Instead: the k blocks with the largest maxima hold every logit at or
  above the k-th largest (the k block maxima are k logits, so the k-th largest is at least
  the smallest of them, and a block whose maximum is below that holds none); among those k
  blocks' logits, a bisection over the float32 values' order-preserving integer codes finds
  the largest value v with at least k logits >= v, which is the k-th largest (ties counted,
  as a sort would). 32 counting passes over k x 128 logits, exact.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

#: Vocabulary block size of the two-level inverse-CDF sampler and of the top-k search.
_BLOCK = 128


def _blocks(logits: jax.Array) -> jax.Array:
    """[N, V] -> [N, ceil(V / BLOCK), BLOCK], padded with -inf (never sampled, never in a
    top-k unless fewer than k logits are finite, when the k-th largest is -inf anyway)."""
    n, vocab = logits.shape
    blocks = -(-vocab // _BLOCK)
    padded = jnp.pad(logits, ((0, 0), (0, blocks * _BLOCK - vocab)), constant_values=-jnp.inf)
    return padded.reshape(n, blocks, _BLOCK)


def sample_from_logits(keys: jax.Array, logits: jax.Array) -> jax.Array:
    """One token per row from ``softmax(logits)`` (float32 [N, V]; -inf = never), by inverse CDF.

    ``keys``: one PRNG key per row. Exact up to float32 rounding of the cumulative sums; a token
    with zero probability is never returned.
    """
    padded = _blocks(logits)
    blocks = padded.shape[1]
    weights = jnp.exp(padded - jnp.max(padded, axis=(1, 2), keepdims=True))
    block_cdf = jnp.cumsum(jnp.sum(weights, axis=-1), axis=-1)  # [n, blocks]
    uniform = 1.0 - jax.vmap(jax.random.uniform)(keys)  # (0, 1]: never picks a zero-mass head
    target = uniform * block_cdf[:, -1]
    block = jnp.minimum(jnp.sum(block_cdf < target[:, None], axis=-1), blocks - 1)
    before = jnp.take_along_axis(block_cdf, jnp.maximum(block - 1, 0)[:, None], axis=1)[:, 0]
    before = jnp.where(block > 0, before, 0.0)
    inner = jnp.take_along_axis(weights, block[:, None, None], axis=1)[:, 0]  # [n, BLOCK]
    inner_cdf = jnp.cumsum(inner, axis=-1)
    rest = jnp.clip(target - before, jnp.finfo(jnp.float32).tiny, inner_cdf[:, -1])
    offset = jnp.minimum(jnp.sum(inner_cdf < rest[:, None], axis=-1), _BLOCK - 1)
    return (block * _BLOCK + offset).astype(jnp.int32)


def _ordered_code(x: jax.Array) -> jax.Array:
    """float32 -> uint32 codes in the same order (-inf lowest, +inf highest; -0 just below +0)."""
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
    return jnp.where(bits >> 31 == 1, ~bits, bits | jnp.uint32(0x80000000))


def _from_ordered_code(code: jax.Array) -> jax.Array:
    bits = jnp.where(code >> 31 == 1, code & jnp.uint32(0x7FFFFFFF), ~code)
    return jax.lax.bitcast_convert_type(bits, jnp.float32)


def kth_largest(logits: jax.Array, k: int) -> jax.Array:
    """The k-th largest value of each row of float32 [N, V] (1 <= k <= V), as
    ``lax.top_k(logits, k)[0][:, -1]`` gives it, without sorting (see the module docstring)."""
    if not 1 <= k <= logits.shape[-1]:
        raise ValueError(f"k={k} must be in 1..{logits.shape[-1]}")
    padded = _blocks(logits)
    n, blocks, _ = padded.shape
    if k < blocks:  # only the k blocks with the largest maxima can hold the top k
        top_blocks = jax.lax.top_k(jnp.max(padded, axis=-1), k)[1]
        padded = jnp.take_along_axis(padded, top_blocks[:, :, None], axis=1)
    codes = _ordered_code(padded.reshape(n, -1))

    def halve(_: int, bounds: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        low, high = bounds  # the answer's code is in [low, high]; low always has >= k above
        middle = low + (high - low) // 2 + (high - low) % 2
        enough = jnp.sum(codes >= middle[:, None], axis=-1) >= k
        return jnp.where(enough, middle, low), jnp.where(enough, high, middle - 1)

    bounds = (jnp.min(codes, axis=-1), jnp.max(codes, axis=-1))
    low, _ = jax.lax.fori_loop(0, 32, halve, bounds)  # 32 halvings close any uint32 range
    return _from_ordered_code(low)
