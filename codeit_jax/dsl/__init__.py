"""The CodeIt ARC DSL: 160 primitives and 28 constants, behaviour-compatible with CodeIt's
variant of arc-dsl, as specified in docs/dsl.md, "Primitives".

Modules by theme, in import order (each may import only from those before it):
``arithmetic`` (numbers, booleans), ``containers`` (tuples and frozensets),
``functional`` (higher-order primitives), ``patches`` (patch geometry: toindices, extents,
shifts, neighbourhoods), ``properties`` (colours and extents of elements), ``grids`` (grid
transforms and drawing), ``objects`` (object extraction and object-level operations).

The registry maps names to the functions themselves: ``PRIMITIVES`` (name -> function, in
reference file order), ``CONSTANTS`` (name -> value) and ``SIGNATURES`` (name ->
(argument type names, return type name)).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from codeit_jax.dsl import (
    arithmetic,
    containers,
    functional,
    grids,
    objects,
    patches,
    properties,
)
from codeit_jax.dsl.constants import CONSTANT_TYPES, CONSTANTS
from codeit_jax.dsl.signatures import PRIMITIVE_NAMES, SIGNATURES

_MODULES: tuple[ModuleType, ...] = (
    arithmetic,
    containers,
    functional,
    patches,
    properties,
    grids,
    objects,
)


def _collect() -> dict[str, Callable]:
    found: dict[str, Callable] = {}
    for module in _MODULES:
        for name in PRIMITIVE_NAMES:
            fn = module.__dict__.get(name)
            if fn is not None and getattr(fn, "__module__", None) == module.__name__:
                if name in found:
                    raise ImportError(f"primitive {name!r} defined in two DSL modules")
                found[name] = fn
    return {name: found[name] for name in PRIMITIVE_NAMES if name in found}


PRIMITIVES: dict[str, Callable] = _collect()

__all__ = ["CONSTANTS", "CONSTANT_TYPES", "PRIMITIVES", "PRIMITIVE_NAMES", "SIGNATURES"]
