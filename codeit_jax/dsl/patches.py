"""Patch geometry: locations, extents, shifts, neighbourhoods, lines and outlines.

Everything here works on Indices or Objects without looking at colours. Every frozenset is
built from the same element sequence as in the reference DSL (docs/dsl.md, "Iteration order"),
because ``first``, ``argmax`` and friends downstream depend on that order. Comprehensions
are materialised as lists before ``frozenset(...)``: CPython inserts the elements in the same
order either way, and lists avoid the generator overhead. Errors on degenerate input come
from the same Python operations as in the reference, so the exception classes match.
"""

from __future__ import annotations

from codeit_jax.dsl.types import Boolean, Grid, Indices, Integer, IntegerTuple, Object, Patch


def toindices(patch: Patch) -> Indices:
    """The patch's locations; Indices are handed back as the very same object."""
    if len(patch) == 0:
        return frozenset()
    if isinstance(next(iter(patch))[1], tuple):
        return frozenset([loc for _, loc in patch])
    return patch


def lrcorner(patch: Patch) -> IntegerTuple:
    """(largest row, largest column); ``()`` for an empty patch."""
    return tuple(map(max, zip(*toindices(patch))))


def _ulcorner(patch: Patch) -> tuple:
    """``ulcorner`` itself: (smallest row, smallest column), ``()`` when empty.

    Kept private here because ``ulcorner`` is a primitive of ``properties``, which imports
    this module; the box-shaped primitives below need it with the same ``toindices`` step.
    """
    return tuple(map(min, zip(*toindices(patch))))


def recolor(value: Integer, patch: Patch) -> Object:
    """An Object of colour ``value`` on the patch's locations."""
    return frozenset([(value, loc) for loc in toindices(patch)])


def shift(patch: Patch, directions: IntegerTuple) -> Patch:
    """Translate by ``directions``; always a rebuild (except for an empty patch)."""
    if len(patch) == 0:
        return patch
    di, dj = directions
    if isinstance(next(iter(patch))[1], tuple):
        return frozenset([(v, (i + di, j + dj)) for v, (i, j) in patch])
    return frozenset([(i + di, j + dj) for i, j in patch])


def uppermost(patch: Patch) -> Integer:
    """Smallest row; ``ValueError`` on an empty patch."""
    return min([i for i, _ in toindices(patch)])


def lowermost(patch: Patch) -> Integer:
    """Largest row; ``ValueError`` on an empty patch."""
    return max([i for i, _ in toindices(patch)])


def leftmost(patch: Patch) -> Integer:
    """Smallest column; ``ValueError`` on an empty patch."""
    return min([j for _, j in toindices(patch)])


def rightmost(patch: Patch) -> Integer:
    """Largest column; ``ValueError`` on an empty patch."""
    return max([j for _, j in toindices(patch)])


def normalize(patch: Patch) -> Patch:
    """Shift the bounding box's corner to (0, 0); CodeIt raises on an empty patch."""
    return shift(patch, (-uppermost(patch), -leftmost(patch)))


def dneighbors(loc: IntegerTuple) -> Indices:
    """The 4 orthogonal neighbours (set display order: up, down, left, right)."""
    return frozenset(
        {(loc[0] - 1, loc[1]), (loc[0] + 1, loc[1]), (loc[0], loc[1] - 1), (loc[0], loc[1] + 1)}
    )


def ineighbors(loc: IntegerTuple) -> Indices:
    """The 4 diagonal neighbours."""
    return frozenset(
        {
            (loc[0] - 1, loc[1] - 1),
            (loc[0] - 1, loc[1] + 1),
            (loc[0] + 1, loc[1] - 1),
            (loc[0] + 1, loc[1] + 1),
        }
    )


def neighbors(loc: IntegerTuple) -> Indices:
    """All 8 neighbours, as the union of the orthogonal and diagonal ones."""
    return dneighbors(loc) | ineighbors(loc)


def hmatching(a: Patch, b: Patch) -> Boolean:
    """Whether the two patches share a row."""
    rows_a = {i for i, _ in toindices(a)}
    rows_b = {i for i, _ in toindices(b)}
    return len(rows_a & rows_b) > 0


def vmatching(a: Patch, b: Patch) -> Boolean:
    """Whether the two patches share a column."""
    cols_a = {j for _, j in toindices(a)}
    cols_b = {j for _, j in toindices(b)}
    return len(cols_a & cols_b) > 0


