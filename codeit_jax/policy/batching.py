"""Length-bucketed batches of sequence-to-sequence examples for the trainer.

A jitted train step compiles once per array shape. Padding every example to the longest one
wastes compute; padding each batch to its own maximum compiles hundreds of shapes. So each batch
is padded to the smallest of a few *bucket* lengths (separately for inputs and labels), and
examples of similar length are grouped into the same batch, as CodeIt's bucket sampler does:
each epoch shuffles the examples with a seeded numpy RNG, sorts them by length inside pools of
a few batches, cuts the pools into batches and shuffles the batch order. The last, partial batch
is filled up with zero-weight copies of one of its examples, so it has the usual batch shape and
no new shape is compiled for it.

Token conventions (T5): pad is 0, end-of-sequence is 1. Labels end with eos; the decoder input
is the label sequence shifted right by one with pad (0) as the start token; label padding and
filler examples get weight 0 in the loss.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

PAD_ID = 0
EOS_ID = 1
DEFAULT_BUCKETS = (64, 128, 256, 512)


class Batch(NamedTuple):
    """One global batch on the host (numpy), every field [batch, length].

    A NamedTuple is a JAX pytree, so the trainer can shard all fields with one tree map.
    """

    input_ids: np.ndarray  # int32 [B, Ti]
    attention_mask: np.ndarray  # int32 [B, Ti], 1 on real input tokens
    decoder_input_ids: np.ndarray  # int32 [B, Tl], labels shifted right, pad as start
    labels: np.ndarray  # int32 [B, Tl], pad after the sequence
    label_weights: np.ndarray  # float32 [B, Tl], 0 on label pad and on filler examples


def num_real_examples(batch: Batch) -> int:
    """How many rows of the batch are real examples (not zero-weight fillers)."""
    return int(np.count_nonzero(batch.label_weights.max(axis=-1) > 0))


def bucket_length(length: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds ``length`` tokens (``buckets`` increasing): the trainer and
    the sampler pad to buckets so that a run compiles a handful of shapes, not hundreds."""
    for bucket in buckets:
        if length <= bucket:
            return int(bucket)
    raise ValueError(
        f"length {length} exceeds the largest bucket ({max(buckets)}); truncate or add a bucket"
    )


def pad_inputs(
    sequences: Sequence[Sequence[int]], length: int, pad_id: int = PAD_ID
) -> tuple[np.ndarray, np.ndarray]:
    """Ragged token lists -> (ids [B, length] int32, mask [B, length] int32), right-padded."""
    ids = np.full((len(sequences), length), pad_id, np.int32)
    mask = np.zeros((len(sequences), length), np.int32)
    for row, tokens in enumerate(sequences):
        if len(tokens) > length:
            raise ValueError(f"sequence {row} has {len(tokens)} tokens, more than {length}")
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    return ids, mask


def _check_buckets(buckets: Sequence[int], name: str) -> tuple[int, ...]:
    result = tuple(int(b) for b in buckets)
    if not result or any(b <= 0 for b in result) or list(result) != sorted(set(result)):
        raise ValueError(f"{name} must be positive, strictly increasing lengths; got {buckets}")
    return result


def shift_right(labels: np.ndarray, start_id: int = PAD_ID) -> np.ndarray:
    """Decoder inputs for teacher forcing: labels moved one step right, `start_id` first."""
    shifted = np.full_like(labels, PAD_ID)
    shifted[:, 0] = start_id
    shifted[:, 1:] = labels[:, :-1]
    return shifted


def pad_batch(
    inputs: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    batch_size: int,
    input_length: int,
    label_length: int,
) -> Batch:
    """Pads examples into a [batch_size, length] batch; missing rows become zero-weight fillers.

    Fillers copy the first example (rather than being all padding) so that no row has an empty
    attention mask, which some attention implementations turn into NaN.
    """
    n = len(inputs)
    if n != len(labels):
        raise ValueError(f"{n} inputs but {len(labels)} labels")
    if not 0 < n <= batch_size:
        raise ValueError(f"need 1..{batch_size} examples for a batch, got {n}")
    for x, y in zip(inputs, labels):
        if len(x) > input_length or len(y) > label_length:
            raise ValueError(
                f"example of lengths ({len(x)}, {len(y)}) does not fit ({input_length}, "
                f"{label_length})"
            )
    rows = [row if row < n else 0 for row in range(batch_size)]
    input_ids, attention_mask = pad_inputs([inputs[r] for r in rows], input_length)
    label_ids, label_mask = pad_inputs([labels[r] for r in rows], label_length)
    weights = label_mask.astype(np.float32)
    weights[n:] = 0.0
    return Batch(input_ids, attention_mask, shift_right(label_ids), label_ids, weights)


