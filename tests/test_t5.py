"""Behaviour of the Flax T5: shapes, dtypes, caching, grouping, masking, causality, dropout.

Parity with transformers lives in test_convert.py; these tests need only JAX.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from codeit_jax.policy.t5 import (
    T5,
    Dropout,
    T5Config,
    default_compute_dtype,
    init_cache,
    init_params,
    lm_head_matrix,
    named_config,
)
from codeit_jax.policy.t5_layers import (
    Dense,
    attention_mix,
    attention_scores,
    dropout_mask,
    position_gradient_tap,
    relative_position_bucket_table,
)

VARIANTS = {
    "v1.0": named_config("tiny", dtype="float32"),
    "v1.1": named_config(
        "tiny", dtype="float32", feed_forward_proj="gated-gelu", tie_word_embeddings=False
    ),
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def model_and_params(request) -> tuple[T5Config, T5, dict]:
    config = VARIANTS[request.param]
    return config, T5(config), init_params(config, jax.random.key(0))


def _batch(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, 64, size=(3, 12))
    lengths = np.array([12, 7, 3])
    mask = np.arange(12)[None, :] < lengths[:, None]
    ids = np.where(mask, ids, 0)
    decoder_ids = np.concatenate([np.zeros((3, 1), int), rng.integers(2, 64, size=(3, 5))], 1)
    return ids, mask.astype(np.int32), decoder_ids


def test_named_configs_have_the_published_sizes():
    from codeit_jax.policy.t5 import count_params

    def n_params(name: str) -> float:
        shapes = jax.eval_shape(lambda k: init_params(named_config(name), k), jax.random.key(0))
        return count_params(shapes) / 1e6

    assert 60 < n_params("codet5_small") < 61  # Salesforce/codet5-small: 60.5M
    assert 222 < n_params("codet5p_220m") < 224
    assert 10 < n_params("small_cpu") < 20


def test_logits_shape_and_dtypes(model_and_params):
    config, model, params = model_and_params
    ids, mask, decoder_ids = _batch()
    logits = model.apply({"params": params}, ids, mask, decoder_ids)
    assert logits.shape == (3, decoder_ids.shape[1], config.vocab_size)
    assert logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(logits)).all()
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(params))
    assert ("lm_head" in params) == (not config.tie_word_embeddings)
    assert "relative_position_bias" in params["encoder"]
    assert "relative_position_bias" in params["decoder"]


def test_cached_decoding_matches_teacher_forcing(model_and_params):
    config, model, params = model_and_params
    ids, mask, decoder_ids = _batch()
    full = model.apply({"params": params}, ids, mask, decoder_ids)
    variables = {"params": params}
    encoded = model.apply(variables, ids, mask, method=T5.encode)
    cross = model.apply(variables, encoded, method=T5.cross_kv)
    cache = init_cache(config, 3, 8)
    steps = []
    for t in range(decoder_ids.shape[1]):
        logits, cache = model.apply(
            variables, decoder_ids[:, t : t + 1], cross, mask, cache, t, method=T5.decode
        )
        steps.append(logits[:, 0])
    np.testing.assert_allclose(np.stack(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_a_chunked_cache_read_up_to_the_current_chunk_matches_teacher_forcing(model_and_params):
    """As the sampler's segmented loop does: each step passes the chunks up to its own."""
    config, model, params = model_and_params
    ids, mask, decoder_ids = _batch()
    full = model.apply({"params": params}, ids, mask, decoder_ids)
    variables = {"params": params}
    cross = model.apply(
        variables, model.apply(variables, ids, mask, method=T5.encode), method=T5.cross_kv
    )
    chunks, starts = (3, 3, 2), (0, 3, 6)
    cache = init_cache(config, 3, 8, chunks=chunks)
    steps = []
    for t in range(decoder_ids.shape[1]):
        visible = sum(start <= t for start in starts)
        part = tuple((k[:visible], v[:visible]) for k, v in cache)
        logits, part = model.apply(
            variables, decoder_ids[:, t : t + 1], cross, mask, part, t, method=T5.decode
        )
        cache = tuple((pk + k[visible:], pv + v[visible:]) for (pk, pv), (k, v) in zip(part, cache))
        steps.append(logits[:, 0])
    np.testing.assert_allclose(np.stack(steps, 1), full, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="add up"):
        init_cache(config, 3, 8, chunks=(3, 3))


