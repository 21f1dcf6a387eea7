"""T5 encoder-decoder (v1.0 and v1.1) in Flax Linen.

One module tree serves training (``T5.__call__``, teacher forcing) and sampling (``encode``,
``cross_kv``, ``decode`` with an explicit key/value cache), so the sampler runs exactly the
weights and arithmetic the trainer optimises.

Conventions that matter when checking against other implementations:

* Attention logits are *not* scaled by ``d_kv ** -0.5``; T5 folds that into the query init.
* Relative position buckets: bidirectional in the encoder, causal in the decoder. One bias table
  per stack, computed once and added in every layer (Hugging Face stores it in block 0; here it
  is the stack's ``relative_position_bias``). Cross-attention has no position bias.
* v1.0 (``feed_forward_proj="relu"``, ``tie_word_embeddings=True``): the LM head is the shared
  embedding, applied to the decoder output scaled by ``d_model ** -0.5``. v1.1
  (``"gated-gelu"``, untied): a separate ``lm_head`` and no scaling.
* Masks are additive biases of ``-1e9`` rather than ``-inf``, so a fully padded row (a padding
  task in a sharded batch) gives finite numbers instead of NaN.
* Parameters are ``param_dtype`` (float32); compute runs in ``compute_dtype``; norms, softmax
  and logits are float32.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from codeit_jax.policy.t5_layers import (
    MASK_BIAS,
    Attention,
    ChunkedKV,
    Dense,
    Dropout,
    FeedForward,
    LayerKV,
    RelativePositionBias,
    RMSNorm,
    _normal,
    padding_bias,
    position_gradient_tap,
)

#: One decoder layer's self-attention cache: (keys, values), each [batch, heads, max_length, d_kv],
#: or each a tuple of chunks along the position axis (see `init_cache`).
LayerCache = tuple[jax.Array, jax.Array] | ChunkedKV

_FEED_FORWARD_KINDS = ("relu", "gated-gelu")


def default_compute_dtype(backend: str | None = None) -> str:
    """float32 on CPU (no fast bf16 matmuls there), bfloat16 on GPU/TPU."""
    backend = jax.default_backend() if backend is None else backend
    return "float32" if backend == "cpu" else "bfloat16"


@dataclasses.dataclass(frozen=True)
class T5Config:
    """Shape and numerics of a T5. Field names follow Hugging Face's ``T5Config``."""

    vocab_size: int = 32100
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_decoder_layers: int = 6
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "relu"
    tie_word_embeddings: bool = True
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0
    #: Compute dtype name; ``None`` picks by backend (see ``default_compute_dtype``).
    dtype: str | None = None
    param_dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.feed_forward_proj not in _FEED_FORWARD_KINDS:
            raise ValueError(
                f"feed_forward_proj must be one of {_FEED_FORWARD_KINDS}, "
                f"got {self.feed_forward_proj!r}"
            )
        sizes = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads")
        for name in (*sizes, "num_decoder_layers", "relative_attention_num_buckets"):
            if getattr(self, name) <= 0:
                raise ValueError(f"T5Config.{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {self.dropout_rate}")

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype or default_compute_dtype())

    @property
    def gated(self) -> bool:
        return self.feed_forward_proj.startswith("gated")

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.d_kv

    def replace(self, **changes) -> T5Config:
        return dataclasses.replace(self, **changes)


#: Named shapes. codet5-small / codet5p-220m / codet5p-770m are the Salesforce checkpoints'
#: shapes (T5 v1.0); ``small_cpu`` (~15M parameters) is for CPU experiments; ``tiny`` for tests.
CONFIGS: dict[str, T5Config] = {
    "tiny": T5Config(
        vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
        num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=20,
    ),
    "small_cpu": T5Config(
        d_model=256, d_kv=32, d_ff=1024, num_layers=4, num_decoder_layers=4, num_heads=8
    ),
    "codet5_small": T5Config(),
    "codet5p_220m": T5Config(
        d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_decoder_layers=12, num_heads=12
    ),
    "codet5p_770m": T5Config(
        d_model=1024, d_kv=64, d_ff=4096, num_layers=24, num_decoder_layers=24, num_heads=16
    ),
}  # fmt: skip


def named_config(name: str, **overrides) -> T5Config:
    """One of ``CONFIGS`` with field overrides, e.g. ``named_config("tiny", dtype="float32")``."""
    if name not in CONFIGS:
        raise KeyError(f"unknown T5 config {name!r}; known: {sorted(CONFIGS)}")
    return CONFIGS[name].replace(**overrides)


