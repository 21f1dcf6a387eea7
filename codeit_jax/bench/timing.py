"""Timing shared by the benchmarks: repeat a callable, its median and spread, a noise flag.

One timing says little on a shared machine: another process can slow any single run, and a
"best of" hides how much the runs disagreed. So each side of a comparison is timed several
times and reported as its median (what a comparison uses) with its spread, (max - min) /
median. A run in which any side spreads more than `NOISY_SPREAD` is flagged ``noisy``, so its
figures can be discarded or re-measured instead of quoted. The 1-minute load average before
and after says how busy the machine was.

The matmul peak is the exception to the median: it is the best of its timings (what the
hardware can do when nothing interferes), and its spread is reported (``peak_spread``) but does
not make a run noisy. On the 2-core development machine the peak's timings spread 15-25%
within a quiet run while its best moved a few percent between runs (docs/benchmarks.md), so
counting it flagged every run and the flag said nothing about the sides. This module
imports JAX only when used: benchmarks that time plain Python in this process (the sandbox's)
must not carry JAX's objects through their garbage collections.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from codeit_jax import block_cache

#: A side whose spread exceeds this makes the run ``noisy``.
NOISY_SPREAD = 0.15


def spread(values: Sequence[float]) -> float:
    """(max - min) / median: 0 when every value agrees; inf for a zero median with differences."""
    if not values:
        raise ValueError("no values")
    middle = statistics.median(values)
    width = max(values) - min(values)
    if middle == 0:
        return 0.0 if width == 0 else float("inf")
    return width / abs(middle)


@dataclasses.dataclass(frozen=True)
class Timings:
    """Seconds of repeated runs of the same work."""

    seconds: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.seconds:
            raise ValueError("no timings")

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def worst(self) -> float:
        return max(self.seconds)

    @property
    def spread(self) -> float:
        return spread(self.seconds)

    def __len__(self) -> int:
        return len(self.seconds)

    def summary(self, digits: int = 4) -> dict[str, Any]:
        """The figures a benchmark's JSON keeps of one side."""
        return {
            "median_s": round(self.median, digits),
            "min_s": round(self.best, digits),
            "max_s": round(self.worst, digits),
            "spread": round(self.spread, 4),
            "repeats": len(self.seconds),
        }

    def describe(self, per: str = "") -> str:
        """E.g. ``1.23 s (median of 3; 1.20-1.31, spread 8.9%)`` (``per``: "/step")."""
        return (
            f"{self.median:.3g} s{per} (median of {len(self)}; {self.best:.3g}-{self.worst:.3g}, "
            f"spread {self.spread:.1%})"
        )


def repeat(
    fn: Callable[[], object],
    repeats: int,
    *,
    units: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> Timings:
    """Call ``fn`` ``repeats`` times, timing each call (seconds per unit: ``units`` pieces of
    work per call, e.g. steps dispatched back to back). ``fn`` must wait for its work to finish
    (``block_until_ready``, a device synchronize) or the times are dispatch times."""
    if repeats < 1 or units < 1:
        raise ValueError("repeats and units must be at least 1")
    seconds = []
    for _ in range(repeats):
        start = clock()
        fn()
        seconds.append((clock() - start) / units)
    return Timings(tuple(seconds))


def noisy_sides(spreads: Mapping[str, float], threshold: float = NOISY_SPREAD) -> list[str]:
    """The sides (in the given order) whose spread exceeds ``threshold``."""
    return [side for side, value in spreads.items() if value > threshold]


def noise_fields(spreads: Mapping[str, float], threshold: float = NOISY_SPREAD) -> dict[str, Any]:
    """``noisy``, ``noisy_sides`` and each side's spread, for a benchmark's JSON."""
    sides = noisy_sides(spreads, threshold)
    return {
        "noisy": bool(sides),
        "noisy_sides": sides,
        "noise_threshold": threshold,
        "spreads": {side: round(value, 4) for side, value in spreads.items()},
    }


def finish(
    figures: dict[str, Any], spreads: Mapping[str, float], load_before: float | None
) -> None:
    """Add the noise and load fields to ``figures``, say which sides are noisy, and print the
    JSON line that ends every benchmark."""
    figures.update(noise_fields(spreads))
    figures.update(host_fields())
    figures.update(load_average_before=load_before, load_average_after=load_average())
    noisy = ", ".join(figures["noisy_sides"]) or "none"
    print(
        f"load average {load_before} before, {figures['load_average_after']} after; "
        f"sides spreading over {figures['noise_threshold']:.0%}: {noisy}"
    )
    print(json.dumps(figures))


def host_fields() -> dict[str, Any]:
    """How the process was set up (`codeit_jax.host_process`): its device count, whether
    malloc uses huge pages and whether the large-block cache is loaded, since all three change
    the CPU figures."""
    import jax

    return {
        "devices": jax.device_count(),
        "huge_pages": "glibc.malloc.hugetlb=1" in os.environ.get("GLIBC_TUNABLES", ""),
        "block_cache": block_cache.is_loaded(os.environ),
    }


def load_average() -> float | None:
    """The 1-minute load average (None where the platform has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


class MatmulPeak:
    """The machine's matmul peak (`codeit_jax.policy.flops.matmul_rates`), measured as often as
    `measure` is called -- before and after the timings, so a busy moment does not lower it."""

    def __init__(self, size: int | None = None, dtype: Any = None, repeats: int = 5):
        from codeit_jax.policy.flops import peak_matmul_size

        self.size = peak_matmul_size() if size is None else size
        self.dtype = dtype
        self.repeats = repeats
        self.rates: list[float] = []

    def measure(self) -> None:
        from codeit_jax.policy.flops import matmul_rates

        self.rates += matmul_rates(self.size, self.repeats, self.dtype)

    def add(self, rates: Iterable[float]) -> None:
        self.rates += list(rates)

    @property
    def best(self) -> float:
        """FLOP/s: the best rate."""
        if not self.rates:
            raise ValueError("the peak was not measured")
        return max(self.rates)

    @property
    def spread(self) -> float:
        return spread(self.rates)

    def summary(self) -> dict[str, Any]:
        return {
            "peak_gflops_per_s": round(self.best / 1e9, 2),
            "peak_spread": round(self.spread, 4),
            "peak_measurements": len(self.rates),
            "peak_size": self.size,
        }

    def describe(self) -> str:
        return (
            f"{self.best / 1e9:.1f} GFLOP/s (best of {len(self.rates)}, "
            f"{self.size}^3; spread {self.spread:.1%})"
        )
