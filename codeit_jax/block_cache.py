"""Building and loading the large-block cache (``block_cache.c``) that keeps XLA's CPU
temporaries mapped from one program run to the next.

XLA's CPU runtime allocates a run's temporaries as one large block per device and frees it at
the end of the run; glibc maps such blocks fresh and unmaps them on free, so the kernel zeroes
them again every step (the C file's header has the details, docs/benchmarks.md the cost). The
cache is a small C library preloaded into the process (``LD_PRELOAD``): it is compiled once per
source version with the system's C compiler into the user's cache directory. Where there is no
compiler, no glibc, or another allocator is already preloaded (tcmalloc on TPU VMs, for
instance), nothing is loaded and the process runs as before.

Settings (environment): ``CODEIT_BLOCK_CACHE=0`` turns it off; ``CODEIT_BLOCK_CACHE_BYTES`` caps
the bytes of freed blocks kept mapped (default: three quarters of the physical memory).
`release` gives the kept blocks back; the CodeIt loop calls it between its stages.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

SOURCE = Path(__file__).with_name("block_cache.c")
SWITCH = "CODEIT_BLOCK_CACHE"
CAP = "CODEIT_BLOCK_CACHE_BYTES"
#: The compiled library's file name: this prefix, then the source's hash.
PREFIX = "block_cache-"


def check_settings(environ: Mapping[str, str]) -> bool:
    """Whether the cache is wanted; a ValueError names the variable whose value is wrong."""
    switch = environ.get(SWITCH, "1").strip()
    if switch not in ("0", "1"):
        raise ValueError(f"{SWITCH}={switch!r}: expected 0 (off) or 1 (on)")
    cap = environ.get(CAP, "").strip()
    if cap and not (cap.isdigit() and int(cap) < 2**63):
        raise ValueError(f"{CAP}={cap!r}: expected a number of bytes")
    return switch == "1"


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether to preload the cache: it is on (a ValueError names a bad setting) and nothing is
    preloaded yet (two allocators must not share a process)."""
    return check_settings(environ) and not environ.get("LD_PRELOAD", "").strip()


def _preloaded(environ: Mapping[str, str]) -> list[str]:
    return environ.get("LD_PRELOAD", "").replace(":", " ").split()


def _is_ours(entry: str) -> bool:
    return Path(entry).name.startswith(PREFIX)


def is_loaded(environ: Mapping[str, str]) -> bool:
    """Whether ``environ``'s LD_PRELOAD names this cache's library."""
    return any(_is_ours(entry) for entry in _preloaded(environ))


def cache_directory(environ: Mapping[str, str]) -> Path:
    """Where the compiled library is kept: $XDG_CACHE_HOME/codeit_jax or ~/.cache/codeit_jax."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "codeit_jax"


def build(directory: Path, compiler: str | None = None) -> Path | None:
    """The compiled library for this source under ``directory``, compiling it if needed; None
    (and one line on stderr) where it cannot be built. Safe when processes race: each compiles
    to its own file and renames it into place."""
    source = SOURCE.read_bytes()
    target = directory / f"{PREFIX}{hashlib.sha256(source).hexdigest()[:16]}.so"
    if target.exists():
        return target
    compiler = compiler or os.environ.get("CC") or "cc"
    if shutil.which(compiler) is None:
        print(f"note: no C compiler ({compiler}): the large-block cache is off", file=sys.stderr)
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory) as scratch:
            built = Path(scratch) / target.name
            command = [compiler, "-O2", "-shared", "-fPIC", "-o", str(built), str(SOURCE), "-ldl",
                       "-lpthread"]  # fmt: skip
            result = subprocess.run(command, capture_output=True, text=True, timeout=120)
            if result.returncode != 0:
                first = (result.stderr.strip().splitlines() or ["no message"])[0]
                print(f"note: {SOURCE.name} did not compile ({first}): the large-block cache "
                      "is off", file=sys.stderr)  # fmt: skip
                return None
            os.replace(built, target)
    except (OSError, subprocess.SubprocessError) as error:
        print(f"note: the large-block cache is off ({error})", file=sys.stderr)
        return None
    return target


def without_preload(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` with this cache taken out of LD_PRELOAD, for child processes that must not
    keep freed memory: the sandbox's workers, whose address-space limit would count the kept
    blocks, so that one program's allocations could make a later one fail."""
    kept = [e for e in _preloaded(environ) if not _is_ours(e)]
    child = {k: v for k, v in environ.items() if k != "LD_PRELOAD"}
    if kept:
        child["LD_PRELOAD"] = " ".join(kept)
    return child


def preload(environ: Mapping[str, str], library: Path | None) -> dict[str, str] | None:
    """LD_PRELOAD with the library, or None where it is off, missing or another library is
    already preloaded (two allocators must not share a process)."""
    if library is None or not wanted(environ):
        return None
    return {"LD_PRELOAD": str(library)}


@functools.cache
def _release_function() -> Callable[[], None] | None:
    try:
        return ctypes.CDLL(None).codeit_block_cache_release
    except (AttributeError, OSError):  # not preloaded, or no dynamic loader (Windows)
        return None


def release() -> None:
    """Unmap every freed block the cache keeps (nothing where it is not loaded): between
    stages that need different memory, such as training and running the sandbox's workers."""
    function = _release_function()
    if function is not None:
        function()
