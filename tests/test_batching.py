"""Length buckets, padding, masking and the seeded bucket sampler."""

from __future__ import annotations

import numpy as np
import pytest

from codeit_jax.policy.batching import (
    EOS_ID,
    PAD_ID,
    BucketBatcher,
    bucket_length,
    num_real_examples,
    pad_batch,
    shift_right,
)


def _examples(n: int, seed: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    rng = np.random.default_rng(seed)
    inputs = [list(rng.integers(2, 50, rng.integers(1, 120))) for _ in range(n)]
    labels = [[*rng.integers(2, 50, rng.integers(0, 60)), EOS_ID] for _ in range(n)]
    return inputs, labels


def test_bucket_length_picks_smallest_fitting_bucket():
    assert bucket_length(1, (8, 16)) == 8
    assert bucket_length(8, (8, 16)) == 8
    assert bucket_length(9, (8, 16)) == 16
    with pytest.raises(ValueError, match="exceeds the largest bucket"):
        bucket_length(17, (8, 16))


def test_shift_right_starts_with_pad():
    labels = np.array([[5, 6, EOS_ID, PAD_ID]])
    np.testing.assert_array_equal(shift_right(labels), [[PAD_ID, 5, 6, EOS_ID]])


def test_pad_batch_masks_label_padding_and_fillers():
    batch = pad_batch(
        [np.array([3, 4, 5]), np.array([7])], [np.array([9, EOS_ID]), np.array([EOS_ID])], 4, 8, 4
    )
    assert batch.input_ids.shape == (4, 8) and batch.labels.shape == (4, 4)
    np.testing.assert_array_equal(batch.input_ids[0], [3, 4, 5, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(batch.attention_mask[1], [1, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(batch.labels[0], [9, EOS_ID, 0, 0])
    np.testing.assert_array_equal(batch.decoder_input_ids[0], [0, 9, EOS_ID, 0])
    np.testing.assert_array_equal(batch.label_weights[0], [1, 1, 0, 0])
    np.testing.assert_array_equal(batch.label_weights[1], [1, 0, 0, 0])
    # Fillers: a copy of the first example with zero weight everywhere.
    np.testing.assert_array_equal(batch.input_ids[2], batch.input_ids[0])
    assert batch.label_weights[2:].sum() == 0
    assert num_real_examples(batch) == 2


def test_pad_batch_rejects_examples_that_do_not_fit():
    with pytest.raises(ValueError, match="does not fit"):
        pad_batch([np.arange(9)], [np.array([EOS_ID])], 2, 8, 4)


def test_epoch_covers_every_example_once_with_bucket_shapes():
    inputs, labels = _examples(103)
    batcher = BucketBatcher(inputs, labels, 8, input_buckets=(32, 64, 128), label_buckets=(16, 64))
    plan = batcher.epoch_plan(0)
    assert len(plan) == len(batcher) == 13
    np.testing.assert_array_equal(np.sort(np.concatenate(plan)), np.arange(103))
    assert all(len(b) == 8 for b in plan[:-1]) and len(plan[-1]) == 103 - 12 * 8
    batches = list(batcher.epoch(0))
    assert sum(num_real_examples(b) for b in batches) == 103
    for batch, indices in zip(batches, plan):
        assert batch.input_ids.shape[0] == 8
        assert batch.input_ids.shape[1] in (32, 64, 128)
        assert batch.labels.shape[1] in (16, 64)
        # The real label tokens of the batch are exactly the weighted ones.
        assert batch.label_weights.sum() == sum(len(labels[i]) for i in indices)
        row = 0
        np.testing.assert_array_equal(
            batch.input_ids[row, : len(inputs[indices[row]])], inputs[indices[row]]
        )


def test_epochs_are_seeded_and_differ():
    inputs, labels = _examples(64)
    a = BucketBatcher(inputs, labels, 8, seed=3)
    b = BucketBatcher(inputs, labels, 8, seed=3)
    for x, y in zip(a.epoch_plan(5), b.epoch_plan(5)):
        np.testing.assert_array_equal(x, y)
    flat = [np.concatenate(a.epoch_plan(e)) for e in range(2)]
    assert not np.array_equal(flat[0], flat[1])
    # Resuming mid-epoch yields the remaining batches unchanged.
    rest = list(a.epoch(5, start=3))
    full = list(a.epoch(5))
    assert len(rest) == len(full) - 3
    np.testing.assert_array_equal(rest[0].labels, full[3].labels)


def test_grouping_by_length_pads_less_than_random_batches():
    inputs, labels = _examples(512, seed=1)
    batcher = BucketBatcher(inputs, labels, 8, input_buckets=tuple(range(8, 129, 8)), seed=0)
    grouped = sum(int(batcher._input_lengths[b].max()) * len(b) for b in batcher.epoch_plan(0))
    rng = np.random.default_rng(0)
    order = rng.permutation(512)
    random = sum(int(batcher._input_lengths[order[i : i + 8]].max()) * 8 for i in range(0, 512, 8))
    assert grouped < 0.75 * random


def test_micro_batch_layout_gives_each_micro_batch_consecutive_sorted_rows():
    inputs, labels = _examples(64, seed=2)
    common = dict(input_buckets=(128,), label_buckets=(64,), seed=3)
    sorted_batcher = BucketBatcher(inputs, labels, 16, **common)
    laid_out = BucketBatcher(inputs, labels, 16, micro_batches=4, **common)
    for plain, grouped in zip(sorted_batcher.epoch(0), laid_out.epoch(0)):
        lengths = plain.label_weights.sum(-1)
        assert (np.diff(lengths) >= 0).all()  # one input bucket: sorted by label length
        for m in range(4):  # the trainer's micro-batch m is rows m, m + 4, ...
            np.testing.assert_array_equal(grouped.labels[m::4], plain.labels[4 * m : 4 * m + 4])
            np.testing.assert_array_equal(
                grouped.label_weights[m::4], plain.label_weights[4 * m : 4 * m + 4]
            )
    with pytest.raises(ValueError, match="micro_batches"):
        BucketBatcher(inputs, labels, 16, micro_batches=3, **common)


def test_long_examples_raise_or_truncate():
    inputs = [list(range(2, 40))]
    labels = [[*range(2, 30), EOS_ID]]
    with pytest.raises(ValueError, match="truncate=True"):
        BucketBatcher(inputs, labels, 2, input_buckets=(16,), label_buckets=(32,))
    batcher = BucketBatcher(
        inputs, labels, 2, input_buckets=(16,), label_buckets=(8,), truncate=True
    )
    batch = next(batcher.epoch(0))
    np.testing.assert_array_equal(batch.input_ids[0], list(range(2, 18)))
    assert batch.labels[0, -1] == EOS_ID and batch.labels.shape == (2, 8)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="no examples"):
        BucketBatcher([], [], 4)
    with pytest.raises(ValueError, match="increasing"):
        BucketBatcher([[2]], [[EOS_ID]], 4, input_buckets=(16, 8))
    with pytest.raises(ValueError, match="labels"):
        BucketBatcher([[2]], [], 4)