def manhattan(a: Patch, b: Patch) -> Integer:
    """Smallest city-block distance between a location of ``a`` and one of ``b``.

    Pairs are visited in the reference's order (each member of ``a`` against all of ``b``,
    ``b`` extracted only once ``a`` yields a member), so a malformed member fails with the
    same exception as in the reference; an empty side raises ``ValueError`` like ``min``.
    """
    best = None
    indices_b = None
    for ai, aj in toindices(a):
        if indices_b is None:
            indices_b = toindices(b)
        dists = [abs(ai - bi) + abs(aj - bj) for bi, bj in indices_b]
        if dists:
            nearest = min(dists)
            if best is None or nearest < best:
                best = nearest
    if best is None:
        raise ValueError("min() arg is an empty sequence")
    return best


def adjacent(a: Patch, b: Patch) -> Boolean:
    """Manhattan distance exactly 1 (overlap counts as not adjacent)."""
    return manhattan(a, b) == 1


def bordering(patch: Patch, grid: Grid) -> Boolean:
    """Whether an extreme of the patch equals a border index (tests short-circuit)."""
    return (
        uppermost(patch) == 0
        or leftmost(patch) == 0
        or lowermost(patch) == len(grid) - 1
        or rightmost(patch) == len(grid[0]) - 1
    )


def centerofmass(patch: Patch) -> IntegerTuple:
    """Floor of the mean location; the divisor is ``len(patch)``, not the distinct count."""
    indices = toindices(patch)
    return tuple([sum(coords) // len(patch) for coords in zip(*indices)])


def connect(a: IntegerTuple, b: IntegerTuple) -> Indices:
    """The straight (orthogonal or diagonal) segment from ``a`` to ``b``, else empty."""
    ai, aj = a
    bi, bj = b
    si, ei = min(ai, bi), max(ai, bi) + 1
    sj, ej = min(aj, bj), max(aj, bj) + 1
    if ai == bi:
        return frozenset([(ai, j) for j in range(sj, ej)])
    if aj == bj:
        return frozenset([(i, aj) for i in range(si, ei)])
    if bi - ai == bj - aj:
        return frozenset(zip(range(si, ei), range(sj, ej)))
    if bi - ai == aj - bj:
        return frozenset(zip(range(si, ei), range(ej - 1, sj - 1, -1)))
    return frozenset()


def shoot(start: IntegerTuple, direction: IntegerTuple) -> Indices:
    """``connect`` from ``start`` to 42 steps along ``direction``."""
    return connect(start, (start[0] + 42 * direction[0], start[1] + 42 * direction[1]))


def vfrontier(location: IntegerTuple) -> Indices:
    """Rows 0..29 of the location's column (a fixed length, independent of any grid)."""
    return frozenset([(i, location[1]) for i in range(30)])


def hfrontier(location: IntegerTuple) -> Indices:
    """Columns 0..29 of the location's row."""
    return frozenset([(location[0], j) for j in range(30)])


def backdrop(patch: Patch) -> Indices:
    """Every location of the bounding box, row-major; CodeIt raises on an empty patch."""
    # As in the reference: the upper-left corner of toindices(patch) (toindices applied
    # twice), the lower-right one of the patch; they differ only on malformed patches.
    si, sj = _ulcorner(toindices(patch))
    ei, ej = lrcorner(patch)
    return frozenset([(i, j) for i in range(si, ei + 1) for j in range(sj, ej + 1)])


def delta(patch: Patch) -> Indices:
    """The bounding box's locations the patch does not occupy."""
    return backdrop(patch) - toindices(patch)


def _outline(ai: int, aj: int, bi: int, bj: int) -> Indices:
    """Perimeter of the rectangle spanned by two corners, built as the reference builds it."""
    si, sj = min(ai, bi), min(aj, bj)
    ei, ej = max(ai, bi), max(aj, bj)
    vlines = {(i, sj) for i in range(si, ei + 1)} | {(i, ej) for i in range(si, ei + 1)}
    hlines = {(si, j) for j in range(sj, ej + 1)} | {(ei, j) for j in range(sj, ej + 1)}
    return frozenset(vlines | hlines)


def inbox(patch: Patch) -> Indices:
    """Outline of the rectangle one step inside the bounding box (ends swapped if inverted)."""
    ai, aj = uppermost(patch) + 1, leftmost(patch) + 1
    bi, bj = lowermost(patch) - 1, rightmost(patch) - 1
    return _outline(ai, aj, bi, bj)


def outbox(patch: Patch) -> Indices:
    """Outline of the rectangle one step outside the bounding box."""
    ai, aj = uppermost(patch) - 1, leftmost(patch) - 1
    bi, bj = lowermost(patch) + 1, rightmost(patch) + 1
    return _outline(ai, aj, bi, bj)


def box(patch: Patch) -> Indices:
    """Outline of the bounding box; CodeIt raises on an empty patch."""
    ai, aj = _ulcorner(patch)
    bi, bj = lrcorner(patch)
    return _outline(ai, aj, bi, bj)
