"""The jitted sampler: distribution, masking, EOS handling, determinism, devices, chunking."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from codeit_jax.policy.batching import bucket_length, pad_inputs
from codeit_jax.policy.mesh import make_mesh
from codeit_jax.policy.sampler import DEFAULT_LENGTH_BUCKETS, Sampler, cache_segments
from codeit_jax.policy.sampling import sample_from_logits
from codeit_jax.policy.t5 import T5, init_params, named_config

CONFIG = named_config("tiny", dtype="float32")
K, MAX_NEW = 4, 8
INPUTS = [[5, 6, 7, 1], [3, 4, 1], [9, 9, 9, 9, 9, 1], [2, 1], [7, 8, 9, 10, 1]]


@pytest.fixture(scope="module")
def params() -> dict:
    return init_params(CONFIG, jax.random.key(0))


@pytest.fixture(scope="module")
def sampler() -> Sampler:
    return Sampler(CONFIG)  # all 8 forced CPU devices


@pytest.fixture(scope="module")
def sampler_1() -> Sampler:
    return Sampler(CONFIG, mesh=make_mesh(jax.devices()[:1]))


def _sample(sampler: Sampler, params, inputs=INPUTS, seed: int = 1, **kwargs):
    kwargs = {"num_samples": K, "max_new_tokens": MAX_NEW, "temperature": 1.0, **kwargs}
    return sampler.sample(params, inputs, jax.random.key(seed), **kwargs)


# --------------------------------------------------------------------------- sampling math


@jax.jit
def _draw(key: jax.Array, logits: jax.Array) -> jax.Array:
    n = 40_000
    return sample_from_logits(
        jax.random.split(key, n), jnp.broadcast_to(logits, (n, *logits.shape))
    )


def test_inverse_cdf_sampling_follows_the_softmax():
    vocab = 300  # three 128-token blocks, the last one partly padding
    rng = np.random.default_rng(0)
    logits = rng.normal(size=vocab).astype(np.float32) * 1.5
    logits[rng.choice(vocab, 100, replace=False)] = -np.inf
    logits[[0, vocab - 1]] = 2.0  # the first and last tokens are drawable
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    draws = np.asarray(_draw(jax.random.key(0), jnp.asarray(logits)))
    assert draws.min() >= 0 and draws.max() < vocab
    assert np.isfinite(logits[draws]).all(), "a token with zero probability was drawn"
    freq = np.bincount(draws, minlength=vocab) / draws.size
    sigma = np.sqrt(probs * (1 - probs) / draws.size)
    assert (np.abs(freq - probs) <= 5 * sigma + 1e-4).all()
    assert freq[0] > 0 and freq[vocab - 1] > 0


@pytest.mark.parametrize("only", [0, 127, 128, 299])
def test_a_single_allowed_token_is_always_drawn(only):
    logits = np.full(300, -np.inf, np.float32)
    logits[only] = 0.0
    assert (np.asarray(_draw(jax.random.key(1), jnp.asarray(logits))) == only).all()


def test_first_token_distribution_matches_the_model_at_temperature(params):
    temperature = 0.7
    inputs = [[5, 6, 7, 1]]
    out = Sampler(CONFIG, mesh=make_mesh(jax.devices()[:1])).sample(
        params, inputs, jax.random.key(3), num_samples=4000, max_new_tokens=1,
        temperature=temperature,
    )  # fmt: skip
    ids, mask = pad_inputs(inputs, 32)
    logits = T5(CONFIG).apply({"params": params}, ids, mask, np.zeros((1, 1), np.int32))[0, 0]
    probs = np.asarray(jax.nn.softmax(logits / temperature))
    freq = np.bincount(out.tokens[0, :, 0], minlength=CONFIG.vocab_size) / 4000
    sigma = np.sqrt(probs * (1 - probs) / 4000)
    assert (np.abs(freq - probs) <= 5 * sigma + 1e-3).all()


def _first_step_probs(params, inputs, temperature: float, keep: np.ndarray | None = None):
    """The model's exact first-token distribution at a temperature, over ``keep`` only."""
    ids, mask = pad_inputs(inputs, 32)
    logits = T5(CONFIG).apply({"params": params}, ids, mask, np.zeros((1, 1), np.int32))[0, 0]
    logits = np.asarray(logits, np.float64) / temperature
    if keep is not None:
        logits = np.where(keep, logits, -np.inf)
    probs = np.exp(logits - logits.max())
    return logits, probs / probs.sum()


@pytest.mark.parametrize("top_k", [1, 5, 40])
def test_top_k_samples_the_renormalised_top_k_distribution(params, top_k):
    temperature, n = 0.7, 4000
    inputs = [[5, 6, 7, 1]]
    out = Sampler(CONFIG, mesh=make_mesh(jax.devices()[:1])).sample(
        params, inputs, jax.random.key(4), num_samples=n, max_new_tokens=1,
        temperature=temperature, top_k=top_k,
    )  # fmt: skip
    logits, _ = _first_step_probs(params, inputs, temperature)
    keep = logits >= np.sort(logits)[-top_k]  # transformers' rule: ties at the k-th value stay
    assert keep.sum() == top_k
    _, probs = _first_step_probs(params, inputs, temperature, keep)
    draws = out.tokens[0, :, 0]
    assert keep[draws].all(), "a token outside the top k was drawn"
    freq = np.bincount(draws, minlength=CONFIG.vocab_size) / n
    sigma = np.sqrt(probs * (1 - probs) / n)
    assert (np.abs(freq - probs) <= 5 * sigma + 1e-3).all()
    assert freq[keep].min() > 0  # every one of the top k is drawn


