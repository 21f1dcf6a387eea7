"""Type inference for DSL programs and the table of concrete primitive signatures.

The DSL's annotations use union types (``Numerical``, ``Patch``, ``Piece``, ``Any``, ...) that
say little about what a call really consumes and produces. Mutation needs concrete types to
pick type-compatible replacements, so, as CodeIt does, a program is run on one example input
and every union type is resolved to a *base type* by the value actually seen: an annotated
input keeps its annotation when it is already a base type, otherwise takes the concrete type
of the argument; an annotated output is resolved from the value the call returned.

Collected over the 400 ground-truth programs, the resolved signatures form a
:class:`SignatureTable`: for every primitive, the all-base-type signatures it is really used
with. Mutation and the random program sampler only ever build calls from this table.

Deviations from CodeIt's inferer (deliberate, all in the direction of more precise types):

* a signature counts as base when every type in it is one of :data:`BASE_TYPES` (CodeIt tests
  for substrings, so its ``"Tuple"`` test also throws away every signature with an
  ``IntegerTuple`` or ``GridTuple``);
* ``GridTuple`` (tuple of grids, e.g. what ``hsplit`` returns) is a base type;
* a line that calls a variable (``x3 = x2(I)``) gets the type of the value it returned (CodeIt
  gives it the callee's type, ``Callable``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable as CallableABC
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codeit_jax.dsl import CONSTANT_TYPES, CONSTANTS, PRIMITIVE_NAMES, PRIMITIVES, SIGNATURES
from codeit_jax.programs.program import Program, parse
from codeit_jax.tasks import Task, load_codeit_dir

#: Types precise enough to build calls from; everything else is a union or a fallback.
BASE_TYPES: frozenset[str] = frozenset(
    {
        "Boolean",
        "Integer",
        "IntegerTuple",
        "IntegerSet",
        "Grid",
        "Cell",
        "Object",
        "Objects",
        "Indices",
        "IndicesSet",
        "GridTuple",
    }
)

#: Type of a function value (a primitive used as an argument, or a variable holding a function).
CALLABLE = "Callable"
#: Fallback type of a container value that matches no base type (e.g. a tuple of objects).
CONTAINER = "Container"
#: Fallback type of anything else (``None`` from ``canvas``, mixed tuples, ...).
ANY = "Any"

#: constant name -> type name (``T`` -> ``Boolean``, ``DOWN`` -> ``IntegerTuple``, ...).
CONSTANT_TYPE: dict[str, str] = {
    name: type_name for type_name, names in CONSTANT_TYPES.items() for name in names
}


class TypeInferenceError(ValueError):
    """A program could not be typed on the given input (it fails before its last line)."""


# --------------------------------------------------------------------------- value types


def _is_int(value: Any) -> bool:
    return isinstance(value, int)


def _is_int_pair(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and all(map(_is_int, value))


def _is_grid_like(value: Any) -> bool:
    """CodeIt's loose grid test: a tuple of tuples of ints (``()`` included, rows unchecked)."""
    return isinstance(value, tuple) and all(
        isinstance(row, tuple) and all(map(_is_int, row)) for row in value
    )


def _is_cell(value: Any) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and _is_int(value[0])
        and _is_int_pair(value[1])
    )


def _is_object(value: Any) -> bool:
    return isinstance(value, frozenset) and all(map(_is_cell, value))


def _is_indices(value: Any) -> bool:
    return isinstance(value, frozenset) and all(map(_is_int_pair, value))


