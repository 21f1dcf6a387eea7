"""Behaviour of DSL primitives 1-80 that the recorded vectors do not pin down.

Arity of primitives and of the functions the higher-order primitives build (``rbind``/``lbind``
read it), ``power``'s recursion, type preservation, frozenset build orders that differ from
the obvious alternative, and the colour tie order of docs/dsl.md, "Colour ties".
"""

from __future__ import annotations

import random
import sys
from itertools import permutations

import pytest

from codeit_jax.dsl import PRIMITIVES, SIGNATURES
from codeit_jax.dsl.arithmetic import increment, invert, positive, subtract
from codeit_jax.dsl.containers import (
    combine,
    dedupe,
    difference,
    extract,
    first,
    insert,
    last,
    merge,
    mfilter,
    mostcommon,
    remove,
    repeat,
    sfilter,
    size,
)
from codeit_jax.dsl.functional import (
    apply,
    branch,
    chain,
    compose,
    fork,
    lbind,
    mapply,
    matcher,
    papply,
    power,
    prapply,
    rapply,
    rbind,
)
from codeit_jax.dsl.properties import asindices, colorfilter, leastcolor, mostcolor


def arity(function) -> int:
    """What rbind/lbind look at: the number of positional parameters."""
    return function.__code__.co_argcount


# --- arity ---------------------------------------------------------------------------------


def test_every_primitive_is_a_plain_function_with_its_signature_arity():
    # rbind/lbind read __code__.co_argcount, so a wrapped or *args primitive would change
    # what programs compute.
    for name, function in PRIMITIVES.items():
        assert arity(function) == len(SIGNATURES[name][0]), name


def test_built_functions_have_arity_one():
    built = [
        compose(increment, invert),
        chain(increment, invert, increment),
        matcher(size, 2),
        fork(subtract, increment, invert),
        power(increment, 2),
        power(increment, 5),
    ]
    assert [arity(f) for f in built] == [1] * len(built)


def test_power_one_is_the_function_itself():
    assert power(subtract, 1) is subtract
    assert arity(power(subtract, 1)) == 2


def test_rbind_and_lbind_arity_follows_the_bound_function():
    assert arity(rbind(subtract, 1)) == 1
    assert arity(lbind(PRIMITIVES["interval"], 0)) == 2
    assert arity(rbind(PRIMITIVES["objects"], True)) == 3
    # A two-parameter bound function can itself be bound down to one parameter.
    count_up = lbind(rbind(PRIMITIVES["interval"], 1), 0)
    assert arity(count_up) == 1
    assert count_up(4) == (0, 1, 2, 3)


def test_binding_an_arity_four_primitive_fixes_the_right_end():
    objects_without_bg = rbind(PRIMITIVES["objects"], True)
    grid = ((0, 1), (0, 0))
    assert objects_without_bg(grid, True, False) == PRIMITIVES["objects"](grid, True, False, True)


def test_binding_a_one_argument_function_gives_an_unusable_function():
    # The result takes three parameters and then calls the function with four.
    for bind in (rbind, lbind):
        bound = bind(increment, 1)
        assert arity(bound) == 3
        with pytest.raises(TypeError):
            bound(1, 2, 3)
        with pytest.raises(TypeError):
            bound(1)


def test_binding_a_built_function_treats_it_as_arity_one():
    # compose/... results take one argument, so rbind gives the 3-parameter form.
    bound = rbind(compose(increment, invert), 0)
    assert arity(bound) == 3
    with pytest.raises(TypeError):
        bound(1, 2, 3)


def test_binding_evaluates_nothing_until_called():
    bound = rbind(PRIMITIVES["divide"], 0)  # dividing by zero only when applied
    with pytest.raises(ZeroDivisionError):
        bound(4)


# --- power ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, -1, -7, False])
def test_power_below_one_raises_recursion_error_when_built(n):
    with pytest.raises(RecursionError):
        power(increment, n)


def test_power_composes_n_times_in_order():
    assert power(increment, 5)(0) == 5
    assert power(PRIMITIVES["double"], 3)(1) == 8
    steps = []

    def record(x):
        steps.append(x)
        return x + 1

    assert power(record, 3)(10) == 13
    assert steps == [10, 11, 12]


def test_power_beyond_the_recursion_limit_raises_like_the_recursive_reference():
    with pytest.raises(RecursionError):
        power(increment, sys.getrecursionlimit() + 10)


