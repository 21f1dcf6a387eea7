"""What a sandbox batch spent its time on: per-item times, per-worker busy and idle time, chunk
sizes, steals and restarts with their causes.

The scheduler fills a :class:`BatchStats` as it goes (``Sandbox.last_stats`` holds the latest
batch's), so that a slow batch can be explained instead of guessed at: a pool that scales badly
shows a worker idle while another is busy, and its tail (the slowest items) says which program
held that worker. Item times are measured inside the worker around the whole item (parse, run,
export), in wall-clock and CPU seconds; an item lost with its worker has the wall time from
its start to the worker's death and no CPU time (NaN).

Only cheap bookkeeping happens here: a few additions per chunk and two floats per item.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from typing import Any

#: Restart causes (``Restart.cause``).
WATCHDOG = "watchdog"  # killed by the parent: a run was past its hard wall-clock deadline
CRASH_IN_RUN = "crash"  # died during an item (signal or exit status in the detail)
BETWEEN_ITEMS = "between_items"  # died outside any item (reading, replying, ...)
START = "start"  # failed to start, or not ready in time


@dataclasses.dataclass
class Restart:
    """A worker that died or was killed during a batch, and what replacing it cost."""

    cause: str  # one of the causes above
    detail: str  # "worker killed by SIGSEGV", "stuck past its hard deadline", ...
    lane: int  # the worker's lane (its replacement takes the same one)
    item: int | None  # the item in progress, None when outside any item
    at_s: float  # seconds into the batch
    item_s: float | None  # how long the item in progress had been running (wall-clock)
    spawn_s: float = 0.0  # parent's time spent starting the replacement process
    ready_s: float | None = None  # from the death until the replacement was ready (None: after
    # the batch ended, so the batch did not wait for it)

    def summary(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in ("at_s", "item_s", "spawn_s", "ready_s"):
            if out[key] is not None:
                out[key] = round(out[key], 4)
        return out


@dataclasses.dataclass
class Lane:
    """One worker position of the pool, across replacements."""

    busy_s: float = 0.0  # seconds with a chunk outstanding
    starting_s: float = 0.0  # seconds a (replacement) worker spent starting
    cpu_s: float = 0.0  # CPU seconds its workers reported for the chunks they answered
    chunks: int = 0
    items: int = 0  # items answered
    stolen_from: int = 0  # items other workers took from its chunks
    steals: int = 0  # times it took items from another worker's chunk


class BatchStats:
    """Bookkeeping of one :meth:`Sandbox.run` or :meth:`Sandbox.match` call."""

    def __init__(self, items: int, workers: int, start: float) -> None:
        self.items = items
        self.workers = workers
        self.start = start
        self.wall_s = 0.0
        self.item_wall = [math.nan] * items
        self.item_cpu = [math.nan] * items
        self.item_lane = [-1] * items
        self.lanes = [Lane() for _ in range(workers)]
        self.chunk_sizes: list[int] = []
        self.steals = 0
        self.duplicates = 0  # items run twice: a worker went on past a steal it had not seen
        self.restarts: list[Restart] = []
        self.sources: list[tuple[int, int]] = []  # item -> (program, input) of Sandbox.run

    def set_sources(self, shape: list[list[int]]) -> None:
        """For :meth:`Sandbox.run`: each item's first (program index, input index)."""
        sources: list[tuple[int, int] | None] = [None] * self.items
        for i, row in enumerate(shape):
            for j, item in enumerate(row):
                if sources[item] is None:
                    sources[item] = (i, j)
        self.sources = sources  # type: ignore[assignment]

    # ------------------------------------------------------------------ recording

    def answered(
        self, lane: int, chunk: list[int], times: list[float], busy_s: float, cpu_s: float
    ) -> None:
        """A worker answered ``chunk`` (``times``: wall, CPU per item it ran, maybe more
        than ``chunk`` when it ran past a steal)."""
        record = self.lanes[lane]
        record.busy_s += busy_s
        record.cpu_s += cpu_s
        record.chunks += 1
        record.items += len(chunk)
        self.duplicates += max(0, len(times) // 2 - len(chunk))
        for position, item in enumerate(chunk):
            self.item_wall[item] = times[2 * position]
            self.item_cpu[item] = times[2 * position + 1]
            self.item_lane[item] = lane

    def died(
        self,
        lane: int,
        cause: str,
        detail: str,
        item: int | None,
        item_started: float,
        busy: bool,
        since: float,
    ) -> None:
        """A worker of ``lane`` died or was killed, busy since ``since`` (its chunk was sent)
        or starting since then; ``item``: the item it was in, started at ``item_started``."""
        now = time.monotonic()
        if busy:
            self.lanes[lane].busy_s += now - since
        else:
            self.lanes[lane].starting_s += now - max(since, self.start)
        item_s = None if item is None or math.isnan(item_started) else now - item_started
        if item is not None:
            self.item_wall[item] = math.nan if item_s is None else item_s
            self.item_lane[item] = lane
        self.restarts.append(Restart(cause, detail, lane, item, now - self.start, item_s))

    def _open_restart(self, lane: int) -> Restart | None:
        """The last restart of ``lane`` whose replacement is not ready yet."""
        for restart in reversed(self.restarts):
            if restart.lane == lane:
                return restart if restart.ready_s is None else None
        return None

    def spawned(self, lane: int, seconds: float) -> None:
        """A replacement for ``lane`` was started; starting it took the parent ``seconds``."""
        restart = self._open_restart(lane)
        if restart is not None:
            restart.spawn_s = seconds

    def ready(self, lane: int, started_at: float, now: float) -> None:
        """The worker of ``lane`` started at ``started_at`` is ready at ``now``."""
        self.lanes[lane].starting_s += now - max(started_at, self.start)
        restart = self._open_restart(lane)
        if restart is not None:
            restart.ready_s = now - self.start - restart.at_s

    # ------------------------------------------------------------------ reading

    def idle_s(self, lane: int) -> float:
        """Seconds the lane had a ready worker but no work."""
        record = self.lanes[lane]
        return max(0.0, self.wall_s - record.busy_s - record.starting_s)

    def tail(self, n: int) -> list[dict[str, Any]]:
        """The ``n`` slowest items by wall-clock time: item, seconds, CPU seconds, lane."""
        timed = [k for k in range(self.items) if not math.isnan(self.item_wall[k])]
        timed.sort(key=lambda k: self.item_wall[k], reverse=True)
        return [
            {
                "item": k,
                "source": self.sources[k] if self.sources else None,
                "wall_s": round(self.item_wall[k], 4),
                "cpu_s": None if math.isnan(self.item_cpu[k]) else round(self.item_cpu[k], 4),
                "lane": self.item_lane[k],
            }
            for k in timed[:n]
        ]

    def summary(self) -> dict[str, Any]:
        """The figures a benchmark keeps (times rounded; no per-item lists)."""
        walls = sorted(w for w in self.item_wall if not math.isnan(w))
        sizes = self.chunk_sizes
        return {
            "items": self.items,
            "wall_s": round(self.wall_s, 4),
            "item_wall_s": distribution(walls),
            "item_wall_s_total": round(sum(walls), 4),
            "lanes": [
                {
                    "busy_s": round(lane.busy_s, 4),
                    "idle_s": round(self.idle_s(k), 4),
                    "starting_s": round(lane.starting_s, 4),
                    "cpu_s": round(lane.cpu_s, 4),
                    "chunks": lane.chunks,
                    "items": lane.items,
                    "stolen_from": lane.stolen_from,
                    "steals": lane.steals,
                }
                for k, lane in enumerate(self.lanes)
            ],
            "chunks": len(sizes),
            "chunk_size": {
                "min": min(sizes, default=0),
                "median": statistics.median(sizes) if sizes else 0,
                "max": max(sizes, default=0),
            },
            "steals": self.steals,
            "duplicates": self.duplicates,
            "restarts": [r.summary() for r in self.restarts],
        }


def distribution(sorted_values: list[float]) -> dict[str, float]:
    """Median, 90th, 99th and 99.9th percentiles and the maximum of sorted values ({} if none)."""
    if not sorted_values:
        return {}
    n = len(sorted_values)

    def at(q: float) -> float:
        return round(sorted_values[min(n - 1, int(q * n))], 6)

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "p999": at(0.999), "max": at(1.0)}