def value_type(value: Any) -> str:
    """The base type of a DSL value, tested in CodeIt's order, else a fallback type.

    Tuples: IntegerTuple, Grid, Cell, GridTuple; frozensets: IntegerSet (so the empty set is an
    IntegerSet), Object, Objects, Indices, IndicesSet; then Boolean, Integer. Anything else is
    ``Callable`` (a function), ``Container`` (another tuple or frozenset) or ``Any``.
    """
    if isinstance(value, tuple):
        if _is_int_pair(value):
            return "IntegerTuple"
        if _is_grid_like(value):
            return "Grid"
        if _is_cell(value):
            return "Cell"
        if all(map(_is_grid_like, value)):
            return "GridTuple"
        return CONTAINER
    if isinstance(value, frozenset):
        if all(map(_is_int, value)):
            return "IntegerSet"
        if all(map(_is_cell, value)):
            return "Object"
        if all(map(_is_object, value)):
            return "Objects"
        if all(map(_is_int_pair, value)):
            return "Indices"
        if all(map(_is_indices, value)):
            return "IndicesSet"
        return CONTAINER
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if callable(value) or isinstance(value, CallableABC):
        return CALLABLE
    return ANY


# --------------------------------------------------------------------------- signatures


@dataclass(frozen=True)
class Arrow:
    """A concrete function type: argument type names and the result type name (hashable)."""

    inputs: tuple[str, ...]
    output: str

    @property
    def is_base(self) -> bool:
        """True when every type in the signature is a base type (usable to build calls)."""
        return self.output in BASE_TYPES and all(t in BASE_TYPES for t in self.inputs)

    @property
    def is_functional(self) -> bool:
        """True for a signature of base and ``Callable`` types that names ``Callable`` at least
        once (``argmax: (Objects, Callable) -> Object``, ``lbind: (Callable, Grid) ->
        Callable``): a static check can type it, though mutation cannot build calls from it."""
        typed = BASE_TYPES | {CALLABLE}
        return not self.is_base and self.output in typed and all(t in typed for t in self.inputs)

    def __str__(self) -> str:
        return f"({', '.join(self.inputs)}) -> {self.output}"


def annotated_arrow(name: str) -> Arrow:
    """The signature a primitive is annotated with in the DSL (union types included)."""
    inputs, output = SIGNATURES[name]
    return Arrow(tuple(inputs), output)


@functools.cache
def same_annotation_groups() -> dict[Arrow, tuple[str, ...]]:
    """Annotated signature -> primitives annotated with it, in DSL order.

    This is how a primitive passed as an argument (``apply(first, x1)``) is replaced: CodeIt
    only knows such a function value by its annotation.
    """
    groups: dict[Arrow, list[str]] = {}
    for name in SIGNATURES:
        groups.setdefault(annotated_arrow(name), []).append(name)
    return {arrow: tuple(names) for arrow, names in groups.items()}


# --------------------------------------------------------------------------- inference


@dataclass(frozen=True)
class TypedLine:
    """One program line with its resolved types.

    ``arrow`` is the concrete signature of the call: for a primitive callee the annotation with
    unions resolved; for a variable callee the argument types and the result type.
    """

    target: str
    callee: str
    args: tuple[str, ...]
    arg_types: tuple[str, ...]
    arrow: Arrow


@dataclass(frozen=True)
class ProgramTypes:
    """The typed lines of a program and the type of every name it defines (``I`` included)."""

    program: Program
    lines: tuple[TypedLine, ...]
    env: Mapping[str, str] = field(default_factory=dict)


def term_type(name: str, env: Mapping[str, str]) -> str:
    """Type of an argument name: a variable (from ``env``), a constant, or a primitive value."""
    if name in env:
        return env[name]
    if name in CONSTANT_TYPE:
        return CONSTANT_TYPE[name]
    if name in PRIMITIVES or name in SIGNATURES:
        return CALLABLE
    raise KeyError(f"{name!r} is not a defined variable, a constant or a primitive")


def _resolve_value(name: str, values: Mapping[str, Any]) -> Any:
    if name in values:
        return values[name]
    if name in CONSTANTS:
        return CONSTANTS[name]
    return PRIMITIVES[name]