def test_power_with_a_non_integer_count_raises_type_error():
    with pytest.raises(TypeError):
        power(increment, (2, 2))


# --- type preservation ---------------------------------------------------------------------


def test_type_preserving_primitives_keep_the_container_type():
    tup, fset = (3, -1, 3, 2), frozenset({3, -1, 2})
    assert combine(tup, fset)[:4] == tup and type(combine(tup, fset)) is tuple
    assert type(combine(fset, tup)) is frozenset
    assert sfilter(tup, positive) == (3, 3, 2)
    assert sfilter(fset, positive) == frozenset({3, 2})
    assert remove(3, tup) == (-1, 2)
    assert remove(3, fset) == frozenset({-1, 2})
    assert difference(tup, fset - {3}) == (3, 3)
    assert apply(PRIMITIVES["halve"], (2, 3)) == (1, 1)
    assert apply(PRIMITIVES["halve"], frozenset({2, 3})) == frozenset({1})
    assert rapply((increment, invert), 2) == (3, -2)
    assert rapply(frozenset({increment}), 2) == frozenset({3})


def test_flattening_primitives_follow_the_outer_container_type():
    parts = (frozenset({1}), frozenset({2}), frozenset({1}))
    assert merge(parts) == (1, 2, 1)
    assert merge(frozenset(parts)) == frozenset({1, 2})
    assert mfilter(((1, 2), (3,), (4, 5)), matcher(size, 2)) == (1, 2, 4, 5)
    assert mapply(dedupe, ((1, 1), (2,))) == (1, 2)
    assert mapply(PRIMITIVES["initset"], frozenset({1, 2})) == frozenset({1, 2})
    assert type(mapply(dedupe, ())) is tuple


def test_branch_returns_the_chosen_value_itself():
    assert branch(True, increment, invert) is increment
    assert branch(2, (1,), (2,)) == (1,)
    assert branch(frozenset(), increment, invert) is invert


# --- build orders that a different construction would change --------------------------------


def test_combine_of_frozensets_inserts_a_then_b_one_by_one():
    a = frozenset([(0, 4), (1, 1), (2, 4)])
    b = frozenset([(2, 1), (4, 0), (4, 4), (5, 0)])
    sequential = frozenset([*a, *b])
    assert tuple(a | b) != tuple(sequential)  # the set union would iterate differently
    assert tuple(combine(a, b)) == tuple(sequential)


def test_insert_is_a_union_with_a_one_element_set():
    container = frozenset([(0, 0), (1, 0), (1, 4), (2, 2), (2, 5), (4, 4), (5, 4)])
    union = container.union(frozenset({(0, 1)}))
    assert tuple(union) != tuple(frozenset([*container, (0, 1)]))
    assert tuple(insert((0, 1), container)) == tuple(union)


def test_asindices_iterates_in_the_row_major_build_order():
    for rows, cols in [(1, 1), (3, 7), (30, 30), (40, 40), (2, 600)]:
        grid = tuple(tuple(range(cols)) for _ in range(rows))
        expected = frozenset([(i, j) for i in range(rows) for j in range(cols)])
        got = asindices(grid)
        assert tuple(got) == tuple(expected)
        assert tuple(asindices(grid)) == tuple(expected)  # again, from the cache if any


def test_last_of_a_frozenset_is_the_last_element_iterated():
    container = frozenset([(0, 1), (0, 0), (5, 3), (2, 2)])
    assert last(container) == tuple(container)[-1]
    with pytest.raises(ValueError):
        last(frozenset())
    with pytest.raises(ValueError):
        last(())


# --- StopIteration inside the reference's generators ---------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: sfilter(((1,), ()), first),
        lambda: sfilter(frozenset({(1,), ()}), first),
        lambda: apply(first, ((),)),
        lambda: rapply((first,), ()),
        lambda: papply(lambda a, b: first(a), ((),), (1,)),
        lambda: prapply(lambda a, b: first(a), ((),), (1,)),
        lambda: extract(((1,), ()), lambda x: first(x) > 5),
        lambda: colorfilter(frozenset({frozenset()}), 1),
    ],
)
def test_stop_iteration_from_a_callee_surfaces_as_runtime_error(call):
    with pytest.raises(RuntimeError):
        call()


