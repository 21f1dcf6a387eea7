"""DSL primitives: properties (see codeit_jax.dsl for the module order).

Colours and extents of grids, objects and patches. A value is a grid iff it is a tuple, else a
patch/object (docs/dsl.md, "Runtime classification"). Colour ties are broken exactly as the
reference does (docs/dsl.md, "Ties"), by the iteration order of a Python ``set`` built from the
colour sequence, so every value sequence below is produced in the reference's order (row-major
for grids, iteration order for frozensets).
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from itertools import chain as _chain_iterables

from codeit_jax.dsl.containers import _stop_to_runtime
from codeit_jax.dsl.patches import toindices
from codeit_jax.dsl.types import (
    Boolean,
    Callable,
    Container,
    Element,
    FrozenSet,
    Grid,
    Indices,
    Integer,
    IntegerTuple,
    Objects,
    Patch,
    Piece,
)

_flatten = _chain_iterables.from_iterable


def _colour_counts(element: Element) -> Counter:
    """Occurrences of each colour: a grid's values row by row, or the first item of each
    member of a frozenset (in iteration order), so the keys are in first-occurrence order."""
    if isinstance(element, tuple):
        return Counter(_flatten(element))
    return Counter([v for v, _ in element])


def _tie_order(counts: Counter) -> set:
    """The reference breaks ties by iterating ``set(values)``. Adding the distinct values in
    first-occurrence order one by one (an iterator, not the dict: CPython presizes from a
    dict) fills the hash table exactly as adding the whole sequence with repeats does."""
    return set(iter(counts))


def mostcolor(element: Element) -> Integer:
    """Most frequent colour; ties follow the iteration order of the set of colours."""
    counts = _colour_counts(element)
    return max(_tie_order(counts), key=counts.__getitem__)


def leastcolor(element: Element) -> Integer:
    """Least frequent colour present; ties as in ``mostcolor``."""
    counts = _colour_counts(element)
    return min(_tie_order(counts), key=counts.__getitem__)


def _span(values: list) -> Integer:
    """Largest minus smallest plus one: a bounding-box extent along one axis."""
    return max(values) - min(values) + 1


def height(piece: Piece) -> Integer:
    """Rows of a grid, or the bounding-box height of a patch; 0 when empty.

    For a patch this is ``lowermost - uppermost + 1`` computed from one ``toindices`` call
    (the same values and the same failures as calling both, at half the cost).
    """
    if len(piece) == 0:
        return 0
    if isinstance(piece, tuple):
        return len(piece)
    return _span([i for i, _ in toindices(piece)])


def width(piece: Piece) -> Integer:
    """Length of a grid's first row, or the bounding-box width of a patch; 0 when empty."""
    if len(piece) == 0:
        return 0
    if isinstance(piece, tuple):
        return len(piece[0])
    return _span([j for _, j in toindices(piece)])


def shape(piece: Piece) -> IntegerTuple:
    """``(height, width)``, reading a patch's locations once."""
    if len(piece) == 0:
        return (0, 0)
    if isinstance(piece, tuple):
        return (len(piece), len(piece[0]))
    indices = toindices(piece)
    return (_span([i for i, _ in indices]), _span([j for _, j in indices]))


def portrait(piece: Piece) -> Boolean:
    """Strictly taller than wide."""
    rows, cols = shape(piece)
    return rows > cols


def colorcount(element: Element, value: Integer) -> Integer:
    """Number of grid entries, or of frozenset members' first items, equal to ``value``."""
    if isinstance(element, tuple):
        return sum([row.count(value) for row in element])
    return [v for v, _ in element].count(value)


def colorfilter(objs: Objects, value: Integer) -> Objects:
    """Objects whose first cell (iteration order) has colour ``value``.

    An empty object makes the reference's generator raise StopIteration, which surfaces as
    ``RuntimeError``; the same conversion is done here.
    """
    try:
        return frozenset([obj for obj in objs if next(iter(obj))[0] == value])
    except StopIteration as err:
        raise _stop_to_runtime(err) from err


def sizefilter(container: Container, n: Integer) -> FrozenSet:
    """Members of length exactly ``n``, always as a frozenset."""
    return frozenset([item for item in container if len(item) == n])


# Grids up to this many cells (every ARC grid: at most 30 x 30) share one cached frozenset
# per shape; larger ones (made by upscale, concat, ...) are built afresh so as not to pin
# memory in a sandbox worker.
_CACHED_GRID_CELLS = 1024


def _row_major_indices(rows: int, cols: int) -> Indices:
    """Row-major indices of a rows x cols grid (the reference's build order)."""
    return frozenset([(i, j) for i in range(rows) for j in range(cols)])


_cached_row_major_indices = lru_cache(maxsize=2048)(_row_major_indices)


def asindices(grid: Grid) -> Indices:
    """Every location of the grid (width from the first row); ``()`` gives ``frozenset()``."""
    rows = len(grid)
    if rows == 0:
        return frozenset()
    cols = len(grid[0])
    if rows * cols <= _CACHED_GRID_CELLS:
        return _cached_row_major_indices(rows, cols)
    return _row_major_indices(rows, cols)


def ofcolor(grid: Grid, value: Integer) -> Indices:
    """Locations whose value is ``value``, built row-major."""
    return frozenset([(i, j) for i, r in enumerate(grid) for j, v in enumerate(r) if v == value])


def ulcorner(patch: Patch) -> IntegerTuple:
    """(smallest row, smallest column), taken independently; ``()`` for an empty patch."""
    return tuple(map(min, zip(*toindices(patch))))


def _corner(patch: Patch, pick_row: Callable, pick_col: Callable) -> IntegerTuple:
    """Picks one value per coordinate axis of the patch's locations.

    Only two axes have a picker: a location with more than two coordinates (e.g. a grid row
    taken as a location) raises ``KeyError`` at the third axis, as in the reference.
    """
    axes = tuple(zip(*toindices(patch)))
    if len(axes) == 2:
        return (pick_row(axes[0]), pick_col(axes[1]))
    picks = (pick_row, pick_col)
    corner = []
    for axis, values in enumerate(axes):
        if axis >= len(picks):
            raise KeyError(axis)
        corner.append(picks[axis](values))
    return tuple(corner)


def urcorner(patch: Patch) -> IntegerTuple:
    """(smallest row, largest column); ``()`` for an empty patch."""
    return _corner(patch, min, max)


def llcorner(patch: Patch) -> IntegerTuple:
    """(largest row, smallest column); ``()`` for an empty patch."""
    return _corner(patch, max, min)
