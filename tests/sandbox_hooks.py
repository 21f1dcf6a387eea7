"""Test-only compiler for the sandbox: real DSL programs plus fault-injecting ones.

Passed to ``Sandbox(_compiler="sandbox_hooks:compile_with_hooks")`` by the sandbox tests only;
the production compiler (``codeit_jax.programs.program:parse``) has no way to reach these. A text
``hook:<name>[:<arg>]`` becomes a one-line program whose run misbehaves in a specific way;
any other text is parsed as a normal DSL program.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from codeit_jax.programs.program import Program, ProgramError, parse


def _block_signals_and_sleep(grid: Any, arg: str) -> Any:
    """Stands for a C call that ignores signals: the timer signals cannot get through."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPROF, signal.SIGALRM})
    time.sleep(float(arg or 3600))
    return grid


def _segfault(grid: Any, arg: str) -> Any:
    return ctypes.string_at(0)


def _exit(grid: Any, arg: str) -> Any:
    os._exit(int(arg or 3))


def _allocate(grid: Any, arg: str) -> Any:
    """Allocate ``arg`` MiB at once (MemoryError under the worker's address-space limit)."""
    return bytearray(int(arg) * 1024 * 1024)


def _spin(grid: Any, arg: str) -> Any:
    """Busy Python loop for ``arg`` seconds of CPU time (interruptible by the timer)."""
    end = time.process_time() + float(arg or 3600)
    while time.process_time() < end:
        pass
    return grid


def _spin_in_c(grid: Any, arg: str) -> Any:
    """A C loop that keeps a core busy and does not return to the interpreter for a long
    time (``sum`` over ``10**arg`` integers): the worker is runnable and its CPU time grows,
    but the timer's exception cannot be raised until the loop ends."""
    return sum(range(10 ** int(arg or 12))) and grid


def _swallow_timeouts(grid: Any, arg: str) -> Any:
    """A spin that catches everything once: the timer must fire again and still stop it."""
    with contextlib.suppress(BaseException):  # exactly what hostile code could do
        _spin(grid, arg)
    return _spin(grid, arg)


def _function_in_tuple(grid: Any, arg: str) -> Any:
    return (len, 1, lambda x: x)


def _raise(grid: Any, arg: str) -> Any:
    raise {"KeyError": KeyError, "ZeroDivisionError": ZeroDivisionError}[arg]("hook")


_calls = itertools.count()


def _count_calls(grid: Any, arg: str) -> Any:
    """(pid, n): different for any two runs, so equal outcomes mean one shared run."""
    return (os.getpid(), next(_calls))


def _modules(grid: Any, arg: str) -> Any:
    return frozenset(sys.modules)


def _stall(seconds: float) -> None:
    """Sleep with the timer signals blocked: a C call that takes ``seconds`` (or an hour)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPROF, signal.SIGALRM})
    time.sleep(seconds or 3600)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGPROF, signal.SIGALRM})


class SlowToPickle:
    """A value whose pickling stalls, as exporting a big value on a loaded machine may; it
    unpickles to the grid it holds."""

    def __init__(self, grid: Any, seconds: float) -> None:
        self.grid, self.seconds = grid, seconds

    def __reduce__(self) -> tuple:
        _stall(self.seconds)
        return (tuple, (self.grid,))  # a class: the pickler turns functions into FUNCTION


class SlowToHash:
    """A value whose hash is stuck in C (hashing a huge value); equal to nothing else."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __hash__(self) -> int:
        _stall(self.seconds)
        return 0


class SlowToCompare:
    """A value whose comparison with the expected grid is stuck in C."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __eq__(self, other: object) -> bool:
        _stall(self.seconds)
        return False

    __hash__ = object.__hash__


def _slow_export(grid: Any, arg: str) -> Any:
    return SlowToPickle(grid, float(arg or 3600))


def _slow_hash(grid: Any, arg: str) -> Any:
    return SlowToHash(float(arg or 3600))


def _slow_compare(grid: Any, arg: str) -> Any:
    return SlowToCompare(float(arg or 3600))


def _identity(grid: Any, arg: str) -> Any:
    return grid


HOOKS: dict[str, Callable[[Any, str], Any]] = {
    "block_signals_and_sleep": _block_signals_and_sleep,
    "segfault": _segfault,
    "exit": _exit,
    "allocate": _allocate,
    "spin": _spin,
    "spin_in_c": _spin_in_c,
    "swallow_timeouts": _swallow_timeouts,
    "function_in_tuple": _function_in_tuple,
    "raise": _raise,
    "count": _count_calls,
    "modules": _modules,
    "slow_export": _slow_export,
    "slow_hash": _slow_hash,
    "slow_compare": _slow_compare,
    "identity": _identity,
}


class HookProgram:
    """A 'program' that runs a hook in its first line; text lines after the first are lines
    that do nothing (so a test can give a slow line fast companions)."""

    def __init__(self, name: str, arg: str, lines: int = 1) -> None:
        self.hook = HOOKS[name]
        self.arg = arg
        self.lines = lines

    def __len__(self) -> int:
        return self.lines

    def run(
        self,
        grid: Any,
        max_state_size: int | None = None,
        line_started: Callable[[], object] | None = None,
    ) -> Any:
        if line_started is not None:
            line_started()
        value = self.hook(grid, self.arg)
        for _ in range(self.lines - 1):
            if line_started is not None:
                line_started()
        return value


def compile_with_hooks(text: str) -> Program | HookProgram:
    """``hook:<name>[:<arg>]`` -> HookProgram; anything else -> the real parser.

    ``hook:slow_compile:<seconds>`` stalls for that long while compiling (a parse on a loaded
    machine) and then returns the input.
    """
    if text.startswith("hook:slow_compile:"):
        _stall(float(text.rsplit(":", 1)[1]))
        return HookProgram("identity", "")
    if text.startswith("hook:"):
        first, *rest = text.split("\n")
        _, name, arg = (first.split(":", 2) + [""])[:3]
        if name not in HOOKS:
            raise ProgramError(f"unknown hook {name!r}")
        return HookProgram(name, arg, 1 + len(rest))
    return parse(text)
