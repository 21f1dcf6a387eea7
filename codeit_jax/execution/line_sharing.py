"""Running a group of programs on one input, each distinct line computed once.

The mutation baseline runs thousands of programs on every evaluation input, and the mutants of
one parent repeat most of its lines: 7,591 distinct mutants have 100,414 lines but only 39,363
distinct calls. A :class:`ProgramGroup` turns several programs into one graph of distinct
computations (hash-consing: a line is identified by its callee and the computations or names
it reads, so ``x3 = f(x1)`` in one mutant and ``x5 = f(x2)`` in another are one node when
their ``x1`` and ``x2`` are), and :func:`match_group` evaluates, per input, only the nodes the
programs reach, each at most once.

Semantics are those of running each program on its own (:meth:`Program.run`), line by line:
a program stops at its first line that raises, and with ``max_state_size`` a line (or the
output) that needs a value that was too long to keep fails with ``state_size``. DSL values are
immutable, so sharing them between programs changes nothing. Time is CodeIt's rule: every line
gets ``timeout_s`` of CPU (or wall) time; a node that runs out fails every program that reaches
it, as a plain run (:meth:`Sandbox.run`) stops at such a line.

The result of a group on an input is which programs returned exactly the expected output; that
is all the baseline's scoring needs, and it keeps outputs inside the worker.

One shortcut, exact under those semantics: with ``max_state_size``, a ``mapply`` or ``prapply``
line whose value every program that has it goes on to use is computed by a bounded version that
gives up as soon as the value it is building reaches ``max_state_size`` elements. Such a value
would be dropped and fail its reader, and if the full computation would instead raise or run out
of time, the program fails too; below the bound the bounded version makes exactly the same calls
and builds the same value. These lines (a function mapped over hundreds of single-cell objects)
are most of the evaluation's time-outs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, NamedTuple

from codeit_jax.dsl import CONSTANTS, PRIMITIVES
from codeit_jax.dsl.containers import _stop_to_runtime, merge
from codeit_jax.execution.run import RunTimeout, RunTimer
from codeit_jax.programs.program import Program

# Node states (one per slot, per input).
_NEW, _OK, _DROPPED, _FAILED, _TIMED_OUT = 0, 1, 2, 3, 4


class GroupMatches(NamedTuple):
    """What a group did on one input."""

    indices: tuple[int, ...]  # programs (positions in the group) whose output equals expected
    timeouts: int  # programs stopped by a line over its time budget
    failures: int  # programs stopped by any other error (syntax included)


class Faults(NamedTuple):
    """Where earlier attempts at a unit died (the sandbox's watchdog kill, or a crash): those
    computations are not tried again.

    ``nodes`` maps a node to True for a time-out or False for another failure; every program
    that reaches the node (or an equal computation) gets that result, as if the line had failed
    in the run. ``programs`` does the same for a program that died outside any node.
    """

    nodes: dict[int, bool]
    programs: dict[int, bool]


class _TooLong(Exception):
    """A bounded computation reached ``max_state_size`` elements: its value would be dropped."""


def _bounded_mapply(function: Any, container: Any, limit: int) -> Any:
    """``mapply`` (``merge(apply(...))``) that raises :class:`_TooLong` at ``limit`` elements."""
    kind = type(container)
    if kind is not tuple and kind is not frozenset:
        return merge(PRIMITIVES["apply"](function, container))
    results = []
    seen: set[Any] = set()
    total = 0
    try:
        for element in container:
            result = function(element)
            results.append(result)
            if kind is frozenset:
                seen.update(result)
                total = len(seen)
            else:
                total += len(result)
            if total >= limit:
                raise _TooLong
    except StopIteration as err:
        raise _stop_to_runtime(err) from err
    return merge(kind(results))


def _bounded_prapply(function: Any, a: Any, b: Any, limit: int) -> Any:
    """``prapply`` that raises :class:`_TooLong` once ``limit`` distinct results exist."""
    results: set[Any] = set()
    ordered = []
    try:
        for j in b:
            for i in a:
                result = function(i, j)
                ordered.append(result)
                results.add(result)
                if len(results) >= limit:
                    raise _TooLong
    except StopIteration as err:
        raise _stop_to_runtime(err) from err
    return frozenset(ordered)


_BOUNDED = {PRIMITIVES["mapply"]: _bounded_mapply, PRIMITIVES["prapply"]: _bounded_prapply}


class _Node(NamedTuple):
    function: Any  # the primitive, or None when the callee is a variable's value
    callee: int  # slot of that variable, or -1
    single: int  # the slot of the only argument, or -1
    getter: Any  # itemgetter of several argument slots, or None
    reads: tuple[int, ...]  # slots the line needs: the callee variable's and the arguments'
    bounded: Any = None  # the bounded version of the primitive, where it may be used

    @property
    def operation(self) -> Any:
        """What the node computes from its reads (None: call the callee variable's value)."""
        return self.bounded or self.function


class ProgramGroup:
    """Several programs as one graph of distinct line computations over shared slots.

    Slot 0 holds the input; then constants and primitives used as values; then one slot per
    distinct computation. ``plans[i]`` lists the node slots of program i's lines in order, and
    its output slot. Programs that failed to compile are given as a failure record and are
    never matched. Objects that are not :class:`Program` (the sandbox tests' fault-injecting
    programs) become a single opaque node each.
    """

    __slots__ = ("template", "nodes", "plans", "lines", "keys")

    def __init__(self, programs: Sequence[Any]) -> None:
        self.template: list[Any] = [None]
        self.nodes: list[_Node | None] = [None]
        self.plans: list[tuple[tuple[int, ...], int] | None] = []
        self.lines = 0
        named: dict[str, int] = {}
        node_of: dict[tuple[Any, ...], int] = {}
        unused: set[int] = set()  # nodes some program computes but never reads

        def value_slot(name: str) -> int:
            slot = named.get(name)
            if slot is None:
                value = CONSTANTS[name] if name in CONSTANTS else PRIMITIVES[name]
                slot = named[name] = self._add(value, None)
            return slot

        for program in programs:
            if isinstance(program, tuple):  # a compile failure record
                self.plans.append(None)
                continue
            if not isinstance(program, Program):
                slot = self._add(None, _Node(_opaque(program), -1, 0, None, (0,)))
                self.plans.append(((slot,), slot))
                self.lines += 1
                continue
            local = {"I": 0}
            plan = []
            for line in program.lines:
                function = PRIMITIVES.get(line.callee) if line.callee not in local else None
                callee = -1 if function is not None else local[line.callee]
                args = tuple(local[a] if a in local else value_slot(a) for a in line.args)
                key = (line.callee if function is not None else callee, args)
                slot = node_of.get(key)
                if slot is None:
                    single = args[0] if len(args) == 1 else -1
                    getter = itemgetter(*args) if len(args) > 1 else None
                    reads = args if function is not None else (callee, *args)
                    slot = node_of[key] = self._add(
                        None, _Node(function, callee, single, getter, reads)
                    )
                local[line.target] = slot
                plan.append(slot)
            self.plans.append((tuple(plan), local["O"]))
            self.lines += len(plan)
            used = {local["O"]}
            for slot in plan:
                used.update(self.nodes[slot].reads)
            unused.update(slot for slot in plan if slot not in used)
        for slot, node in enumerate(self.nodes):
            if node is not None and node.function in _BOUNDED and slot not in unused:
                self.nodes[slot] = node._replace(bounded=_BOUNDED[node.function])
        # Value keys of the fixed slots (see match_group); the nodes' are found per input.
        self.keys: list[Any] = [("I",)] + [
            ("fixed", slot) if node is None else None for slot, node in enumerate(self.nodes)
        ][1:]

    def _add(self, value: Any, node: _Node | None) -> int:
        self.template.append(value)
        self.nodes.append(node)
        return len(self.template) - 1

    @property
    def distinct_lines(self) -> int:
        return sum(node is not None for node in self.nodes)


def _opaque(program: Any) -> Callable[[Any], Any]:
    def run(grid: Any) -> Any:
        return program.run(grid)

    return run


def match_group(
    group: ProgramGroup,
    grid: Any,
    expected: Any,
    *,
    timer: RunTimer,
    timeout_s: float,
    max_state_size: int | None,
    on_program: Callable[[int, int], None] | None = None,
    on_node: Callable[[int], None] | None = None,
    faults: Faults | None = None,
) -> GroupMatches:
    """Run every program of ``group`` on ``grid``; which of them return ``expected``.

    ``timer`` enforces ``timeout_s`` per computed line. ``on_program(index, lines)`` is called
    before each program starts, ``on_node(node)`` before a node is computed and ``on_node(-1)``
    once it and its value key are done (the sandbox worker publishes a watchdog deadline and
    its progress with them). ``faults`` are computations not to run again (see :class:`Faults`).

    Besides the graph's sharing, equal computations are found by value on each input: every
    computed value gets a key (equal values, equal keys), and a node whose operation and
    argument keys were seen before takes that result (value or failure) without running.
    Mutants that change a line into an equivalent one on this input (``remove(SIX, x1)``
    where the palette has no 6) then share all the work after it, time-outs included.
    """
    values = group.template.copy()
    values[0] = grid
    nodes = group.nodes
    keys = group.keys.copy()
    state = [_NEW] * len(values)
    seen: dict[tuple[Any, ...], int] = {}  # (operation, argument keys) -> first slot
    interned: dict[tuple[type, Any], int] = {}  # (type, value) -> value key
    limit = max_state_size
    dead_nodes, dead_programs = faults or ({}, {})
    matches: list[int] = []
    timeouts = failures = 0
    try:
        for index, plan in enumerate(group.plans):
            if plan is None:
                failures += 1
                continue
            if index in dead_programs:
                timeouts += dead_programs[index]
                failures += not dead_programs[index]
                continue
            slots, output = plan
            if on_program is not None:
                on_program(index, len(slots))
            outcome = _OK
            for slot in slots:
                outcome = state[slot]
                if outcome == _NEW:
                    node = nodes[slot]
                    signature = (node.operation, tuple([keys[r] for r in node.reads]))
                    first = seen.get(signature)
                    if first is not None:
                        values[slot] = values[first]
                        keys[slot] = keys[first]
                        outcome = state[slot] = state[first]
                    elif slot in dead_nodes:
                        seen[signature] = slot
                        keys[slot] = signature
                        outcome = state[slot] = _TIMED_OUT if dead_nodes[slot] else _FAILED
                    else:
                        seen[signature] = slot
                        if on_node is not None:
                            on_node(slot)
                        outcome = state[slot] = _compute(
                            node, slot, values, state, timer, timeout_s, limit
                        )
                        keys[slot] = _value_key(values[slot], signature, outcome, interned)
                        if on_node is not None:
                            on_node(-1)
                if outcome >= _FAILED:
                    break
            if outcome == _TIMED_OUT:
                timeouts += 1
            elif outcome == _FAILED or state[output] == _DROPPED:
                failures += 1
            elif values[output] == expected:
                matches.append(index)
    finally:
        timer.stop()
    return GroupMatches(tuple(matches), timeouts, failures)


def _value_key(value: Any, signature: tuple[Any, ...], outcome: int, interned: dict) -> Any:
    """Equal data values share an int key; functions (and anything unhashable) are keyed by the
    computation that made them, which determines them."""
    if outcome >= _FAILED or callable(value):
        return signature
    try:
        return interned.setdefault((type(value), value), len(interned))
    except TypeError:
        return signature


def _compute(
    node: _Node,
    slot: int,
    values: list[Any],
    state: list[int],
    timer: RunTimer,
    timeout_s: float,
    limit: int | None,
) -> int:
    """Evaluate one node into ``values[slot]``; its new state."""
    function, callee, single, getter, reads, bounded = node
    if limit is not None:
        for read in reads:
            if state[read] == _DROPPED:
                return _FAILED  # CodeIt's executor never stored that value
    try:
        timer.start(timeout_s)
        if bounded is not None and limit is not None:
            value = bounded(*getter(values), limit)
        else:
            if function is None:
                function = values[callee]
            value = function(values[single]) if single >= 0 else function(*getter(values))
        timer.armed = False
    except RunTimeout:
        timer.armed = False
        return _TIMED_OUT
    except Exception:  # noqa: BLE001 - any DSL failure (MemoryError included) stops the program
        timer.armed = False
        return _FAILED
    values[slot] = value
    if limit is not None and hasattr(value, "__len__") and len(value) >= limit:
        return _DROPPED
    return _OK
