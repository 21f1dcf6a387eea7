"""Program texts that look like what a policy samples: mostly broken, some pathological.

Shared by the sandbox benchmark and its fuzz test. A young policy writes programs that are
syntactically fine but wrong (wrong primitive, wrong argument, applied to the wrong task), so
the main generator edits ground-truth programs at the level of names, which keeps most of them
parseable and makes them fail at run time. Random token sequences and hand-made pathological
programs (huge upscales, ``multiply`` chains feeding ``interval``, ``power`` to huge exponents,
deep compositions) cover the rest. :func:`large_output_text` writes a hostile program of another
kind: its output passes CodeIt's length rule but is large in memory.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from codeit_jax.dsl import CONSTANTS, PRIMITIVE_NAMES
from codeit_jax.programs.program import Line, Program

_CONSTANTS = sorted(CONSTANTS)
_PRIMITIVES = list(PRIMITIVE_NAMES)
_PUNCTUATION = [" = ", "(", ")", ", ", "\n", "\n", "def solve(I):\n    ", "return O", "    "]
_VARIABLES = ["I", "O"] + [f"x{k}" for k in range(1, 10)]
_TOKENS = _PRIMITIVES + _CONSTANTS + _VARIABLES + _PUNCTUATION * 12


def random_token_text(rng: random.Random, max_tokens: int = 40) -> str:
    """A random sequence of DSL tokens and punctuation (nearly always a syntax error)."""
    return "".join(rng.choice(_TOKENS) for _ in range(rng.randint(1, max_tokens)))


def _argument_pool(lines: Sequence[Line], index: int) -> list[str]:
    """Names an argument on line ``index`` may legally take."""
    earlier = [line.target for line in lines[:index]]
    return earlier * 8 + ["I"] * 4 + _CONSTANTS + _PRIMITIVES


def _edit_once(lines: list[Line], rng: random.Random) -> list[Line]:
    """One random name-level edit; most results still parse."""
    index = rng.randrange(len(lines))
    target, callee, args = lines[index]
    kind = rng.choices(["argument", "callee", "swap", "arity", "delete"], [5, 3, 1, 1, 1])[0]
    if kind == "argument":
        position = rng.randrange(len(args))
        args = args[:position] + (rng.choice(_argument_pool(lines, index)),) + args[position + 1 :]
    elif kind == "callee":
        callee = rng.choice(_PRIMITIVES)
    elif kind == "swap" and len(args) > 1:
        args = tuple(rng.sample(args, len(args)))
    elif kind == "arity":
        if len(args) > 1 and rng.random() < 0.5:
            args = args[:-1]
        else:
            args = args + (rng.choice(_argument_pool(lines, index)),)
    elif kind == "delete" and len(lines) > 1:
        return lines[:index] + lines[index + 1 :]
    return lines[:index] + [Line(target, callee, args)] + lines[index + 1 :]


def edited_text(program: Program, rng: random.Random, max_edits: int = 3) -> str:
    """The program with 1..max_edits random edits, as bare-form text."""
    lines = list(program.lines)
    for _ in range(rng.randint(1, max_edits)):
        lines = _edit_once(lines, rng)
    return "\n".join(line.text for line in lines)


def _squaring_chain(start: str, squarings: int) -> list[str]:
    lines = [f"x1 = multiply({start}, {start})"]
    lines += [f"x{k} = multiply(x{k - 1}, x{k - 1})" for k in range(2, squarings + 1)]
    return lines


def pathological_texts() -> list[str]:
    """Programs that try to exhaust time or memory, each in a different way."""
    texts = []
    for primitive in ("upscale", "hupscale", "vupscale"):  # huge upscales
        texts.append("\n".join(_squaring_chain("TEN", 3) + [f"O = {primitive}(I, x3)"]))
    for squarings in (3, 5, 30):  # multiply chains into interval; 30 gets stuck in C
        chain = _squaring_chain("TEN", squarings)
        texts.append("\n".join(chain + [f"O = interval(ZERO, x{squarings}, ONE)"]))
    for squarings in (2, 4):  # power of a function to a huge exponent
        chain = _squaring_chain("TEN", squarings)
        texts.append(
            "\n".join(
                chain
                + [f"x{squarings + 1} = power(rot90, x{squarings})", f"O = x{squarings + 1}(I)"]
            )
        )
    depth = 30  # 2**30 calls of a composed function
    composed = ["x1 = compose(vmirror, hmirror)"]
    composed += [f"x{k} = compose(x{k - 1}, x{k - 1})" for k in range(2, depth + 1)]
    texts.append("\n".join(composed + [f"O = x{depth}(I)"]))
    forked = ["x1 = fork(combine, vmirror, hmirror)"]  # values that double at every line
    forked += [f"x{k} = fork(combine, x{k - 1}, x{k - 1})" for k in range(2, 40)]
    texts.append("\n".join(forked + ["O = x39(I)"]))
    return texts


_DIGITS = ["ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE", "TEN"]


def large_output_text(
    inputs: Sequence[Any], cells: int = 90_000, primitive: str = "partition"
) -> str:
    """A program whose output on ``inputs`` has few elements but about ``cells`` cells.

    The input is upscaled by a factor that makes its largest grid about ``cells`` cells (with
    fewer than 1,000 rows, so CodeIt's length rule keeps it) and split by colour with
    ``primitive`` (``partition`` or ``fgpartition``): at most ten frozensets, so the output
    passes the length rule too, yet each of its cells is a tuple in a frozenset.
    """
    height = max(len(grid) for grid in inputs)
    area = max(len(grid) * len(grid[0]) for grid in inputs)
    factor = max(2, min(109, math.isqrt(cells // area), 999 // height))
    tens, units = divmod(factor, 10)
    return "\n".join(
        [
            f"x1 = multiply(TEN, {_DIGITS[tens]})",
            f"x2 = add(x1, {_DIGITS[units]})",
            "x3 = upscale(I, x2)",
            f"O = {primitive}(x3)",
        ]
    )


def policy_like_workload(
    programs: Sequence[Program],
    inputs: Sequence[Sequence[Any]],
    n: int,
    seed: int = 0,
) -> list[tuple[str, list[Any]]]:
    """``n`` (text, inputs) pairs: an edited ground-truth program on another task's inputs.

    ``programs[i]`` is task i's program and ``inputs[i]`` its demonstration inputs.
    """
    if len(programs) != len(inputs) or len(programs) < 2:
        raise ValueError("need at least two tasks, with one program and one input list each")
    rng = random.Random(seed)
    batch = []
    for _ in range(n):
        source = rng.randrange(len(programs))
        other = rng.randrange(len(programs) - 1)
        other += other >= source  # any task but the source
        batch.append((edited_text(programs[source], rng), list(inputs[other])))
    return batch