def test_a_row_major_lm_head_gives_the_same_logits(model_and_params):
    config, model, params = model_and_params
    ids, mask, decoder_ids = _batch()
    variables = {"params": params}
    cross = model.apply(
        variables, model.apply(variables, ids, mask, method=T5.encode), method=T5.cross_kv
    )
    plain, _ = model.apply(variables, decoder_ids, cross, mask, method=T5.decode)
    head = lm_head_matrix(config, params)
    assert head.shape == (config.d_model, config.vocab_size)
    given, _ = model.apply(variables, decoder_ids, cross, mask, head=head, method=T5.decode)
    np.testing.assert_allclose(given, plain, atol=1e-5, rtol=1e-5)


def test_logits_of_a_vocabulary_subset(model_and_params):
    _, model, params = model_and_params
    ids, mask, decoder_ids = _batch()
    variables = {"params": params}
    cross = model.apply(
        variables, model.apply(variables, ids, mask, method=T5.encode), method=T5.cross_kv
    )
    full, _ = model.apply(variables, decoder_ids, cross, mask, method=T5.decode)
    subset = np.array([1, 40, 7, 63, 7])
    part, _ = model.apply(variables, decoder_ids, cross, mask, logit_ids=subset, method=T5.decode)
    np.testing.assert_allclose(part, np.asarray(full)[..., subset], atol=1e-5, rtol=1e-5)


def test_grouped_cross_attention_equals_repeating_the_encoder(model_and_params):
    """G decoder rows per task over one task's keys/values == the task repeated G times."""
    config, model, params = model_and_params
    ids, mask, decoder_ids = _batch(1)
    variables = {"params": params}
    group = 4
    encoded = model.apply(variables, ids, mask, method=T5.encode)
    rows = np.random.default_rng(2).integers(2, 64, size=(3 * group, 4))
    grouped, _ = model.apply(
        variables, rows, model.apply(variables, encoded, method=T5.cross_kv), mask,
        method=T5.decode,
    )  # fmt: skip
    repeated_encoded = jnp.repeat(encoded, group, axis=0)
    repeated, _ = model.apply(
        variables,
        rows,
        model.apply(variables, repeated_encoded, method=T5.cross_kv),
        np.repeat(mask, group, axis=0),
        method=T5.decode,
    )
    np.testing.assert_allclose(grouped, repeated, atol=1e-5, rtol=1e-5)


def test_padding_does_not_change_real_positions(model_and_params):
    _, model, params = model_and_params
    ids, mask, decoder_ids = _batch()
    short = model.apply({"params": params}, ids[1:2, :7], mask[1:2, :7], decoder_ids[1:2])
    padded = model.apply({"params": params}, ids[1:2], mask[1:2], decoder_ids[1:2])
    np.testing.assert_allclose(short, padded, atol=1e-5, rtol=1e-5)


def test_decoder_is_causal(model_and_params):
    _, model, params = model_and_params
    ids, mask, decoder_ids = _batch()
    changed = decoder_ids.copy()
    changed[:, 3:] = (changed[:, 3:] + 7) % 64
    a = model.apply({"params": params}, ids, mask, decoder_ids)
    b = model.apply({"params": params}, ids, mask, changed)
    np.testing.assert_allclose(a[:, :3], b[:, :3], atol=1e-6)
    assert not np.allclose(a[:, 3:], b[:, 3:])


def test_fully_padded_row_stays_finite(model_and_params):
    _, model, params = model_and_params
    ids, mask, decoder_ids = _batch()
    mask = mask.copy()
    mask[2] = 0
    logits = model.apply({"params": params}, ids, mask, decoder_ids)
    assert np.isfinite(np.asarray(logits)).all()


def test_dropout_only_when_not_deterministic(model_and_params):
    _, model, params = model_and_params
    ids, mask, decoder_ids = _batch()
    base = model.apply({"params": params}, ids, mask, decoder_ids)
    again = model.apply({"params": params}, ids, mask, decoder_ids, deterministic=True)
    np.testing.assert_array_equal(base, again)

    def train(key: jax.Array) -> jax.Array:
        return model.apply(
            {"params": params}, ids, mask, decoder_ids, deterministic=False,
            rngs={"dropout": key},
        )  # fmt: skip

    a, b = train(jax.random.key(1)), train(jax.random.key(2))
    assert not np.allclose(a, base)
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, train(jax.random.key(1)))