class BucketBatcher:
    """Shuffled, length-grouped, bucket-padded batches over a fixed list of examples.

    The batches of epoch `e` depend only on (seed, e), so a restarted run that knows its epoch
    and position sees exactly the batches the interrupted run would have seen.
    """

    def __init__(
        self,
        inputs: Sequence[Sequence[int]],
        labels: Sequence[Sequence[int]],
        batch_size: int,
        *,
        input_buckets: Sequence[int] = DEFAULT_BUCKETS,
        label_buckets: Sequence[int] = DEFAULT_BUCKETS,
        seed: int = 0,
        pool_batches: int = 32,
        truncate: bool = False,
        micro_batches: int = 0,
    ):
        """Args:
        inputs, labels: token ids per example; labels should end with eos.
        batch_size: examples per batch (the trainer's effective global batch).
        input_buckets, label_buckets: the lengths batches are padded to.
        seed: seeds the per-epoch shuffle.
        pool_batches: examples are sorted by length within pools of this many batches; larger
            pools pad less, smaller pools mix lengths more.
        truncate: cut examples longer than the largest bucket (keeping the label's final eos)
            instead of raising.
        micro_batches: when > 0, lay the rows of each batch out so that the trainer's split
            into this many micro-batches (rows i, i + n, ...) gives every micro-batch
            consecutive rows of the length-sorted batch, as CodeIt's micro-batches of similar
            lengths (it matters where the loss counts padding; 0 keeps the sorted order).
        """
        if len(inputs) != len(labels):
            raise ValueError(f"{len(inputs)} inputs but {len(labels)} labels")
        if not inputs:
            raise ValueError("no examples to batch")
        if batch_size <= 0 or pool_batches <= 0:
            raise ValueError("batch_size and pool_batches must be positive")
        self.batch_size = batch_size
        self.input_buckets = _check_buckets(input_buckets, "input_buckets")
        self.label_buckets = _check_buckets(label_buckets, "label_buckets")
        self.seed = seed
        self.pool_batches = pool_batches
        if micro_batches < 0 or (micro_batches and batch_size % micro_batches):
            raise ValueError(
                f"micro_batches {micro_batches} must be 0 or divide batch_size {batch_size}"
            )
        self.micro_batches = micro_batches
        self._inputs = [self._fit(x, self.input_buckets[-1], truncate, "input") for x in inputs]
        self._labels = [self._fit(y, self.label_buckets[-1], truncate, "label") for y in labels]
        if any(len(y) == 0 for y in self._labels):
            raise ValueError("every example needs at least one label token")
        self._input_lengths = np.array([len(x) for x in self._inputs])
        self._label_lengths = np.array([len(y) for y in self._labels])

    @staticmethod
    def _fit(tokens: Sequence[int], limit: int, truncate: bool, what: str) -> np.ndarray:
        array = np.asarray(tokens, dtype=np.int32).reshape(-1)
        if len(array) <= limit:
            return array
        if not truncate:
            raise ValueError(
                f"{what} of {len(array)} tokens exceeds the largest bucket ({limit}); "
                "raise the bucket or pass truncate=True"
            )
        if what == "label":
            return np.concatenate([array[: limit - 1], array[-1:]])
        return array[:limit]

    def __len__(self) -> int:
        """Batches per epoch (the last one may be partial and is then padded)."""
        return -(-len(self._inputs) // self.batch_size)

    @property
    def num_examples(self) -> int:
        return len(self._inputs)

    def epoch_plan(self, epoch: int) -> list[np.ndarray]:
        """The example indices of each batch of `epoch`, in order."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self._inputs))
        pool_size = self.pool_batches * self.batch_size
        batches: list[np.ndarray] = []
        for start in range(0, len(order), pool_size):
            pool = order[start : start + pool_size]
            in_bucket = np.searchsorted(self.input_buckets, self._input_lengths[pool])
            # lexsort: the last key is the primary one.
            pool = pool[np.lexsort((self._label_lengths[pool], in_bucket))]
            batches.extend(
                pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)
            )
        # Keep the partial batch (there is at most one, at the very end) last, shuffle the rest.
        full = [b for b in batches if len(b) == self.batch_size]
        partial = [b for b in batches if len(b) < self.batch_size]
        return [full[i] for i in rng.permutation(len(full))] + partial

    def make_batch(self, indices: np.ndarray) -> Batch:
        """The padded batch holding the given examples."""
        input_length = bucket_length(int(self._input_lengths[indices].max()), self.input_buckets)
        label_length = bucket_length(int(self._label_lengths[indices].max()), self.label_buckets)
        batch = pad_batch(
            [self._inputs[i] for i in indices],
            [self._labels[i] for i in indices],
            self.batch_size,
            input_length,
            label_length,
        )
        if self.micro_batches <= 1:
            return batch
        n, per = self.micro_batches, self.batch_size // self.micro_batches
        position = np.arange(self.batch_size)
        source = (position % n) * per + position // n
        return Batch(*(field[source] for field in batch))

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of `epoch`, from batch number `start` on (to resume mid-epoch)."""
        for indices in self.epoch_plan(epoch)[start:]:
            yield self.make_batch(indices)
