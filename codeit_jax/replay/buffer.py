"""Prioritized replay buffer with two partitions, ``policy`` and ``mutated``.

An entry is keyed by (parent task key, program text) within its partition; adding the same key
again replaces the entry. Storage is structure-of-arrays (numpy columns plus one flat token
array per partition) so that a million entries cost a few numpy operations to sample, and the
whole buffer serialises to plain arrays.

Priority (CodeIt's weighted mean, all weights from the config)::

    priority = (w_perf * performance + w_len / program_length
                + w_age / (1 + now - age) + w_dist / (1 + distance)) / (sum of weights) + epsilon

with ``performance`` the demonstration performance in [0, 1], ``program_length`` the number of
program lines, ``age`` the meta-iteration the entry was added in, ``now`` the latest
meta-iteration the buffer has seen, ``distance`` >= 0. Each term lies in [0, 1], so the weights
say how much each matters. All weights zero, or the mutated partition with
``priority_in_mutated`` off, means uniform sampling.

Sampling draws without replacement with probabilities proportional to priority (sequentially,
as if one entry at a time were drawn and removed) using the Gumbel top-k trick: the ``n``
largest ``log(priority) + Gumbel noise`` values. When ``n`` is at least the partition size,
every entry is returned. A partition larger than ``capacity`` keeps only its top
``floor(capacity * (1 - reduce_percentage))`` entries by priority (among equal priorities the
most recently inserted rows stay; a replaced entry keeps its row).

The mutated partition holds two kinds of task that the official run trains on as one: the seed
tasks (training tasks with their ground-truth programs, or random-program seeds) and the mutated
tasks (the mutated files, A1's search tasks). Sampling and priorities do not tell them apart;
each entry carries a ``seed`` mark only so that they are counted apart (`task_counts`). A
replaced entry takes the mark of the call that replaced it, as it takes its content.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from codeit_jax.replay.columns import (
    NOT_SEED,
    SEED,
    SEED_UNKNOWN,
    _as_ids,
    _Partition,
    check_token_range,
)

PARTITIONS = ("policy", "mutated")
#: What an entry holds, as `Entry.origin` says: a seed task or a mutated task (both in the
#: mutated partition), a policy sample, or (restored from an older state) seed or mutated.
ORIGINS = ("seed", "mutated", "policy", "unknown")
_STATE_VERSION = 1


@dataclass(frozen=True)
class BufferConfig:
    """Capacity and priority weights; field names match the experiment config keys."""

    capacity: int | None = None  # per partition; None: unbounded
    reduce_percentage: float = 0.0
    performance_penalty: float = 1.0
    length_penalty: float = 0.0
    age_penalty: float = 0.0
    distance_penalty: float = 0.0
    epsilon: float = 1e-6
    priority_in_mutated: bool = True
    token_dtype: str = "int32"

    def __post_init__(self) -> None:
        if self.capacity is not None and self.capacity < 1:
            raise ValueError(f"capacity must be at least 1 or None, got {self.capacity}")
        if not 0.0 <= self.reduce_percentage < 1.0:
            raise ValueError(f"reduce_percentage must be in [0, 1), got {self.reduce_percentage}")
        for name in ("performance_penalty", "length_penalty", "age_penalty", "distance_penalty"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ValueError(
                f"epsilon must be > 0 (zero priorities cannot be sampled), got {self.epsilon}"
            )
        if np.dtype(self.token_dtype).kind not in "iu":
            raise ValueError(f"token_dtype must be an integer dtype, got {self.token_dtype!r}")

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> BufferConfig:
        """Build from any mapping (e.g. an ml_collections ConfigDict); other keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: config[k] for k in names if k in config})


@dataclass(frozen=True)
class NewEntry:
    """One entry to add (`ReplayBuffer.add_many`): the parent task it is keyed by, its program,
    the token ids it trains on and its priority inputs."""

    parent_key: str
    program: str
    input_ids: Sequence[int] | np.ndarray
    label_ids: Sequence[int] | np.ndarray
    performance: float = 1.0  # fraction of the parent's real demonstrations solved
    distance: float = 0.0  # mean (1 - reward) over the demonstrations shown


@dataclass(frozen=True)
class Entry:
    """One buffer entry as plain values (for inspection and tests, not the hot path)."""

    partition: str
    parent_key: str
    program: str
    input_ids: tuple[int, ...]
    label_ids: tuple[int, ...]
    performance: float
    program_length: int
    age: int
    distance: float
    priority: float
    origin: str  # one of ORIGINS


