"""Grids as sparse text, tasks as model input, programs as model targets.

Grid text (CodeIt's sparse idea, made deterministic and compact)::

    <height>x<width> bg=<background> <colour>=<i>,<j> <i>,<j> ... <colour>=<i>,<j> ...

e.g. ``3x4 bg=0 2=0,1 1,1 7=2,3``. The background is the most common colour; on a tie the
*smallest* such colour wins, which is also what the DSL's ``mostcolor`` picks. Every other
colour present follows in ascending order with its cells in row-major order (the official
encoder iterates Python sets, so its text depends on hashing). Every piece is a word of the
built-in tokenizer's vocabulary, so a cell costs three tokens (`` i``, ``,``, ``j``). The official
text says ``background=`` where this says ``bg=`` (one vocabulary word).

Grids no ARC task has are encoded too, because the official mutated files hold them (empty
``[]`` / ``[[]]``, sides over 30, colours outside 0-9) and the official run trains on them: a
grid without cells is ``<height>x<width>`` alone (``0x0``, ``1x0``; the official text is
``empty``, a word the built-in vocabulary lacks, and loses the shape); any other rectangular grid
of ints keeps the format above with its real size and colours, e.g. ``1x31 bg=12 3=0,30``.
Numbers above 30 are not vocabulary words, but the built-in tokenizer splits them into digits and
decodes them losslessly. A negative colour gives ``-1=...``: the built-in tokenizer has no ``-``
(``DSLTokenizer.encode(text, strict=True)`` raises), so such a task cannot be encoded with it and
loaders skip it; a Hugging Face tokenizer encodes it. `text_to_grid` reads ARC grids only.

Model input for a task: the first ``n_examples`` demonstration inputs joined by ``|``, a
newline, their outputs joined by ``|``. Truncation is done in *tokens*, per side, exactly as
CodeIt's ``tokenize_inputs`` does it: the inputs side, after the tokenizer's leading special
tokens (CodeT5's ``<s>``), is cut to ``input_state_max`` ids, the outputs side to
``input_state_max - 1``; no eos follows. The newline between them always survives and the model
always sees the start of both sides; the whole input is at most `max_input_length` ids long.
A program label is the tokenizer's leading special tokens, the program and eos (CodeIt encodes
programs with the special tokens too).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING

from codeit_jax.tasks import Grid, Task, is_grid

if TYPE_CHECKING:
    from codeit_jax.policy.tokenizer import Tokenizer

#: Separates the grids of one side of the model input.
GRID_SEPARATOR = "|"
#: Separates the inputs side from the outputs side.
SIDE_SEPARATOR = "\n"

_HEADER = re.compile(r"([0-9]+)x([0-9]+) bg=([0-9])")
_COLOUR_START = re.compile(r"([0-9])=([0-9]+),([0-9]+)")
_CELL = re.compile(r"([0-9]+),([0-9]+)")


class GridTextError(ValueError):
    """A grid text is not in the canonical sparse format."""


def background_colour(grid: Grid) -> int:
    """Most common colour of a grid with at least one cell; the smallest one among equally
    common colours (any ints, so that non-ARC grids of the mutated files have one too)."""
    counts = Counter(cell for row in grid for cell in row)
    if not counts:
        raise ValueError("a grid without cells has no background colour")
    return max(counts, key=lambda c: (counts[c], -c))


def grid_to_text(grid: Grid) -> str:
    """A rectangular grid of ints -> its canonical sparse text (see the module docstring).

    ARC grids give the sparse format; an empty grid gives ``<height>x<width>`` alone. Anything
    that is not a tuple of equally long tuples of ints raises ValueError.
    """
    height, width = _shape(grid)
    if height == 0 or width == 0:
        return f"{height}x{width}"
    background = background_colour(grid)
    cells: dict[int, list[str]] = {}
    for i, row in enumerate(grid):
        for j, colour in enumerate(row):
            if colour != background:
                cells.setdefault(colour, []).append(f"{i},{j}")
    parts = [f"{height}x{width} bg={background}"]
    for colour in sorted(cells):
        parts.append(f"{colour}=" + " ".join(cells[colour]))
    return " ".join(parts)


def _shape(grid: object) -> tuple[int, int]:
    """(height, width) of a rectangular tuple-of-tuples grid of ints; ValueError otherwise."""
    if is_grid(grid):
        return len(grid), len(grid[0])
    if type(grid) is not tuple or any(type(row) is not tuple for row in grid):
        raise ValueError(f"not a grid (a tuple of row tuples of ints): {_short(grid)}")
    width = len(grid[0]) if grid else 0
    if any(len(row) != width for row in grid):
        raise ValueError(f"not a rectangular grid (rows of unequal length): {_short(grid)}")
    if any(type(cell) is not int for row in grid for cell in row):
        raise ValueError(f"not a grid of ints: {_short(grid)}")
    return len(grid), width


def text_to_grid(text: str) -> Grid:
    """Canonical sparse text -> grid; raises `GridTextError` saying what is wrong."""
    words = text.split(" ")
    header = " ".join(words[:2])
    match = _HEADER.fullmatch(header)
    if match is None:
        raise GridTextError(f"grid text must start with '<h>x<w> bg=<colour>': {_short(text)}")
    height, width, background = (int(g) for g in match.groups())
    if not (1 <= height <= 30 and 1 <= width <= 30):
        raise GridTextError(f"grid size {height}x{width} is outside 1..30 x 1..30")
    rows = [[background] * width for _ in range(height)]
    seen_colours: set[int] = set()
    seen_cells: set[tuple[int, int]] = set()
    colour: int | None = None
    for word in words[2:]:
        start = _COLOUR_START.fullmatch(word)
        if start is not None:
            colour = int(start.group(1))
            if colour == background or colour in seen_colours:
                raise GridTextError(f"colour {colour} listed twice or equal to the background")
            seen_colours.add(colour)
            i, j = int(start.group(2)), int(start.group(3))
        else:
            cell = _CELL.fullmatch(word)
            if cell is None or colour is None:
                raise GridTextError(f"unexpected word {word!r} in grid text {_short(text)}")
            i, j = int(cell.group(1)), int(cell.group(2))
        if not (i < height and j < width) or (i, j) in seen_cells:
            raise GridTextError(f"cell {i},{j} is outside the {height}x{width} grid or repeated")
        seen_cells.add((i, j))
        rows[i][j] = colour
    return tuple(tuple(row) for row in rows)


def task_sides(task: Task, n_examples: int) -> tuple[str, str]:
    """The untruncated inputs side and outputs side of a task's model input."""
    if n_examples < 1:
        raise ValueError(f"n_examples must be at least 1, got {n_examples}")
    if not task.train:
        raise ValueError(f"task {task.key!r} has no demonstration examples")
    examples = task.train[:n_examples]
    inputs = GRID_SEPARATOR.join(grid_to_text(x) for x, _ in examples)
    outputs = GRID_SEPARATOR.join(grid_to_text(y) for _, y in examples)
    return inputs, outputs


