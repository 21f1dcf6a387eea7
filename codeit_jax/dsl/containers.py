"""DSL primitives: containers (see codeit_jax.dsl for the module order).

Tuples and frozensets. Results that are frozensets are built by inserting elements one at a
time in the order of docs/dsl.md, "Build orders" (a list or iterator feeding ``frozenset``),
never from another set: CPython copies a set source table-wise, which can give a different
iteration order and so change ``first``/``argmax``/... downstream.

Where the reference evaluates a caller's function inside a generator expression, a
``StopIteration`` escaping that function surfaces as ``RuntimeError``; the fast list-based
paths here convert it the same way (``_stop_to_runtime``). Unusual container kinds (anything
but a tuple or frozenset) go through a generic path with the reference's evaluation order, so
they fail with the same exception class.
"""

from __future__ import annotations

from itertools import chain as _chain_iterables

from codeit_jax.dsl.types import (
    Any,
    Boolean,
    Callable,
    Container,
    ContainerContainer,
    FrozenSet,
    Integer,
    IntegerSet,
    Tuple,
    TupleTuple,
)

_flatten = _chain_iterables.from_iterable


def _stop_to_runtime(err: StopIteration) -> RuntimeError:
    """The error a generator expression raises when its body lets StopIteration escape."""
    error = RuntimeError("generator raised StopIteration")
    error.__cause__ = err
    return error


def contained(value: Any, container: Container) -> Boolean:
    """Membership test ``value in container``."""
    return value in container


def combine(a: Container, b: Container) -> Container:
    """``a``'s elements then ``b``'s, as a value of ``a``'s type (frozenset: the union)."""
    kind = type(a)
    if kind is tuple:
        return a + (b if type(b) is tuple else tuple(b))
    return kind((*a, *b))


def intersection(a: FrozenSet, b: FrozenSet) -> FrozenSet:
    """Python's ``a & b`` (its own build order; a tuple raises ``TypeError``)."""
    return a & b


def difference(a: FrozenSet, b: FrozenSet) -> FrozenSet:
    """The elements of ``a`` not in ``b``, keeping ``a``'s type and order."""
    kind = type(a)
    if kind is tuple or kind is frozenset:
        return kind([e for e in a if e not in b])
    return kind(e for e in a if e not in b)


def dedupe(tup: Tuple) -> Tuple:
    """First occurrence of each element (``==`` equality), order kept."""
    if type(tup) is tuple:
        # A dict keeps the first key object among equal ones, like ``tup.index(e) == i``.
        return tuple(dict.fromkeys(tup))
    # Other kinds: the position test needs ``.index``, so a non-empty frozenset raises
    # AttributeError and an empty one gives ().
    return tuple(e for i, e in enumerate(tup) if tup.index(e) == i)


def order(container: Container, compfunc: Callable) -> Tuple:
    """Elements sorted ascending by ``compfunc`` (stable: ties keep iteration order)."""
    return tuple(sorted(container, key=compfunc))


def repeat(item: Any, num: Integer) -> Tuple:
    """``item`` ``num`` times; ``num <= 0`` gives ``()``."""
    if isinstance(num, int):
        return (item,) * num
    return tuple(item for _ in range(num))


def size(container: Container) -> Integer:
    """Number of elements (rows of a grid, distinct members of a frozenset)."""
    return len(container)


def merge(containers: ContainerContainer) -> Container:
    """Flattens one level into a value of the outer container's type."""
    kind = type(containers)
    if kind is tuple or kind is frozenset:
        return kind(_flatten(containers))
    return kind(e for c in containers for e in c)


def maximum(container: IntegerSet) -> Integer:
    """Largest element; an empty container gives 0."""
    return max(container, default=0)


def minimum(container: IntegerSet) -> Integer:
    """Smallest element; an empty container gives 0."""
    return min(container, default=0)


def valmax(container: Container, compfunc: Callable) -> Integer:
    """Largest ``compfunc`` value; empty gives ``compfunc(0)`` (which usually raises)."""
    return compfunc(max(container, key=compfunc, default=0))


def valmin(container: Container, compfunc: Callable) -> Integer:
    """Smallest ``compfunc`` value; empty gives ``compfunc(0)`` (which usually raises)."""
    return compfunc(min(container, key=compfunc, default=0))


def argmax(container: Container, compfunc: Callable) -> Any:
    """Element with the largest key; ties go to the first in iteration order."""
    return max(container, key=compfunc)


def argmin(container: Container, compfunc: Callable) -> Any:
    """Element with the smallest key; ties go to the first in iteration order."""
    return min(container, key=compfunc)


def mostcommon(container: Container) -> Any:
    """Most frequent element; ties follow the iteration order of ``set(container)``."""
    return max(set(container), key=container.count)


def leastcommon(container: Container) -> Any:
    """Least frequent element; ties follow the iteration order of ``set(container)``."""
    return min(set(container), key=container.count)


def initset(value: Any) -> FrozenSet:
    """The one-element frozenset of ``value``."""
    return frozenset((value,))


def sfilter(container: Container, condition: Callable) -> Container:
    """Elements for which ``condition`` is truthy, with the container's type and order."""
    kind = type(container)
    if kind is tuple or kind is frozenset:
        try:
            return kind([e for e in container if condition(e)])
        except StopIteration as err:
            raise _stop_to_runtime(err) from err
    return kind(e for e in container if condition(e))


def mfilter(container: Container, function: Callable) -> FrozenSet:
    """``merge`` of ``sfilter``: the type follows ``container`` despite the annotation."""
    return merge(sfilter(container, function))


def extract(container: Container, condition: Callable) -> Any:
    """First element (iteration order) satisfying ``condition``; none raises StopIteration."""
    try:
        for e in container:
            if condition(e):
                return e
    except StopIteration as err:
        raise _stop_to_runtime(err) from err
    raise StopIteration


def totuple(container: FrozenSet) -> Tuple:
    """The elements as a tuple, in iteration order."""
    return tuple(container)


def first(container: Container) -> Any:
    """First element in iteration order; empty raises StopIteration."""
    return next(iter(container))


def last(container: Container) -> Any:
    """Last element in iteration order; empty raises ValueError (as ``max`` of nothing)."""
    items = container if type(container) is tuple else tuple(container)
    if not items:
        raise ValueError("last() of an empty container")
    return items[-1]


def insert(value: Any, container: FrozenSet) -> FrozenSet:
    """``container`` union ``{value}`` (a set operand: CPython's union of two sets)."""
    return container.union(frozenset((value,)))


def remove(value: Any, container: Container) -> Container:
    """Every element not equal to ``value``, with the container's type and order."""
    kind = type(container)
    if kind is tuple or kind is frozenset:
        return kind([e for e in container if e != value])
    return kind(e for e in container if e != value)


def other(container: Container, value: Any) -> Any:
    """First element not equal to ``value`` (meant for two-element containers)."""
    return first(remove(value, container))


def interval(start: Integer, stop: Integer, step: Integer) -> Tuple:
    """``tuple(range(start, stop, step))``."""
    return tuple(range(start, stop, step))


def product(a: Container, b: Container) -> FrozenSet:
    """All pairs ``(i, j)``; build order: for each ``j`` of ``b``, each ``i`` of ``a``."""
    return frozenset([(i, j) for j in b for i in a])


def pair(a: Tuple, b: Tuple) -> TupleTuple:
    """Zip of two sequences, truncated to the shorter."""
    return tuple(zip(a, b))
