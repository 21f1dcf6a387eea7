"""Type-directed random programs from ``I`` to a Grid, for starting without ground truth.

Each line calls a primitive with one of its concrete signatures from the
:class:`~codeit_jax.programs.types.SignatureTable`, its arguments drawn from ``I``, earlier
lines and constants of the right types; the last line produces a Grid. The program is then
normalised like a mutant (unused lines dropped, equal calls merged, variables renumbered), so
it has between 1 and ``max_lines`` lines. Every emitted program parses and passes
:func:`~codeit_jax.programs.types.check_types`; whether it *runs* is for the sandbox to say.
"""

from __future__ import annotations

import random

from codeit_jax.dsl import CONSTANT_TYPES
from codeit_jax.programs.mutate import MutationError, _Line, _render
from codeit_jax.programs.program import Program, parse
from codeit_jax.programs.types import SignatureTable, check_types

#: Probability of taking a variable (``I`` or an earlier line) over a constant when both fit:
#: constants are many, and a program of constants alone ignores its input.
PREFER_VARIABLE = 0.75


class RandomProgramSampler:
    """Draws random well-typed programs (``sample``); ``max_lines`` bounds their length."""

    def __init__(self, table: SignatureTable, max_lines: int = 6, max_tries: int = 100) -> None:
        if max_lines < 1:
            raise ValueError(f"max_lines must be at least 1, got {max_lines}")
        if "Grid" not in table.by_output:
            raise ValueError("the signature table has no primitive producing a Grid")
        self.table = table
        self.max_lines = max_lines
        self.max_tries = max_tries

    def _argument(self, wanted: str, types: list[str], rng: random.Random) -> int | str | None:
        variables: list[int | str] = [i for i, t in enumerate(types) if t == wanted]
        if wanted == "Grid":
            variables.append("I")
        constants = CONSTANT_TYPES.get(wanted, ())
        if variables and (not constants or rng.random() < PREFER_VARIABLE):
            return rng.choice(variables)
        return rng.choice(constants) if constants else None

    def _line(self, types: list[str], want_grid: bool, rng: random.Random) -> _Line | None:
        """One call buildable from what is available, or None if the drawn one is not."""
        if want_grid:
            name, arrow = rng.choice(self.table.by_output["Grid"])
        else:
            name = rng.choice(list(self.table.by_primitive))
            arrow = rng.choice(self.table.by_primitive[name])
        args = [self._argument(t, types, rng) for t in arrow.inputs]
        if any(a is None for a in args):
            return None
        types.append(arrow.output)
        return _Line(name, args)

    def sample(self, rng: random.Random) -> Program:
        """A random program; raises RuntimeError if ``max_tries`` draws all fail (never seen)."""
        for _ in range(self.max_tries):
            n_lines = rng.randint(1, self.max_lines)
            lines: list[_Line] = []
            types: list[str] = []
            while len(lines) < n_lines:
                line = self._line(types, want_grid=len(lines) == n_lines - 1, rng=rng)
                if line is not None:
                    lines.append(line)
            try:
                program = parse(_render(lines))
            except (MutationError, ValueError):
                continue
            check_types(program, self.table)
            return program
        raise RuntimeError(f"no program could be drawn in {self.max_tries} tries")