def infer_types(program: Program | str, grid: Any) -> ProgramTypes:
    """Type every line of ``program`` by running it on ``grid`` (trusted programs only).

    Runs in-process without limits: meant for ground-truth programs (mutation parents), not
    model output. Raises :class:`TypeInferenceError` naming the line that failed.
    """
    if isinstance(program, str):
        program = parse(program)
    values: dict[str, Any] = {"I": grid}
    env: dict[str, str] = {"I": "Grid"}
    typed: list[TypedLine] = []
    for number, line in enumerate(program.lines, start=1):
        arg_types = tuple(term_type(arg, env) for arg in line.args)
        try:
            function = _resolve_value(line.callee, values)
            result = function(*(_resolve_value(arg, values) for arg in line.args))
        except Exception as error:  # any DSL failure: the program does not run on this grid
            raise TypeInferenceError(
                f"line {number} {line.text!r} failed on the example input: "
                f"{type(error).__name__}: {error}"
            ) from None
        if line.callee in SIGNATURES:
            annotated = annotated_arrow(line.callee)
            if len(annotated.inputs) != len(line.args):
                raise TypeInferenceError(
                    f"line {number} {line.text!r}: {line.callee} takes "
                    f"{len(annotated.inputs)} arguments, got {len(line.args)}"
                )
            inputs = tuple(
                declared if declared in BASE_TYPES else actual
                for declared, actual in zip(annotated.inputs, arg_types)
            )
            output = annotated.output if annotated.output in BASE_TYPES else value_type(result)
        else:
            inputs, output = arg_types, value_type(result)
        values[line.target] = result
        env[line.target] = output
        typed.append(
            TypedLine(line.target, line.callee, line.args, arg_types, Arrow(inputs, output))
        )
    return ProgramTypes(program, tuple(typed), env)


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class SignatureTable:
    """Concrete all-base signatures each primitive is used with in a corpus of programs.

    ``by_primitive``: primitive -> its signatures (first-seen order); ``by_output``: type ->
    (primitive, signature) pairs producing it; ``by_arrow``: signature -> primitives using it.
    ``functional``: primitive -> its *functional* signatures (`Arrow.is_functional`), kept
    apart so that mutation and random programs, which only build calls from base signatures,
    see the same table as before; the static check and constrained decoding use both.
    """

    by_primitive: Mapping[str, tuple[Arrow, ...]]
    by_output: Mapping[str, tuple[tuple[str, Arrow], ...]]
    by_arrow: Mapping[Arrow, tuple[str, ...]]
    functional: Mapping[str, tuple[Arrow, ...]] = field(default_factory=dict)

    @classmethod
    def from_uses(cls, uses: Iterable[tuple[str, Arrow]]) -> SignatureTable:
        """Build the table from (primitive, concrete signature) uses; functional ones go to
        ``functional``, any other non-base one is dropped."""
        by_primitive: dict[str, list[Arrow]] = {}
        functional: dict[str, list[Arrow]] = {}
        for name, arrow in uses:
            if name not in SIGNATURES:
                raise ValueError(f"{name!r} is not a DSL primitive")
            if arrow.is_base and arrow not in by_primitive.setdefault(name, []):
                by_primitive[name].append(arrow)
            elif arrow.is_functional and arrow not in functional.setdefault(name, []):
                functional[name].append(arrow)
        by_output: dict[str, list[tuple[str, Arrow]]] = {}
        by_arrow: dict[Arrow, list[str]] = {}
        for name, arrows in by_primitive.items():
            for arrow in arrows:
                by_output.setdefault(arrow.output, []).append((name, arrow))
                by_arrow.setdefault(arrow, []).append(name)
        return cls(
            by_primitive={k: tuple(v) for k, v in by_primitive.items() if v},
            by_output={k: tuple(v) for k, v in by_output.items()},
            by_arrow={k: tuple(v) for k, v in by_arrow.items()},
            functional={k: tuple(v) for k, v in functional.items() if v},
        )

    def signatures(self, name: str) -> tuple[Arrow, ...]:
        """Every signature the static check accepts for primitive ``name``: base, then
        functional."""
        return (*self.by_primitive.get(name, ()), *self.functional.get(name, ()))

    def __len__(self) -> int:
        return sum(len(arrows) for arrows in self.by_primitive.values())


def primitive_uses(types: ProgramTypes) -> list[tuple[str, Arrow]]:
    """The (primitive, concrete signature) pairs of the lines that call a primitive."""
    return [(line.callee, line.arrow) for line in types.lines if line.callee in SIGNATURES]


