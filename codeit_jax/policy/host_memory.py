"""Huge pages for XLA's large host buffers, to spare the CPU runtime most of its page faults.

XLA's CPU runtime allocates the temporary buffers of every program run anew with ``malloc``.
glibc serves blocks above its mmap threshold (at most 32 MiB; most activations of a train step
are larger) with fresh ``mmap``'d memory and returns it on ``free``, so every run touches its
temporaries again page by page: a train step spends a large part of its time in the kernel,
faulting in and zeroing 4 KiB pages (docs/benchmarks.md has the counts). glibc's
``glibc.malloc.hugetlb=1`` tunable makes ``malloc`` ask for transparent huge pages (2 MiB) on
those blocks, which turns hundreds of thousands of faults into a few thousand.

Tunables are read when a process starts, so `reexec_with_huge_pages` restarts the interpreter
with the tunable set, once, before anything else happens; entry points call it under
``if __name__ == "__main__"``. Set ``CODEIT_HUGE_PAGES=0`` to keep the process as it is.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb=1"
OPT_OUT = "CODEIT_HUGE_PAGES"
THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def huge_page_environment(
    environ: Mapping[str, str], libc: tuple[str, str], thp_setting: str | None
) -> dict[str, str] | None:
    """The environment to restart with, or None where a restart would change nothing: opted
    out, the tunable already set, not glibc 2.35 or later, or transparent huge pages off
    (``never``) or already on for every allocation (``always``)."""
    if environ.get(OPT_OUT) == "0" or "glibc.malloc.hugetlb" in environ.get("GLIBC_TUNABLES", ""):
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
    tunables = ":".join(filter(None, [environ.get("GLIBC_TUNABLES", ""), TUNABLE]))
    return {**environ, "GLIBC_TUNABLES": tunables}


def reexec_with_huge_pages() -> None:
    """Restart this interpreter, same arguments, with the huge-page tunable (no-op where
    `huge_page_environment` says a restart would change nothing). Call it first thing in an
    entry point: the restarted process runs the entry point again from the start."""
    try:
        thp = THP_SETTING.read_text()
    except OSError:
        thp = None
    environ = huge_page_environment(os.environ, platform.libc_ver(), thp)
    if environ is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environ)
