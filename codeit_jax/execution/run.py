"""Running one DSL program on one input under a time budget, with a compact result record.

This is the part of the sandbox that executes code; it runs inside every sandbox worker and in
:func:`codeit_jax.execution.batch.run_in_process`, so both give the same outcomes. It imports
only the
program parser (and through it the DSL): workers must start fast and must never pull in JAX.

A run yields a *record*, a plain tuple that pickles small: ``(None, payload)`` for success,
where ``payload`` is the value of ``O`` pickled by :func:`encode_value`, or ``(kind, detail)``
for a failure, ``kind`` being one of the error kinds below.

Output size: CodeIt's length rule (``max_state_size``) does not keep a value small. A few
frozensets of many cells each (``partition`` of an upscaled grid) pass it, and such values
unpickle to many times their pickled size, because every cell becomes tuple and set-table
objects of its own. So the value of ``O`` is measured before it is pickled, by
:func:`value_size`, an estimate of the memory its unpickled copy takes in the parent, and refused
(``output_size``) past ``max_output_bytes``; the default leaves room for any valid ARC grid.

Time budget: ``timeout_s`` seconds for each line, as CodeIt times each line on its own (0.25 s): a
line that runs longer fails the run, whatever the others took. It is enforced by one interval
timer, restarted before every line (``Program.run``'s ``line_started``; one ``setitimer`` call a
line), whose signal raises :class:`RunTimeout` between bytecodes. A run therefore takes at most
``timeout_s * len(program)`` (`ProgramRunner.budget`, what the parent's watchdog allows for). By
default the timer counts the worker's CPU time (``ITIMER_PROF``), not wall-clock time as CodeIt
does, so that a busy shared machine does not turn slow-but-valid runs into timeouts and outcomes
stay reproducible; ``clock="wall"`` gives CodeIt's behaviour. A C call that never returns to the
interpreter cannot be interrupted this way: that is what the parent's hard watchdog is for (see
:mod:`codeit_jax.execution.sandbox`).
"""

from __future__ import annotations

import functools
import importlib
import pickle
import signal
import sys
import threading
import types
from collections.abc import Callable
from typing import Any, Protocol

from codeit_jax.programs.program import ProgramError, StateSizeError, parse

#: Error kinds of an :class:`~codeit_jax.execution.batch.Outcome` (``Outcome.error``).
SYNTAX = "syntax"  # the text is not a valid program (detail: the parser's message)
RUNTIME = "runtime"  # the program raised (detail: the exception type name)
TIMEOUT = "timeout"  # the run used up its time budget or was killed by the watchdog
MEMORY = "memory"  # MemoryError, normally from the worker's address-space limit
STATE_SIZE = "state_size"  # CodeIt's rule: a needed value was too long to keep
CRASH = "crash"  # the worker process died during the run (segfault, abort, ...)
OUTPUT_SIZE = "output_size"  # the value of O is too large to send back to the parent
ERROR_KINDS: tuple[str, ...] = (SYNTAX, RUNTIME, TIMEOUT, MEMORY, STATE_SIZE, CRASH, OUTPUT_SIZE)

#: Default cap on the size of a returned value, in memory (:func:`value_size`) and pickled. A
#: 30 x 30 grid, the largest valid ARC grid, takes under 9 KB; the cap stops pathological values
#: from flooding the pipe and the parent's memory, which holds thousands of outcomes at a time.
DEFAULT_MAX_OUTPUT_BYTES = 32 * 1024

#: Program-text cache entries kept per executor (oldest evicted first).
CACHE_SIZE = 4096

Record = tuple[str | None, Any]


class FunctionValue:
    """The marker returned in place of a function value, which cannot leave the worker.

    There is exactly one instance, :data:`FUNCTION`; it survives pickling as itself, so callers
    can test ``outcome.value is FUNCTION``.
    """

    __slots__ = ()
    _instance: FunctionValue | None = None

    def __new__(cls) -> FunctionValue:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __reduce__(self) -> tuple[Callable[[], FunctionValue], tuple[()]]:
        return (_function_marker, ())

    def __repr__(self) -> str:
        return "<function value>"


FUNCTION = FunctionValue()


def _function_marker() -> FunctionValue:
    """Unpickling target of :data:`FUNCTION`."""
    return FUNCTION


_FUNCTION_TYPES = (
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    functools.partial,
)


class OutputTooLarge(Exception):
    """A value over the output cap, found before or while pickling it."""


_CONTAINERS = (tuple, frozenset, set, list)