def test_bfloat16_compute_keeps_float32_params_and_logits():
    config = named_config("tiny", dtype="bfloat16")
    params = init_params(config, jax.random.key(0))
    ids, mask, decoder_ids = _batch()
    logits = T5(config).apply({"params": params}, ids, mask, decoder_ids)
    reference = T5(config.replace(dtype="float32")).apply(
        {"params": params}, ids, mask, decoder_ids
    )
    assert logits.dtype == jnp.float32
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(params))
    # Same weights: bf16 arithmetic stays close to float32 (loose: ~3 significant digits).
    np.testing.assert_allclose(logits, reference, atol=0.3, rtol=0.1)


def test_default_compute_dtype_by_backend():
    assert default_compute_dtype("cpu") == "float32"
    assert default_compute_dtype("gpu") == "bfloat16"
    assert default_compute_dtype("tpu") == "bfloat16"
    assert named_config("tiny").compute_dtype == jnp.dtype(default_compute_dtype())


def test_bad_configs_are_rejected_with_the_field_named():
    with pytest.raises(ValueError, match="feed_forward_proj"):
        T5Config(feed_forward_proj="swish")
    with pytest.raises(ValueError, match="num_heads"):
        T5Config(num_heads=0)
    with pytest.raises(KeyError, match="codet5_small"):
        named_config("nope")


def test_relative_position_buckets_small_distances_are_exact():
    table = relative_position_bucket_table(True, 32, 128)
    at = lambda rel: table[rel + 128]  # noqa: E731
    assert [at(r) for r in range(0, -8, -1)] == list(range(8))
    assert [at(r) for r in range(1, 8)] == [16 + r for r in range(1, 8)]
    assert at(-128) == 15 and at(128) == 31
    causal = relative_position_bucket_table(False, 32, 128)
    assert (causal[128:] == 0).all()  # future keys (masked anyway) share bucket 0
    assert causal[128 - 15] == 15 and causal[0] == 31
    assert (np.diff(causal[::-1][128:]) >= 0).all()  # monotone in distance


def test_relative_position_buckets_match_transformers():
    torch = pytest.importorskip(
        "torch", reason="the PyTorch parity tests need torch: pip install -e '.[reference]'"
    )
    t5_modeling = pytest.importorskip("transformers.models.t5.modeling_t5")
    relative = torch.arange(-300, 301)
    for bidirectional in (True, False):
        for buckets, distance in ((32, 128), (8, 20), (16, 64)):
            expected = t5_modeling.T5Attention._relative_position_bucket(
                relative, bidirectional, buckets, distance
            ).numpy()
            table = relative_position_bucket_table(bidirectional, buckets, distance)
            ours = table[np.clip(relative.numpy(), -distance, distance) + distance]
            np.testing.assert_array_equal(ours, expected)


def test_dropout_mask_is_bernoulli_keep_and_deterministic():
    """Byte-lane masks: right keep rate; lanes, words, rows and keys independent."""
    mask, keep = dropout_mask(jax.random.key(3), 0.9, (64, 4097))
    assert keep == 230 / 256
    m = np.asarray(mask, dtype=np.float64)
    n = m.size
    assert abs(m.mean() - keep) < 5 * np.sqrt(keep * (1 - keep) / n)
    # Lanes 4i..4i+3 come from one 32-bit word: neighbours must agree as independent draws do,
    # keep^2 + (1-keep)^2, and likewise across rows.
    pairs = m[:, 0:4096:2] == m[:, 1:4096:2]
    expected = keep**2 + (1 - keep) ** 2
    assert abs(pairs.mean() - expected) < 5 * np.sqrt(expected * (1 - expected) / pairs.size)
    rows = m[:-1] == m[1:]
    assert abs(rows.mean() - expected) < 5 * np.sqrt(expected * (1 - expected) / rows.size)
    # Neighbouring words (hash inputs i and i + 1) are independent too.
    words = m[:, 0:4092:4] == m[:, 4:4096:4]
    assert abs(words.mean() - expected) < 5 * np.sqrt(expected * (1 - expected) / words.size)
    np.testing.assert_array_equal(mask, dropout_mask(jax.random.key(3), 0.9, (64, 4097))[0])
    # Another key gives an independent mask, not a shifted copy of this one.
    other = np.asarray(dropout_mask(jax.random.key(4), 0.9, (64, 4097))[0], dtype=np.float64)
    for shift in (0, 1, 4, 4097):
        same = other.ravel()[shift:] == m.ravel()[: n - shift]
        assert abs(same.mean() - expected) < 5 * np.sqrt(expected * (1 - expected) / same.size)
    # Raw uint32[2] keys (what the trainer folds) work too; a 0-d shape gives a 0-d mask.
    assert dropout_mask(jax.random.PRNGKey(3), 0.5, (7,))[0].shape == (7,)
    assert dropout_mask(jax.random.key(3), 0.5, ())[0].shape == ()


