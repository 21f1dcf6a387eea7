"""Grid transforms and drawing: cropping, turning, mirroring, scaling, splitting, painting.

Grids are tuples of row tuples. The reference reads ``len(grid)`` and ``len(grid[0])``
before anything else in several primitives, so a grid ``()`` raises ``IndexError`` there
even when the call would otherwise be a no-op; that evaluation order is kept (docs/dsl.md,
"Error order"). Mirrors live here too because they take grids as well as patches. Frozensets
are built from the reference's element sequence (docs/dsl.md, "Iteration order").
"""

from __future__ import annotations

from codeit_jax.dsl.patches import lrcorner, shift, toindices
from codeit_jax.dsl.properties import mostcolor, shape, ulcorner
from codeit_jax.dsl.types import (
    Any,
    Element,
    Grid,
    Integer,
    IntegerSet,
    IntegerTuple,
    Object,
    Objects,
    Patch,
    Piece,
    Tuple,
)

# CodeIt's cap on the number of cells ``canvas`` will build.
CANVAS_MAX_CELLS = 1000


def crop(grid: Grid, start: IntegerTuple, dims: IntegerTuple) -> Grid:
    """Sub-grid by Python slice rules on both axes (clipped, never raises for ints).

    The column bounds are read only once a row is selected, as in the reference's
    generator, so a malformed ``start``/``dims`` fails only when rows are selected.
    """
    rows = grid[start[0] : start[0] + dims[0]]
    if not rows:
        return ()
    j0 = start[1]
    j1 = start[1] + dims[1]
    return tuple([row[j0:j1] for row in rows])


def palette(element: Element) -> IntegerSet:
    """The colours present (a grid's values, or each member's first item)."""
    if isinstance(element, tuple):
        return frozenset({v for row in element for v in row})
    return frozenset({v for v, _ in element})


def numcolors(element: Element) -> IntegerSet:
    """Number of distinct colours (an int, despite the reference's annotation)."""
    return len(palette(element))


def color(obj: Object) -> Integer:
    """Colour of the first cell in iteration order."""
    return next(iter(obj))[0]


def toobject(patch: Patch, grid: Grid) -> Object:
    """The grid's cells at the patch's in-bounds locations."""
    h, w = len(grid), len(grid[0])
    return frozenset(
        [(grid[i][j], (i, j)) for i, j in toindices(patch) if 0 <= i < h and 0 <= j < w]
    )


def asobject(grid: Grid) -> Object:
    """Every cell of the grid as an Object, row-major."""
    return frozenset([(v, (i, j)) for i, row in enumerate(grid) for j, v in enumerate(row)])


def rot90(grid: Grid) -> Grid:
    """Quarter turn clockwise."""
    return tuple(zip(*grid[::-1]))


def rot180(grid: Grid) -> Grid:
    """Half turn."""
    return tuple([tuple(row[::-1]) for row in grid[::-1]])


def rot270(grid: Grid) -> Grid:
    """Quarter turn anticlockwise (kept in the reference's form for ragged grids)."""
    return tuple([tuple(row[::-1]) for row in zip(*grid[::-1])])[::-1]


def hmirror(piece: Piece) -> Piece:
    """Upside-down flip; a patch flips inside its own bounding box."""
    if isinstance(piece, tuple):
        return piece[::-1]
    d = ulcorner(piece)[0] + lrcorner(piece)[0]
    if isinstance(next(iter(piece))[1], tuple):
        return frozenset([(v, (d - i, j)) for v, (i, j) in piece])
    return frozenset([(d - i, j) for i, j in piece])


def vmirror(piece: Piece) -> Piece:
    """Left-right flip; a patch flips inside its own bounding box."""
    if isinstance(piece, tuple):
        return tuple([row[::-1] for row in piece])
    d = ulcorner(piece)[1] + lrcorner(piece)[1]
    if isinstance(next(iter(piece))[1], tuple):
        return frozenset([(v, (i, d - j)) for v, (i, j) in piece])
    return frozenset([(i, d - j) for i, j in piece])


def dmirror(piece: Piece) -> Piece:
    """Transpose; a patch is transposed about its upper-left corner."""
    if isinstance(piece, tuple):
        return tuple(zip(*piece))
    a, b = ulcorner(piece)
    if isinstance(next(iter(piece))[1], tuple):
        return frozenset([(v, (j - b + a, i - a + b)) for v, (i, j) in piece])
    return frozenset([(j - b + a, i - a + b) for i, j in piece])


