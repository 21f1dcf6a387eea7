"""docs/dsl.md agrees with the DSL it describes, so the page cannot drift from the code.

Checked: every primitive has exactly one entry, under the heading of the module that defines
it, with the function's parameter names and the types of ``SIGNATURES``; the constants table
lists ``CONSTANTS`` with their values and type groups; every example on the page gives what it
says when run; and every citation of the page in ``codeit_jax/`` and ``tests/`` (its path, a
comma and a quoted section title) names a section that exists.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from codeit_jax.dsl import CONSTANT_TYPES, CONSTANTS, PRIMITIVE_NAMES, PRIMITIVES, SIGNATURES

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "dsl.md"

_HEADING = re.compile(r"^(#{2,4}) (.+?)\s*$")
_MODULE_HEADING = re.compile(r"^### (\w+) \(`codeit_jax/dsl/(\w+)\.py`\)$")
_ENTRY = re.compile(r"^- `(\w+)\(([^`]*)\) -> (\w+)` — \S")
_PARAM = re.compile(r"^(\w+): (\w+)$")
_CONSTANT_ROW = re.compile(r"^\| `(\w+)` \| `([^`]+)` \| `(\w+)` \|$")
# Inline code that is an example: a call of a primitive compared with a value, or a call
# followed by "raises `Error`".
_CODE = re.compile(r"`([^`]+)`")
_EQUAL_EXAMPLE = re.compile(r"^(\w+)\(.* == .+$")
_RAISES_EXAMPLE = re.compile(r"`((\w+)\([^`]*\))` raises `(\w+)`")
_CITATION = re.compile(r'docs/dsl\.md,\s+"([^"]+)"')


def _lines() -> list[str]:
    return DOC.read_text(encoding="utf-8").splitlines()


def _section(title: str) -> list[str]:
    """The lines under the level-2 heading ``title``, up to the next level-2 heading."""
    lines = _lines()
    start = lines.index(f"## {title}") + 1
    end = next((k for k in range(start, len(lines)) if lines[k].startswith("## ")), len(lines))
    return lines[start:end]


def _entries() -> list[tuple[str, str, str, str]]:
    """(module heading, name, parameter text, return type) of every primitive entry."""
    module = ""
    found = []
    for line in _section("Primitives"):
        heading = _MODULE_HEADING.match(line)
        if heading:
            assert heading.group(1) == heading.group(2), line
            module = heading.group(2)
            continue
        if line.startswith("#"):
            module = ""
        entry = _ENTRY.match(line)
        if entry:
            found.append((module, *entry.groups()))
        else:
            assert not line.startswith("- `"), f"malformed primitive entry: {line[:80]}"
    return found


def test_every_primitive_has_exactly_one_entry() -> None:
    names = [name for _, name, _, _ in _entries()]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})
    assert set(names) == set(PRIMITIVE_NAMES)
    assert len(names) == 160


def test_entries_are_under_their_module_in_file_order() -> None:
    entries = _entries()
    for module, name, _, _ in entries:
        assert PRIMITIVES[name].__module__ == f"codeit_jax.dsl.{module}", (name, module)
    source_order = {}
    for module in {m for m, _, _, _ in entries}:
        path = ROOT / "codeit_jax" / "dsl" / f"{module}.py"
        text = path.read_text(encoding="utf-8")
        for name in [n for m, n, _, _ in entries if m == module]:
            source_order[name] = text.index(f"\ndef {name}(")
    for (m1, n1, _, _), (m2, n2, _, _) in zip(entries, entries[1:]):
        if m1 == m2:
            assert source_order[n1] < source_order[n2], f"{n1} is listed before {n2}"


def test_entry_signatures_match_the_code_and_the_signature_table() -> None:
    for _, name, params, returns in _entries():
        pairs = [_PARAM.match(p) for p in params.split(", ")]
        assert all(pairs), (name, params)
        names = tuple(p.group(1) for p in pairs)
        types = tuple(p.group(2) for p in pairs)
        assert names == tuple(inspect.signature(PRIMITIVES[name]).parameters), name
        assert (types, returns) == SIGNATURES[name], name


def test_constants_table_lists_every_constant_with_its_value_and_type() -> None:
    rows = [_CONSTANT_ROW.match(line) for line in _section("Constants")]
    table = [(m.group(1), ast.literal_eval(m.group(2)), m.group(3)) for m in rows if m]
    assert [name for name, _, _ in table] == list(CONSTANTS)
    type_of = {name: kind for kind, names in CONSTANT_TYPES.items() for name in names}
    for name, value, kind in table:
        assert value == CONSTANTS[name] and type(value) is type(CONSTANTS[name]), name
        assert kind == type_of[name], name


def _examples() -> tuple[list[str], list[tuple[str, str]]]:
    """The page's examples: comparisons, and (call, exception name) pairs."""
    equal, raising = [], []
    for line in _lines():
        for code in _CODE.findall(line):
            match = _EQUAL_EXAMPLE.match(code)
            if match and match.group(1) in PRIMITIVES:
                equal.append(code)
        for call, name, error in _RAISES_EXAMPLE.findall(line):
            if name in PRIMITIVES:
                raising.append((call, error))
    return equal, raising


def _namespace() -> dict:
    return {"__builtins__": {"frozenset": frozenset}, **PRIMITIVES, **CONSTANTS}


def test_there_are_examples_for_every_primitive() -> None:
    equal, raising = _examples()
    assert len(equal) > 200
    mentioned = set()
    for code in equal + [call for call, _ in raising]:
        mentioned |= set(re.findall(r"\b(\w+)\(", code))
    assert set(PRIMITIVE_NAMES) <= mentioned, sorted(set(PRIMITIVE_NAMES) - mentioned)


@pytest.mark.parametrize("example", _examples()[0])
def test_example_holds(example: str) -> None:
    assert eval(example, _namespace()) is True  # noqa: S307 - the page's own examples


@pytest.mark.parametrize("call, error", _examples()[1])
def test_example_raises(call: str, error: str) -> None:
    with pytest.raises(BaseException) as caught:
        eval(call, _namespace())  # noqa: S307 - the page's own examples
    assert type(caught.value).__name__ == error


def test_citations_of_the_page_name_existing_sections() -> None:
    titles = set()
    for line in _lines():
        heading = _HEADING.match(line)
        if heading:
            titles.add(heading.group(2))
    cited = []
    for folder in ("codeit_jax", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            cited += [(path.name, title) for title in _CITATION.findall(text)]
    assert cited, "no code cites docs/dsl.md"
    missing = [(name, title) for name, title in cited if title not in titles]
    assert not missing, missing


def test_no_code_cites_the_old_spec_outside_the_repository() -> None:
    for folder in ("codeit_jax", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            assert "SPEC" + ".md" not in text, path