def test_dropout_scales_kept_elements_by_inverse_keep():
    x = jnp.ones((8, 1000), jnp.float32)
    out = np.asarray(
        Dropout(0.25).apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(0)})
    )
    _, keep = dropout_mask(jax.random.key(0), 0.75, x.shape)
    assert set(np.unique(out)) <= {0.0, np.float32(1.0 / keep)}
    assert abs(out.mean() - 1.0) < 0.05
    np.testing.assert_array_equal(Dropout(0.25).apply({}, x, deterministic=True), x)


def test_attention_matmuls_have_the_gradients_of_plain_einsums():
    """The custom VJPs only reorder the gradient matmuls: same values as autodiff's."""
    rng = np.random.default_rng(0)
    q, d_mixed = (jnp.asarray(rng.standard_normal((2, 3, 5, 4)), jnp.float32) for _ in range(2))
    k, v = (jnp.asarray(rng.standard_normal((2, 3, 7, 4)), jnp.float32) for _ in range(2))
    weights, d_scores = (
        jnp.asarray(rng.standard_normal((2, 3, 5, 7)), jnp.float32) for _ in range(2)
    )
    cases = (
        (attention_scores, "bhqd,bhkd->bhqk", (q, k), d_scores),
        (attention_mix, "bhqk,bhkd->bhqd", (weights, v), d_mixed),
    )
    for ours, equation, operands, cotangent in cases:
        np.testing.assert_allclose(
            ours(*operands), jnp.einsum(equation, *operands), rtol=1e-6, atol=1e-6
        )
        _, ours_vjp = jax.vjp(ours, *operands)
        _, plain_vjp = jax.vjp(lambda a, b, e=equation: jnp.einsum(e, a, b), *operands)
        for got, want in zip(ours_vjp(cotangent), plain_vjp(cotangent), strict=True):
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_dense_on_rows_is_flax_dense():
    """Same parameters, values and gradients as ``nn.Dense`` on [batch, length, features]."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 5, 4)), jnp.float32)
    ours, plain = Dense(3, use_bias=False), nn.Dense(3, use_bias=False)
    params = plain.init(jax.random.key(0), x)
    assert jax.tree.structure(ours.init(jax.random.key(0), x)) == jax.tree.structure(params)
    np.testing.assert_allclose(ours.apply(params, x), plain.apply(params, x), rtol=1e-6)

    def gradients(module: nn.Module) -> list[jax.Array]:
        def loss(p, x):
            return jnp.sum(jnp.sin(module.apply(p, x)))

        return jax.tree.leaves(jax.grad(loss, argnums=(0, 1))(params, x))

    for got, want in zip(gradients(ours), gradients(plain), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_position_gradient_tap_gives_autodiffs_gradient():
    """Layers adding the same position + padding bias: the tap changes no value and no
    gradient, it only sums each layer's over the batch first."""
    rng = np.random.default_rng(1)
    position = jnp.asarray(rng.standard_normal((1, 2, 3, 3)), jnp.float32)
    padding = jnp.asarray(np.where(rng.random((4, 1, 1, 3)) < 0.7, 0.0, -5.0), jnp.float32)
    scores = jnp.asarray(rng.standard_normal((3, 4, 2, 3, 3)), jnp.float32)

    def loss(position, tapped):
        bias = position + padding
        total = 0.0
        for layer in range(3):
            used = position_gradient_tap(bias, position) if tapped else bias
            total += jnp.sum(jax.nn.softmax(scores[layer] + used, axis=-1) ** 2)
        return total

    np.testing.assert_allclose(loss(position, True), loss(position, False), rtol=1e-6)
    got, want = (jax.grad(loss)(position, tapped) for tapped in (True, False))
    assert float(jnp.abs(want).max()) > 0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