def test_extract_without_a_match_raises_stop_iteration():
    with pytest.raises(StopIteration):
        extract((1, 2), lambda x: x > 5)
    with pytest.raises(StopIteration):
        extract(frozenset(), positive)


def test_stop_iteration_outside_a_generator_is_not_converted():
    # argmax/order call the key directly, not inside a generator.
    with pytest.raises(StopIteration):
        PRIMITIVES["argmax"](((1,), ()), first)


# --- small corner cases ---------------------------------------------------------------------


def test_dedupe_treats_equal_values_as_one_and_needs_a_tuple():
    assert dedupe((1, True, 2, 1)) == (1, 2)
    assert type(dedupe((1, True))[0]) is int
    assert dedupe(frozenset()) == ()
    with pytest.raises(AttributeError):
        dedupe(frozenset({1}))


def test_repeat_counts():
    assert repeat(7, 0) == ()
    assert repeat(7, True) == (7,)
    with pytest.raises(TypeError):
        repeat(7, (1, 2))


# --- colour and count ties ------------------------------------------------------------------

_SLOT_CYCLE = {0: 1, 1: 6, 6: 7, 7: 4, 4: 5, 5: 2, 2: 3, 3: 0}


def small_int_set_order(first_occurrences: list[int]) -> list[int]:
    """docs/dsl.md, "Colour ties": how a set of colours 0-9 iterates (not CPython's code)."""
    if len(first_occurrences) >= 5:
        return sorted(first_occurrences)
    slots: list[int | None] = [None] * 8
    for value in first_occurrences:
        slot = value % 8
        while slots[slot] is not None:
            slot = _SLOT_CYCLE[slot]
        slots[slot] = value
    return [v for v in slots if v is not None]


def test_all_tied_colours_resolve_in_the_small_integer_set_order():
    sequences = [list(p) for k in range(1, 5) for p in permutations(range(10), k)]
    rng = random.Random(0)
    sequences += [rng.sample(range(10), rng.randint(5, 10)) for _ in range(200)]
    for colours in sequences:
        winner = small_int_set_order(colours)[0]
        grid = (tuple(colours), tuple(colours))
        assert mostcolor(grid) == winner, colours
        assert leastcolor(grid) == winner, colours
        assert mostcommon(tuple(colours)) == winner, colours


def test_partial_ties_resolve_in_the_spec_examples_order():
    assert mostcolor(((8, 0), (0, 8))) == 8
    assert mostcolor(((0, 8), (8, 0))) == 0
    assert mostcolor(((2, 9),)) == 9
    # 9 and 2 tie; with the distinct colours 3, 9, 2 the set iterates 9, 2, 3.
    assert mostcolor(((3, 9, 2, 9, 2),)) == 9
    assert leastcolor(((3, 9, 2, 9, 2),)) == 3
    assert leastcolor(((3, 9, 3, 9, 2, 4),)) == 2


def first_tied(values: list, pick) -> object:
    """docs/dsl.md, "Ties": count, then scan a set built from the values in sequence."""
    best = pick(values.count(v) for v in set(values))
    return next(v for v in set(values) if values.count(v) == best)


def test_colour_ties_on_random_grids_and_objects_follow_the_set_built_in_sequence():
    rng = random.Random(1)
    for _ in range(300):
        rows, cols = rng.randint(1, 6), rng.randint(1, 6)
        palette = rng.sample(range(10), rng.randint(1, 10))
        grid = tuple(tuple(rng.choice(palette) for _ in range(cols)) for _ in range(rows))
        values = [v for row in grid for v in row]
        assert mostcolor(grid) == first_tied(values, max)
        assert leastcolor(grid) == first_tied(values, min)
        # A frozenset contributes first items in its iteration order; Indices give rows,
        # which here run beyond the colour range.
        cells = [(v, (i * 13, j)) for i, row in enumerate(grid) for j, v in enumerate(row)]
        for patch in (frozenset(cells), frozenset(loc for _, loc in cells)):
            firsts = [member[0] for member in patch]
            assert mostcolor(patch) == first_tied(firsts, max)
            assert leastcolor(patch) == first_tied(firsts, min)


def test_empty_colour_sources_raise_value_error():
    for element in ((), ((),), frozenset()):
        with pytest.raises(ValueError):
            mostcolor(element)
        with pytest.raises(ValueError):
            leastcolor(element)
