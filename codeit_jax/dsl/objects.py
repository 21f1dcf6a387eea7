"""Objects: extraction (``objects``, ``partition``), matching, and object-level geometry.

``objects`` is the DSL's hot spot. Its result, and the order of the cells in each object,
depend on CPython's set iteration order, so the traversal below performs exactly the set
operations of docs/dsl.md, "The objects traversal", on real ``set`` objects. What it saves is
recomputation: the seed frozenset and each cell's clipped neighbourhood set are built once per
grid shape (with the very insertion sequence of the reference, hence the very same table
layout), the latter on first use, and reused by later calls.
"""

from __future__ import annotations

from functools import lru_cache

from codeit_jax.dsl.grids import palette
from codeit_jax.dsl.patches import (
    adjacent,
    dneighbors,
    leftmost,
    lrcorner,
    neighbors,
    normalize,
    shift,
    toindices,
    uppermost,
    vmatching,
)
from codeit_jax.dsl.properties import (
    asindices,
    height,
    llcorner,
    mostcolor,
    shape,
    ulcorner,
    urcorner,
    width,
)
from codeit_jax.dsl.types import (
    Boolean,
    Grid,
    Indices,
    Integer,
    IntegerTuple,
    Object,
    Objects,
    Patch,
    Piece,
)

# Grids up to this many cells get their neighbourhood sets cached (ARC grids are <= 900);
# 64 shapes of at most 1024 cells keep the cache within a few tens of MB.
_CACHED_TABLE_MAX_CELLS = 1024


def _clipped_neighbourhood(loc: IntegerTuple, h: int, w: int, diagonal: bool) -> set:
    """The in-grid neighbours of ``loc``, built as the reference's set comprehension."""
    around = neighbors(loc) if diagonal else dneighbors(loc)
    return {(i, j) for i, j in around if 0 <= i < h and 0 <= j < w}


@lru_cache(maxsize=64)
def _neighbourhood_memo(h: int, w: int, diagonal: bool) -> dict:
    """loc -> clipped neighbourhood set, filled on first use, shared per grid shape.

    Filled lazily because ``objects`` often visits only the foreground. The sets must never
    be mutated: they are only merged into other sets, which reads them in their
    (deterministic) table order.
    """
    return {}


def objects(grid: Grid, univalued: Boolean, diagonal: Boolean, without_bg: Boolean) -> Objects:
    """Connected components, found by the reference's breadth-wise set traversal."""
    bg = mostcolor(grid) if without_bg else None
    h, w = len(grid), len(grid[0])
    seeds = asindices(grid)
    small = h * w <= _CACHED_TABLE_MAX_CELLS
    memo = _neighbourhood_memo(h, w, bool(diagonal)) if small else {}
    found = set()
    occupied = set()
    for loc in seeds:
        if loc in occupied:
            continue
        val = grid[loc[0]][loc[1]]
        if val == bg:
            continue
        obj = {(val, loc)}
        cands = {loc}
        while cands:
            nbhd = set()
            for cand in cands:
                v = grid[cand[0]][cand[1]]
                if (val == v) if univalued else (v != bg):
                    obj.add((v, cand))
                    occupied.add(cand)
                    around = memo.get(cand)
                    if around is None:
                        around = memo[cand] = _clipped_neighbourhood(cand, h, w, diagonal)
                    nbhd |= around
            cands = nbhd - occupied
        found.add(frozenset(obj))
    return frozenset(found)


def _cells_by_colour(grid: Grid) -> dict:
    """Row-major cell lists keyed by colour (``==``-equal colours share a list)."""
    groups: dict = {}
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            cells = groups.get(v)
            if cells is None:
                groups[v] = [(v, (i, j))]
            else:
                cells.append((v, (i, j)))
    return groups


def partition(grid: Grid) -> Objects:
    """One Object per colour, in ``palette``'s iteration order."""
    colours = palette(grid)
    groups = _cells_by_colour(grid)
    return frozenset([frozenset(groups[c]) for c in colours])


def fgpartition(grid: Grid) -> Objects:
    """``partition`` without the most common colour."""
    colours = palette(grid) - {mostcolor(grid)}
    groups = _cells_by_colour(grid)
    return frozenset([frozenset(groups[c]) for c in colours])


def square(piece: Piece) -> Boolean:
    """A grid with as many rows as columns, or a patch exactly filling a square box."""
    if isinstance(piece, tuple):
        return len(piece) == len(piece[0])
    return height(piece) * width(piece) == len(piece) and height(piece) == width(piece)


def vline(patch: Patch) -> Boolean:
    """A gap-free vertical segment."""
    return height(patch) == len(patch) and width(patch) == 1


def hline(patch: Patch) -> Boolean:
    """A gap-free horizontal segment."""
    return width(patch) == len(patch) and height(patch) == 1


