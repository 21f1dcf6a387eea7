"""The layers of the Flax T5 (`codeit_jax.policy.t5`): attention with T5's relative position
buckets, the feed-forward blocks, RMS norm and a cheap dropout.

Dropout draws one byte per element from a cheap counter-based hash (`dropout_mask`), not one
threefry word: the masks of a training step are most of its random bits, and a keep rate in
steps of 1/256 is as good for regularisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from codeit_jax.policy.t5 import T5Config


#: Additive attention bias for masked positions (finite, see module docstring).
MASK_BIAS = -1e9
#: Cross-attention keys/values of one decoder layer, each [tasks, heads, source_length, d_kv].
#: Head-major, like the cache, so attention is a plain batched matmul over (batch, head): with
#: [batch, length, heads, d_kv] XLA re-transposes the whole cache and cross K/V on every step.
LayerKV = tuple[jax.Array, jax.Array]
#: Keys and values split along the key axis into chunks, each [batch, heads, chunk, d_kv]
#: (the sampler's self-attention cache, see `codeit_jax.policy.t5.init_cache`).
ChunkedKV = tuple[tuple[jax.Array, ...], tuple[jax.Array, ...]]


@lru_cache(maxsize=32)
def relative_position_bucket_table(
    bidirectional: bool, num_buckets: int, max_distance: int
) -> np.ndarray:
    """Bucket of every relative position ``key - query`` in ``[-max_distance, max_distance]``.

    Half the buckets (per direction when bidirectional) are exact small distances, the rest
    grow logarithmically up to ``max_distance``; anything farther shares the last bucket, so
    clipping a relative position to this range never changes its bucket. Computed on the host
    in float64 once, which makes the buckets exact (no float32 log rounding at the boundaries).
    """
    table = np.zeros(2 * max_distance + 1, dtype=np.int32)
    per_direction = num_buckets // 2 if bidirectional else num_buckets
    exact = per_direction // 2
    for i, relative in enumerate(range(-max_distance, max_distance + 1)):
        if bidirectional:
            offset = per_direction if relative > 0 else 0
            distance = abs(relative)
        else:
            offset = 0
            distance = max(-relative, 0)
        if distance < exact:
            bucket = distance
        else:
            scaled = math.log(distance / exact) / math.log(max_distance / exact)
            bucket = min(exact + int(scaled * (per_direction - exact)), per_direction - 1)
        table[i] = offset + bucket
    return table


def relative_position_buckets(
    relative_position: jax.Array, bidirectional: bool, num_buckets: int, max_distance: int
) -> jax.Array:
    """Buckets of an int array of relative positions (``key - query``), any shape."""
    table = jnp.asarray(relative_position_bucket_table(bidirectional, num_buckets, max_distance))
    return table[jnp.clip(relative_position, -max_distance, max_distance) + max_distance]


def padding_bias(mask: jax.Array) -> jax.Array:
    """[batch, length] bool/int key mask -> additive float32 bias [batch, 1, 1, length]."""
    return jnp.where(mask.astype(bool), 0.0, MASK_BIAS).astype(jnp.float32)[:, None, None, :]


@jax.custom_vjp
def position_gradient_tap(bias: jax.Array, position_bias: jax.Array) -> jax.Array:
    """``bias`` ([B, H, Tq, Tk]: ``position_bias`` plus a padding bias) unchanged, with its
    gradient sent to ``position_bias`` ([1, H, Tq, Tk]) summed over the batch at once.

    Every encoder layer adds the same bias. Left to autodiff, the layers' [B, H, Tq, Tk]
    cotangents are summed and then reduced over the batch, and XLA does both in one pass at
    the end of the backward, keeping each layer's cotangent alive until then. A tap per layer
    reduces that layer's cotangent over the batch where it arises. The padding bias has no
    gradient, so ``bias`` itself gets none.
    """
    return bias


def _tap_forward(bias: jax.Array, position_bias: jax.Array) -> tuple[jax.Array, None]:
    return bias, None


def _tap_backward(_: None, d_bias: jax.Array) -> tuple[None, jax.Array]:
    # The batch sum as a product with a row of ones, not ``sum``: XLA rewrites the layers'
    # sums back into one late pass (``add(reduce(a), reduce(b))`` -> ``reduce(add(a, b))``).
    rows = d_bias.reshape(d_bias.shape[0], -1)
    summed = jnp.ones((1, rows.shape[0]), rows.dtype) @ rows
    return None, summed.reshape((1, *d_bias.shape[1:]))


position_gradient_tap.defvjp(_tap_forward, _tap_backward)


#: Bits of randomness per dropout-mask element: one 32-bit word serves four elements.
_DROPOUT_BITS = 8


def _mix32(x: jax.Array) -> jax.Array:
    """A bijection of ``uint32`` with full avalanche (two xor-shift-multiply rounds and a final
    xor-shift; constants from Chris Wellons' hash search, "lowbias32")."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def _word_index(shape: Sequence[int]) -> jax.Array:
    """Row-major index of every element of ``shape`` as ``uint32``, built from per-axis iotas
    so that a sharded ``jit`` computes each device's slice with its own offsets."""
    index = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(len(shape))):
        iota = jax.lax.broadcasted_iota(jnp.uint32, tuple(shape), axis)
        index = index + iota * jnp.uint32(stride)
        stride *= shape[axis]
    return index


