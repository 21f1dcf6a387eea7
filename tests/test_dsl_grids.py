"""DSL primitives 81-160: what the recorded vectors do not pin down.

The optimised primitives (``objects``' cached neighbourhoods, ``occurrences``' bitmasks,
``gravitate``'s precomputed differences, ``partition``'s single pass) are checked against
plain step-by-step readings of docs/dsl.md on random grids, comparing iteration order too:
``first`` and friends downstream see that order. Also: CodeIt's ``canvas`` cap, the
empty-patch errors CodeIt introduced, and the evaluation order of malformed arguments.
"""

from __future__ import annotations

import random

import pytest

from codeit_jax.dsl.grids import canvas, crop, fill, paint, palette
from codeit_jax.dsl.objects import (
    fgpartition,
    gravitate,
    hperiod,
    objects,
    occurrences,
    partition,
    vperiod,
)
from codeit_jax.dsl.patches import (
    adjacent,
    backdrop,
    box,
    delta,
    dneighbors,
    inbox,
    manhattan,
    neighbors,
    normalize,
    outbox,
    shift,
)
from codeit_jax.dsl.properties import asindices, mostcolor


def _random_grid(rng: random.Random, max_side: int = 7, colours: int = 3) -> tuple:
    h, w = rng.randint(1, max_side), rng.randint(1, max_side)
    return tuple(tuple(rng.randrange(colours) for _ in range(w)) for _ in range(h))


def _ordered(value):
    """A value with every frozenset replaced by the list of its members in iteration order."""
    if isinstance(value, frozenset):
        return ["frozenset", [_ordered(v) for v in value]]
    if isinstance(value, tuple):
        return tuple(_ordered(v) for v in value)
    return value


# --- plain readings of docs/dsl.md, used as oracles ---------------------------------------


def _spec_objects(grid, univalued, diagonal, without_bg):
    """docs/dsl.md, "The objects traversal", step by step, with nothing cached."""
    bg = mostcolor(grid) if without_bg else None
    h, w = len(grid), len(grid[0])
    around = neighbors if diagonal else dneighbors
    found, occupied = set(), set()
    for loc in asindices(grid):
        if loc in occupied:
            continue
        val = grid[loc[0]][loc[1]]
        if val == bg:
            continue
        obj, cands = {(val, loc)}, {loc}
        while cands:
            nbhd = set()
            for cand in cands:
                v = grid[cand[0]][cand[1]]
                if (val == v) if univalued else (v != bg):
                    obj.add((v, cand))
                    occupied.add(cand)
                    nbhd |= {(i, j) for i, j in around(cand) if 0 <= i < h and 0 <= j < w}
            cands = nbhd - occupied
        found.add(frozenset(obj))
    return frozenset(found)


def _spec_occurrences(grid, obj):
    """Every offset tried, each shifted cell compared with bounds checks."""
    normed = normalize(obj)
    h, w = len(grid), len(grid[0])
    rows = [r for r, _ in (loc for _, loc in obj)]
    cols = [c for _, c in (loc for _, loc in obj)]
    oh, ow = max(rows) - min(rows) + 1, max(cols) - min(cols) + 1
    offsets = set()
    for i in range(h - oh + 1):
        for j in range(w - ow + 1):
            cells = shift(normed, (i, j))
            if all(0 <= a < h and 0 <= b < w and grid[a][b] == v for v, (a, b) in cells):
                offsets.add((i, j))
    return frozenset(offsets)


def _spec_gravitate(source, destination):
    """One step at a time until adjacent, at most 42 steps."""

    def centre(patch):
        rows = [i for i, _ in patch]
        cols = [j for _, j in patch]
        return (
            min(rows) + (max(rows) - min(rows) + 1) // 2,
            min(cols) + (max(cols) - min(cols) + 1) // 2,
        )

    (si, sj), (di, dj) = centre(source), centre(destination)
    shared_column = {j for _, j in source} & {j for _, j in destination}
    step = (1 if si < di else -1, 0) if shared_column else (0, 1 if sj < dj else -1)
    moved = 0
    while not adjacent(source, destination) and moved < 42:
        source = shift(source, step)
        moved += 1
    return (moved * step[0], moved * step[1])


