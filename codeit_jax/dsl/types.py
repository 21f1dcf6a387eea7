"""Type names of the DSL, as plain annotation aliases.

The DSL has no classes of its own: values are ints, bools, tuples, frozensets and functions.
These aliases only document intent in signatures (the names are those of docs/dsl.md,
"Value types", so ``SIGNATURES`` and the annotations read alike); nothing checks them at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any

Boolean = bool
Integer = int
IntegerTuple = tuple[int, int]
Numerical = int | tuple[int, int]
IntegerSet = frozenset[int]
Grid = tuple[tuple[int, ...], ...]
Cell = tuple[int, tuple[int, int]]
Object = frozenset[Cell]
Objects = frozenset[Object]
Indices = frozenset[IntegerTuple]
IndicesSet = frozenset[Indices]
Patch = Object | Indices
Element = Object | Grid
Piece = Grid | Patch
TupleTuple = tuple[tuple, ...]
ContainerContainer = Container[Container]
GridTuple = tuple[Grid, ...]

# Generic names the signatures use (docs/dsl.md, "Value types").
FrozenSet = frozenset
Tuple = tuple

__all__ = [
    "Any",
    "Boolean",
    "Callable",
    "Cell",
    "Container",
    "ContainerContainer",
    "Element",
    "FrozenSet",
    "Grid",
    "GridTuple",
    "Indices",
    "IndicesSet",
    "Integer",
    "IntegerSet",
    "IntegerTuple",
    "Numerical",
    "Object",
    "Objects",
    "Patch",
    "Piece",
    "Tuple",
    "TupleTuple",
]