def dropout_mask(key: jax.Array, keep: float, shape: Sequence[int]) -> tuple[jax.Array, float]:
    """Bernoulli mask of ``shape`` and the exact keep probability it was drawn with.

    Each element compares its own uniform byte with ``round(keep * 256)``, so the keep
    probability is quantised to 1/256 (0.9 -> 230 / 256 = 0.8984, i.e. dropout rate 0.1016);
    callers scale by 1 / the returned probability, which keeps the expectation exact.

    The bytes are a counter-based hash, not ``jax.random.bits``: the key gives two 32-bit
    seeds (one threefry draw per call), and the 32-bit word at row-major position ``i`` of a
    last axis a quarter as long is ``mix(mix(i + seed0) ^ seed1)``, read as four bytes.
    Threefry spends ~20 rounds per word on CPU, and a train step's masks hold hundreds of
    millions of elements; two rounds of a good integer mixer are plenty for dropout and an
    order of magnitude cheaper. The word depends on its logical position only, so the mask is
    the same however the batch is sharded.
    """
    if not shape:
        mask, kept = dropout_mask(key, keep, (1,))
        return mask[0], kept
    *lead, last = shape
    per_word = 32 // _DROPOUT_BITS
    words_shape = (*lead, -(-last // per_word))
    if math.prod(words_shape) > 2**32:
        raise ValueError(f"dropout mask of shape {tuple(shape)} is too large for 32-bit counters")
    seeds = jax.random.bits(key, (2,), jnp.uint32)
    words = _mix32(_mix32(_word_index(words_shape) + seeds[0]) ^ seeds[1])
    lanes = jax.lax.bitcast_convert_type(words, jnp.uint8).reshape(*lead, -1)[..., :last]
    threshold = min(max(round(keep * 2**_DROPOUT_BITS), 1), 2**_DROPOUT_BITS - 1)
    return lanes < jnp.uint8(threshold), threshold / 2**_DROPOUT_BITS


class Dropout(nn.Module):
    """Inverted dropout with cheap masks (``dropout_mask``); no parameters.

    A drop-in for ``nn.Dropout`` (same ``"dropout"`` RNG stream, one key per call site): each
    element is kept with probability ~``1 - rate`` independently and scaled by 1 / keep.
    """

    rate: float

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        if deterministic or self.rate == 0.0:
            return x
        mask, keep = dropout_mask(self.make_rng("dropout"), 1.0 - self.rate, x.shape)
        return jnp.where(mask, x * jnp.asarray(1.0 / keep, x.dtype), jnp.zeros((), x.dtype))


def _normal(stddev: float) -> nn.initializers.Initializer:
    return nn.initializers.normal(stddev=stddev)


class RMSNorm(nn.Module):
    """T5's layer norm: scale only, no mean subtraction, statistics in float32."""

    epsilon: float
    dtype: jnp.dtype
    param_dtype: jnp.dtype

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), self.param_dtype)
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.epsilon)
        return (normed * scale.astype(jnp.float32)).astype(self.dtype)