# --------------------------------------------------------------------------- positions


# --------------------------------------------------------------------------- layers


def _norm(c: T5Config) -> RMSNorm:
    return RMSNorm(c.layer_norm_epsilon, c.compute_dtype, jnp.dtype(c.param_dtype))


class EncoderLayer(nn.Module):
    """Pre-norm self-attention + feed-forward, each added back through dropout."""

    config: T5Config

    def setup(self) -> None:
        self.attention_norm = _norm(self.config)
        self.attention = Attention(self.config)
        self.mlp_norm = _norm(self.config)
        self.mlp = FeedForward(self.config)
        self.dropout = Dropout(self.config.dropout_rate)

    def __call__(self, x: jax.Array, bias: jax.Array, deterministic: bool = True) -> jax.Array:
        h = self.attention_norm(x)
        h = self.attention(h, self.attention.project_kv(h), bias, deterministic)
        x = x + self.dropout(h, deterministic=deterministic)
        h = self.mlp(self.mlp_norm(x), deterministic)
        return x + self.dropout(h, deterministic=deterministic)


class DecoderLayer(nn.Module):
    """Causal self-attention (optionally cached), cross-attention, feed-forward."""

    config: T5Config

    def setup(self) -> None:
        self.self_attention_norm = _norm(self.config)
        self.self_attention = Attention(self.config)
        self.cross_attention_norm = _norm(self.config)
        self.cross_attention = Attention(self.config)
        self.mlp_norm = _norm(self.config)
        self.mlp = FeedForward(self.config)
        self.dropout = Dropout(self.config.dropout_rate)

    def cross_kv(self, encoded: jax.Array) -> LayerKV:
        return self.cross_attention.project_kv(encoded)

    def __call__(
        self,
        x: jax.Array,
        self_bias: jax.Array,
        cross_kv: LayerKV,
        cross_bias: jax.Array,
        cache: LayerCache | None = None,
        cache_index: jax.Array | int | None = None,
        deterministic: bool = True,
    ) -> tuple[jax.Array, LayerCache | None]:
        h = self.self_attention_norm(x)
        keys, values = self.self_attention.project_kv(h)
        if cache is not None:
            cache = (_write(cache[0], keys, cache_index), _write(cache[1], values, cache_index))
            keys, values = cache
        h = self.self_attention(h, (keys, values), self_bias, deterministic)
        x = x + self.dropout(h, deterministic=deterministic)
        h = self.cross_attention(self.cross_attention_norm(x), cross_kv, cross_bias, deterministic)
        x = x + self.dropout(h, deterministic=deterministic)
        h = self.mlp(self.mlp_norm(x), deterministic)
        return x + self.dropout(h, deterministic=deterministic), cache


def cache_length(entries: jax.Array | tuple[jax.Array, ...]) -> int:
    """Positions a cache's keys (or values) hold, chunked or not."""
    chunks = entries if isinstance(entries, tuple) else (entries,)
    return sum(chunk.shape[2] for chunk in chunks)


def _write(
    entries: jax.Array | tuple[jax.Array, ...], new: jax.Array, index: jax.Array | int
) -> jax.Array | tuple[jax.Array, ...]:
    """The cache's keys (or values) with ``new`` [N, H, T, d_kv] written at position ``index``,
    in place. A chunked cache takes them in its last chunk, which must hold those positions."""
    if not isinstance(entries, tuple):
        return jax.lax.dynamic_update_slice(entries, new.astype(entries.dtype), (0, 0, index, 0))
    last = entries[-1]
    start = cache_length(entries) - last.shape[2]
    last = jax.lax.dynamic_update_slice(last, new.astype(last.dtype), (0, 0, index - start, 0))
    return (*entries[:-1], last)


class Encoder(nn.Module):
    config: T5Config

    def setup(self) -> None:
        c = self.config
        self.relative_position_bias = RelativePositionBias(c, bidirectional=True)
        self.layers = [EncoderLayer(c) for _ in range(c.num_layers)]
        self.final_norm = _norm(c)
        self.dropout = Dropout(c.dropout_rate)

    def __call__(
        self, embedded: jax.Array, attention_mask: jax.Array, deterministic: bool = True
    ) -> jax.Array:
        positions = jnp.arange(embedded.shape[1])
        position_bias = self.relative_position_bias(positions, positions)
        bias = position_bias + padding_bias(attention_mask)
        x = self.dropout(embedded, deterministic=deterministic)
        for layer in self.layers:
            x = layer(x, position_gradient_tap(bias, position_bias), deterministic)
        return self.dropout(self.final_norm(x), deterministic=deterministic)


