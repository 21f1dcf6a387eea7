"""Program execution shared among the processes of a multi-host run.

Every process of a multi-host CodeIt run holds the same sampled programs. Rather than each
running all of them, a `ShardedExecutor` runs its process's share (every ``process_count``-th
program, starting at its ``process_index``, which spreads expensive tasks evenly) in its own
sandbox and gathers the other shares, so every process ends with every outcome, in order, and
relabels identically. Outcomes travel pickled: they come from the run's own processes, never
from outside.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from codeit_jax.inference import Executor

#: Gathers one bytes payload from every process, in process order (the same list everywhere).
Gather = Callable[[bytes], list[bytes]]


def allgather_bytes(payload: bytes) -> list[bytes]:
    """Every process's payload, through JAX's cross-process all-gather (lengths first, then
    the payloads padded to the longest)."""
    import jax
    from jax.experimental import multihost_utils

    lengths = multihost_utils.process_allgather(np.array([len(payload)], dtype=np.int32))
    lengths = np.asarray(lengths).reshape(jax.process_count())
    padded = np.zeros(max(int(lengths.max()), 1), dtype=np.uint8)
    padded[: len(payload)] = np.frombuffer(payload, dtype=np.uint8)
    gathered = np.asarray(multihost_utils.process_allgather(padded))
    return [gathered[p, : int(n)].tobytes() for p, n in enumerate(lengths)]


class ShardedExecutor:
    """An `Executor` that runs this process's share of each batch and gathers the rest.

    Every process must call `run` with the same batch at the same point: it is a collective.
    """

    def __init__(
        self,
        local: Any,
        process_index: int,
        process_count: int,
        gather: Gather = allgather_bytes,
    ) -> None:
        """Args:
        local: this process's executor (a `Sandbox`); closed with this one.
        process_index, process_count: this process's place in the run.
        gather: the all-gather of byte payloads (JAX's by default; tests pass their own).
        """
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index {process_index} not in [0, {process_count})")
        self.local = local
        self.process_index = process_index
        self.process_count = process_count
        self.gather = gather
        self.local_runs = 0  # programs this process executed (for logs and tests)

    def share(self, size: int) -> range:
        """Indices of the batch items this process runs."""
        return range(self.process_index, size, self.process_count)

    def run(self, batch: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        mine = [batch[i] for i in self.share(len(batch))]
        outcomes = self.local.run(mine) if mine else []
        self.local_runs += len(mine)
        payloads = self.gather(pickle.dumps(outcomes, protocol=pickle.HIGHEST_PROTOCOL))
        if len(payloads) != self.process_count:
            raise RuntimeError(
                f"gathered {len(payloads)} shares from {self.process_count} processes"
            )
        result: list[list[Any] | None] = [None] * len(batch)
        for process, payload in enumerate(payloads):
            indices = range(process, len(batch), self.process_count)
            shares = pickle.loads(payload)
            if len(shares) != len(indices):
                raise RuntimeError(
                    f"process {process} returned {len(shares)} outcomes for {len(indices)} programs"
                )
            for i, outcome in zip(indices, shares):
                result[i] = outcome
        return result  # type: ignore[return-value]  # every slot is filled above

    def close(self) -> None:
        close = getattr(self.local, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> ShardedExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_executor(config: Any, open_local: Callable[[Any], Any] | None = None) -> Executor:
    """The executor of a run: the sandbox alone on one process; on several, a sandbox per
    process behind a `ShardedExecutor`. Call after `jax.distributed.initialize`."""
    import jax

    if open_local is None:
        from codeit_jax.codeit import open_sandbox

        open_local = open_sandbox
    local = open_local(config)
    if jax.process_count() == 1:
        return local
    return ShardedExecutor(local, jax.process_index(), jax.process_count())