def center(patch: Patch) -> IntegerTuple:
    """Centre of the bounding box, rounded towards the lower right."""
    return (uppermost(patch) + height(patch) // 2, leftmost(patch) + width(patch) // 2)


def position(a: Patch, b: Patch) -> IntegerTuple:
    """Unit direction from ``a``'s centre to ``b``'s; equal centres give (0, -1)."""
    ia, ja = center(toindices(a))
    ib, jb = center(toindices(b))
    if ia == ib:
        return (0, 1 if ja < jb else -1)
    if ja == jb:
        return (1 if ia < ib else -1, 0)
    if ia < ib:
        return (1, 1 if ja < jb else -1)
    if ia > ib:
        return (-1, 1 if ja < jb else -1)
    return None


def corners(patch: Patch) -> Indices:
    """The bounding box's corners (fewer than 4 for a thin box; ``{()}`` when empty)."""
    return frozenset({ulcorner(patch), urcorner(patch), llcorner(patch), lrcorner(patch)})


# How far ``gravitate`` moves at most.
_GRAVITATE_MAX_STEPS = 42


def gravitate(source: Patch, destination: Patch) -> IntegerTuple:
    """Straight-line offset that makes ``source`` adjacent to ``destination`` (capped).

    The reference shifts ``source`` one step at a time and re-tests ``adjacent``; shifting
    every location by k steps changes every pairwise difference by the same k steps, so the
    test is done on the precomputed differences instead.
    """
    si, sj = center(source)
    di, dj = center(destination)
    step_i, step_j = 0, 0
    if vmatching(source, destination):
        step_i = 1 if si < di else -1
    else:
        step_j = 1 if sj < dj else -1
    if adjacent(source, destination):
        return (0, 0)
    src = [(i, j) for i, j in toindices(source)]
    dst = [(i, j) for i, j in toindices(destination)]
    diffs = [(bi - ai, bj - aj) for ai, aj in src for bi, bj in dst]
    for k in range(1, _GRAVITATE_MAX_STEPS):
        oi, oj = k * step_i, k * step_j
        if min([abs(ei - oi) + abs(ej - oj) for ei, ej in diffs]) == 1:
            return (oi, oj)
    return (_GRAVITATE_MAX_STEPS * step_i, _GRAVITATE_MAX_STEPS * step_j)


def _occurrences_reference(grid: Grid, normed: Object, h: int, w: int, h2: int, w2: int) -> set:
    """The reference's offset scan, cell by cell with bounds checks (for ragged grids)."""
    found = set()
    for i in range(h2):
        for j in range(w2):
            occurs = True
            for v, (a, b) in shift(normed, (i, j)):
                if not (0 <= a < h and 0 <= b < w and grid[a][b] == v):
                    occurs = False
                    break
            if occurs:
                found.add((i, j))
    return found


@lru_cache(maxsize=16)
def _colour_masks(grid: Grid) -> dict:
    """colour -> bitmask of the grid's cells of that colour, bit ``r * W + x`` for (r, x).

    Cached because programs search the same grid for many objects. Colours are dict keys,
    so they are matched by ``==`` as in the reference's comparison.
    """
    masks: dict = {}
    w = len(grid[0])
    for r, row in enumerate(grid):
        base = r * w
        for x, v in enumerate(row):
            masks[v] = masks.get(v, 0) | (1 << (base + x))
    return masks


@lru_cache(maxsize=256)
def _offset_mask(h2: int, w2: int, w: int) -> int:
    """Bits ``i * w + j`` of every candidate offset, 0 <= i < h2, 0 <= j < w2."""
    row = (1 << w2) - 1
    mask = 0
    for i in range(h2):
        mask |= row << (i * w)
    return mask


def _matching_offsets(grid: Grid, cells: list, h2: int, w2: int) -> list:
    """Offsets (row-major ascending) where every cell ``(v, a, b)`` matches the grid.

    Rectangular grids only. Offset (i, j) is bit ``i * W + j``; the cell (v, a, b) matches
    there iff colour v is at bit ``(i + a) * W + j + b``, so the matching offsets are the AND
    of every cell's colour mask shifted down by ``a * W + b``. Candidates keep j + b < W, so
    no shift wraps a row into the next.
    """
    w = len(grid[0])
    masks = _colour_masks(grid)
    hits = _offset_mask(h2, w2, w)
    for v, a, b in cells:
        hits &= masks.get(v, 0) >> (a * w + b)
        if not hits:
            return []
    found = []
    while hits:
        lowest = hits & -hits
        found.append(divmod(lowest.bit_length() - 1, w))
        hits ^= lowest
    return found


def occurrences(grid: Grid, obj: Object) -> Indices:
    """Offsets where the object's cells match the grid (bounding-box holes match anything).

    On a rectangular grid every compared location is inside the grid, so no comparison can
    raise and their order cannot matter; matches are then found with bitmasks. Offsets
    enter the result set in the reference's order (row, then column, ascending).
    """
    normed = normalize(obj)
    h, w = len(grid), len(grid[0])
    oh, ow = shape(obj)
    h2, w2 = h - oh + 1, w - ow + 1
    if h2 <= 0 or w2 <= 0:
        return frozenset()
    if not all(type(row) is tuple and len(row) == w for row in grid):
        return frozenset(_occurrences_reference(grid, normed, h, w, h2, w2))
    cells = [(v, a, b) for v, (a, b) in normed]
    return frozenset(set(_matching_offsets(grid, cells, h2, w2)))


def _period(cells: list, normalized: Object, extent: int, along_rows: bool) -> Integer:
    """Smallest shift p in 1..extent-1 under which the cells map into the object, else extent."""
    for p in range(1, extent):
        if along_rows:
            fits = all((c, (i - p, j)) in normalized for c, i, j in cells if i >= p)
        else:
            fits = all((c, (i, j - p)) in normalized for c, i, j in cells if j >= p)
        if fits:
            return p
    return extent


def hperiod(obj: Object) -> Integer:
    """Horizontal period of the normalized object (its width when it has none)."""
    normalized = normalize(obj)
    w = width(normalized)
    if w <= 1:
        return w
    cells = [(c, i, j) for c, (i, j) in normalized]
    return _period(cells, normalized, w, along_rows=False)


def vperiod(obj: Object) -> Integer:
    """Vertical period of the normalized object (its height when it has none)."""
    normalized = normalize(obj)
    h = height(normalized)
    if h <= 1:
        return h
    cells = [(c, i, j) for c, (i, j) in normalized]
    return _period(cells, normalized, h, along_rows=True)
