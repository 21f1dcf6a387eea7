"""DSL primitives: arithmetic (see codeit_jax.dsl for the module order).

Numbers and booleans. The numeric primitives follow docs/dsl.md, "Numerical dispatch": an int
(or bool) is a scalar, anything else is read as a pair through ``n[0]`` and ``n[1]`` only, so a
wrong kind fails (or silently works, e.g. on longer tuples) exactly where the reference does.
"""

from __future__ import annotations

from codeit_jax.dsl.types import Any, Boolean, Integer, IntegerTuple, Numerical


def identity(x: Any) -> Any:
    """The argument itself; programs pass it as a do-nothing function value."""
    return x


def add(a: Numerical, b: Numerical) -> Numerical:
    """Sum of scalars, componentwise sum of pairs, or a scalar added to both components."""
    if isinstance(a, int):
        if isinstance(b, int):
            return a + b
        if isinstance(b, tuple):
            return (a + b[0], a + b[1])
    elif isinstance(a, tuple) and isinstance(b, tuple):
        return (a[0] + b[0], a[1] + b[1])
    return (a[0] + b, a[1] + b)


def subtract(a: Numerical, b: Numerical) -> Numerical:
    """``a - b`` under the numerical dispatch rule (scalar minus each component, etc.)."""
    if isinstance(a, int):
        if isinstance(b, int):
            return a - b
        if isinstance(b, tuple):
            return (a - b[0], a - b[1])
    elif isinstance(a, tuple) and isinstance(b, tuple):
        return (a[0] - b[0], a[1] - b[1])
    return (a[0] - b, a[1] - b)


def multiply(a: Numerical, b: Numerical) -> Numerical:
    """Product under the numerical dispatch rule."""
    if isinstance(a, int):
        if isinstance(b, int):
            return a * b
        if isinstance(b, tuple):
            return (a * b[0], a * b[1])
    elif isinstance(a, tuple) and isinstance(b, tuple):
        return (a[0] * b[0], a[1] * b[1])
    return (a[0] * b, a[1] * b)


def divide(a: Numerical, b: Numerical) -> Numerical:
    """Floor division (``//``, toward minus infinity) under the numerical dispatch rule."""
    if isinstance(a, int):
        if isinstance(b, int):
            return a // b
        if isinstance(b, tuple):
            return (a // b[0], a // b[1])
    elif isinstance(a, tuple) and isinstance(b, tuple):
        return (a[0] // b[0], a[1] // b[1])
    return (a[0] // b, a[1] // b)


def invert(n: Numerical) -> Numerical:
    """Negation of a scalar or of both components of a pair."""
    if isinstance(n, int):
        return -n
    return (-n[0], -n[1])


def even(n: Integer) -> Boolean:
    """Whether ``n`` is divisible by 2 (Python modulo; a tuple raises ``TypeError``)."""
    return n % 2 == 0


def double(n: Numerical) -> Numerical:
    """Twice a scalar, or twice each component of a pair."""
    if isinstance(n, int):
        return n * 2
    return (n[0] * 2, n[1] * 2)


def halve(n: Numerical) -> Numerical:
    """Floor half of a scalar, or of each component of a pair."""
    if isinstance(n, int):
        return n // 2
    return (n[0] // 2, n[1] // 2)


def flip(b: Boolean) -> Boolean:
    """Logical negation by truthiness; always a bool."""
    return not b


def equality(a: Any, b: Any) -> Boolean:
    """Python ``==`` (frozensets ignore order; a tuple never equals a frozenset)."""
    return a == b


def greater(a: Integer, b: Integer) -> Boolean:
    """Strict ``a > b`` with Python semantics (tuples compare lexicographically)."""
    return a > b


def both(a: Boolean, b: Boolean) -> Boolean:
    """Python ``a and b``: non-bool operands come back unchanged, as in the reference."""
    return a and b


def either(a: Boolean, b: Boolean) -> Boolean:
    """Python ``a or b``: non-bool operands come back unchanged, as in the reference."""
    return a or b


def increment(x: Numerical) -> Numerical:
    """Adds 1 to a scalar or to each component of a pair."""
    if isinstance(x, int):
        return x + 1
    return (x[0] + 1, x[1] + 1)


def decrement(x: Numerical) -> Numerical:
    """Subtracts 1 from a scalar or from each component of a pair."""
    if isinstance(x, int):
        return x - 1
    return (x[0] - 1, x[1] - 1)


def crement(x: Numerical) -> Numerical:
    """One step away from zero (0 stays the int 0), per scalar or per component."""
    if isinstance(x, int):
        return 0 if x == 0 else (x + 1 if x > 0 else x - 1)
    i = x[0]
    i = 0 if i == 0 else (i + 1 if i > 0 else i - 1)
    j = x[1]
    j = 0 if j == 0 else (j + 1 if j > 0 else j - 1)
    return (i, j)


def sign(x: Numerical) -> Numerical:
    """-1, 0 or 1 per scalar or per component."""
    if isinstance(x, int):
        return 0 if x == 0 else (1 if x > 0 else -1)
    i = x[0]
    i = 0 if i == 0 else (1 if i > 0 else -1)
    j = x[1]
    j = 0 if j == 0 else (1 if j > 0 else -1)
    return (i, j)


def positive(x: Integer) -> Boolean:
    """Strict ``x > 0`` (a tuple raises ``TypeError``)."""
    return x > 0


def toivec(i: Integer) -> IntegerTuple:
    """The vertical vector ``(i, 0)``."""
    return (i, 0)


def tojvec(j: Integer) -> IntegerTuple:
    """The horizontal vector ``(0, j)``."""
    return (0, j)


def astuple(a: Integer, b: Integer) -> IntegerTuple:
    """The pair ``(a, b)``; no checks, any two values."""
    return (a, b)