class RelativePositionBias(nn.Module):
    """Learned per-head bias for each relative-position bucket."""

    config: T5Config
    bidirectional: bool

    @nn.compact
    def __call__(self, query_positions: jax.Array, key_positions: jax.Array) -> jax.Array:
        """[Tq], [Tk] int positions -> float32 bias [1, heads, Tq, Tk]."""
        c = self.config
        table = self.param(
            "embedding",
            _normal(c.d_model**-0.5),
            (c.relative_attention_num_buckets, c.num_heads),
            jnp.dtype(c.param_dtype),
        )
        relative = key_positions[None, :] - query_positions[:, None]
        buckets = relative_position_buckets(
            relative,
            self.bidirectional,
            c.relative_attention_num_buckets,
            c.relative_attention_max_distance,
        )
        # Gathered head-major ([heads, Tq, Tk]), not transposed after the gather: the
        # gradient then reaches the table without a transposing pass over [Tq, Tk, heads].
        return jnp.take(table.astype(jnp.float32).T, buckets, axis=1)[None]


# The two matmuls of attention, with custom VJPs only to choose the layout of their gradients
# along the key axis. Autodiff writes the key gradient as dS^T q and the value gradient as
# W^T dO: each contracts over the rows of its left operand ([Tq, Tk] scores read down their
# columns), a form XLA's CPU matmuls run several times slower (docs/benchmarks.md). q^T dS and
# dO^T W (`_key_axis_gradient`) contract over the same axis with both operands read along their
# rows, and give the [d_kv, Tk] transpose of the gradient, small to transpose back. The other
# gradient of each is the other's product. The arithmetic is the same; only the order differs.


def _scores(q: jax.Array, k: jax.Array) -> jax.Array:
    return jnp.einsum("bhqd,bhkd->bhqk", q, k)


def _mix(weights: jax.Array, v: jax.Array) -> jax.Array:
    return jnp.einsum("bhqk,bhkd->bhqd", weights, v)


def _key_axis_gradient(by_query: jax.Array, d_by_key: jax.Array) -> jax.Array:
    """[B, H, Tq, d] x [B, H, Tq, Tk] summed over Tq -> [B, H, Tk, d], computed as [d, Tk]."""
    return jnp.einsum("bhqd,bhqk->bhdk", by_query, d_by_key).swapaxes(2, 3)


@jax.custom_vjp
def attention_scores(q: jax.Array, k: jax.Array) -> jax.Array:
    """[B, H, Tq, d] queries x [B, H, Tk, d] keys -> [B, H, Tq, Tk] logits."""
    return _scores(q, k)


def _attention_scores_forward(q: jax.Array, k: jax.Array):
    return _scores(q, k), (q, k)


def _attention_scores_backward(saved, d_scores: jax.Array):
    q, k = saved
    return _mix(d_scores, k), _key_axis_gradient(q, d_scores)


attention_scores.defvjp(_attention_scores_forward, _attention_scores_backward)


@jax.custom_vjp
def attention_mix(weights: jax.Array, v: jax.Array) -> jax.Array:
    """[B, H, Tq, Tk] weights x [B, H, Tk, d] values -> [B, H, Tq, d]."""
    return _mix(weights, v)


def _attention_mix_forward(weights: jax.Array, v: jax.Array):
    return _mix(weights, v), (weights, v)


def _attention_mix_backward(saved, d_out: jax.Array):
    weights, v = saved
    return _scores(d_out, v), _key_axis_gradient(d_out, weights)


attention_mix.defvjp(_attention_mix_forward, _attention_mix_backward)


class Dense(nn.Dense):
    """``nn.Dense`` applied to rows: the leading axes are merged into one before the matmul.

    On [batch, length, features] inputs XLA's CPU compiler writes the gradients' matmul
    operands transposed, inside the elementwise fusions that make them (ReLU and dropout
    backward), which then store with a stride of a whole row; on [rows, features] every operand
    keeps its natural layout (docs/benchmarks.md). Same parameters, same arithmetic.
    """

    def __call__(self, inputs: jax.Array) -> jax.Array:
        rows = inputs.reshape(-1, inputs.shape[-1])
        return super().__call__(rows).reshape(*inputs.shape[:-1], self.features)