def task_to_text(task: Task, n_examples: int) -> str:
    """The full (untruncated) model input text of a task."""
    inputs, outputs = task_sides(task, n_examples)
    return inputs + SIDE_SEPARATOR + outputs


def encode_task(
    task: Task, tokenizer: Tokenizer, n_examples: int, input_state_max: int
) -> list[int]:
    """Model input ids: the inputs side (after the tokenizer's prefix) cut to
    ``input_state_max`` ids, the newline, the outputs side cut to ``input_state_max - 1``."""
    return encode_task_cut(task, tokenizer, n_examples, input_state_max)[0]


def encode_task_cut(
    task: Task, tokenizer: Tokenizer, n_examples: int, input_state_max: int
) -> tuple[list[int], bool]:
    """`encode_task`'s ids and whether a side was cut (the model sees only its start), so that
    runs can say how many of their tasks the model sees in part."""
    if input_state_max < 2:
        raise ValueError(f"input_state_max must be at least 2, got {input_state_max}")
    inputs, outputs = task_sides(task, n_examples)
    first = [*tokenizer.prefix_ids, *tokenizer.encode(inputs)]
    second = tokenizer.encode(outputs)
    cut = len(first) > input_state_max or len(second) > input_state_max - 1
    ids = first[:input_state_max] + tokenizer.encode(SIDE_SEPARATOR) + second[: input_state_max - 1]
    return ids, cut


def max_input_length(tokenizer: Tokenizer, input_state_max: int) -> int:
    """The longest input `encode_task` can return for this tokenizer and side limit."""
    return 2 * input_state_max - 1 + len(tokenizer.encode(SIDE_SEPARATOR))


def encode_program(program: str, tokenizer: Tokenizer) -> list[int]:
    """Target ids of a bare-lines program text: the tokenizer's prefix, the program, eos (never
    truncated here: a cut program teaches nothing, so callers drop programs over their length
    limit instead)."""
    return [*tokenizer.prefix_ids, *tokenizer.encode(program), tokenizer.eos_id]


def bare_program(text: str) -> str:
    """A stored ``def solve_...(I):`` function text -> the normalised bare-lines form.

    Already bare text is returned unchanged (trailing blank lines removed). The result is the
    ``x1 = f(a, b)`` ... ``O = g(x1)`` lines without indentation, def or return line.
    """
    lines = text.strip("\n").split("\n")
    if not lines or not lines[0].startswith("def "):
        return "\n".join(line.rstrip() for line in lines)
    if not lines[0].rstrip().endswith(":"):
        raise ValueError(f"program's def line does not end with ':': {lines[0]!r}")
    body = lines[1:]
    if not body or body[-1].strip() != "return O":
        raise ValueError("program function must end with 'return O'")
    bare = []
    for line in body[:-1]:
        if not line.startswith("    "):
            raise ValueError(f"program line is not indented by 4 spaces: {line!r}")
        bare.append(line[4:].rstrip())
    if not bare:
        raise ValueError("program function has no statements")
    return "\n".join(bare)


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = [
    "GRID_SEPARATOR",
    "SIDE_SEPARATOR",
    "GridTextError",
    "background_colour",
    "bare_program",
    "encode_program",
    "encode_task",
    "grid_to_text",
    "max_input_length",
    "task_sides",
    "task_to_text",
    "text_to_grid",
]