def _spec_partition_member(grid, colour):
    return frozenset(
        (v, (i, j)) for i, r in enumerate(grid) for j, v in enumerate(r) if v == colour
    )


def _spec_hperiod(obj):
    normed = normalize(obj)
    width = max(j for _, (_, j) in normed) + 1
    for p in range(1, width):
        moved = {(c, (i, j - p)) for c, (i, j) in normed if j >= p}
        if moved <= normed:
            return p
    return width


def _random_object(rng: random.Random, colours: int = 3) -> frozenset:
    cells = {
        (rng.randrange(colours), (rng.randrange(4), rng.randrange(4)))
        for _ in range(rng.randint(1, 6))
    }
    return frozenset(cells)


# --- optimised primitives against the oracles ----------------------------------------------


@pytest.mark.parametrize("univalued", [True, False])
@pytest.mark.parametrize("diagonal", [True, False])
@pytest.mark.parametrize("without_bg", [True, False])
def test_objects_follow_the_spec_traversal_order(univalued, diagonal, without_bg):
    rng = random.Random(4 * univalued + 2 * diagonal + without_bg)
    # Build order shows only where set members collide, so this takes many larger grids.
    for _ in range(60):
        grid = _random_grid(rng, max_side=16, colours=4)
        got = objects(grid, univalued, diagonal, without_bg)
        want = _spec_objects(grid, univalued, diagonal, without_bg)
        assert _ordered(got) == _ordered(want), grid


def test_objects_on_a_small_grid_orders_cells_by_traversal():
    # One 4-connected object of colour 1; its cells enter in breadth-wise passes, so the
    # object equals the component and iterates as the documented traversal built it.
    grid = ((1, 1, 0, 0), (0, 1, 0, 0), (0, 1, 1, 0))
    (obj,) = objects(grid, True, False, True)
    assert obj == frozenset({(1, (0, 0)), (1, (0, 1)), (1, (1, 1)), (1, (2, 1)), (1, (2, 2))})
    assert list(obj) == list(next(iter(_spec_objects(grid, True, False, True))))


def test_objects_without_background_of_a_uniform_grid_is_empty():
    assert objects(((4, 4), (4, 4)), True, True, True) == frozenset()
    assert objects(((), ()), False, False, False) == frozenset()


def test_objects_of_the_empty_grid_raise_by_which_step_comes_first():
    with pytest.raises(ValueError):
        objects((), True, False, True)  # mostcolor before the shape
    with pytest.raises(IndexError):
        objects((), True, False, False)


def test_occurrences_match_the_spec_scan_in_order():
    rng = random.Random(7)
    for _ in range(150):
        grid = _random_grid(rng, max_side=8, colours=2)
        obj = _random_object(rng, colours=2)
        got = occurrences(grid, obj)
        assert _ordered(got) == _ordered(_spec_occurrences(grid, obj)), (grid, obj)


def _outcome(fn, *args):
    """The ordered result, or the class of the exception raised."""
    try:
        return _ordered(fn(*args))
    except Exception as err:  # noqa: BLE001 - the class is what is compared
        return type(err)


def test_occurrences_on_ragged_grids_keep_the_reference_scan():
    # A short row fails with IndexError or not depending on which cell is compared first,
    # i.e. on the shifted object's iteration order: the same scan must be used.
    rng = random.Random(13)
    outcomes = set()
    for _ in range(150):
        grid = list(_random_grid(rng, max_side=6, colours=2))
        k = rng.randrange(len(grid))
        grid[k] = grid[k][: rng.randrange(len(grid[k]) + 1)]
        grid = tuple(grid)
        obj = _random_object(rng, colours=2)
        got = _outcome(occurrences, grid, obj)
        assert got == _outcome(_spec_occurrences, grid, obj), (grid, obj)
        outcomes.add(got is IndexError)
    assert outcomes == {True, False}


