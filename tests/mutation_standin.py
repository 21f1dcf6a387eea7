"""An in-process stand-in for the sandbox, for the mutation tests only.

Same interface as ``Sandbox.run`` (``run(batch)[i][j]`` has ``ok``, ``value``, ``error``), with
CodeIt's state-size rule and a per-run CPU-time limit (SIGPROF, main thread; CPU time rather
than wall-clock so that results do not depend on how loaded the machine is), no isolation.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from typing import Any, NamedTuple

from codeit_jax.programs.program import ProgramError, parse


class StandInOutcome(NamedTuple):
    ok: bool
    value: Any = None
    error: str | None = None
    detail: str = ""


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Timeout


class StandInExecutor:
    """Runs each (program text, inputs) pair with ``Program.run``; counts the runs."""

    def __init__(self, timeout_s: float = 2.0, max_state_size: int = 1000) -> None:
        self.timeout_s = timeout_s
        self.max_state_size = max_state_size
        self.runs = 0
        self.units = 0

    def __enter__(self) -> StandInExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def match(self, units: Sequence[tuple[Sequence[str], Any, Any]]) -> list[Any]:
        """The sandbox's ``match`` semantics, in process (shared lines, per-line time limit)."""
        from codeit_jax.execution.batch import match_in_process

        self.units += len(units)
        return match_in_process(units, timeout_s=self.timeout_s, max_state_size=self.max_state_size)

    def run(self, batch: Sequence[tuple[str, Sequence[Any]]]) -> list[list[StandInOutcome]]:
        rows = []
        previous = signal.signal(signal.SIGPROF, _alarm)
        try:
            for text, inputs in batch:
                try:
                    program = parse(text)
                except ProgramError as error:
                    rows.append([StandInOutcome(False, None, "syntax", str(error))] * len(inputs))
                    continue
                row = []
                for grid in inputs:
                    self.runs += 1
                    signal.setitimer(signal.ITIMER_PROF, self.timeout_s)
                    try:
                        value = program.run(grid, max_state_size=self.max_state_size)
                        row.append(StandInOutcome(True, value))
                    except _Timeout:
                        row.append(StandInOutcome(False, None, "timeout"))
                    except Exception as error:  # any DSL failure is a runtime error
                        row.append(StandInOutcome(False, None, "runtime", type(error).__name__))
                    finally:
                        signal.setitimer(signal.ITIMER_PROF, 0)
                rows.append(row)
        finally:
            signal.signal(signal.SIGPROF, previous)
        return rows