@dataclass(frozen=True)
class TaskCounts:
    """Entries by what they hold. ``seed`` is None while entries restored from a state saved
    before seeds were marked remain: those may be seeds or mutated tasks, so they count as
    mutated, as every entry of the mutated partition counted then, and the seed count is
    unknown rather than too small."""

    seed: int | None
    mutated: int
    policy: int


@dataclass
class SampledBatch:
    """A sample, shuffled across partitions. The id arrays are read-only views into the buffer's
    token storage, which is append-only between compactions, so they stay valid."""

    partition: np.ndarray  # int8 [n]: index into PARTITIONS
    rows: np.ndarray  # int64 [n]: row within its partition (valid until the buffer changes)
    input_ids: list[np.ndarray]
    label_ids: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.rows)


class ReplayBuffer:
    """Two-partition prioritized replay buffer (see the module docstring)."""

    def __init__(self, config: BufferConfig | None = None) -> None:
        self.config = config if config is not None else BufferConfig()
        self.now = 0  # latest meta-iteration seen (for the age term)
        dtype = np.dtype(self.config.token_dtype)
        self._parts = {name: _Partition(dtype) for name in PARTITIONS}

    # ------------------------------------------------------------------ size and lookup

    def __len__(self) -> int:
        return sum(p.size for p in self._parts.values())

    def size(self, partition: str) -> int:
        return self._part(partition).size

    def __contains__(self, key: tuple[str, str, str]) -> bool:
        partition, parent_key, program = key
        return (parent_key, program) in self._part(partition).index

    def _part(self, partition: str) -> _Partition:
        try:
            return self._parts[partition]
        except KeyError:
            raise ValueError(
                f"unknown partition {partition!r}; expected one of {PARTITIONS}"
            ) from None

    def advance(self, meta_iteration: int) -> None:
        """Tell the buffer the current meta-iteration (ages are measured from it)."""
        if meta_iteration < self.now:
            raise ValueError(f"meta-iteration went back from {self.now} to {meta_iteration}")
        self.now = int(meta_iteration)

    # ------------------------------------------------------------------ adding

    def add(
        self,
        partition: str,
        parent_key: str,
        program: str,
        input_ids: Sequence[int] | np.ndarray,
        label_ids: Sequence[int] | np.ndarray,
        performance: float,
        age: int,
        distance: float = 0.0,
    ) -> None:
        """Add or replace one entry."""
        entry = NewEntry(parent_key, program, input_ids, label_ids, performance, distance)
        self.add_many(partition, [entry], age)

    def add_many(
        self,
        partition: str,
        entries: Sequence[NewEntry],
        age: Sequence[int] | np.ndarray | int,
        *,
        seed: bool = False,
    ) -> None:
        """Add or replace ``entries`` (``age``: the meta-iteration they were found at, one for
        all or one each); within one call a repeated key keeps its last occurrence. ``seed``
        marks them as seed tasks (mutated partition only; counted apart, sampled alike).

        Everything is validated before anything is stored, so bad input changes nothing.
        """
        parent_keys = [e.parent_key for e in entries]
        programs = [e.program for e in entries]
        input_ids = [e.input_ids for e in entries]
        label_ids = [e.label_ids for e in entries]
        performance = [e.performance for e in entries]
        distance = [e.distance for e in entries]
        part = self._part(partition)
        n = len(parent_keys)
        perf = np.asarray(performance, np.float64)
        ages, dist = np.asarray(age), np.asarray(distance, np.float64)
        for name, values in (("age", ages), ("distance", dist)):
            if values.shape not in ((), (n,)):
                raise ValueError(
                    f"{name} must be a scalar or have shape ({n},), got {values.shape}"
                )
        ages, dist = np.broadcast_to(ages, (n,)), np.broadcast_to(dist, (n,))
        if perf.shape != (n,):
            raise ValueError(f"performance must have shape ({n},), got {perf.shape}")
        if seed and partition != "mutated":
            raise ValueError("seed tasks belong to the mutated partition")
        if n == 0:
            return
        if not np.all((perf >= 0) & (perf <= 1)):
            raise ValueError("performance must lie in [0, 1]")
        if ages.dtype.kind not in "iu" or ages.min() < 0:
            raise ValueError("age must be a non-negative integer meta-iteration")
        if not np.all(np.isfinite(dist) & (dist >= 0)):
            raise ValueError("distance must be finite and >= 0")
        for key, program in zip(parent_keys, programs):
            if not isinstance(key, str) or not isinstance(program, str):
                raise TypeError("parent keys and programs must be str")

        # Last occurrence of each key wins.
        chosen: dict[tuple[str, str], int] = {}
        for i, key in enumerate(zip(parent_keys, programs)):
            chosen[key] = i
        order = np.fromiter(chosen.values(), np.int64, len(chosen))
        pieces = []
        for i in order.tolist():
            pieces.append(_as_ids(input_ids[i], "input_ids"))
            pieces.append(_as_ids(label_ids[i], "label_ids"))
        lengths = np.fromiter((len(p) for p in pieces), np.int64, len(pieces))
        flat = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
        check_token_range(flat, part.tokens.dtype)

        rows = np.empty(len(order), np.int64)
        next_row = part.size
        for k, key in enumerate(chosen):
            row = part.index.get(key)
            if row is None:
                row = next_row
                next_row += 1
                part.index[key] = row
                part.parent_keys.append(key[0])
                part.programs.append(key[1])
            else:
                part.garbage += int(part.cols["input_length"][row] + part.cols["label_length"][row])
            rows[k] = row
        part.reserve_rows(next_row)
        part.size = next_row

        base = part.append_tokens(flat.astype(part.tokens.dtype, copy=False))
        starts = base + np.cumsum(lengths) - lengths
        cols = part.cols
        cols["input_start"][rows] = starts[0::2]
        cols["label_start"][rows] = starts[1::2]
        cols["input_length"][rows] = lengths[0::2]
        cols["label_length"][rows] = lengths[1::2]
        cols["performance"][rows] = perf[order]
        cols["distance"][rows] = dist[order]
        cols["age"][rows] = ages[order]
        cols["seed"][rows] = SEED if seed else NOT_SEED
        cols["program_length"][rows] = [programs[i].count("\n") + 1 for i in order.tolist()]
        self.now = max(self.now, int(ages.max()))

        capacity = self.config.capacity
        if capacity is not None and part.size > capacity:
            self._reduce(partition, math.floor(capacity * (1.0 - self.config.reduce_percentage)))
        elif part.garbage > part.used // 2:
            part.compact()

    def _reduce(self, partition: str, keep: int) -> None:
        part = self._parts[partition]
        keep = max(1, keep)
        if part.size <= keep:
            return
        pri = self.priorities(partition)
        newest_first = -np.arange(part.size)
        ranked = np.lexsort((newest_first, -pri))
        part.keep_rows(np.sort(ranked[:keep]))

    def task_counts(self) -> TaskCounts:
        """How many entries hold seed tasks, mutated tasks and policy samples (see `TaskCounts`
        for entries restored from a state saved before seeds were marked)."""
        marks = self._parts["mutated"].column("seed")
        seeds = int(np.count_nonzero(marks == SEED))
        unknown = bool(np.any(marks == SEED_UNKNOWN))
        return TaskCounts(
            seed=None if unknown else seeds,
            mutated=len(marks) - seeds,
            policy=self._parts["policy"].size,
        )

    # ------------------------------------------------------------------ priorities and sampling

    def priorities(self, partition: str) -> np.ndarray:
        """Priority of every entry of a partition, by row (float64)."""
        part = self._part(partition)
        cfg = self.config
        n = part.size
        weights = (
            cfg.performance_penalty,
            cfg.length_penalty,
            cfg.age_penalty,
            cfg.distance_penalty,
        )
        total = sum(weights)
        if total == 0 or (partition == "mutated" and not cfg.priority_in_mutated):
            return np.full(n, 1.0)
        score = np.zeros(n)
        if cfg.performance_penalty:
            score += cfg.performance_penalty * part.column("performance")
        if cfg.length_penalty:
            score += cfg.length_penalty / np.maximum(part.column("program_length"), 1)
        if cfg.age_penalty:
            score += cfg.age_penalty / (1.0 + np.maximum(self.now - part.column("age"), 0))
        if cfg.distance_penalty:
            score += cfg.distance_penalty / (1.0 + part.column("distance"))
        return score / total + cfg.epsilon

    def sample_rows(self, partition: str, n: int, rng: np.random.Generator) -> np.ndarray:
        """Rows of ``n`` entries drawn without replacement, proportional to priority (all rows,
        in row order, when ``n`` is at least the partition size)."""
        size = self._part(partition).size
        if n < 0:
            raise ValueError(f"sample size must be >= 0, got {n}")
        if n >= size:
            return np.arange(size, dtype=np.int64)
        if n == 0:
            return np.zeros(0, np.int64)
        keys = np.log(self.priorities(partition)) + rng.gumbel(size=size)
        return np.argpartition(-keys, n - 1)[:n].astype(np.int64)

    def sample(self, n_policy: int, n_mutated: int, rng: np.random.Generator) -> SampledBatch:
        """``n_policy`` policy and ``n_mutated`` mutated entries, shuffled together."""
        rows = [
            self.sample_rows("policy", n_policy, rng),
            self.sample_rows("mutated", n_mutated, rng),
        ]
        which = np.concatenate([np.full(len(r), k, np.int8) for k, r in enumerate(rows)])
        input_ids: list[np.ndarray] = []
        label_ids: list[np.ndarray] = []
        for name, part_rows in zip(PARTITIONS, rows):
            ins, labs = self._views(name, part_rows)
            input_ids += ins
            label_ids += labs
        perm = rng.permutation(len(which))
        order = perm.tolist()
        return SampledBatch(
            partition=which[perm],
            rows=np.concatenate(rows)[perm],
            input_ids=[input_ids[i] for i in order],
            label_ids=[label_ids[i] for i in order],
        )

    def _views(self, partition: str, rows: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        part = self._parts[partition]
        tokens = part.tokens.view()
        tokens.flags.writeable = False
        cols = part.cols
        s_in, l_in = cols["input_start"][rows].tolist(), cols["input_length"][rows].tolist()
        s_lab, l_lab = cols["label_start"][rows].tolist(), cols["label_length"][rows].tolist()
        ins = [tokens[s : s + n] for s, n in zip(s_in, l_in)]
        labs = [tokens[s : s + n] for s, n in zip(s_lab, l_lab)]
        return ins, labs

    # ------------------------------------------------------------------ inspection

    def entries(self, partition: str) -> Iterator[Entry]:
        """Every entry of a partition, by row."""
        pri = self.priorities(partition)
        for row in range(self._part(partition).size):
            yield self._entry(partition, row, float(pri[row]))

    def programs(self, partition: str) -> list[str]:
        """The program text of every entry of a partition, by row."""
        part = self._part(partition)
        return part.programs[: part.size]

    def get(self, partition: str, parent_key: str, program: str) -> Entry | None:
        """The entry with this key, or None."""
        row = self._part(partition).index.get((parent_key, program))
        if row is None:
            return None
        return self._entry(partition, row, float(self.priorities(partition)[row]))

    def _entry(self, partition: str, row: int, priority: float) -> Entry:
        part = self._parts[partition]
        cols = part.cols
        (ins,), (labs,) = self._views(partition, np.array([row]))
        return Entry(
            partition=partition,
            parent_key=part.parent_keys[row],
            program=part.programs[row],
            input_ids=tuple(ins.tolist()),
            label_ids=tuple(labs.tolist()),
            performance=float(cols["performance"][row]),
            program_length=int(cols["program_length"][row]),
            age=int(cols["age"][row]),
            distance=float(cols["distance"][row]),
            priority=priority,
            origin=_origin(partition, int(cols["seed"][row])),
        )

    # ------------------------------------------------------------------ serialisation

    def state_dict(self) -> dict[str, Any]:
        """``{"meta": JSON-able dict, "arrays": {partition: {name: np.ndarray}}}``."""
        arrays = {name: part.state_arrays() for name, part in self._parts.items()}
        meta = {"version": _STATE_VERSION, "config": asdict(self.config), "now": self.now}
        return {"meta": meta, "arrays": arrays}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> ReplayBuffer:
        """Rebuild a buffer from `state_dict` output; ValueError on anything inconsistent."""
        try:
            meta, arrays = state["meta"], state["arrays"]
            version = meta["version"]
            config = BufferConfig(**meta["config"])
            now = int(meta["now"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a replay buffer state (missing {e})") from e
        if version != _STATE_VERSION:
            raise ValueError(f"replay buffer state version {version}, expected {_STATE_VERSION}")
        buffer = cls(config)
        buffer.now = now
        for name in PARTITIONS:
            if name not in arrays:
                raise ValueError(f"replay buffer state has no partition {name!r}")
            buffer._restore_partition(name, arrays[name])
        return buffer

    def _restore_partition(self, name: str, cols: Mapping[str, Any]) -> None:
        """A state without the seed column predates it: seeds of its mutated partition were
        not marked, so those entries are restored as unknown (`TaskCounts`)."""
        unmarked = SEED_UNKNOWN if name == "mutated" else NOT_SEED
        self._parts[name].restore(name, cols, unmarked)


def _origin(partition: str, seed: int) -> str:
    if partition == "policy":
        return "policy"
    return {SEED: "seed", NOT_SEED: "mutated"}.get(seed, "unknown")


__all__ = [
    "ORIGINS",
    "PARTITIONS",
    "BufferConfig",
    "Entry",
    "NewEntry",
    "ReplayBuffer",
    "SampledBatch",
    "TaskCounts",
]
