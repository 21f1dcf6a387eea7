"""Executing sampled programs on several hosts: each process runs its share, all get all.

On a multi-host run every process holds the same sampled programs. Rather than each one
executing all of them, process ``p`` of ``P`` runs items ``p, p + P, p + 2P, ...`` of a batch
(round-robin, so the programs of one task, which sit together, are spread over the hosts) in
its own sandbox, and the outcomes are gathered so that every process relabels from the same
complete list. Outcomes travel pickled through `jax.experimental.multihost_utils`; they come
from our own sandbox workers, never from outside.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from codeit_jax.execution.batch import Batch, Executor


def share(batch: Batch, index: int, count: int) -> list[tuple[str, Sequence[Any]]]:
    """The items process ``index`` of ``count`` executes."""
    if not 0 <= index < count:
        raise ValueError(f"process index {index} outside 0..{count - 1}")
    return list(batch[index::count])


def merge(shares: Sequence[Sequence[Any]], total: int) -> list[Any]:
    """Inverse of `share`: item ``i`` comes from share ``i % P``, position ``i // P``."""
    count = len(shares)
    for index, part in enumerate(shares):
        expected = len(range(index, total, count))
        if len(part) != expected:
            raise ValueError(f"share {index} has {len(part)} results, expected {expected}")
    return [shares[i % count][i // count] for i in range(total)]


def allgather_bytes(data: bytes) -> list[bytes]:
    """Every process's ``data``, by process index (a collective: all processes must call)."""
    from jax.experimental import multihost_utils

    lengths = np.asarray(multihost_utils.process_allgather(np.array([len(data)], np.int64)))
    lengths = lengths.reshape(-1)
    padded = np.zeros(max(1, int(lengths.max())), np.uint8)
    padded[: len(data)] = np.frombuffer(data, np.uint8)
    gathered = np.asarray(multihost_utils.process_allgather(padded))
    return [gathered[p, : int(n)].tobytes() for p, n in enumerate(lengths)]


class ShareExecutor:
    """An `Executor` that runs this process's share locally and gathers the others'."""

    def __init__(
        self,
        local: Executor,
        index: int,
        count: int,
        allgather: Callable[[bytes], list[bytes]] = allgather_bytes,
    ):
        if not 0 <= index < count:
            raise ValueError(f"process index {index} outside 0..{count - 1}")
        self.local, self.index, self.count, self.allgather = local, index, count, allgather

    def run(self, batch: Batch) -> list[list[Any]]:
        mine = share(batch, self.index, self.count)
        outcomes = self.local.run(mine) if mine else []
        if self.count == 1:
            return outcomes
        shares = [pickle.loads(payload) for payload in self.allgather(pickle.dumps(outcomes))]
        return merge(shares, len(batch))


def process_executor(local: Executor) -> Executor:
    """``local`` on a single process; a `ShareExecutor` over all processes otherwise."""
    import jax

    if jax.process_count() == 1:
        return local
    return ShareExecutor(local, jax.process_index(), jax.process_count())
