"""The replay buffer's storage: one partition as numpy columns and one flat token array.

Rows are appended and dropped in bulk (a meta-iteration adds thousands of entries, a reduction
drops a percentage), so a partition keeps each field as a column and all token ids of its
entries in one flat array with offsets, compacted when dropped rows leave gaps; strings are
packed the same way for checkpoints. `codeit_jax.replay.buffer` is the only user.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_FLOAT_COLUMNS = ("performance", "distance")


_INT_COLUMNS = ("program_length", "age", "input_length", "label_length")

#: Values of the ``seed`` column (int8): the entry holds a seed task (a training task with its
#: ground-truth program, or a random-program seed), any other task, or, restored from a state
#: saved before the column existed, a task of the mutated partition that may be either.
SEED, NOT_SEED, SEED_UNKNOWN = 1, 0, -1


class _Partition:
    """Columns and token storage of one partition."""

    def __init__(self, token_dtype: np.dtype) -> None:
        self.size = 0
        self.cols: dict[str, np.ndarray] = {
            name: np.zeros(0, np.float64) for name in _FLOAT_COLUMNS
        }
        self.cols.update({name: np.zeros(0, np.int64) for name in _INT_COLUMNS})
        self.cols["input_start"] = np.zeros(0, np.int64)
        self.cols["label_start"] = np.zeros(0, np.int64)
        self.cols["seed"] = np.zeros(0, np.int8)
        self.tokens = np.zeros(0, token_dtype)
        self.used = 0  # tokens[:used] are written
        self.garbage = 0  # tokens of replaced entries inside tokens[:used]
        self.parent_keys: list[str] = []
        self.programs: list[str] = []
        self.index: dict[tuple[str, str], int] = {}

    def column(self, name: str) -> np.ndarray:
        return self.cols[name][: self.size]

    def reserve_rows(self, rows: int) -> None:
        allocated = len(self.cols["age"])
        if rows <= allocated:
            return
        new = max(rows, 2 * allocated, 1024)
        for name, col in self.cols.items():
            grown = np.zeros(new, col.dtype)
            grown[: self.size] = col[: self.size]
            self.cols[name] = grown

    def append_tokens(self, flat: np.ndarray) -> int:
        """Append ids after the used region; returns their start offset."""
        start = self.used
        end = start + len(flat)
        if end > len(self.tokens):
            grown = np.zeros(max(end, 2 * len(self.tokens), 4096), self.tokens.dtype)
            grown[:start] = self.tokens[:start]
            self.tokens = grown
        self.tokens[start:end] = flat
        self.used = end
        return start

    def live_tokens(self) -> np.ndarray:
        """Inputs and labels of every row, interleaved row by row, as one new array."""
        starts = np.stack([self.column("input_start"), self.column("label_start")], 1).ravel()
        lengths = np.stack([self.column("input_length"), self.column("label_length")], 1).ravel()
        packed_starts = np.cumsum(lengths) - lengths
        if self.used == int(lengths.sum()) and np.array_equal(starts, packed_starts):
            return self.tokens[: self.used].copy()  # already packed: nothing replaced or removed
        return _ragged_gather(self.tokens, starts, lengths)

    def compact(self) -> None:
        """Drop the tokens of replaced and removed entries."""
        flat = self.live_tokens()
        lengths = np.stack([self.column("input_length"), self.column("label_length")], 1).ravel()
        starts = np.cumsum(lengths) - lengths
        self.tokens = flat
        self.used = len(flat)
        self.garbage = 0
        self.cols["input_start"][: self.size] = starts[0::2]
        self.cols["label_start"][: self.size] = starts[1::2]

    def keep_rows(self, rows: np.ndarray) -> None:
        """Keep only ``rows`` (ascending), renumbered 0..len(rows)-1."""
        for name, col in self.cols.items():
            kept = col[rows]
            self.cols[name] = kept
        self.size = len(rows)
        row_list = rows.tolist()
        self.parent_keys = [self.parent_keys[r] for r in row_list]
        self.programs = [self.programs[r] for r in row_list]
        self.index = {key: i for i, key in enumerate(zip(self.parent_keys, self.programs))}
        self.compact()

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The partition as packed arrays (`restore` reads them back)."""
        cols = {c: self.column(c).copy() for c in (*_FLOAT_COLUMNS, *_INT_COLUMNS)}
        cols["seed"] = self.column("seed").copy()
        cols["tokens"] = self.live_tokens()
        cols["parent_keys_utf8"], cols["parent_key_bytes"] = _pack_strings(self.parent_keys)
        cols["programs_utf8"], cols["program_bytes"] = _pack_strings(self.programs)
        return cols

    def restore(self, name: str, cols: Mapping[str, Any], unmarked: int = NOT_SEED) -> None:
        """Replace the contents with `state_arrays` output; ValueError, with nothing changed,
        when the arrays are inconsistent (``name``: the partition, for messages).

        A state saved before the ``seed`` column existed has none: its rows get ``unmarked``
        (the buffer passes `SEED_UNKNOWN` for the mutated partition, where seeds were kept
        unmarked, and `NOT_SEED` for the policy partition, which never holds seeds).
        """
        needed = (*_FLOAT_COLUMNS, *_INT_COLUMNS, "tokens")
        needed += ("parent_keys_utf8", "parent_key_bytes", "programs_utf8", "program_bytes")
        missing = [c for c in needed if c not in cols]
        if missing:
            raise ValueError(f"replay buffer state, partition {name!r}: missing {missing}")
        size = len(cols["age"])
        for c in (*_FLOAT_COLUMNS, *_INT_COLUMNS):
            if np.shape(cols[c]) != (size,):
                raise ValueError(
                    f"replay buffer state, partition {name!r}: column {c} has shape "
                    f"{np.shape(cols[c])}, expected ({size},)"
                )
        parent_keys = _unpack_strings(cols["parent_keys_utf8"], cols["parent_key_bytes"])
        programs = _unpack_strings(cols["programs_utf8"], cols["program_bytes"])
        lengths = np.stack(
            [np.asarray(cols["input_length"]), np.asarray(cols["label_length"])], 1
        ).ravel()
        tokens = np.asarray(cols["tokens"])
        if len(parent_keys) != size or len(programs) != size or int(lengths.sum()) != len(tokens):
            raise ValueError(f"replay buffer state, partition {name!r}: inconsistent sizes")
        seed = np.asarray(cols["seed"]) if "seed" in cols else np.full(size, unmarked, np.int8)
        if seed.shape != (size,) or not np.isin(seed, (SEED, NOT_SEED, SEED_UNKNOWN)).all():
            raise ValueError(f"replay buffer state, partition {name!r}: bad seed column")
        check_token_range(tokens, self.tokens.dtype)
        index = {key: i for i, key in enumerate(zip(parent_keys, programs))}
        if len(index) != size:
            raise ValueError(f"replay buffer state, partition {name!r}: repeated keys")
        self.size = size
        for c in _FLOAT_COLUMNS:
            self.cols[c] = np.asarray(cols[c], np.float64).copy()
        for c in _INT_COLUMNS:
            self.cols[c] = np.asarray(cols[c], np.int64).copy()
        starts = np.cumsum(lengths) - lengths
        self.cols["input_start"] = starts[0::2].copy()
        self.cols["label_start"] = starts[1::2].copy()
        self.cols["seed"] = seed.astype(np.int8, copy=True)
        self.tokens = tokens.astype(self.tokens.dtype, copy=True)
        self.used = len(self.tokens)
        self.garbage = 0
        self.parent_keys = parent_keys
        self.programs = programs
        self.index = index