class Attention(nn.Module):
    """Multi-head attention without biases or logit scaling.

    Keys/values are projected separately (``project_kv``) so that callers can cache them: the
    decoder's self-attention appends to a cache, cross-attention projects the encoder output
    once per task. Queries may outnumber key/value rows by an integer factor G (G samples per
    task, sequences ordered task-major): they are grouped onto their task's keys instead of
    copying the keys G times.
    """

    config: T5Config

    def setup(self) -> None:
        c = self.config
        dense = dict(use_bias=False, dtype=c.compute_dtype, param_dtype=jnp.dtype(c.param_dtype))
        self.q = Dense(c.inner_dim, kernel_init=_normal((c.d_model * c.d_kv) ** -0.5), **dense)
        self.k = Dense(c.inner_dim, kernel_init=_normal(c.d_model**-0.5), **dense)
        self.v = Dense(c.inner_dim, kernel_init=_normal(c.d_model**-0.5), **dense)
        self.o = Dense(c.d_model, kernel_init=_normal(c.inner_dim**-0.5), **dense)
        self.dropout = Dropout(c.dropout_rate)

    def _heads(self, x: jax.Array) -> jax.Array:
        """[B, S, heads * d_kv] -> [B, heads, S, d_kv]."""
        b, s, _ = x.shape
        return x.reshape(b, s, self.config.num_heads, self.config.d_kv).transpose(0, 2, 1, 3)

    def project_kv(self, x: jax.Array) -> LayerKV:
        """[B, S, d_model] -> keys, values [B, heads, S, d_kv]."""
        return self._heads(self.k(x)), self._heads(self.v(x))

    def __call__(
        self, x: jax.Array, kv: LayerKV | ChunkedKV, bias: jax.Array, deterministic: bool = True
    ) -> jax.Array:
        """Queries from ``x`` [N, Tq, d_model] attend to ``kv`` ([B, H, Tk, d_kv], N = G*B).

        ``bias`` is additive float32, broadcastable to [B, H, G*Tq, Tk]. Keys and values may
        also be tuples of chunks along the key axis (a chunked cache, `ChunkedKV`): each chunk is
        its own matmul, so the keys a step attends to are read where they lie, not copied into
        one array first.
        """
        key_chunks, value_chunks = (c if isinstance(c, tuple) else (c,) for c in kv)
        n, tq = x.shape[:2]
        b, h = key_chunks[0].shape[:2]
        if n % b:
            raise ValueError(f"{n} query rows cannot be grouped onto {b} key/value rows")
        g = n // b
        q = self.q(x).reshape(b, g, tq, h, -1).transpose(0, 3, 1, 2, 4).reshape(b, h, g * tq, -1)
        scores = [attention_scores(q, k.astype(q.dtype)) for k in key_chunks]
        scores = jnp.concatenate(scores, axis=-1) if len(scores) > 1 else scores[0]
        weights = jax.nn.softmax(scores.astype(jnp.float32) + bias, axis=-1).astype(q.dtype)
        weights = self.dropout(weights, deterministic=deterministic)
        out, start = None, 0
        for v in value_chunks:
            part = weights[..., start : start + v.shape[2]] if len(value_chunks) > 1 else weights
            mixed = attention_mix(part, v.astype(q.dtype))
            out, start = mixed if out is None else out + mixed, start + v.shape[2]
        out = out.reshape(b, h, g, tq, -1).transpose(0, 2, 3, 1, 4)
        return self.o(out.reshape(n, tq, self.config.inner_dim))


class FeedForward(nn.Module):
    """ReLU MLP (v1.0) or gated-GELU MLP with tanh-approximate GELU (v1.1)."""

    config: T5Config

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        c = self.config
        dense = dict(use_bias=False, dtype=c.compute_dtype, param_dtype=jnp.dtype(c.param_dtype))
        wi_init = _normal(c.d_model**-0.5)
        if c.gated:
            gate = Dense(c.d_ff, kernel_init=wi_init, name="wi_0", **dense)(x)
            linear = Dense(c.d_ff, kernel_init=wi_init, name="wi_1", **dense)(x)
            hidden = jax.nn.gelu(gate, approximate=True) * linear
        else:
            hidden = jax.nn.relu(Dense(c.d_ff, kernel_init=wi_init, name="wi", **dense)(x))
        hidden = Dropout(c.dropout_rate)(hidden, deterministic=deterministic)
        return Dense(c.d_model, kernel_init=_normal(c.d_ff**-0.5), name="wo", **dense)(hidden)