def test_top_k_applies_among_the_allowed_tokens(params):
    """With a program mask the top k are taken among the allowed tokens (the restricted-head
    path computes no other logit)."""
    inputs = [[5, 6, 7, 1]]
    allowed = np.zeros(CONFIG.vocab_size, bool)
    allowed[np.arange(3, CONFIG.vocab_size, 7)] = True
    sampler = Sampler(CONFIG, mesh=make_mesh(jax.devices()[:1]))
    assert not sampler.candidates(allowed)[2]  # the restricted head is used
    out = sampler.sample(
        params, inputs, jax.random.key(5), num_samples=500, max_new_tokens=1,
        allowed_tokens=allowed, top_k=3,
    )  # fmt: skip
    allowed_eos = allowed.copy()
    allowed_eos[CONFIG.eos_token_id] = True
    logits, _ = _first_step_probs(params, inputs, 1.0, allowed_eos)
    top3 = set(np.argsort(logits)[-3:].tolist())
    assert set(out.tokens[0, :, 0].tolist()) == top3


def test_end_on_disallowed_ends_a_sample_after_a_disallowed_token(sampler, params):
    """CodeIt's logits processor: any token may be drawn, but after one outside the allowed set
    the sample ends (eos); the decoder start token never ends it."""
    allowed = np.zeros(CONFIG.vocab_size, bool)
    allowed[: CONFIG.vocab_size // 2] = True
    allowed[CONFIG.pad_token_id] = False  # the start token is pad: step 0 must still sample
    out = _sample(sampler, params, allowed_tokens=allowed, end_on_disallowed=True, num_samples=16)
    rows = out.tokens.reshape(-1, MAX_NEW)
    eos = CONFIG.eos_token_id
    saw_disallowed = False
    for row, length in zip(rows, out.lengths.ravel()):
        for t in range(length - 1):
            if not allowed[row[t]] and row[t] != eos:
                saw_disallowed = True
                assert row[t + 1] == eos, row
    assert saw_disallowed  # the mask does not stop them from being drawn
    assert (rows[:, 0] != eos).any()  # step 0 samples freely
    masked = _sample(sampler, params, allowed_tokens=allowed, num_samples=16)
    drawn = masked.tokens.reshape(-1, MAX_NEW)
    assert (allowed[drawn] | (drawn == eos) | (drawn == CONFIG.pad_token_id)).all()


# --------------------------------------------------------------------------- outputs


def test_output_shapes_and_eos_handling(sampler, params):
    out = _sample(sampler, params)
    assert out.tokens.shape == (len(INPUTS), K, MAX_NEW) and out.tokens.dtype == np.int32
    assert out.lengths.shape == (len(INPUTS), K)
    for row, length in zip(out.tokens.reshape(-1, MAX_NEW), out.lengths.ravel()):
        eos = np.flatnonzero(row == 1)
        if eos.size:  # finished rows emit pad after their first EOS
            assert length == eos[0] + 1 and (row[length:] == 0).all()
        else:
            assert length == MAX_NEW


def test_allowed_tokens_mask(sampler, params):
    allowed = np.zeros(CONFIG.vocab_size, bool)
    allowed[[10, 11, 12]] = True
    out = _sample(sampler, params, allowed_tokens=allowed)
    for row, length in zip(out.tokens.reshape(-1, MAX_NEW), out.lengths.ravel()):
        assert set(row[:length].tolist()) <= {1, 10, 11, 12}
    # EOS is always allowed: with nothing else allowed every row stops at once.
    out = _sample(sampler, params, allowed_tokens=np.zeros(CONFIG.vocab_size, bool))
    assert (out.tokens[..., 0] == 1).all() and (out.tokens[..., 1:] == 0).all()
    assert (out.lengths == 1).all()


def test_candidates_for_a_mask(sampler):
    allowed = np.zeros(CONFIG.vocab_size, bool)
    allowed[[10, 3, 12]] = True
    ids, ok, full_head = sampler.candidates(allowed)
    assert not full_head and ids.shape == ok.shape == (32,)
    assert ids[ok].tolist() == [1, 3, 10, 12]  # EOS added, ascending
    ids, ok, full_head = sampler.candidates(None)
    assert full_head and (ids == np.arange(CONFIG.vocab_size)).all() and ok.all()
    ids, ok, full_head = Sampler(CONFIG, restrict_head=False).candidates(allowed)
    assert full_head and ok.sum() == 4 and ok[[1, 3, 10, 12]].all()


def test_restricted_head_samples_like_the_full_head_with_a_mask(sampler, params):
    allowed = np.zeros(CONFIG.vocab_size, bool)
    allowed[[10, 11, 12, 30, 31]] = True
    full = Sampler(CONFIG, restrict_head=False)
    for greedy in (False, True):
        np.testing.assert_array_equal(
            _sample(sampler, params, allowed_tokens=allowed, greedy=greedy).tokens,
            _sample(full, params, allowed_tokens=allowed, greedy=greedy).tokens,
        )


def test_low_temperature_approaches_greedy(sampler, params):
    greedy = _sample(sampler, params, greedy=True)
    assert (greedy.tokens == greedy.tokens[:, :1]).all(), "greedy samples of a task agree"
    cold = _sample(sampler, params, temperature=1e-4)
    np.testing.assert_array_equal(cold.tokens, greedy.tokens)
    assert (greedy.tokens == _sample(sampler, params, greedy=True, seed=9).tokens).all()


# --------------------------------------------------------------------------- determinism


def test_same_key_same_samples_other_key_other_samples(sampler, params):
    a, b = _sample(sampler, params), _sample(sampler, params)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert not np.array_equal(a.tokens, _sample(sampler, params, seed=2).tokens)
    assert len({tuple(r) for r in a.tokens[0]}) > 1, "a task's K samples differ"


def test_a_tasks_samples_do_not_depend_on_the_other_tasks(sampler, params):
    base = _sample(sampler, params)
    changed = [INPUTS[0], INPUTS[1], [20, 21, 22, 23, 24, 25, 26, 1], INPUTS[3]]
    other = _sample(sampler, params, inputs=changed)
    np.testing.assert_array_equal(other.tokens[[0, 1, 3]], base.tokens[[0, 1, 3]])


def test_one_device_equals_eight_devices(sampler, sampler_1, params):
    np.testing.assert_array_equal(
        _sample(sampler_1, params).tokens, _sample(sampler, params).tokens
    )


def test_chunked_calls_equal_one_call(sampler, params):
    chunked = Sampler(CONFIG, task_batch=8)
    inputs = INPUTS * 2  # 10 tasks: two chunks of 8, the second with 6 padding tasks
    np.testing.assert_array_equal(
        _sample(chunked, params, inputs=inputs).tokens,
        _sample(sampler, params, inputs=inputs).tokens,
    )


def test_the_cpu_matmul_options_are_opt_in_and_sample_alike(sampler, params):
    from codeit_jax.policy.sampler import CPU_COMPILER_OPTIONS

    assert sampler.compiler_options == {}
    eigen = Sampler(CONFIG, compiler_options=CPU_COMPILER_OPTIONS)
    assert eigen.compiler_options == CPU_COMPILER_OPTIONS
    np.testing.assert_array_equal(
        _sample(eigen, params, greedy=True).tokens, _sample(sampler, params, greedy=True).tokens
    )


def test_cache_segments():
    assert cache_segments(128, 32) == [(0, 32), (32, 64), (64, 96), (96, 128)]
    assert cache_segments(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert cache_segments(8, None) == cache_segments(8, 0) == cache_segments(8, 8) == [(0, 8)]


def test_a_segmented_decode_loop_samples_like_one_loop(params):
    """Each segment attends to the cache chunks so far only; the masked-out positions it skips
    had zero weight, so only float rounding could tell the two apart."""
    one_loop = Sampler(CONFIG, cache_chunk=None)
    segmented = Sampler(CONFIG, cache_chunk=3)  # segments of 3, 3 and 2 steps
    for greedy in (False, True):
        np.testing.assert_array_equal(
            _sample(segmented, params, greedy=greedy).tokens,
            _sample(one_loop, params, greedy=greedy).tokens,
        )


# --------------------------------------------------------------------------- inputs


def test_length_buckets_and_padding():
    assert [bucket_length(n, DEFAULT_LENGTH_BUCKETS) for n in (1, 32, 33, 512, 513)] == [
        32,
        32,
        64,
        512,
        1024,
    ]
    with pytest.raises(ValueError, match="largest bucket"):
        bucket_length(5000, DEFAULT_LENGTH_BUCKETS)
    ids, mask = pad_inputs([[3, 4, 1], [5]], 4)
    np.testing.assert_array_equal(ids, [[3, 4, 1, 0], [5, 0, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1, 0], [1, 0, 0, 0]])
    with pytest.raises(ValueError, match="more than 2"):
        pad_inputs([[1, 2, 3]], 2)


def test_bad_arguments_are_rejected(sampler, params):
    with pytest.raises(ValueError, match="allowed_tokens"):
        _sample(sampler, params, allowed_tokens=np.ones(5, bool))
    with pytest.raises(ValueError, match="temperature"):
        _sample(sampler, params, temperature=0.0)
    with pytest.raises(ValueError, match="no tasks"):
        _sample(sampler, params, inputs=[])
    with pytest.raises(ValueError, match="multiple of the 8 devices"):
        Sampler(CONFIG, task_batch=6)