class Decoder(nn.Module):
    config: T5Config

    def setup(self) -> None:
        c = self.config
        self.relative_position_bias = RelativePositionBias(c, bidirectional=False)
        self.layers = [DecoderLayer(c) for _ in range(c.num_decoder_layers)]
        self.final_norm = _norm(c)
        self.dropout = Dropout(c.dropout_rate)

    def cross_kv(self, encoded: jax.Array) -> tuple[LayerKV, ...]:
        return tuple(layer.cross_kv(encoded) for layer in self.layers)

    def __call__(
        self,
        embedded: jax.Array,
        cross_kv: Sequence[LayerKV],
        encoder_mask: jax.Array,
        cache: Sequence[LayerCache] | None = None,
        cache_index: jax.Array | int | None = None,
        deterministic: bool = True,
    ) -> tuple[jax.Array, tuple[LayerCache, ...] | None]:
        length = embedded.shape[1]
        if cache is None:
            query_positions = key_positions = jnp.arange(length)
        else:
            query_positions = cache_index + jnp.arange(length)
            key_positions = jnp.arange(cache_length(cache[0][0]))
        causal = key_positions[None, :] <= query_positions[:, None]
        self_bias = self.relative_position_bias(query_positions, key_positions)
        self_bias = self_bias + jnp.where(causal, 0.0, MASK_BIAS)
        cross_bias = padding_bias(encoder_mask)
        x = self.dropout(embedded, deterministic=deterministic)
        new_cache = []
        for i, layer in enumerate(self.layers):
            layer_cache = None if cache is None else cache[i]
            x, layer_cache = layer(
                x, self_bias, cross_kv[i], cross_bias, layer_cache, cache_index, deterministic
            )
            new_cache.append(layer_cache)
        x = self.dropout(self.final_norm(x), deterministic=deterministic)
        return x, (None if cache is None else tuple(new_cache))


class T5(nn.Module):
    """T5 encoder-decoder returning float32 logits.

    ``__call__`` is teacher forcing (decoder inputs are the right-shifted labels). For sampling:
    ``encode`` once per task, ``cross_kv`` once per task, then ``decode`` one token at a time
    with a cache from ``init_cache``; ``decode`` accepts G times more decoder rows than tasks
    (task-major order) and shares each task's cross-attention keys/values among them.
    """

    config: T5Config

    def setup(self) -> None:
        c = self.config
        self.shared = nn.Embed(
            c.vocab_size,
            c.d_model,
            embedding_init=_normal(1.0),
            dtype=c.compute_dtype,
            param_dtype=jnp.dtype(c.param_dtype),
        )
        self.encoder = Encoder(c)
        self.decoder = Decoder(c)
        if not c.tie_word_embeddings:
            self.lm_head = Dense(
                c.vocab_size,
                use_bias=False,
                kernel_init=_normal(c.d_model**-0.5),
                dtype=c.compute_dtype,
                param_dtype=jnp.dtype(c.param_dtype),
            )

    def encode(
        self, input_ids: jax.Array, attention_mask: jax.Array, deterministic: bool = True
    ) -> jax.Array:
        """[B, S] ids and mask -> encoder output [B, S, d_model]."""
        return self.encoder(self.shared(input_ids), attention_mask, deterministic)

    def cross_kv(self, encoded: jax.Array) -> tuple[LayerKV, ...]:
        """Every decoder layer's cross-attention keys/values, [B, heads, S, d_kv] each."""
        return self.decoder.cross_kv(encoded)

    def decode(
        self,
        decoder_input_ids: jax.Array,
        cross_kv: Sequence[LayerKV],
        encoder_mask: jax.Array,
        cache: Sequence[LayerCache] | None = None,
        cache_index: jax.Array | int | None = None,
        deterministic: bool = True,
        logit_ids: jax.Array | None = None,
        head: jax.Array | None = None,
    ) -> tuple[jax.Array, tuple[LayerCache, ...] | None]:
        """Decoder ids [N, T] -> (float32 logits [N, T, V], updated cache or None).

        Without a cache the T tokens are positions 0..T-1. With one, they are positions
        ``cache_index .. cache_index+T-1`` and their keys/values are written there first; they
        attend to every position the cache holds (masked causally). A chunked cache (tuples of
        chunks, see `init_cache`) takes them in its last chunk: passing only the chunks up to
        the current one makes a step read only those.
        ``logit_ids`` [A] computes only those vocabulary entries' logits ([N, T, A]): when
        sampling is restricted to a small program vocabulary this skips most of the LM head,
        the largest matmul of a decoding step. ``head`` [d_model, A] (`lm_head_matrix`) is the
        LM head's columns to compute, all of them or a subset, as a row-major matrix made once
        for many steps; it replaces the weights' own layout and ``logit_ids``.
        """
        hidden, cache = self.decoder(
            self.shared(decoder_input_ids),
            cross_kv,
            encoder_mask,
            cache,
            cache_index,
            deterministic,
        )
        if head is not None:
            if self.config.tie_word_embeddings:
                hidden = hidden * self.config.d_model**-0.5
            logits = jnp.einsum("ntd,dv->ntv", hidden, head.astype(hidden.dtype))
        elif logit_ids is None:
            if self.config.tie_word_embeddings:
                logits = self.shared.attend(hidden * self.config.d_model**-0.5)
            else:
                logits = self.lm_head(hidden)
        else:
            if self.config.tie_word_embeddings:
                hidden = hidden * self.config.d_model**-0.5
                rows = jnp.take(self.shared.embedding, logit_ids, axis=0)
            else:
                rows = jnp.take(self.lm_head.variables["params"]["kernel"], logit_ids, axis=1).T
            logits = jnp.einsum("ntd,ad->nta", hidden, rows.astype(hidden.dtype))
        return logits.astype(jnp.float32), cache

    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array,
        decoder_input_ids: jax.Array,
        deterministic: bool = True,
    ) -> jax.Array:
        """Teacher-forced logits [B, T, V]."""
        encoded = self.encode(input_ids, attention_mask, deterministic)
        logits, _ = self.decode(
            decoder_input_ids,
            self.cross_kv(encoded),
            attention_mask,
            deterministic=deterministic,
        )
        return logits