def cmirror(piece: Piece) -> Piece:
    """Anti-transpose; for a patch three rebuilds, as in the reference."""
    if isinstance(piece, tuple):
        return tuple(zip(*(row[::-1] for row in piece[::-1])))
    return vmirror(dmirror(vmirror(piece)))


def fill(grid: Grid, value: Integer, patch: Patch) -> Grid:
    """Set the patch's in-bounds locations to ``value``."""
    h, w = len(grid), len(grid[0])
    rows = [list(row) for row in grid]
    for i, j in toindices(patch):
        if 0 <= i < h and 0 <= j < w:
            rows[i][j] = value
    return tuple([tuple(row) for row in rows])


def paint(grid: Grid, obj: Object) -> Grid:
    """Write the object's in-bounds cells; later cells in iteration order win."""
    h, w = len(grid), len(grid[0])
    rows = [list(row) for row in grid]
    for v, (i, j) in obj:
        if 0 <= i < h and 0 <= j < w:
            rows[i][j] = v
    return tuple([tuple(row) for row in rows])


def underfill(grid: Grid, value: Integer, patch: Patch) -> Grid:
    """Like ``fill``, but only where the grid currently holds its most common colour."""
    h, w = len(grid), len(grid[0])
    bg = mostcolor(grid)
    rows = [list(row) for row in grid]
    for i, j in toindices(patch):
        if 0 <= i < h and 0 <= j < w and rows[i][j] == bg:
            rows[i][j] = value
    return tuple([tuple(row) for row in rows])


def underpaint(grid: Grid, obj: Object) -> Grid:
    """Like ``paint``, but only where the grid currently holds the input's background."""
    h, w = len(grid), len(grid[0])
    bg = mostcolor(grid)
    rows = [list(row) for row in grid]
    for v, (i, j) in obj:
        if 0 <= i < h and 0 <= j < w and rows[i][j] == bg:
            rows[i][j] = v
    return tuple([tuple(row) for row in rows])


def hupscale(grid: Grid, factor: Integer) -> Grid:
    """Repeat every value ``factor`` times along its row."""
    return tuple([tuple([v for v in row for _ in range(factor)]) for row in grid])


def vupscale(grid: Grid, factor: Integer) -> Grid:
    """Repeat every row ``factor`` times."""
    return tuple([row for row in grid for _ in range(factor)])


def upscale(element: Element, factor: Integer) -> Element:
    """Blow every cell up to a ``factor`` x ``factor`` block (an Object keeps its corner)."""
    if isinstance(element, tuple):
        out = []
        for row in element:
            scaled = tuple([v for v in row for _ in range(factor)])
            out.extend([scaled for _ in range(factor)])
        return tuple(out)
    if len(element) == 0:
        return frozenset()
    di, dj = ulcorner(element)
    normed = shift(element, (-di, -dj))
    cells = {
        (v, (i * factor + io, j * factor + jo))
        for v, (i, j) in normed
        for io in range(factor)
        for jo in range(factor)
    }
    return shift(frozenset(cells), (di, dj))


def downscale(grid: Grid, factor: Integer) -> Grid:
    """Keep the rows and columns whose index is a multiple of ``factor``."""
    h, w = len(grid), len(grid[0])
    rows = [tuple([grid[i][j] for j in range(w) if j % factor == 0]) for i in range(h)]
    return tuple([rows[i] for i in range(len(rows)) if i % factor == 0])


def hconcat(a: Grid, b: Grid) -> Grid:
    """``b`` to the right of ``a`` (as many rows as the shorter grid)."""
    return tuple([ra + rb for ra, rb in zip(a, b)])


def vconcat(a: Grid, b: Grid) -> Grid:
    """``b`` below ``a``."""
    return a + b


def subgrid(patch: Patch, grid: Grid) -> Grid:
    """The grid inside the patch's bounding box."""
    return crop(grid, ulcorner(patch), shape(patch))


def hsplit(grid: Grid, n: Integer) -> Tuple:
    """``n`` side-by-side pieces; one column is skipped after each piece if ``n`` misfits."""
    h, w = len(grid), len(grid[0]) // n
    offset = len(grid[0]) % n != 0
    return tuple([crop(grid, (0, w * i + i * offset), (h, w)) for i in range(n)])


