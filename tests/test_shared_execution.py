"""Multi-host execution: each process runs its share of a batch and gets every outcome.

Processes are simulated by threads whose all-gather meets at a barrier; the local executor is
a pure stand-in for the sandbox, so every outcome says which program and inputs produced it.
"""

from __future__ import annotations

import threading

import pytest

from codeit_jax.execution.shared import ShareExecutor, merge, share


class Echo:
    """Outcome of (text, inputs) = (text, input, count of runs this executor did)."""

    def __init__(self):
        self.runs = 0

    def run(self, batch):
        self.runs += sum(len(inputs) for _, inputs in batch)
        return [[(text, x) for x in inputs] for text, inputs in batch]


def threaded_allgather(count: int):
    """An all-gather over `count` threads (one per simulated process)."""
    barrier = threading.Barrier(count)
    slots: list = [None] * count
    local = threading.local()

    def gather(data: bytes) -> list[bytes]:
        slots[local.index] = data
        barrier.wait()
        result = list(slots)
        barrier.wait()  # nobody overwrites a slot before everyone has read
        return result

    return gather, local


@pytest.mark.parametrize("total, count", [(0, 2), (1, 3), (7, 3), (12, 4), (5, 1)])
def test_share_and_merge_are_inverse(total, count):
    batch = [(f"p{i}", [i]) for i in range(total)]
    shares = [share(batch, p, count) for p in range(count)]
    assert sorted(item for part in shares for item in part) == sorted(batch)
    assert merge(shares, total) == batch


def test_merge_refuses_shares_of_the_wrong_size():
    with pytest.raises(ValueError, match="share 1"):
        merge([[1, 2], [3, 4]], 3)


@pytest.mark.parametrize("count", [1, 2, 3])
def test_every_process_gets_every_outcome_and_runs_only_its_share(count):
    batch = [(f"x{i}", list(range(1 + i % 4))) for i in range(10)]
    gather, local = threaded_allgather(count)
    results, executors = [None] * count, [Echo() for _ in range(count)]

    def process(index: int) -> None:
        local.index = index
        sharing = ShareExecutor(executors[index], index, count, allgather=gather)
        results[index] = [sharing.run(batch), sharing.run(batch[:1])]

    threads = [threading.Thread(target=process, args=(p,)) for p in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    expected = Echo().run(batch)
    for result in results:
        assert result == [expected, expected[:1]]
    runs = [e.runs for e in executors]
    # Each process runs exactly its own share (batch[:1] falls to process 0).
    for p, n in enumerate(runs):
        assert n == sum(len(x) for _, x in batch[p::count]) + (len(batch[0][1]) if p == 0 else 0)


def test_bad_process_index_is_refused():
    with pytest.raises(ValueError, match="process index"):
        ShareExecutor(Echo(), 2, 2)