def build_signature_table(tasks: Sequence[Task]) -> tuple[SignatureTable, dict[str, str]]:
    """Type every task's program on its first demonstration input and collect the table.

    Returns the table and, for tasks that could not be typed (no program, or the program fails
    on that input), task key -> reason. A program that fails part-way contributes nothing, so
    the table only holds signatures of programs that ran to the end.
    """
    uses: list[tuple[str, Arrow]] = []
    failures: dict[str, str] = {}
    for task in tasks:
        if task.program is None:
            failures[task.key] = "no program"
            continue
        if not task.train:
            failures[task.key] = "no demonstration examples"
            continue
        try:
            uses.extend(primitive_uses(infer_types(task.program, task.train[0][0])))
        except (TypeInferenceError, ValueError) as error:
            failures[task.key] = str(error)
    return SignatureTable.from_uses(uses), failures


@functools.cache
def _cached_training_table(directory: str) -> tuple[SignatureTable, dict[str, str]]:
    return build_signature_table(load_codeit_dir(directory))


def training_signature_table(data_dir: str | Path) -> SignatureTable:
    """The table over ``<data_dir>/training`` (CodeIt's 400 ground-truth programs), cached."""
    training = Path(data_dir) / "training"
    if not training.is_dir():
        raise FileNotFoundError(f"no CodeIt training directory at {training}")
    return _cached_training_table(str(training.resolve()))[0]


# --------------------------------------------------------------------------- static check


class TypeCheckError(ValueError):
    """A program's calls do not match any signature of the table (see :func:`check_types`)."""


def check_types(program: Program | str, table: SignatureTable) -> dict[str, frozenset[str]]:
    """Statically type ``program`` against ``table``, without running it.

    Every line must call a primitive with arguments (``I``, earlier variables, constants, or a
    primitive name, which is a ``Callable`` value) whose possible types match one of that
    primitive's table signatures (`SignatureTable.signatures`, functional ones included);
    ``O`` must possibly be a Grid. Returns each variable's possible types; raises
    :class:`TypeCheckError` naming the first line that does not type. This is the contract of
    the random program sampler and of constrained decoding.
    """
    if isinstance(program, str):
        program = parse(program)
    env: dict[str, frozenset[str]] = {"I": frozenset({"Grid"})}
    for number, line in enumerate(program.lines, start=1):
        arrows = table.signatures(line.callee)
        if not arrows:
            raise TypeCheckError(f"line {number} {line.text!r}: {line.callee} has no signature")
        arg_types = []
        for arg in line.args:
            if arg in env:
                arg_types.append(env[arg])
            elif arg in CONSTANT_TYPE:
                arg_types.append(frozenset({CONSTANT_TYPE[arg]}))
            elif arg in SIGNATURES:
                arg_types.append(frozenset({CALLABLE}))
            else:
                raise TypeCheckError(f"line {number} {line.text!r}: {arg} is not a typed term")
        outputs = frozenset(
            arrow.output
            for arrow in arrows
            if len(arrow.inputs) == len(arg_types)
            and all(t in types for t, types in zip(arrow.inputs, arg_types))
        )
        if not outputs:
            raise TypeCheckError(
                f"line {number} {line.text!r}: no signature of {line.callee} takes "
                f"({', '.join('|'.join(sorted(t)) for t in arg_types)})"
            )
        env[line.target] = outputs
    if "Grid" not in env["O"]:
        raise TypeCheckError(f"O has type {'|'.join(sorted(env['O']))}, not Grid")
    return env


def signature_table(data_dir: str | Path | None) -> SignatureTable:
    """The concrete signatures random programs and constrained decoding use: those the training
    programs use when ``<data_dir>/training`` exists, else every primitive whose annotation
    names base and Callable types only."""
    if data_dir is not None and (Path(data_dir) / "training").is_dir():
        return training_signature_table(data_dir)
    return SignatureTable.from_uses((name, annotated_arrow(name)) for name in PRIMITIVE_NAMES)
