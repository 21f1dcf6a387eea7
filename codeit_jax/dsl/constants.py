"""The 28 named constants a program may mention, grouped by type as CodeIt does."""

from __future__ import annotations

F = False
T = True
ZERO = 0
ONE = 1
TWO = 2
THREE = 3
FOUR = 4
FIVE = 5
SIX = 6
SEVEN = 7
EIGHT = 8
NINE = 9
TEN = 10
NEG_ONE = -1
NEG_TWO = -2
DOWN = (1, 0)
RIGHT = (0, 1)
UP = (-1, 0)
LEFT = (0, -1)
ORIGIN = (0, 0)
UNITY = (1, 1)
NEG_UNITY = (-1, -1)
UP_RIGHT = (-1, 1)
DOWN_LEFT = (1, -1)
ZERO_BY_TWO = (0, 2)
TWO_BY_ZERO = (2, 0)
TWO_BY_TWO = (2, 2)
THREE_BY_THREE = (3, 3)

#: Constant names by type name, in CodeIt's order (used by mutation and random programs).
CONSTANT_TYPES: dict[str, tuple[str, ...]] = {
    "Boolean": ("F", "T"),
    "Integer": (
        "ZERO",
        "ONE",
        "TWO",
        "THREE",
        "FOUR",
        "FIVE",
        "SIX",
        "SEVEN",
        "EIGHT",
        "NINE",
        "TEN",
        "NEG_ONE",
        "NEG_TWO",
    ),
    "IntegerTuple": (
        "DOWN",
        "RIGHT",
        "UP",
        "LEFT",
        "ORIGIN",
        "UNITY",
        "NEG_UNITY",
        "UP_RIGHT",
        "DOWN_LEFT",
        "ZERO_BY_TWO",
        "TWO_BY_ZERO",
        "TWO_BY_TWO",
        "THREE_BY_THREE",
    ),
}

#: name -> value for every constant.
CONSTANTS: dict[str, object] = {
    name: globals()[name] for names in CONSTANT_TYPES.values() for name in names
}