def test_occurrences_with_two_colours_at_one_location_never_match():
    obj = frozenset({(1, (0, 0)), (2, (0, 0))})
    assert occurrences(((1, 2), (2, 1)), obj) == frozenset()


def test_occurrences_normalizes_before_reading_the_grid():
    with pytest.raises(ValueError):
        occurrences((), frozenset())
    with pytest.raises(TypeError):  # Indices are unpacked as cells once an offset exists
        occurrences(((1, 2),), frozenset({(0, 0)}))
    assert occurrences(((1, 2),), frozenset({(0, 0), (1, 0)})) == frozenset()


def test_gravitate_matches_stepwise_shifting():
    rng = random.Random(11)
    for _ in range(120):
        source = frozenset((rng.randrange(8), rng.randrange(8)) for _ in range(rng.randint(1, 4)))
        dest = frozenset((rng.randrange(8), rng.randrange(8)) for _ in range(rng.randint(1, 4)))
        assert gravitate(source, dest) == _spec_gravitate(source, dest), (source, dest)


def test_partition_objects_follow_palette_order_and_row_major_cells():
    rng = random.Random(3)
    for _ in range(40):
        grid = _random_grid(rng, colours=5)
        want = frozenset(_spec_partition_member(grid, c) for c in palette(grid))
        assert _ordered(partition(grid)) == _ordered(want)
        fg = palette(grid) - {mostcolor(grid)}
        want_fg = frozenset(_spec_partition_member(grid, c) for c in fg)
        assert _ordered(fgpartition(grid)) == _ordered(want_fg)


def test_periods_match_the_subset_definition():
    rng = random.Random(5)
    for _ in range(100):
        obj = _random_object(rng, colours=2)
        assert hperiod(obj) == _spec_hperiod(obj), obj
        transposed = frozenset((c, (j, i)) for c, (i, j) in obj)
        assert vperiod(transposed) == _spec_hperiod(obj), obj


# --- CodeIt-specific rules and evaluation order -------------------------------------------


def test_canvas_caps_the_product_of_the_sides_at_1000_cells():
    assert canvas(3, (25, 40)) == tuple((3,) * 40 for _ in range(25))
    assert canvas(3, (25, 41)) is None
    assert canvas(0, (1000, 1)) == ((0,),) * 1000
    assert canvas(0, (-50, -50)) is None  # the product is tested first
    assert canvas(0, (2000, 0)) == ((),) * 2000
    assert canvas(0, (0, 5)) == ()


@pytest.mark.parametrize("primitive", [normalize, backdrop, delta, box, inbox, outbox])
def test_codeit_raises_on_an_empty_patch(primitive):
    with pytest.raises(ValueError):
        primitive(frozenset())


def test_manhattan_reads_b_only_once_a_yields_a_location():
    with pytest.raises(ValueError):
        manhattan(frozenset(), 5)  # min() of nothing, b never looked at
    with pytest.raises(TypeError):
        manhattan(frozenset({(0, 0)}), 5)
    with pytest.raises(ValueError):
        manhattan(frozenset({(0, 0)}), frozenset())


def test_crop_reads_the_column_bounds_only_when_rows_are_selected():
    assert crop(((1, 2),), (5,), (1, 1)) == ()
    with pytest.raises(IndexError):
        crop(((1, 2),), (0,), (1, 1))


def test_fill_and_paint_read_the_grid_shape_first():
    with pytest.raises(IndexError):
        fill((), 5, frozenset())
    with pytest.raises(IndexError):
        paint((), frozenset())
    with pytest.raises(TypeError):
        paint(((0, 0),), frozenset({(0, 0)}))