def value_size(value: Any, limit: int) -> int:
    """The memory ``value`` takes once unpickled in the parent, estimated; stops past ``limit``.

    The sum of ``sys.getsizeof`` over its parts as pickle copies them: a container reached
    twice is one object (pickle's memo keeps the sharing), an int or float is a new object at
    every occurrence, and shared singletons (small ints, bools, None, and functions, which come
    back as :data:`FUNCTION`) cost nothing. A container's own size counts before its items are
    looked at, and the walk ends as soon as the total passes ``limit``, so measuring a huge value
    costs about as much as measuring one of ``limit`` bytes.
    """
    total = 0
    seen: set[int] = set()
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        kind = type(item)
        if kind is int:
            if not -5 <= item <= 256:  # CPython's cached small ints
                total += sys.getsizeof(item)
        elif kind in _CONTAINERS:
            if id(item) in seen:
                continue
            seen.add(id(item))
            total += sys.getsizeof(item)
            if total <= limit and item:
                total += _items(item, stack)
        elif kind is dict:
            if id(item) not in seen:
                seen.add(id(item))
                total += sys.getsizeof(item)
                if total <= limit:
                    stack.extend(item.keys())
                    stack.extend(item.values())
        elif item is not None and kind is not bool and not isinstance(item, _FUNCTION_TYPES):
            total += sys.getsizeof(item)
    return total


def _items(container: Any, stack: list[Any]) -> int:
    """Size of a container's items if they are all ints (a grid row: the common case, counted
    without a Python-level loop); otherwise 0 and the items are pushed onto ``stack``."""
    if set(map(type, container)) == {int}:
        if min(container) >= -5 and max(container) <= 256:
            return 0
        return sum(map(sys.getsizeof, container))  # counts cached ints too: an overestimate
    stack.extend(container)
    return 0


class _CappedWriter:
    """A file-like sink for the pickler that stops pickling once the cap is exceeded.

    Pickling stops early instead of first building a huge byte string, so a giant value costs
    time only up to the cap.
    """

    __slots__ = ("cap", "size", "parts")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.size = 0
        self.parts: list[bytes] = []

    def write(self, data: Any) -> int:
        self.size += len(data)
        if self.size > self.cap:
            raise OutputTooLarge(f"the value of O pickles to more than {self.cap} bytes")
        self.parts.append(bytes(data))
        return len(data)