def check_token_range(flat: np.ndarray, dtype: np.dtype) -> None:
    """ValueError unless every id fits ``dtype`` (and none is negative)."""
    if len(flat) == 0:
        return
    info = np.iinfo(dtype)
    if flat.min() < 0 or flat.max() > info.max:
        raise ValueError(f"token ids must lie in [0, {info.max}] for token_dtype {dtype}")


def _ragged_gather(flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenate flat[s:s+l] for every (s, l), without a Python loop."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, flat.dtype)
    out_starts = np.cumsum(lengths) - lengths
    shift = np.repeat(starts - out_starts, lengths)
    return flat[np.arange(total, dtype=np.int64) + shift]


def _as_ids(ids: Sequence[int] | np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(ids)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise ValueError(
            f"{what} must be a 1-D sequence of integer ids, got {array.dtype} {array.shape}"
        )
    return array.astype(np.int64, copy=False)


def _pack_strings(strings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings -> (utf-8 bytes as uint8, byte length of each)."""
    joined = "".join(strings).encode("utf-8")
    if len(joined) == sum(map(len, strings)):  # all ASCII: byte lengths are str lengths
        lengths = np.fromiter(map(len, strings), np.int64, len(strings))
    else:
        lengths = np.fromiter((len(s.encode("utf-8")) for s in strings), np.int64, len(strings))
    return np.frombuffer(joined, np.uint8).copy(), lengths


def _unpack_strings(data: Any, lengths: Any) -> list[str]:
    raw = np.asarray(data, np.uint8).tobytes()
    lengths = np.asarray(lengths, np.int64)
    if int(lengths.sum()) != len(raw) or (lengths < 0).any():
        raise ValueError("replay buffer state: string bytes do not match their lengths")
    ends = np.cumsum(lengths).tolist()
    starts = [0, *ends[:-1]]
    return [raw[s:e].decode("utf-8") for s, e in zip(starts, ends)]