def lm_head_matrix(config: T5Config, params: dict, ids: jax.Array | None = None) -> jax.Array:
    """The LM head as a row-major [d_model, V] matrix, or only the columns of the token ``ids``
    (for ``T5.decode(head=...)``). The tied head is the embedding [V, d_model], which some CPU
    matmul kernels multiply by several times slower than a row-major matrix; the optimization
    barrier keeps XLA from folding the transpose back into the matmul."""
    if config.tie_word_embeddings:
        embedding = params["shared"]["embedding"]
        matrix = (embedding if ids is None else jnp.take(embedding, ids, axis=0)).T
    else:
        kernel = params["lm_head"]["kernel"]
        matrix = kernel if ids is None else jnp.take(kernel, ids, axis=1)
    return jax.lax.optimization_barrier(matrix.astype(config.compute_dtype))


def init_cache(
    config: T5Config,
    batch_size: int,
    max_length: int,
    dtype: jnp.dtype | None = None,
    chunks: Sequence[int] | None = None,
) -> tuple[LayerCache, ...]:
    """Zeroed self-attention cache for ``batch_size`` decoder rows and ``max_length`` tokens.

    With ``chunks`` (lengths summing to ``max_length``) each layer's keys and values are tuples
    of arrays, one per chunk of positions, instead of one array each.
    """
    dtype = config.compute_dtype if dtype is None else dtype
    if chunks is not None and sum(chunks) != max_length:
        raise ValueError(f"cache chunks {tuple(chunks)} do not add up to {max_length}")

    def zeros(length: int) -> jax.Array:
        return jnp.zeros((batch_size, config.num_heads, length, config.d_kv), dtype)

    def entries() -> jax.Array | tuple[jax.Array, ...]:
        return zeros(max_length) if chunks is None else tuple(zeros(c) for c in chunks)

    return tuple((entries(), entries()) for _ in range(config.num_decoder_layers))


def init_params(config: T5Config, rng: jax.Array) -> dict:
    """Freshly initialised parameters (jitted: eager init of a large T5 is slow)."""
    model = T5(config)
    ids = jnp.zeros((1, 1), jnp.int32)

    @jax.jit
    def _init(key: jax.Array) -> dict:
        return model.init(key, ids, jnp.ones((1, 1), jnp.int32), ids)["params"]

    return _init(rng)


def count_params(params) -> int:
    """Number of scalars in a parameter pytree."""
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))