class _ValuePickler(pickle.Pickler):
    """Pickles DSL values; every function, at any depth, becomes :data:`FUNCTION`."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _FUNCTION_TYPES) and obj is not _function_marker:
            return (_function_marker, ())
        return NotImplemented


def encode_value(value: Any, max_bytes: int = DEFAULT_MAX_OUTPUT_BYTES) -> bytes:
    """Pickle a run's value for the trip to the parent; raises OutputTooLarge past the cap,
    which applies to its estimated size in the parent's memory and to its pickled size."""
    size = value_size(value, max_bytes)
    if size > max_bytes:
        raise OutputTooLarge(f"the value of O takes more than {max_bytes} bytes in memory")
    writer = _CappedWriter(max_bytes)
    _ValuePickler(writer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return b"".join(writer.parts)


def decode_value(payload: bytes) -> Any:
    """The value back from :func:`encode_value` (trusted input: it comes from our own worker)."""
    return pickle.loads(payload)


class Compiled(Protocol):
    """What a compiler returns: :class:`codeit_jax.programs.program.Program` fits."""

    def __len__(self) -> int: ...

    def run(
        self,
        grid: Any,
        max_state_size: int | None = None,
        line_started: Callable[[], object] | None = None,
    ) -> Any: ...


Compiler = Callable[[str], Compiled]

#: The compiler used unless a test substitutes another (see :func:`load_compiler`).
DEFAULT_COMPILER = "codeit_jax.programs.program:parse"


def load_compiler(spec: str) -> Compiler:
    """Import ``"module:function"``; only ever called with a spec given by Python code.

    Tests substitute a compiler that adds fault-injecting programs; the spec comes from the
    Sandbox constructor, never from program text, so program text cannot reach such hooks.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"compiler spec must look like 'module:function', got {spec!r}")
    function = getattr(importlib.import_module(module_name), attribute)
    if not callable(function):
        raise TypeError(f"compiler {spec!r} is not callable")
    return function


class RunTimeout(BaseException):
    """Raised by the timer signal inside a run; a BaseException so DSL code cannot swallow it."""


_CLOCKS = {
    "cpu": (signal.ITIMER_PROF, signal.SIGPROF),
    "wall": (signal.ITIMER_REAL, signal.SIGALRM),
}


class RunTimer:
    """A time budget enforced by an interval timer that raises :class:`RunTimeout`; `restart`
    gives it a new budget from now (the next line's).

    The timer re-fires every ``repeat_s`` after the budget in case a handler-raised exception is
    caught somewhere inside the run. The handler raises only while a run is armed, so a signal
    that arrives just after a run finished is ignored. Signals need the main thread; elsewhere
    (``enabled`` is False) runs are not time-limited.
    """

    def __init__(self, clock: str = "cpu", repeat_s: float = 0.05) -> None:
        if clock not in _CLOCKS:
            raise ValueError(f"clock must be one of {sorted(_CLOCKS)}, got {clock!r}")
        self.which, self.signum = _CLOCKS[clock]
        self.clock = clock
        self.repeat_s = repeat_s
        self.armed = False
        self.enabled = threading.current_thread() is threading.main_thread()
        self._previous: Any = None
        if self.enabled:
            self._previous = signal.signal(self.signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.armed:
            raise RunTimeout

    def start(self, seconds: float) -> None:
        if self.enabled:
            self.armed = True
            signal.setitimer(self.which, seconds, self.repeat_s)

    def restart(self, seconds: float) -> None:
        """A new budget of ``seconds`` from now, the timer staying armed."""
        if self.enabled:
            signal.setitimer(self.which, seconds, self.repeat_s)

    def stop(self) -> None:
        if self.enabled:
            self.armed = False
            signal.setitimer(self.which, 0)

    def restore(self) -> None:
        """Disarm and put back the previous signal handler (for in-process use)."""
        if self.enabled:
            self.stop()
            signal.signal(self.signum, self._previous)


class ProgramRunner:
    """Runs (text, grid) pairs; parses each distinct text once (bounded cache).

    Policy samples repeat texts and every text runs on several inputs, so caching the parse
    (and with it the compiled slot form) saves most of the per-run setup.
    """

    def __init__(
        self,
        *,
        timeout_s: float,
        max_state_size: int | None,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        clock: str = "cpu",
        compiler: Compiler = parse,
    ) -> None:
        self.timeout_s = timeout_s
        self.max_state_size = max_state_size
        self.max_output_bytes = max_output_bytes
        self.timer = RunTimer(clock)
        # Called before every line of a run: the line's own budget (None: no timer here).
        self._next_line = (
            functools.partial(self.timer.restart, timeout_s) if self.timer.enabled else None
        )
        self.compiler = compiler
        self._cache: dict[str, Compiled | Record] = {}

    def compile(self, text: str) -> Compiled | Record:
        """The compiled program, or the failure record of every run of it (cached either way)."""
        cached = self._cache.get(text)
        if cached is not None:
            return cached
        try:
            cached = self.compiler(text)
        except ProgramError as error:
            cached = (SYNTAX, str(error) or "invalid program")
        except MemoryError:
            cached = (MEMORY, "MemoryError")
        except Exception as error:  # a parser bug must not take the worker down
            cached = (RUNTIME, type(error).__name__)
        if len(self._cache) >= CACHE_SIZE:
            del self._cache[next(iter(self._cache))]
        self._cache[text] = cached
        return cached

    def budget(self, program: Compiled) -> float:
        """The most a run can take: ``timeout_s`` for each of its lines."""
        return self.timeout_s * max(1, len(program))

    def execute(self, program: Compiled | Record, grid: Any) -> Record:
        """Run a compiled program on one grid (a failure record from compile passes through)."""
        return self.export(self.run(program, grid))

    def run(self, program: Compiled | Record, grid: Any) -> Record:
        """The run alone, under the time budget: ``(None, value)`` or a failure record."""
        if isinstance(program, tuple):
            return program
        timer = self.timer
        per_line = self.timeout_s
        try:
            timer.start(per_line)
            try:
                value = program.run(grid, self.max_state_size, self._next_line)
            finally:
                timer.stop()
        except RunTimeout:
            timer.stop()
            return (TIMEOUT, f"a line over its {per_line:.3g} s of {timer.clock} time")
        except StateSizeError as error:
            return (STATE_SIZE, str(error))
        except MemoryError:
            return (MEMORY, "MemoryError")
        except Exception as error:  # any DSL failure is an outcome, not a sandbox failure
            return (RUNTIME, type(error).__name__)
        return (None, value)

    def export(self, record: Record) -> Record:
        """A record from :meth:`run` made ready for the parent: the value checked and pickled.

        Not under the time budget: what it costs depends on the cap, not on the program.
        """
        kind, value = record
        if kind is not None:
            return record
        try:
            return (None, encode_value(value, self.max_output_bytes))
        except OutputTooLarge as error:
            return (OUTPUT_SIZE, str(error))
        except MemoryError:
            return (MEMORY, "MemoryError")
        except Exception as error:  # e.g. RecursionError on a deeply nested value
            return (RUNTIME, type(error).__name__)

    def close(self) -> None:
        """Restore the signal handler taken over by the timer."""
        self.timer.restore()
