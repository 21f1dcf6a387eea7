"""Garbage-collector settings for a sandbox worker's life.

A worker's parse cache keeps thousands of compiled programs alive, and with the interpreter's
default thresholds every full collection walks all of them, many times per batch; every young
collection walks the live containers made since the last one, which a DSL run makes by the
hundred thousand (``product`` of two patches, an upscaled grid's cells). Yet DSL values are
trees of tuples and frozensets, which reference counting frees: on policy-like batches the
collector finds no garbage at all. So a worker freezes what it imported (never garbage),
freezes again after every chunk what survived it (mostly the parse cache's new entries, which
leave the frozen set by reference counting when the cache drops them), and collects far less
often (:data:`GC_THRESHOLDS`). Reference cycles, should a program make any, are still collected
while young, and every :data:`FULL_EVERY` chunks everything is unfrozen and collected once, so
that garbage frozen before it was collected does not pile up.

The sandbox benchmark runs its in-process modes under the same thresholds, so that its
comparison with the sandbox measures isolation and not the collector.

The parent, while it runs a batch, allocates tens of thousands of records (the flattened
runs, the unpickled replies, an `Outcome` per run), all of them acyclic; with the
interpreter's thresholds they set off dozens of young collections and now and then a full one,
which walks the caller's whole heap (a training process's, or a benchmark's) while the workers
wait for the core it takes. So `Sandbox.run` and `Sandbox.match` run with automatic collection
paused (`paused`).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

#: Collector thresholds (the interpreter's defaults are 700, 10, 10): container allocations
#: between young collections, and collections between older ones.
GC_THRESHOLDS = (50_000, 20, 100)

#: Chunks between full collections of everything, frozen objects included (one walks the
#: whole parse cache: tens of milliseconds, once per thousands of runs).
FULL_EVERY = 256


def tune() -> None:
    """At start: freeze what is alive (imports, configuration) and raise the thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def freeze_survivors(chunks: int) -> None:
    """After the ``chunks``-th chunk: keep what survived it out of later collections (and
    collect everything every :data:`FULL_EVERY` chunks)."""
    if chunks % FULL_EVERY == 0:
        gc.unfreeze()
        gc.collect()
    gc.freeze()


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No automatic collection inside; the collector is switched back on after if it was on
    (nested or concurrent uses leave it on once the last that found it on has finished)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
