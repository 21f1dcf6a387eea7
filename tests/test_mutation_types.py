"""Type inference on the 400 ground-truth programs, value types and the signature table."""

from __future__ import annotations

import pytest

from codeit_jax.dsl import PRIMITIVES
from codeit_jax.programs.types import (
    BASE_TYPES,
    CALLABLE,
    CONTAINER,
    Arrow,
    SignatureTable,
    TypeCheckError,
    TypeInferenceError,
    build_signature_table,
    check_types,
    infer_types,
    training_signature_table,
    value_type,
)
from codeit_jax.tasks import load_codeit_dir

UNIONS = {"Numerical", "Patch", "Element", "Piece", "Any", "Tuple", "FrozenSet", "TupleTuple"}


@pytest.fixture(scope="module")
def training_tasks(codeit_data):
    return load_codeit_dir(codeit_data / "training")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (((1, 2), (3, 4)), "Grid"),
        ((), "Grid"),  # CodeIt's loose grid test accepts the empty tuple
        ((1, 2), "IntegerTuple"),
        ((3, (1, 2)), "Cell"),
        ((((1,),), ((2,),)), "GridTuple"),
        (frozenset(), "IntegerSet"),
        (frozenset({1, 2}), "IntegerSet"),
        (frozenset({(3, (0, 0))}), "Object"),
        (frozenset({frozenset({(3, (0, 0))})}), "Objects"),
        (frozenset({(0, 0), (1, 1)}), "Indices"),
        (frozenset({frozenset()}), "Objects"),  # an empty member is an Object: Objects first
        (frozenset({frozenset({(0, 0)}), frozenset({(1, 1), (1, 2)})}), "IndicesSet"),
        (True, "Boolean"),
        (7, "Integer"),
        (PRIMITIVES["vmirror"], CALLABLE),
        (((1, 2), 3), CONTAINER),
        (None, "Any"),
    ],
)
def test_value_type(value, expected):
    assert value_type(value) == expected


def test_mixed_containers_fall_back():
    assert value_type(frozenset({frozenset({(0, 0, 0)})})) == CONTAINER
    assert value_type(frozenset({1, (0, 0)})) == CONTAINER


def test_infer_types_on_all_400_training_programs(training_tasks):
    assert len(training_tasks) == 400
    for task in training_tasks:
        types = infer_types(task.program, task.train[0][0])
        assert len(types.lines) == len(types.program)
        assert types.env["I"] == "Grid"
        assert types.env["O"] == "Grid", task.key
        for line in types.lines:
            assert types.env[line.target] == line.arrow.output
            assert len(line.arrow.inputs) == len(line.args)
            for name in (*line.arrow.inputs, line.arrow.output):
                assert name not in UNIONS, (task.key, line)


def test_infer_types_resolves_unions_by_value():
    types = infer_types("x1 = objects(I, T, F, T)\nx2 = first(x1)\nO = paint(I, x2)", ((1, 0),))
    assert types.env["x1"] == "Objects"
    assert types.env["x2"] == "Object"
    assert types.lines[1].arrow == Arrow(("Objects",), "Object")
    assert types.lines[2].arrow == Arrow(("Grid", "Object"), "Grid")


def test_infer_types_types_function_values_and_called_variables():
    types = infer_types(
        "x1 = rbind(shift, DOWN)\nx2 = asobject(I)\nx3 = x1(x2)\nO = paint(I, x3)", ((1,),)
    )
    assert types.env["x1"] == CALLABLE
    assert types.env["x3"] == "Object"  # the value's type, not the callee's
    assert types.lines[0].arg_types == (CALLABLE, "IntegerTuple")


def test_infer_types_names_the_failing_line():
    with pytest.raises(TypeInferenceError, match="line 2"):
        infer_types("x1 = ofcolor(I, FIVE)\nO = first(x1)", ((1, 2),))


def test_signature_table_over_training_programs(codeit_data, training_tasks):
    table, failures = build_signature_table(training_tasks)
    assert failures == {}
    assert table is not None and len(table) > 150
    for name, arrows in table.by_primitive.items():
        assert name in PRIMITIVES
        assert arrows and all(arrow.is_base for arrow in arrows)
    assert Arrow(("Grid",), "Grid") in table.by_primitive["vmirror"]
    assert (
        Arrow(("Grid", "Boolean", "Boolean", "Boolean"), "Objects") in table.by_primitive["objects"]
    )
    assert "hmirror" in table.by_arrow[Arrow(("Grid",), "Grid")]
    assert all(arrow.output == "Grid" for _, arrow in table.by_output["Grid"])
    assert set(table.by_output) <= BASE_TYPES
    assert training_signature_table(codeit_data).by_arrow == table.by_arrow


def test_signature_table_drops_non_base_uses():
    table = SignatureTable.from_uses(
        [("vmirror", Arrow(("Grid",), "Grid")), ("apply", Arrow((CALLABLE, "Objects"), "Objects"))]
    )
    assert list(table.by_primitive) == ["vmirror"]
    assert table.functional == {"apply": (Arrow((CALLABLE, "Objects"), "Objects"),)}
    assert table.signatures("apply") == (Arrow((CALLABLE, "Objects"), "Objects"),)
    assert (
        SignatureTable.from_uses([("apply", Arrow((CALLABLE, CONTAINER), "Any"))]).functional == {}
    )
    with pytest.raises(ValueError, match="not a DSL primitive"):
        SignatureTable.from_uses([("nope", Arrow(("Grid",), "Grid"))])


def test_training_table_needs_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="training"):
        training_signature_table(tmp_path)


def test_check_types(codeit_data):
    table = training_signature_table(codeit_data)
    env = check_types("x1 = vmirror(I)\nO = hconcat(I, x1)", table)
    assert env["x1"] == frozenset({"Grid"})
    with pytest.raises(TypeCheckError, match="not Grid"):
        check_types("x1 = objects(I, T, F, T)\nO = first(x1)", table)
    with pytest.raises(TypeCheckError, match="no signature of vmirror takes"):
        check_types("O = vmirror(ONE)", table)


def test_check_types_types_primitives_as_function_values(codeit_data, training_tasks):
    """A primitive name is a Callable value where a (functional) signature takes one, and a
    variable can hold a function; a variable callee still does not type."""
    table = training_signature_table(codeit_data)
    assert "argmax" in table.functional and "argmax" not in table.by_primitive
    env = check_types("x1 = objects(I, T, F, T)\nx2 = argmax(x1, size)\nO = subgrid(x2, I)", table)
    assert env["x2"] == frozenset({"Object"})
    env = check_types(
        "x1 = lbind(colorcount, I)\nx2 = objects(I, T, F, T)\n"
        "x3 = argmax(x2, x1)\nO = subgrid(x3, I)",
        table,
    )
    assert env["x1"] == frozenset({CALLABLE})
    with pytest.raises(TypeCheckError, match="no signature of hconcat takes"):
        check_types("O = hconcat(I, vmirror)", table)
    with pytest.raises(TypeCheckError, match="x1 has no signature"):
        check_types("x1 = lbind(colorcount, I)\nO = x1(I)", table)
    typed = 0
    for task in training_tasks:
        try:
            check_types(task.program, table)
            typed += 1
        except TypeCheckError:
            pass
    assert typed > len(training_tasks) // 2  # most ground truth is in the checked fragment