def vsplit(grid: Grid, n: Integer) -> Tuple:
    """``n`` stacked pieces; one row is skipped after each piece if ``n`` misfits."""
    h, w = len(grid) // n, len(grid[0])
    offset = len(grid) % n != 0
    return tuple([crop(grid, (h * i + i * offset, 0), (h, w)) for i in range(n)])


def cellwise(a: Grid, b: Grid, fallback: Integer) -> Grid:
    """``a``'s value where ``a`` and ``b`` agree, else ``fallback`` (``a``'s shape)."""
    h, w = len(a), len(a[0])
    return tuple(
        [tuple([a[i][j] if a[i][j] == b[i][j] else fallback for j in range(w)]) for i in range(h)]
    )


def replace(grid: Grid, replacee: Integer, replacer: Integer) -> Grid:
    """Every ``replacee`` becomes ``replacer``."""
    return tuple([tuple([replacer if v == replacee else v for v in row]) for row in grid])


def switch(grid: Grid, a: Integer, b: Integer) -> Grid:
    """Swap colours ``a`` and ``b``.

    The swap goes through the dict ``{a: b, b: a}`` as in the reference, which decides the
    result when ``a == b`` with different types (``1`` and ``True``).
    """
    swap = {a: b, b: a}
    return tuple([tuple([v if (v != a and v != b) else swap[v] for v in row]) for row in grid])


def index(grid: Grid, loc: IntegerTuple) -> Integer:
    """``grid[i][j]``, or ``None`` outside the grid (no wraparound)."""
    i, j = loc
    h, w = len(grid), len(grid[0])
    if not (0 <= i < h and 0 <= j < w):
        return None
    return grid[loc[0]][loc[1]]


def canvas(value: Integer, dimensions: IntegerTuple) -> Grid:
    """A grid filled with ``value``; CodeIt gives ``None`` above 1000 cells."""
    if dimensions[0] * dimensions[1] > CANVAS_MAX_CELLS:
        return None
    rows = range(dimensions[0])
    if not rows:
        return ()
    row = tuple([value for _ in range(dimensions[1])])
    return tuple([row for _ in rows])


def cover(grid: Grid, patch: Patch) -> Grid:
    """Fill the patch with the grid's most common colour."""
    return fill(grid, mostcolor(grid), toindices(patch))


def move(grid: Grid, obj: Object, offset: IntegerTuple) -> Grid:
    """Cover the object, then paint it shifted by ``offset``."""
    return paint(cover(grid, obj), shift(obj, offset))


def trim(grid: Grid) -> Grid:
    """Drop the outermost rows and columns."""
    return tuple([row[1:-1] for row in grid[1:-1]])


def tophalf(grid: Grid) -> Grid:
    """The first ``H // 2`` rows."""
    return grid[: len(grid) // 2]


def bottomhalf(grid: Grid) -> Grid:
    """The last ``H // 2`` rows."""
    return grid[len(grid) // 2 + len(grid) % 2 :]


def lefthalf(grid: Grid) -> Grid:
    """The first ``W // 2`` columns (via rotations, so ``W < 2`` gives ``()``)."""
    return rot270(tophalf(rot90(grid)))


def righthalf(grid: Grid) -> Grid:
    """The last ``W // 2`` columns (via rotations, so ``W < 2`` gives ``()``)."""
    return rot270(bottomhalf(rot90(grid)))


def _uniform_rows(grid: Any) -> tuple[int, ...]:
    """Indices of the rows holding exactly one distinct value."""
    return tuple([i for i, row in enumerate(grid) if len(set(row)) == 1])


def frontiers(grid: Grid) -> Objects:
    """Uniform rows and columns as Objects (row frontiers first, then a set union)."""
    h, w = len(grid), len(grid[0])
    row_ids = _uniform_rows(grid)
    col_ids = _uniform_rows(dmirror(grid))
    row_fronts = frozenset({frozenset({(grid[i][j], (i, j)) for j in range(w)}) for i in row_ids})
    col_fronts = frozenset({frozenset({(grid[i][j], (i, j)) for i in range(h)}) for j in col_ids})
    return row_fronts | col_fronts


def compress(grid: Grid) -> Grid:
    """Delete every uniform row and column (both decided on the input)."""
    row_ids = _uniform_rows(grid)
    col_ids = _uniform_rows(dmirror(grid))
    return tuple(
        [
            tuple([v for j, v in enumerate(row) if j not in col_ids])
            for i, row in enumerate(grid)
            if i not in row_ids
        ]
    )
