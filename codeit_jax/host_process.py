"""How an entry point's process is set up before JAX starts: one XLA CPU device per core, huge
pages for XLA's large host buffers, and a cache that keeps those buffers mapped between runs.

**CPU devices.** On a CPU, XLA runs one program per device; inside it only the large matmuls
use every core, while the many small operations of a decoder step or a train step (attention
over a cache, softmax, sampling, dropout masks, fusions) run on one thread and the other cores
wait. With one host device per core the batch is split over the ``data`` mesh axis as on
several accelerators, and each device runs its share of those small operations at the same
time as the others. ``CODEIT_CPU_DEVICES`` sets the count: ``auto`` (the default) is one per
core this process may use, at most `MAX_AUTO_CPU_DEVICES` so that the CPU configs' batches
(multiples of 16) still give every device two rows or more; ``1`` keeps XLA's single device.
An ``--xla_force_host_platform_device_count`` already in ``XLA_FLAGS`` wins (the tests set 8).
Only the CPU backend reads the flag: on a GPU or TPU host it changes nothing.

**Huge pages.** XLA's CPU runtime allocates the temporary buffers of every program run anew
with ``malloc``. glibc serves blocks above its mmap threshold (at most 32 MiB; most
activations of a train step are larger) with fresh ``mmap``'d memory and returns it on
``free``, so every run touches its temporaries again page by page: a train step spends a large
part of its time in the kernel, faulting in and zeroing 4 KiB pages (docs/benchmarks.md has the
counts). glibc's ``glibc.malloc.hugetlb=1`` tunable makes ``malloc`` ask for transparent huge
pages (2 MiB) on those blocks, which turns hundreds of thousands of faults into a few thousand.
``CODEIT_HUGE_PAGES=0`` leaves the tunable out.

**Large-block cache.** Huge pages make the faults fewer, not the zeroing: every run of a
program still maps its temporaries fresh and the kernel zeroes them, gigabytes a train step.
`codeit_jax.block_cache` preloads a small allocator that keeps freed large blocks mapped and
hands them to the next run (``CODEIT_BLOCK_CACHE=0`` turns it off).

All three are read when a process starts, so `prepare_process` restarts the interpreter with them,
once, before anything else happens; entry points call it under ``if __name__ ==
"__main__"``, so library use and in-process tests keep the environment they were given.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path

from codeit_jax import block_cache

CPU_DEVICES = "CODEIT_CPU_DEVICES"
HUGE_PAGES = "CODEIT_HUGE_PAGES"
MAX_AUTO_CPU_DEVICES = 8
DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
TUNABLE = "glibc.malloc.hugetlb=1"
THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def cpu_device_count(environ: Mapping[str, str], cores: int) -> int:
    """The XLA CPU devices ``CODEIT_CPU_DEVICES`` asks for on a host with ``cores`` usable
    cores; a ValueError names the variable when its value is neither ``auto`` nor a positive
    integer."""
    value = environ.get(CPU_DEVICES, "auto").strip()
    if value == "auto":
        return max(1, min(cores, MAX_AUTO_CPU_DEVICES))
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"{CPU_DEVICES}={value!r}: expected 'auto' or a positive integer")
    return count


def _with_device_count(environ: Mapping[str, str], count: int) -> dict[str, str] | None:
    """XLA_FLAGS with the device count added, or None where nothing changes."""
    flags = environ.get("XLA_FLAGS", "")
    if DEVICE_COUNT_FLAG in flags or count == 1:
        return None
    return {"XLA_FLAGS": f"{flags} {DEVICE_COUNT_FLAG}={count}".strip()}


def _with_huge_pages(
    environ: Mapping[str, str], libc: tuple[str, str], thp_setting: str | None
) -> dict[str, str] | None:
    """GLIBC_TUNABLES with the huge-page tunable added, or None where it would change nothing:
    opted out, already set, not glibc 2.35 or later, or transparent huge pages off (``never``)
    or already on for every allocation (``always``)."""
    tunables = environ.get("GLIBC_TUNABLES", "")
    if environ.get(HUGE_PAGES) == "0" or "glibc.malloc.hugetlb" in tunables:
        return None
    name, version = libc
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return None
    if name != "glibc" or (major, minor) < (2, 35):
        return None
    if thp_setting is None or "[madvise]" not in thp_setting:
        return None
    return {"GLIBC_TUNABLES": ":".join(filter(None, [tunables, TUNABLE]))}


def process_environment(
    environ: Mapping[str, str],
    libc: tuple[str, str],
    thp_setting: str | None,
    cores: int,
    block_cache_library: Path | None = None,
) -> dict[str, str] | None:
    """The environment to restart with, or None where a restart would change nothing.
    ``block_cache_library``: the built large-block cache, None where there is none."""
    changes = {
        **(_with_device_count(environ, cpu_device_count(environ, cores)) or {}),
        **(_with_huge_pages(environ, libc, thp_setting) or {}),
        **(block_cache.preload(environ, block_cache_library) or {}),
    }
    return {**environ, **changes} if changes else None


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def wants_block_cache(environ: Mapping[str, str], libc: tuple[str, str]) -> bool:
    """Whether to build and preload the large-block cache: Linux with glibc, not turned off,
    nothing preloaded yet (a ValueError names a bad setting)."""
    return block_cache.wanted(environ) and sys.platform.startswith("linux") and libc[0] == "glibc"


def prepare_process() -> None:
    """Restart this interpreter, same arguments, with the CPU device count, the huge-page
    tunable and the large-block cache (no restart where `process_environment` says nothing
    would change). Call it first thing in an entry point: the restarted process runs the entry
    point again from the start. A bad ``CODEIT_CPU_DEVICES``, ``CODEIT_BLOCK_CACHE`` or
    ``CODEIT_BLOCK_CACHE_BYTES`` ends the process with one line and exit status 2."""
    try:
        thp = THP_SETTING.read_text()
    except OSError:
        thp = None
    libc, cores = platform.libc_ver(), usable_cores()
    try:
        cpu_device_count(os.environ, cores)  # every setting checked before anything is built
        library = None
        if wants_block_cache(os.environ, libc):
            library = block_cache.build(block_cache.cache_directory(os.environ))
        environ = process_environment(os.environ, libc, thp, cores, library)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if environ is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environ)
