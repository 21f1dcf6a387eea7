"""DSL primitives: functional (see codeit_jax.dsl for the module order).

Higher-order primitives. The functions they return are plain closures whose number of
positional parameters (``__code__.co_argcount``) is the arity that ``rbind``/``lbind`` read,
as docs/dsl.md, "Function values and arity" prescribes: 1 for ``compose``/``chain``/``matcher``/
``fork``/``power`` (n >= 2); 1, 2 or 3 for ``rbind``/``lbind``.
"""

from __future__ import annotations

from itertools import chain as _chain_iterables

from codeit_jax.dsl.containers import _stop_to_runtime, merge
from codeit_jax.dsl.types import (
    Any,
    Boolean,
    Callable,
    Container,
    ContainerContainer,
    FrozenSet,
    Integer,
    Tuple,
)


def branch(condition: Boolean, a: Any, b: Any) -> Any:
    """``a`` if ``condition`` is truthy else ``b`` (both already computed)."""
    return a if condition else b


def compose(outer: Callable, inner: Callable) -> Callable:
    """The one-argument function ``x -> outer(inner(x))``."""

    def composed(x):
        return outer(inner(x))

    return composed


def chain(h: Callable, g: Callable, f: Callable) -> Callable:
    """The one-argument function ``x -> h(g(f(x)))``."""

    def chained(x):
        return h(g(f(x)))

    return chained


def matcher(function: Callable, target: Any) -> Callable:
    """The predicate ``x -> function(x) == target``."""

    def matches(x):
        return function(x) == target

    return matches


def rbind(function: Callable, fixed: Any) -> Callable:
    """Fixes the last argument; the result's arity is ``function``'s arity minus one.

    Arity other than 2 or 3 gives a three-parameter function (right for arity 4, unusable
    for arity 1), as in the reference.
    """
    arity = function.__code__.co_argcount
    if arity == 2:

        def bound_last_1(x):
            return function(x, fixed)

        return bound_last_1
    if arity == 3:

        def bound_last_2(x, y):
            return function(x, y, fixed)

        return bound_last_2

    def bound_last_3(x, y, z):
        return function(x, y, z, fixed)

    return bound_last_3


def lbind(function: Callable, fixed: Any) -> Callable:
    """Fixes the first argument; arity rules as for ``rbind``."""
    arity = function.__code__.co_argcount
    if arity == 2:

        def bound_first_1(y):
            return function(fixed, y)

        return bound_first_1
    if arity == 3:

        def bound_first_2(y, z):
            return function(fixed, y, z)

        return bound_first_2

    def bound_first_3(y, z, a):
        return function(fixed, y, z, a)

    return bound_first_3


def power(function: Callable, n: Integer) -> Callable:
    """``function`` composed with itself ``n`` times; ``n == 1`` gives ``function`` itself.

    The reference recurses on ``n - 1`` until ``n == 1``, so ``n <= 0`` never ends and raises
    ``RecursionError`` when ``power`` is called; that is raised here directly instead of
    after a thousand frames. ``n >= 2`` keeps the reference's nesting of ``compose`` so very
    large ``n`` hits the interpreter's recursion limit where the reference does.
    """
    if n == 1:
        return function
    if n < 1:
        raise RecursionError("power(function, n) with n < 1 never reaches n == 1")
    return compose(function, power(function, n - 1))


def fork(outer: Callable, a: Callable, b: Callable) -> Callable:
    """The one-argument function ``x -> outer(a(x), b(x))``."""

    def forked(x):
        return outer(a(x), b(x))

    return forked


def apply(function: Callable, container: Container) -> Container:
    """``function`` mapped over the elements, with the container's type (frozenset: equal
    results collapse; build order = the container's iteration order)."""
    kind = type(container)
    if kind is tuple or kind is frozenset:
        try:
            return kind([function(e) for e in container])
        except StopIteration as err:
            raise _stop_to_runtime(err) from err
    return kind(function(e) for e in container)


def rapply(functions: Container, value: Any) -> Container:
    """Every function applied to ``value``, with the type of ``functions``."""
    kind = type(functions)
    if kind is tuple or kind is frozenset:
        try:
            return kind([function(value) for function in functions])
        except StopIteration as err:
            raise _stop_to_runtime(err) from err
    return kind(function(value) for function in functions)


def mapply(function: Callable, container: ContainerContainer) -> FrozenSet:
    """``merge`` of ``apply``: the type follows ``container`` despite the annotation."""
    return merge(apply(function, container))


def papply(function: Callable, a: Tuple, b: Tuple) -> Tuple:
    """``function(a[k], b[k])`` for each k up to the shorter length."""
    try:
        return tuple([function(i, j) for i, j in zip(a, b)])
    except StopIteration as err:
        raise _stop_to_runtime(err) from err


def mpapply(function: Callable, a: Tuple, b: Tuple) -> Tuple:
    """The results of ``papply`` concatenated into one tuple."""
    return tuple(_chain_iterables.from_iterable(papply(function, a, b)))


def prapply(function: Callable, a: Container, b: Container) -> FrozenSet:
    """Frozenset of ``function(i, j)``; build order: each ``j`` of ``b``, each ``i`` of ``a``."""
    try:
        return frozenset([function(i, j) for j in b for i in a])
    except StopIteration as err:
        raise _stop_to_runtime(err) from err
