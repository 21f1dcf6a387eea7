"""Declarative checks of config fields: each job keeps a table ``field -> Rule`` covering every
field of its config files, checked before anything is loaded or written. Each rule also says
in one line what its field means, so the table is the one place a field is described
(``--print_config`` and docs/config.md print it; a test refuses a rule without a meaning).

A table makes "every field is checked" testable (tests/test_faults.py compares each config
file's fields with its table) and gives every refusal the same shape: ``config.<field> must be
<what>, got <value>``. An unknown field (a typo in a config file) is named with the closest
valid one. Checks across fields (bucket lengths against the encoding, files that must exist)
stay with the job, after the table.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ml_collections import ConfigDict

from codeit_jax.errors import ConfigError

#: Largest seed: JAX keys keep only a seed's low 32 bits, so 2**32 would replay seed 0.
MAX_SEED = 2**32 - 1


@dataclasses.dataclass(frozen=True)
class Rule:
    """What one field accepts and means: ``accepts(value)`` is True for a good value,
    ``expected`` says in words what a good value is (for the error message), ``meaning`` what
    the field does, in one line (set with `means`)."""

    expected: str
    accepts: Callable[[Any], bool]
    meaning: str = ""

    def means(self, meaning: str) -> Rule:
        """This rule with its field's meaning: table entries read ``rule.means("...")``."""
        return dataclasses.replace(self, meaning=meaning)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(low: int | None = None, high: int | None = None) -> Rule:
    """An int (not a bool) in [low, high]; either bound may be open-ended."""
    if high is None:
        expected = "an integer" if low is None else f"an integer >= {low}"
    else:
        expected = f"an integer in [{low}, {high}]"
    return Rule(
        expected,
        lambda v: _is_int(v) and (low is None or v >= low) and (high is None or v <= high),
    )


def number(
    low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False
) -> Rule:
    """A finite int or float in the interval; open ends excluded."""
    if high == math.inf:
        expected = f"a finite number {'>' if low_open else '>='} {low}"
    else:
        expected = f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"

    def accepts(v: Any) -> bool:
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)):
            return False
        return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)

    return Rule(expected, accepts)


def boolean() -> Rule:
    return Rule("True or False", lambda v: isinstance(v, bool))


def choice(options: Iterable[Any]) -> Rule:
    allowed = tuple(options)
    return Rule(f"one of {list(allowed)}", lambda v: v in allowed)


def text() -> Rule:
    """Any string (paths, names checked later against what exists)."""
    return Rule("a string", lambda v: isinstance(v, str))


def path() -> Rule:
    """A path as a string ('' for none; existence is the job's check)."""
    return Rule("a path or ''", lambda v: isinstance(v, str))


def paths() -> Rule:
    """Comma-separated paths in one string ('' for none)."""
    return Rule("comma-separated paths or ''", lambda v: isinstance(v, str))


def optional(rule: Rule) -> Rule:
    """None, or what ``rule`` accepts."""
    return Rule(f"None or {rule.expected}", lambda v: v is None or rule.accepts(v))


def lengths() -> Rule:
    """A non-empty, strictly increasing sequence of positive ints (length buckets)."""

    def accepts(v: Any) -> bool:
        if not isinstance(v, (tuple, list)) or not v or not all(_is_int(b) and b >= 1 for b in v):
            return False
        return all(a < b for a, b in zip(v, v[1:]))

    return Rule("increasing positive lengths", accepts)


def seed() -> Rule:
    return integer(0, MAX_SEED)


def leaf_fields(config: ConfigDict, prefix: str = "") -> dict[str, Any]:
    """Every non-group field of ``config`` by dotted name."""
    fields: dict[str, Any] = {}
    for name in config:
        value = config[name]
        dotted = f"{prefix}{name}"
        if isinstance(value, ConfigDict):
            fields.update(leaf_fields(value, f"{dotted}."))
        else:
            fields[dotted] = value
    return fields


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate most like ``name`` (difflib), or None when none is close."""
    found = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_field_message(dotted: str, known: Iterable[str]) -> str:
    """``config.<dotted> is not a field`` with the closest valid name, for typos."""
    known = list(known)
    guess = closest(dotted, known)
    if guess is None:  # compare the last part alone: a typo in a long dotted name
        parent, _, last = dotted.rpartition(".")
        siblings = [k.rpartition(".")[2] for k in known if k.rpartition(".")[0] == parent]
        near = closest(last, siblings)
        guess = f"{parent}.{near}" if parent and near else near
    hint = f"; did you mean config.{guess}?" if guess else ""
    return f"config.{dotted} is not a field of this config{hint}"


def check_fields(config: ConfigDict, rules: Mapping[str, Rule]) -> None:
    """Refuse an unknown field, a missing field or a value its rule does not accept, naming the
    field; raises `ConfigError`."""
    fields = leaf_fields(config)
    for name in fields:
        if name not in rules:
            raise ConfigError(unknown_field_message(name, rules))
    for name, rule in rules.items():
        if name not in fields:
            raise ConfigError(f"config.{name} is missing (it must be {rule.expected})")
        value = fields[name]
        if not rule.accepts(value):
            raise ConfigError(f"config.{name} must be {rule.expected}, got {value!r}")
