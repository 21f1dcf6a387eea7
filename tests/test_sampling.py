"""The top-k threshold: the k-th largest logit of each row, found without sorting, equals what
``lax.top_k`` gives, ties, masked logits and every vocabulary size included."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from codeit_jax.policy.sampling import kth_largest


def _rows(vocab: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = [
        rng.normal(size=vocab) * 4,  # distinct values over a wide range
        rng.integers(-3, 4, size=vocab).astype(float),  # many ties
        np.where(rng.random(vocab) < 0.9, -np.inf, rng.normal(size=vocab)),  # mostly masked
        np.full(vocab, -np.inf),  # everything masked
        np.where(rng.random(vocab) < 0.5, 0.0, -0.0),  # signed zeros only
        rng.normal(size=vocab) * 1e-30,  # subnormal-sized differences
    ]
    return np.stack(rows).astype(np.float32)


@pytest.mark.parametrize("vocab", [1, 7, 128, 300, 1000])
def test_kth_largest_is_lax_top_ks_kth_value(vocab: int) -> None:
    rows = _rows(vocab, seed=vocab)
    for k in sorted({1, 2, 3, 5, 50, vocab - 1, vocab} & set(range(1, vocab + 1))):
        want = jax.lax.top_k(rows, k)[0][:, -1]
        got = jax.jit(kth_largest, static_argnums=1)(rows, k)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=f"k={k}")


def test_kth_largest_keeps_ties_like_a_sort() -> None:
    row = np.array([[5.0, 2.0, 5.0, 1.0, 5.0, 2.0]], np.float32)
    assert [float(kth_largest(row, k)[0]) for k in range(1, 7)] == [5, 5, 5, 2, 2, 1]


def test_kth_largest_refuses_a_k_outside_the_row() -> None:
    for k in (0, 4):
        with pytest.raises(ValueError, match="k="):
            kth_largest(np.zeros((2, 3), np.float32), k)
