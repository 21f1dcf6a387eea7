"""CodeIt's depth-one program mutation operator.

One mutation edits one line of a parent program, chosen uniformly:

* with weight ``phi_arg``, *replace an argument*: with probability ``phi_var`` by a new line
  (a fresh call producing the argument's type, inserted just before), otherwise by an earlier
  variable, a constant or ``I`` of the same type; a primitive passed as a value is replaced by
  another primitive with the same annotated signature;
* with weight ``phi_func``, *replace the function*: another primitive with the same concrete
  signature (from the :class:`SignatureTable`), or, for a call whose signature is not all base
  types, the same annotated signature;
* with weight ``1 - phi_arg - phi_func``, *replace the right-hand side* by a fresh call with the
  same output type.

As in CodeIt the third weight is ``1 - phi_arg - phi_func`` (defaults 0.5, 0.25 -> 0.25) and
``phi_var`` is the probability that an argument replacement introduces a new variable.

The edited program is normalised: lines that no longer feed ``O`` are dropped, identical calls
are merged (the DSL is pure, so this does not change what the program computes) and variables
are renumbered ``x1, x2, ...``. An attempt that cannot be carried out (no candidate of the
needed type, a callee variable, ...) raises :class:`MutationError`; the caller simply tries
again. Whether the mutant runs is decided later, in the sandbox (see :func:`accept_outputs`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from codeit_jax.dsl import CONSTANT_TYPES, SIGNATURES
from codeit_jax.programs.program import Program, ProgramError, parse
from codeit_jax.programs.types import (
    CALLABLE,
    Arrow,
    ProgramTypes,
    SignatureTable,
    annotated_arrow,
    same_annotation_groups,
    term_type,
)
from codeit_jax.tasks import is_grid

#: A reference inside an editable program: an int is the index of an earlier line, a str is
#: ``I``, a constant or a primitive name.
Ref = int | str


class MutationError(ValueError):
    """This mutation attempt cannot produce a program (the caller draws another)."""


@dataclass(frozen=True)
class MutationWeights:
    """CodeIt's mutation probabilities (validated: each in [0, 1], phi_arg + phi_func <= 1)."""

    phi_arg: float = 0.5
    phi_func: float = 0.25
    phi_var: float = 0.5

    def __post_init__(self) -> None:
        for name in ("phi_arg", "phi_func", "phi_var"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if self.phi_arg + self.phi_func > 1.0 + 1e-12:
            raise ValueError(
                f"phi_arg + phi_func must be at most 1 (the right-hand-side replacement gets "
                f"1 - phi_arg - phi_func), got {self.phi_arg} + {self.phi_func}"
            )

    @property
    def operation_weights(self) -> tuple[float, float, float]:
        """Weights of (argument, function, right-hand side) replacement."""
        return (self.phi_arg, self.phi_func, max(0.0, 1.0 - self.phi_arg - self.phi_func))


@dataclass(frozen=True)
class Mutation:
    """What one mutation did, for the mutated task's ``extra_info``."""

    kind: str  # "arg", "func" or "rhs"
    line: int  # 1-based line of the parent program that was edited
    before: str
    after: str

    def to_json(self) -> list[Any]:
        return [self.kind, self.line, self.before, self.after]


@dataclass
class _Line:
    callee: Ref
    args: list[Ref]


def _to_editable(types: ProgramTypes) -> tuple[list[_Line], list[str]]:
    """Lines with variable names turned into line indices, and each line's output type."""
    index = {line.target: i for i, line in enumerate(types.lines)}

    def ref(name: str) -> Ref:
        return index.get(name, name)

    lines = [_Line(ref(line.callee), [ref(a) for a in line.args]) for line in types.lines]
    return lines, [line.arrow.output for line in types.lines]


def _render(lines: Sequence[_Line]) -> str:
    """Normalised program text: keep what feeds the last line, merge equal calls, renumber."""
    last = len(lines) - 1
    needed = {last}
    for i in range(last, -1, -1):
        if i in needed:
            for r in (lines[i].callee, *lines[i].args):
                if isinstance(r, int):
                    if r >= i:
                        raise MutationError(f"line {i + 1} refers to a later line")
                    needed.add(r)
    names: dict[int, str] = {}
    seen: dict[str, str] = {}
    out: list[str] = []
    kept = sorted(needed)
    for i in kept:

        def show(r: Ref) -> str:
            return names[r] if isinstance(r, int) else r

        call = f"{show(lines[i].callee)}({', '.join(show(a) for a in lines[i].args)})"
        if call in seen:  # never the last line: its arguments cannot reach an equal line
            names[i] = seen[call]
            continue
        name = "O" if i == last else f"x{len(out) + 1}"
        names[i] = name
        seen[call] = name
        out.append(f"{name} = {call}")
    return "\n".join(out)


class Mutator:
    """Draws depth-one mutants of typed parent programs (one :meth:`mutate` call = one try)."""

    def __init__(self, table: SignatureTable, weights: MutationWeights | None = None) -> None:
        self.table = table
        self.weights = weights or MutationWeights()
        self._constants_by_type: Mapping[str, tuple[str, ...]] = CONSTANT_TYPES

    # ----------------------------------------------------------------- candidate terms

    def _terms_of_type(
        self, wanted: str, position: int, out_types: Sequence[str], exclude: Ref | None = None
    ) -> list[Ref]:
        """Constants, ``I`` and lines before ``position`` whose type is ``wanted``."""
        terms: list[Ref] = list(self._constants_by_type.get(wanted, ()))
        if wanted == "Grid":
            terms.append("I")
        terms.extend(i for i in range(position) if out_types[i] == wanted)
        return [t for t in terms if t != exclude]

    def _new_call(
        self, wanted: str, position: int, out_types: Sequence[str], rng: random.Random
    ) -> _Line:
        """A fresh call producing ``wanted`` from terms available before ``position``."""
        options = []
        for name, arrow in self.table.by_output.get(wanted, ()):
            pools = [self._terms_of_type(t, position, out_types) for t in arrow.inputs]
            if all(pools):
                options.append((name, pools))
        if not options:
            raise MutationError(f"no call producing {wanted} can be built here")
        name, pools = rng.choice(options)
        return _Line(name, [rng.choice(pool) for pool in pools])

    # ----------------------------------------------------------------- the operator

    def mutate(self, parent: ProgramTypes, rng: random.Random) -> tuple[Program, Mutation]:
        """One mutation attempt of ``parent``; raises :class:`MutationError` when it fails."""
        lines, out_types = _to_editable(parent)
        if not lines:
            raise MutationError("empty program")
        position = rng.randrange(len(lines))
        kind = rng.choices(("arg", "func", "rhs"), weights=self.weights.operation_weights)[0]
        before = parent.lines[position]
        if kind == "arg":
            after = self._replace_argument(lines, out_types, position, parent, rng)
        elif kind == "func":
            after = self._replace_function(lines, position, parent, rng)
        else:
            after = self._replace_rhs(lines, out_types, position, parent, rng)
        text = _render(lines)
        if text == parent.program.text:
            raise MutationError("the mutant is the parent program")
        try:
            program = parse(text)
        except ProgramError as error:
            raise MutationError(f"mutant does not parse: {error}") from None
        call = f"{before.callee}({', '.join(before.args)})"
        return program, Mutation(kind, position + 1, call, after)

    def _replace_argument(
        self,
        lines: list[_Line],
        out_types: list[str],
        position: int,
        parent: ProgramTypes,
        rng: random.Random,
    ) -> str:
        line = lines[position]
        slot = rng.randrange(len(line.args))
        old = line.args[slot]
        old_name = parent.lines[position].args[slot]
        wanted = term_type(old_name, parent.env)
        if isinstance(old, str) and old in SIGNATURES:  # a primitive passed as a value
            if rng.random() < self.weights.phi_var:
                raise MutationError("a new variable cannot be built for a function argument")
            group = same_annotation_groups()[annotated_arrow(old)]
            candidates = [name for name in group if name != old]
            if not candidates:
                raise MutationError(f"no other primitive is annotated like {old}")
            line.args[slot] = new = rng.choice(candidates)
            return f"{old_name} -> {new}"
        if rng.random() < self.weights.phi_var:
            if wanted == CALLABLE:
                raise MutationError("a new variable cannot be built for a function argument")
            fresh = self._new_call(wanted, position, out_types, rng)
            lines.insert(position, fresh)
            out_types.insert(position, wanted)
            for later in lines[position + 1 :]:
                later.callee = _shift(later.callee, position)
                later.args = [_shift(a, position) for a in later.args]
            lines[position + 1].args[slot] = position
            call = f"{fresh.callee}({', '.join(_plain(a, parent) for a in fresh.args)})"
            return f"{old_name} -> new {call}"
        candidates = self._terms_of_type(wanted, position, out_types, exclude=old)
        if not candidates:
            raise MutationError(f"no other term of type {wanted} before line {position + 1}")
        line.args[slot] = new = rng.choice(candidates)
        return f"{old_name} -> {_plain(new, parent)}"

    def _replace_function(
        self, lines: list[_Line], position: int, parent: ProgramTypes, rng: random.Random
    ) -> str:
        typed = parent.lines[position]
        if typed.callee not in SIGNATURES:
            raise MutationError("the callee is a variable; it is not replaced")
        arrow: Arrow = typed.arrow
        if arrow.is_base:
            candidates = [n for n in self.table.by_arrow.get(arrow, ()) if n != typed.callee]
        else:
            group = same_annotation_groups()[annotated_arrow(typed.callee)]
            candidates = [n for n in group if n != typed.callee]
        if not candidates:
            raise MutationError(f"no other primitive with the signature {arrow}")
        lines[position].callee = new = rng.choice(candidates)
        return new

    def _replace_rhs(
        self,
        lines: list[_Line],
        out_types: list[str],
        position: int,
        parent: ProgramTypes,
        rng: random.Random,
    ) -> str:
        wanted = out_types[position]
        fresh = self._new_call(wanted, position, out_types, rng)
        lines[position] = fresh
        return f"{fresh.callee}({', '.join(_plain(a, parent) for a in fresh.args)})"


def _shift(ref: Ref, position: int) -> Ref:
    """A reference after inserting a line at ``position`` (later lines move down by one)."""
    return ref + 1 if isinstance(ref, int) and ref >= position else ref


def _plain(ref: Ref, parent: ProgramTypes) -> str:
    """A reference (to a line before the edit) as the parent program names it."""
    return parent.lines[ref].target if isinstance(ref, int) else ref


def accept_outputs(inputs: Sequence[Any], outcomes: Sequence[Any]) -> list[Any] | None:
    """The mutant's outputs if it is kept, else None.

    Kept only if it ran on every input, every output is a valid grid and at least one output
    differs from its input (a mutant that is the identity everywhere teaches nothing).
    """
    if len(outcomes) != len(inputs) or not outcomes:
        return None
    outputs = []
    for outcome in outcomes:
        if not outcome.ok or not is_grid(outcome.value):
            return None
        outputs.append(outcome.value)
    if all(out == grid for out, grid in zip(outputs, inputs)):
        return None
    return outputs
