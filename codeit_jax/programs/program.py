"""DSL program text -> validated, compiled program, run without eval/exec.

Model output is untrusted text, so it is never handed to Python: a strict line grammar is
checked by hand (plain string operations and one anchored regular expression per token kind),
every name is looked up in explicit whitelists (the 160 primitives, the 28 constants, ``I`` and
earlier targets), and execution is a loop over pre-resolved slot indices. Nothing here calls
``eval``, ``exec``, ``compile``, ``getattr`` or imports anything on behalf of the text.

Accepted text, in either of CodeIt's two forms (see docs/dsl.md, "Program syntax"):

* bare form: lines ``<target> = <callee>(<arg>, <arg>, ...)`` joined by ``\\n``;
* function form: ``def <name>(I):``, the same lines indented, then an indented ``return O``.

CodeIt's syntax check (``check_syntax``) is enforced rule by rule: one `` = `` per line, one
``(`` per line, the last target is ``O``, no target repeated or named like a primitive, no call
text repeated, the callee is a primitive or an earlier variable, the arguments (separated by
``", "``) are earlier variables, primitive names, constants or ``I``, and the call ends in ``)``.
Like the reference, trailing newlines of the text and whitespace around each line are ignored.

Refused beyond the reference check (none of these can matter for a program that is meant to run;
they keep the normalised text unambiguous and re-parsable):

* targets other than ``x<k>`` (ASCII digits) and ``O``: the reference lets any text through as a
  target (``I = vmirror(I)``, ``foo = ...``); no valid program uses that;
* a line naming its own target (``x1 = x1(I)``, ``x1 = f(x1)``): the reference check accepts it
  (quirk of rule 6) but the reference executor always fails on it with a ``NameError``;
* extra whitespace around `` = `` or inside the argument list (the reference check accepts a few
  such spellings when the oddly spaced name happens to be unused);
* a repeated call text is detected after trimming trailing whitespace (the reference compares
  untrimmed text), so the normalised text always parses again;
* in function form, anything but the header, the assignments and a final ``return O`` (the
  reference conversion silently drops lines without exactly one ``=``), and a function name that
  is not a plain non-dunder ASCII identifier;
* non-ASCII text anywhere.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from typing import Any, NamedTuple

from codeit_jax.dsl import CONSTANTS, PRIMITIVE_NAMES, PRIMITIVES

__all__ = [
    "Line",
    "Program",
    "ProgramError",
    "StateSizeError",
    "parse",
]


class ProgramError(ValueError):
    """Program text that is not a valid DSL program (raised by :func:`parse`)."""


class StateSizeError(Exception):
    """A value needed by a later line was not stored because it was too long.

    Mirrors CodeIt's executor, which silently drops values of length ``>= max_state_size`` and then
    fails with a ``NameError`` (or "No output variable defined") when a later line needs one.
    """


class Line(NamedTuple):
    """One assignment ``target = callee(args...)``; a plain tuple, cheap to build and compare."""

    target: str
    callee: str
    args: tuple[str, ...]

    @property
    def text(self) -> str:
        """The line in normalised form: ``target = callee(a, b)``."""
        return f"{self.target} = {self.callee}({', '.join(self.args)})"


_PRIMITIVE_NAMES: frozenset[str] = frozenset(PRIMITIVE_NAMES)
_CONSTANT_NAMES: frozenset[str] = frozenset(CONSTANTS)
_TARGET = re.compile(r"(?:x[0-9]+|O)\Z")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_HEADER = re.compile(r"def ([A-Za-z_][A-Za-z0-9_]*)\(I\):\Z")
_PYTHON_KEYWORDS = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist)
_MAX_SHOWN = 80


def _show(text: str) -> str:
    """A line quoted for an error message, shortened so a huge line cannot flood a log."""
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 3] + "..."
    return repr(text)


def _describe_bad_name(name: str) -> str:
    """Why ``name`` is not a DSL name, as precisely as cheaply possible."""
    if name == "":
        return "an empty name"
    if not _IDENTIFIER.match(name):
        return (
            f"{_show(name)}, which is not a plain name (no literals, operators, attributes, "
            "subscripts, keywords, star-args or nested calls)"
        )
    if name.startswith("__"):
        return f"the dunder name {_show(name)}"
    if name in _PYTHON_KEYWORDS:
        return f"the Python keyword {name!r}"
    return f"the unknown name {_show(name)}"


class _LineError(Exception):
    """Internal: a reason, turned into a ProgramError with the line number and text."""


def _parse_line(text: str, targets: dict[str, int], calls: set[str], is_last: bool) -> Line:
    """Check one stripped line against the grammar and the names defined so far."""
    if not text:
        raise _LineError("blank line")
    if "#" in text:
        raise _LineError("comments are not allowed")
    parts = text.split(" = ")
    if len(parts) != 2:
        raise _LineError("expected exactly one ' = ' (a single assignment 'x<k> = f(...)')")
    target, call = parts
    if not _TARGET.match(target):
        raise _LineError(f"target {_show(target)} is not x<k> or O")
    if is_last and target != "O":
        raise _LineError(f"the last line must assign O, not {target}")
    if target in targets:
        raise _LineError(f"{target} is assigned twice")
    if call.count("(") != 1:
        raise _LineError("expected exactly one '(' (one call, no nested calls or tuples)")
    if not call.endswith(")"):
        raise _LineError("the call must end with ')'")
    if call in calls:
        raise _LineError(f"the call {_show(call)} repeats an earlier line")
    callee, inner = call[:-1].split("(")
    if callee == target:
        raise _LineError(f"{target} is called on the line that defines it")
    if callee not in _PRIMITIVE_NAMES and callee not in targets:
        if callee in _CONSTANT_NAMES or callee == "I":
            raise _LineError(f"{callee} is not a function and cannot be called")
        if _TARGET.match(callee):
            raise _LineError(f"callee {callee} is not defined by an earlier line")
        raise _LineError(f"callee is {_describe_bad_name(callee)}, not a primitive or variable")
    if inner == "":
        raise _LineError("a call needs at least one argument")
    args = tuple(inner.split(", "))
    for arg in args:
        if arg in targets or arg in _PRIMITIVE_NAMES or arg in _CONSTANT_NAMES or arg == "I":
            continue
        if arg == target:
            raise _LineError(f"{target} is used on the line that defines it")
        if _TARGET.match(arg):
            raise _LineError(f"argument {arg} is not defined by an earlier line")
        if arg.strip() != arg or "," in arg:
            raise _LineError("arguments must be separated by exactly ', '")
        raise _LineError(f"argument is {_describe_bad_name(arg)}")
    targets[target] = len(targets)
    calls.add(call)
    return Line(target, callee, args)


def _function_body(raw_lines: list[str]) -> tuple[int, list[str]]:
    """Strip the ``def <name>(I):`` header and ``return O`` footer; return the first line number."""
    header = raw_lines[0].rstrip()
    match = _HEADER.match(header)
    if match is None:
        raise ProgramError(f"line 1 {_show(raw_lines[0])}: expected 'def <name>(I):'")
    if match.group(1).startswith("__"):
        raise ProgramError(f"line 1 {_show(raw_lines[0])}: dunder function names are refused")
    last = raw_lines[-1]
    if len(raw_lines) < 3 or last.strip() != "return O" or last[:1] not in (" ", "\t"):
        raise ProgramError(
            f"line {len(raw_lines)} {_show(last)}: a function must end with an indented 'return O'"
            " after at least one assignment"
        )
    body = raw_lines[1:-1]
    for number, line in enumerate(body, start=2):
        if line[:1] not in (" ", "\t"):
            raise ProgramError(f"line {number} {_show(line)}: function body lines are indented")
    return 2, body


def parse(text: str) -> Program:
    """Validate DSL program text (bare or function form) and return the :class:`Program`.

    Raises :class:`ProgramError` naming the first offending line (number and text) and why.
    """
    if not isinstance(text, str):
        raise ProgramError(f"program text must be a str, got {type(text).__name__}")
    if not text.isascii():
        position = next(i for i, ch in enumerate(text) if not ch.isascii())
        number = text.count("\n", 0, position) + 1
        raise ProgramError(f"line {number}: non-ASCII character {text[position]!r}")
    raw_lines = text.rstrip("\n").split("\n")
    if raw_lines == [""]:
        raise ProgramError("empty program: expected at least the line 'O = <call>'")
    first_number = 1
    if raw_lines[0].startswith("def "):
        first_number, raw_lines = _function_body(raw_lines)
    targets: dict[str, int] = {}
    calls: set[str] = set()
    lines: list[Line] = []
    last_index = len(raw_lines) - 1
    for index, raw in enumerate(raw_lines):
        try:
            lines.append(_parse_line(raw.strip(), targets, calls, index == last_index))
        except _LineError as error:
            reason = str(error)
            if len(reason) > 4 * _MAX_SHOWN:  # names quoted in the reason can be long, too
                reason = reason[: 4 * _MAX_SHOWN - 3] + "..."
            raise ProgramError(f"line {first_number + index} {_show(raw)}: {reason}") from None
    return Program(tuple(lines))


class _Compiled(NamedTuple):
    """Pre-resolved program: a value template and steps over slot indices."""

    template: list[Any]  # slot 0 is I; then constants/primitive values; then targets
    # (callee function or None, callee slot, the single arg slot or -1, getter of several args,
    #  target slot, slots the line reads: the callee variable's and the args')
    steps: tuple[tuple[Any, ...], ...]
    output: int
    names: tuple[str, ...]  # slot -> name, for error messages


def _compile(lines: Sequence[Line]) -> _Compiled:
    """Bind every name of the program to a slot once, so a run only indexes a list."""
    slots: dict[str, int] = {"I": 0}
    template: list[Any] = [None]
    names: list[str] = ["I"]

    def slot_of(name: str) -> int:
        slot = slots.get(name)
        if slot is not None:
            return slot
        # the parser admits only constants, primitives and variables (already in ``slots``)
        value = CONSTANTS[name] if name in CONSTANTS else PRIMITIVES[name]
        slots[name] = len(template)
        template.append(value)
        names.append(name)
        return slots[name]

    steps = []
    for line in lines:
        if line.callee in _PRIMITIVE_NAMES:
            function, callee_slot = PRIMITIVES[line.callee], -1
        else:  # a variable holding a function, looked up in its slot at run time
            function, callee_slot = None, slots[line.callee]
        arg_slots = tuple(slot_of(arg) for arg in line.args)
        target = len(template)
        slots[line.target] = target
        template.append(None)
        names.append(line.target)
        single = arg_slots[0] if len(arg_slots) == 1 else -1
        getter = itemgetter(*arg_slots) if len(arg_slots) > 1 else None
        reads = arg_slots if function is not None else (callee_slot, *arg_slots)
        steps.append((function, callee_slot, single, getter, target, reads))
    return _Compiled(template, tuple(steps), slots["O"], tuple(names))


class Program:
    """A validated DSL program; names bound on first run, then :meth:`run` is a tight loop.

    Equality and hashing are by the normalised text, which the replay buffer uses as the key.
    """

    __slots__ = ("lines", "text", "_compiled")

    def __init__(self, lines: tuple[Line, ...]) -> None:
        # Callers go through parse() or from_lines(); this constructor trusts its input.
        self.lines = lines
        self.text = "\n".join(line.text for line in lines)
        self._compiled: _Compiled | None = None

    @classmethod
    def from_lines(cls, lines: Iterable[tuple[str, str, Sequence[str]]]) -> Program:
        """Build a program from (target, callee, args) tuples, validated like text."""
        wanted = tuple(Line(t, c, tuple(a)) for t, c, a in lines)
        program = parse("\n".join(line.text for line in wanted))
        if program.lines != wanted:  # e.g. a newline smuggled into a name
            raise ProgramError(f"lines do not round-trip through the program text: {wanted!r}")
        return program

    def __reduce__(self) -> tuple[type[Program], tuple[tuple[Line, ...]]]:
        # Ship only the lines to sandbox processes; each binds its own primitives on first run.
        return (Program, (self.lines,))

    def __len__(self) -> int:
        return len(self.lines)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Program) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"Program({self.text!r})"

    def to_function_text(self, name: str) -> str:
        """CodeIt's function form ``def <name>(I): ... return O`` with a final newline.

        For the 400 training programs, ``to_function_text(f"solve_{key}")`` is the stored text.
        """
        if not (name.isascii() and name.isidentifier()) or name.startswith("__"):
            raise ValueError(f"function name {name!r} is not a plain identifier")
        body = "".join(f"    {line.text}\n" for line in self.lines)
        return f"def {name}(I):\n{body}    return O\n"

    def bind(self) -> _Compiled:
        """Resolve every name to its primitive, constant or slot now (else on the first run).

        Parsing alone never needs the primitives; binding is done once per program.
        """
        compiled = self._compiled
        if compiled is None:
            compiled = self._compiled = _compile(self.lines)
        return compiled

    def run(
        self,
        grid: Any,
        max_state_size: int | None = None,
        line_started: Callable[[], object] | None = None,
    ) -> Any:
        """Run on input ``grid`` and return the value of ``O``; DSL exceptions propagate.

        With an integer ``max_state_size``, a value with a length of at least ``max_state_size``
        is not stored (CodeIt's executor rule, which CodeIt runs with 1000), and a later line, or
        the output, that needs it raises :class:`StateSizeError`. (CodeIt's executor treats 0
        as "no limit"; here it must be None for that, and 0 or less raises ``ValueError``.)
        ``line_started`` is called before each line runs: the sandbox restarts a line's time
        budget there, as CodeIt times each line on its own.
        """
        compiled = self._compiled or self.bind()
        values = compiled.template.copy()
        values[0] = grid
        if max_state_size is None and line_started is None:
            for function, callee_slot, single, getter, target, _ in compiled.steps:
                if function is None:
                    function = values[callee_slot]
                if single >= 0:
                    values[target] = function(values[single])
                else:
                    values[target] = function(*getter(values))
            return values[compiled.output]
        if max_state_size is not None:
            if isinstance(max_state_size, bool) or not isinstance(max_state_size, int):
                raise TypeError(f"max_state_size must be an int or None, got {max_state_size!r}")
            if max_state_size < 1:
                raise ValueError(f"max_state_size must be positive, got {max_state_size}")
        return self._run_checked(compiled, values, max_state_size, line_started)

    @staticmethod
    def _run_checked(
        compiled: _Compiled,
        values: list[Any],
        max_state_size: int | None,
        line_started: Callable[[], object] | None,
    ) -> Any:
        """The run loop with CodeIt's state-size rule and the per-line hook (either optional);
        kept apart so the plain loop stays lean.

        A too-long value stays in its slot but is recorded as dropped; the names a line reads
        are checked against the dropped ones only once something has been dropped (rare).
        """
        dropped: dict[int, int] = {}  # slot -> length of the value that was not stored
        for function, callee_slot, single, getter, target, reads in compiled.steps:
            if line_started is not None:
                line_started()
            if dropped:
                for slot in reads:
                    if slot in dropped:
                        raise _not_stored(compiled, slot, dropped[slot], max_state_size)
            if function is None:
                function = values[callee_slot]
            value = function(values[single]) if single >= 0 else function(*getter(values))
            values[target] = value
            if max_state_size is not None and hasattr(value, "__len__"):
                length = len(value)
                if length >= max_state_size:
                    dropped[target] = length
        if compiled.output in dropped:
            raise _not_stored(compiled, compiled.output, dropped[compiled.output], max_state_size)
        return values[compiled.output]


def _not_stored(
    compiled: _Compiled, slot: int, length: int, max_state_size: int | None
) -> StateSizeError:
    """The error for a line (or the output) that needs a value the state-size rule dropped."""
    return StateSizeError(
        f"{compiled.names[slot]} was not stored: its length {length} is at least "
        f"max_state_size={max_state_size}"
    )
